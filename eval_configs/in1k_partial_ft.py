# ImageNet-1K partial fine-tuning (Fig. 9): the last k blocks + fc_norm + head train, the fine-tuning recipe.
# Fig. 9 uses k in {0, 1, 2, 4, 6, 12, 18, 24}: run_transfer.py in1k_partial_ft --cfg-options k=4
# k = 0 trains only fc_norm and the head; k = depth is full fine-tuning. Epochs from {50, 100, 200} in the paper.
_base_ = ['./_base_/finetune.py']
protocol = 'partial'
k = 4
dataset = dict(name='imagenet', format='imagenet', root=None, train_split='train', val_split='val', num_classes=1000)
