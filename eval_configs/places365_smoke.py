_base_ = ['./_base_/finetune_smoke.py']
dataset = dict(name='places365', format='places365', root=None, train_split='train', val_split='val', num_classes=365)
