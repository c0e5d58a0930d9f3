# ImageNet-Sketch (50,889 sketches, 1000 classes): top-1.
# Robustness table: an IN-1K fine-tuned model, no further training. Layout: <root>/<wnid>/*.
_base_ = ['./_base_/robustness.py']
dataset = dict(name='imagenet_sketch', root=None)
