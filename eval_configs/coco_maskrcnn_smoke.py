_base_ = ['./coco_maskrcnn.py']
# Smoke: generated shapes in the COCO layout, 128 px, windows of 4 patches, 150 iterations on CPU; "smoke".
# Milder jitter (0.5-1.5) and lr 3e-4 so that 150 CPU steps learn the shapes: at lr 1e-3 the classifier stayed at
# the class prior and no detection cleared the 0.05 score threshold (AP 0).
recipe = 'smoke'
image_size = 128
jitter = (0.5, 1.5)
window_size = 4
global_blocks = [2, 5, 8, 11]
anchor_sizes = (8, 16, 32, 64, 128)
channels = 64                # narrower heads: 256 would take ~3 s per step on 2 CPU cores
rpn_batch_per_image = 64
box_batch_per_image = 64
rpn_post_nms_test = 100
optim = dict(lr=3e-4)
max_iters = 150
lr_steps = (120,)
warmup_iters = 5
batch_size = 4
eval_batch_size = 4
num_workers = 1
checkpoint_interval = 50
log_interval = 10
