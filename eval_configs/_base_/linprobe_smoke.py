# Smoke settings of linear probing: generated data, 64 px, on CPU in seconds; recorded as subset "smoke".
_base_ = ['./linprobe.py']
recipe = 'smoke'
img_size = 64
epochs = 8
warmup_epochs = 1
batch_size = 48
eval_batch_size = 80
num_workers = 1
log_interval = 5
optim = dict(blr=0.5)
