_base_ = ['./_base_/finetune_smoke.py']
dataset = dict(name='places205', format='places205', root=None, train_split='train', val_split='val', num_classes=205)
