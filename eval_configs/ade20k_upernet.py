# ADE20K semantic segmentation with UperNet (Table 5): mmsegmentation's MAE config (FACTS.md §6) on our encoder.
# Encoder at 512 px (position embedding interpolated 14 -> 32), drop path 0.1, features after blocks 3, 5, 7, 11
# (ViT-B) / 7, 11, 15, 23 (ViT-L); Feature2Pyramid (rescales 4, 2, 1, 0.5); UPerHead 768 channels, pool scales
# (1, 2, 3, 6), dropout 0.1; auxiliary FCN head on level 2, 256 channels, weight 0.4. AdamW lr 1e-4, wd 0.05,
# layer decay 0.65, 1,500 iterations linear warm-up then poly to 160k, batch 16 (8 GPUs x 2).
# Relative position bias in every block (zero-initialised) and layer scale (init 1.0), as mmsegmentation's MAE
# backbone: both start where the pre-trained block computes what it did, and are learned.
dataset = dict(name='ade20k', root=None, num_classes=150)
crop_size = 512
stride = 341                 # sliding-window evaluation, at the ground truth's full resolution
scale = (2048, 512)          # (long, short) side limits of the resize
ratio_range = (0.5, 2.0)
cat_max_ratio = 0.75
out_blocks = dict(vit_base_patch16=[3, 5, 7, 11], vit_large_patch16=[7, 11, 15, 23])  # else 4 equal quarters
channels = 768
aux_channels = 256
aux_weight = 0.4
drop_path = 0.1
rel_pos = 'bias'             # None to leave it out
layer_scale_init = 1.0       # None to leave it out
optim = dict(lr=1e-4, weight_decay=0.05, layer_decay=0.65)
max_iters = 160000
warmup_iters = 1500
batch_size = 2               # per process
num_workers = 4
checkpoint_interval = 4000   # iterations
log_interval = 50
keep_checkpoints = 1       # training checkpoints kept in the work dir (the newest; saves are atomic)
precision = 'auto'
recipe = 'mmseg-mae'
seed = 0
preflight = True         # check before any work that every listed image exists (and ADE20K val labels); False skips
