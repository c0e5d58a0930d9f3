# ImageNet-A (7,500 adversarially filtered images, 200 classes): top-1 on logits[:, indices] with timm's list.
# Robustness table: an IN-1K fine-tuned model, no further training. Layout: <root>/<wnid>/*.
_base_ = ['./_base_/robustness.py']
dataset = dict(name='imagenet_a', root=None)
