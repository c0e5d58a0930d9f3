_base_ = ['./_base_/finetune_smoke.py']
dataset = dict(name='inat2018', format='inat', year=2018, root=None, train_split='train', val_split='val',
               num_classes=10)
