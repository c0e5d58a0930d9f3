# MAE pre-training of a tiny ViT on generated images (no --data-root needed): a usable checkpoint in about a
# minute on a 2-core CPU, for the demo, the tests and CI. Not a paper recipe: the lr is raised (blr 1.5e-3)
# and the decoder shrunk so that so short a run learns something.
arch = 'vit_tiny_patch16'
model = dict(mask_ratio=0.75, masking='random', norm_pix_loss=True, encoder_mask_tokens=False,
             decoder_depth=2, decoder_embed_dim=128, decoder_num_heads=4)
data = dict(root=None, generated=dict(num_classes=10, per_class=48, seed=0, size=80),
            img_size=64, crop_scale=(0.2, 1.0), batch_size=32, num_workers=1)
optim = dict(blr=1.5e-3, weight_decay=0.05, betas=(0.9, 0.95))
schedule = dict(epochs=20, warmup_epochs=2, min_lr=0.0)
precision = 'auto'  # bf16 autocast on GPU and on CPUs with native bf16, else fp32
seed = 0
log_interval = 5
checkpoint_interval = 1
