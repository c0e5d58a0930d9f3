_base_ = ['./imagenet_r.py']
# Smoke: generated images with a style shift in the real layout, 64 px, seconds on CPU; recorded as "smoke".
img_size = 64
batch_size = 80
num_workers = 1
