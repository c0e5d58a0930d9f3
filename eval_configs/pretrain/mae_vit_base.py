# MAE pre-training of ViT-B/16, the paper's recipe (Table 8; FACTS.md §2): AdamW (0.9, 0.95), wd 0.05, blr 1.5e-4
# with lr = blr x total batch / 256, total batch 4096, 40 warm-up epochs then cosine, RandomResizedCrop(0.2-1,
# bicubic) + flip, decoder 8 x 512 (16 heads), mask ratio 0.75, normalised-pixel loss (Table 3's setting).
# 4096 = batch_size 64 per process x 64 processes: set data.batch_size for your node count (the record keeps the
# real total). Run: torchrun --nproc_per_node 8 -m mae_core.cli pretrain --config THIS --launcher pytorch
#            --data-root /data/imagenet/train
arch = 'vit_base_patch16'
model = dict(mask_ratio=0.75, masking='random', norm_pix_loss=True, encoder_mask_tokens=False,
             decoder_depth=8, decoder_embed_dim=512, decoder_num_heads=16)
data = dict(root=None, img_size=224, crop_scale=(0.2, 1.0), batch_size=64, num_workers=10)
optim = dict(blr=1.5e-4, weight_decay=0.05, betas=(0.9, 0.95))
schedule = dict(epochs=800, warmup_epochs=40, min_lr=0.0)   # 1600 for Table 3
precision = 'auto'   # bf16 autocast on GPU
seed = 0
log_interval = 50
checkpoint_interval = 1
