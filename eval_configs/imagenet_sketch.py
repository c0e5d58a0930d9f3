# ImageNet-Sketch (50,889 sketches, 1000 classes): top-1.
# Robustness table: an IN-1K fine-tuned model, no further training. Layout: <root>/<wnid>/*.
dataset = dict(name='imagenet_sketch', root=None)
img_size = 224
crop_pct = 0.875
preprocess = 'resize_crop'   # Resize 256 + CenterCrop 224
batch_size = 256
num_workers = 10
decode = 'auto'              # 'tensor': batched decode on the device (nvJPEG on GPU); 'pil': PIL in the workers
precision = 'auto'
seed = 0
