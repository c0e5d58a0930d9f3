# MAE pre-training of ViT-L/16, the paper's recipe (Table 8); the Table 1 ablations use 800 epochs and
# unnormalised pixels: --cfg-options model.target=pixel, and model.decoder_depth=..., model.masking=...
_base_ = ['./mae_vit_base.py']
arch = 'vit_large_patch16'
