_base_ = ['./ade20k_upernet.py']
# Smoke: generated scenes in the ADE20K layout, 64 px crops, ~60 iterations on CPU; recorded as subset "smoke".
recipe = 'smoke'
crop_size = 64
stride = 43
scale = (256, 64)
channels = 64
aux_channels = 32
optim = dict(lr=1e-3)
max_iters = 60
warmup_iters = 5
batch_size = 8
num_workers = 1
checkpoint_interval = 20
log_interval = 10
