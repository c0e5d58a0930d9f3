# ImageNet-1K end-to-end fine-tuning (Table 3; the "ft" columns of Table 1, Fig. 5, Fig. 7; Table 7).
_base_ = ['./_base_/finetune.py']
dataset = dict(name='imagenet', format='imagenet', root=None, train_split='train', val_split='val', num_classes=1000)
