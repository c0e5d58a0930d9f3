# MAE pre-training of ViT-B/16, the paper's recipe (Table 8; FACTS.md §2): AdamW (0.9, 0.95), wd 0.05, blr 1.5e-4
# with lr = blr x total batch / 256, total batch 4096, 40 warm-up epochs then cosine, RandomResizedCrop(0.2-1,
# bicubic) + flip, decoder 8 x 512 (16 heads), mask ratio 0.75, normalised-pixel loss (Table 3's setting).
# 4096 = batch_size 64 per process x 64 processes: set data.batch_size for your node count (the record keeps the
# real total). Run: torchrun --nproc_per_node 8 -m mae_core.cli pretrain --config THIS --launcher pytorch
#            --data-root /data/imagenet/train
arch = 'vit_base_patch16'
model = dict(mask_ratio=0.75, masking='random', target='norm_pix', encoder_mask_tokens=False,
             decoder_depth=8, decoder_embed_dim=512, decoder_num_heads=16,
             pca_components=96, dvae_weights=None)
data = dict(root=None, img_size=224, crop_scale=(0.2, 1.0), augmentation='crop_rand', decode='pil',
            batch_size=64, num_workers=10)
optim = dict(blr=1.5e-4, weight_decay=0.05, betas=(0.9, 0.95))
schedule = dict(epochs=800, warmup_epochs=40, min_lr=0.0)   # 1600 for Table 3
# model.target (Table 1d, Table 7): 'pixel', 'norm_pix' (as fb/mae's norm_pix_loss), 'pca' (the pca_components
# largest PCA coefficients of each patch, fitted on 1,000 training images) or 'dvae' (DALL-E tokens, as BEiT;
# model.dvae_weights: DALL-E's encoder.pkl, read with --allow-pickle, or a state dict of it).
# data.augmentation (Table 1e), each with a random flip: 'none' (centre crop), 'crop_fixed', 'crop_rand' (the
# paper's default, RandomResizedCrop over crop_scale), 'crop_color' (crop_rand + colour jitter; the paper gives no
# parameters: MoCo v3's / BYOL's 0.4, 0.4, 0.2, 0.1 with p 0.8, then grey with p 0.2).
# data.decode: 'pil' (fb/mae's pixels) or 'tensor' (torchvision's JPEG decoder and uint8 resize: about 1.5x the
# images per second per loader worker, the same crops and flips, pixels within 2 grey levels of 'pil'; with
# crop_color, torchvision's colour jitter adds about one level on average).
precision = 'auto'   # bf16 autocast on GPU
seed = 0
log_interval = 50
checkpoint_interval = 1
keep_checkpoints = 1    # epoch checkpoints kept in the work dir (the newest; saves are atomic)
