_base_ = ['./imagenet_c.py']
# Smoke: generated val images corrupted with imagecorruptions in the released layout (19 x 5 x 20 images), 64 px.
img_size = 64
batch_size = 100
num_workers = 1
