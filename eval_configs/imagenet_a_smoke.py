_base_ = ['./imagenet_a.py']
# Smoke: the generated set in the real layout, 64 px, seconds on CPU; recorded as subset "smoke".
img_size = 64
batch_size = 80
num_workers = 1
