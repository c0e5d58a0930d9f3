# ImageNet-R (30,000 renditions, 200 classes): top-1 on logits[:, indices] with timm's list.
# Robustness table: an IN-1K fine-tuned model, no further training. Layout: <root>/<wnid>/*.
_base_ = ['./_base_/robustness.py']
dataset = dict(name='imagenet_r', root=None)
