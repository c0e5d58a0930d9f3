_base_ = ['./in1k_linprobe.py']
# Smoke: generated data in the benchmark's real format, 64 px, a few epochs on CPU in under 30 s. Its numbers
# are recorded as subset "smoke" and never stand beside the paper's.
recipe = 'smoke'
img_size = 64
warmup_epochs = 1
eval_batch_size = 80
num_workers = 1
log_interval = 5
epochs = 8
batch_size = 48
optim = dict(blr=0.5)
