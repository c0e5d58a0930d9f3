_base_ = ['./in1k_finetune.py']
# Smoke: generated data in the benchmark's real format, 64 px, a few epochs on CPU in under 30 s. Its numbers
# are recorded as subset "smoke" and never stand beside the paper's.
recipe = 'smoke'
img_size = 64
warmup_epochs = 1
eval_batch_size = 80
num_workers = 1
log_interval = 5
epochs = 4
batch_size = 24
optim = dict(blr=2e-2, layer_decay=0.75)
aug = dict(mixup=0.2, cutmix=0.0, re_prob=0.1)
