# iNaturalist 2018 fine-tuning (Table 6): the fine-tuning recipe; the paper adjusts lr and epochs per dataset
# without publishing them, so these are our choice: 100 epochs (ViT-B), blr 1e-3 as for ImageNet.
# Data: root/train2018.json, root/val2018.json (COCO style, the official val split) with images under root.
_base_ = ['./_base_/finetune.py']
dataset = dict(name='inat2018', format='inat', year=2018, root=None, train_split='train', val_split='val',
               num_classes=8142)
