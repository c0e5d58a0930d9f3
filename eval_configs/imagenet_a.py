# ImageNet-A (7,500 adversarially filtered images, 200 classes): top-1 on logits[:, indices] with timm's list.
# Robustness table: an IN-1K fine-tuned model, no further training. Layout: <root>/<wnid>/*.
dataset = dict(name='imagenet_a', root=None)
img_size = 224
crop_pct = 0.875
preprocess = 'resize_crop'   # Resize 256 + CenterCrop 224
batch_size = 256
num_workers = 10
decode = 'auto'              # 'tensor': batched decode on the device (nvJPEG on GPU); 'pil': PIL in the workers
precision = 'auto'
seed = 0
