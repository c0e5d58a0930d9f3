# ImageNet-1K linear probing (the "lin" columns of Table 1, Fig. 5, Fig. 7).
_base_ = ['./_base_/linprobe.py']
dataset = dict(name='imagenet', format='imagenet', root=None, train_split='train', val_split='val', num_classes=1000)
