_base_ = ['./_base_/finetune_smoke.py']
protocol = 'partial'
k = 2  # of the tiny encoder's 12 blocks
dataset = dict(name='imagenet', format='imagenet', root=None, train_split='train', val_split='val', num_classes=1000)
