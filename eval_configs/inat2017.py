# iNaturalist 2017 fine-tuning (Table 6): the fine-tuning recipe; the paper adjusts lr and epochs per dataset
# without publishing them, so these are our choice: 100 epochs (ViT-B), blr 1e-3 as for ImageNet.
# Data: root/train2017.json, root/val2017.json (COCO style, the official val split) with images under root.
_base_ = ['./_base_/finetune.py']
dataset = dict(name='inat2017', format='inat', year=2017, root=None, train_split='train', val_split='val',
               num_classes=5089)
