# Places205 fine-tuning (Table 6): the fine-tuning recipe; per-dataset lr/epochs are unpublished, ours: 50 epochs.
_base_ = ['./_base_/finetune.py']
epochs = 50
dataset = dict(name='places205', format='places205', root=None, train_split='train', val_split='val', num_classes=205)
