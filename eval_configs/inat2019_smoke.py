_base_ = ['./_base_/finetune_smoke.py']
dataset = dict(name='inat2019', format='inat', year=2019, root=None, train_split='train', val_split='val',
               num_classes=10)
