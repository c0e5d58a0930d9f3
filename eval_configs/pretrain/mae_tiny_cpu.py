# MAE pre-training of a tiny ViT on generated images (no --data-root needed): a usable checkpoint in about a
# minute on a 2-core CPU, for the demo, the tests and CI. Not a paper recipe: the lr is raised (blr 1.5e-3)
# and the decoder shrunk so that so short a run learns something.
arch = 'vit_tiny_patch16'
model = dict(mask_ratio=0.75, masking='random', target='norm_pix', encoder_mask_tokens=False,
             decoder_depth=2, decoder_embed_dim=128, decoder_num_heads=4,
             pca_components=96, dvae_weights=None)
data = dict(root=None, generated=dict(num_classes=10, per_class=48, seed=0, size=80),
            img_size=64, crop_scale=(0.2, 1.0), augmentation='crop_rand', decode='pil',
            batch_size=32, num_workers=1)
optim = dict(blr=1.5e-3, weight_decay=0.05, betas=(0.9, 0.95))
schedule = dict(epochs=20, warmup_epochs=2, min_lr=0.0)
# model.target (Table 1d, Table 7): 'pixel', 'norm_pix' (as fb/mae's norm_pix_loss), 'pca' (the pca_components
# largest PCA coefficients of each patch, fitted on 1,000 training images) or 'dvae' (DALL-E tokens, as BEiT;
# model.dvae_weights: DALL-E's encoder.pkl, read with --allow-pickle, or a state dict of it).
# data.augmentation (Table 1e), each with a random flip: 'none' (centre crop), 'crop_fixed', 'crop_rand' (the
# paper's default, RandomResizedCrop over crop_scale), 'crop_color' (crop_rand + colour jitter; the paper gives no
# parameters: MoCo v3's / BYOL's 0.4, 0.4, 0.2, 0.1 with p 0.8, then grey with p 0.2).
# data.decode: 'pil' (fb/mae's pixels) or 'tensor' (torchvision's JPEG decoder and uint8 resize: about 1.5x the
# images per second per loader worker, the same crops and flips, pixels within 2 grey levels of 'pil'; with
# crop_color, torchvision's colour jitter adds about one level on average).
precision = 'auto'  # bf16 autocast on GPU and on CPUs with native bf16, else fp32
seed = 0
log_interval = 5
checkpoint_interval = 1
keep_checkpoints = 1    # epoch checkpoints kept in the work dir (the newest; saves are atomic)
