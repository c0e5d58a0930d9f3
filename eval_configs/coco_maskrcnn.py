# COCO detection and instance segmentation (Table 4): torchvision's Mask R-CNN with our ViT and ViTDet's simple
# feature pyramid (FACTS.md §5). The MAE paper searched lr/wd/drop path/epochs per entry; this is the public
# successor recipe, ViTDet's: large-scale jitter 0.1-2.0 at 1024 with a 1024 crop and flip, AdamW lr 1e-4, wd 0.1
# (none on norms and position embedding), layer decay 0.7 (B) / 0.8 (L), 184,375 iterations at batch 64 with steps
# at 163,889 and 177,546 and 250 warm-up iterations, bf16; window attention 14 in all but the global blocks.
# Decomposed relative position (zero-initialised) in every block, the pre-training position table resampled every
# forward (bicubic, no antialiasing), RoIAlign 'aligned' with sampling ratio 0, heads as ViTDet (2-conv RPN,
# 4conv1fc box head and 4-conv mask head with LayerNorm eps 1e-6), L1 box losses (smooth_l1_beta = 0), mask targets
# cropped with aligned RoIAlign, batches padded to a 1024 square, detectron2's per-iteration warm-up x steps. What
# still differs is torchvision's parameter names for the RPN and RoI heads (the ViT and the pyramid export to
# detectron2's layout with mae-convert --to vitdet).
dataset = dict(name='coco2017', root=None)
image_size = 1024
jitter = (0.1, 2.0)
pyramid = 'vitdet'           # or 'mae': the MAE paper's four equal block subsets, rescaled to strides 4-32
window_size = 14
rel_pos = 'decomposed'      # ViTDet's, zero-initialised; None to leave it out
global_blocks = dict(vit_base_patch16=[2, 5, 8, 11], vit_large_patch16=[5, 11, 17, 23], vit_huge_patch14=[7, 15, 23, 31])
anchor_sizes = (32, 64, 128, 256, 512)
channels = 256              # pyramid, RPN, box and mask heads
rpn_batch_per_image = 256   # anchors sampled per image for the RPN loss
box_batch_per_image = 512   # RoIs sampled per image for the box and mask heads
rpn_post_nms_test = 1000    # proposals per image at test time
test_score_thresh = 0.05    # detections scoring below are dropped (detectron2's default)
drop_path = 0.1              # ViT-L: 0.4 (arch_overrides)
optim = dict(lr=1e-4, weight_decay=0.1, layer_decay=0.7)
max_iters = 184375
lr_steps = (163889, 177546)
warmup_iters = 250
batch_size = 1               # per process: 64 GPUs x 1 = 64
eval_batch_size = 1
num_workers = 4
checkpoint_interval = 5000   # iterations
log_interval = 50
keep_checkpoints = 1       # training checkpoints kept in the work dir (the newest; saves are atomic)
precision = 'auto'
recipe = 'vitdet'
seed = 0
preflight = True         # check before any work that every listed image exists (and ADE20K val labels); False skips
arch_overrides = dict(vit_large_patch16=dict(drop_path=0.4, optim=dict(layer_decay=0.8)))
