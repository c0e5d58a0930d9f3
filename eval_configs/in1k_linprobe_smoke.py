_base_ = ['./_base_/linprobe_smoke.py']
dataset = dict(name='imagenet', format='imagenet', root=None, train_split='train', val_split='val', num_classes=1000)
