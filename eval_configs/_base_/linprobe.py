# Linear probing, the paper's recipe (Table 10; FACTS.md §2): frozen encoder, cls-token feature,
# BatchNorm1d(affine=False, eps=1e-6) + linear head, LARS (as the paper defines it, not timm's Lars),
# no weight decay, 10 warm-up epochs of 90. fb/mae's repo reaches 67.8/76.0/77.2 (B/L/H), the paper 68.0/75.8/76.6.
protocol = 'linprobe'
recipe = 'paper'
img_size = 224
epochs = 90
warmup_epochs = 10
min_lr = 0.0             # fb/mae main_linprobe.py: per-iteration warm-up, then half-cycle cosine to 0
batch_size = 512         # per process; paper total 16384
accum_iter = 1
eval_batch_size = 256
num_workers = 10
optim = dict(type='lars', blr=0.1, weight_decay=0.0, momentum=0.9)
drop_path = 0.0
aug = dict(auto_augment=None, re_prob=0.0, mixup=0.0, cutmix=0.0, smoothing=0.0, crop_pct=0.875)
precision = 'auto'
skip_bad_images = False  # True: check every image first, skip unreadable ones and count them in the record
preflight = True         # check before any work that every listed image exists (and ADE20K val labels); False skips
seed = 0
log_interval = 50
keep_checkpoints = 1       # training checkpoints kept in the work dir (the newest; saves are atomic)
arch_overrides = dict(vit_large_patch16=dict(epochs=50), vit_huge_patch14=dict(epochs=50))  # "50 is enough for L/H"
