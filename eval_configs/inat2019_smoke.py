_base_ = ['./inat2019.py']
# Smoke: generated data in the benchmark's real format, 64 px, a few epochs on CPU in under 30 s. Its numbers
# are recorded as subset "smoke" and never stand beside the paper's.
recipe = 'smoke'
img_size = 64
warmup_epochs = 1
eval_batch_size = 80
num_workers = 1
log_interval = 5
dataset = dict(num_classes=10)
epochs = 4
batch_size = 24
optim = dict(blr=2e-2)
aug = dict(mixup=0.2, cutmix=0.0, re_prob=0.1)
