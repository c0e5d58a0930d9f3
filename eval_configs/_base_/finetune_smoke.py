# Smoke settings of every fine-tuning benchmark: generated data in the benchmark's real format, 64 px, a few
# epochs on CPU in under 30 s (lr raised so so short a run learns). Numbers are recorded as subset "smoke" and
# never stand beside the paper's.
_base_ = ['./finetune.py']
recipe = 'smoke'
img_size = 64
epochs = 4
warmup_epochs = 1
batch_size = 24
eval_batch_size = 80
num_workers = 1
log_interval = 5
optim = dict(blr=2e-2)
aug = dict(mixup=0.2, cutmix=0.0, re_prob=0.1)
