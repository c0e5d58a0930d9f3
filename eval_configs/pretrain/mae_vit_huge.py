# MAE pre-training of ViT-H/14, the paper's recipe (Table 8).
_base_ = ['./mae_vit_base.py']
arch = 'vit_huge_patch14'
