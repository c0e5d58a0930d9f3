# ImageNet-C (robustness table): mCE, the mean over the 15 corruptions of CE_c = sum_s E_{s,c} / sum_s E^AlexNet_{s,c}
# (FACTS.md §3), of an IN-1K fine-tuned model with no further training; the unnormalised mean error, the full
# 15 x 5 table and the 4 extra corruptions (apart, never in mCE) go into the record too.
# Layout: <root>/<corruption>/<1..5>/<wnid>/*.JPEG (the release).
dataset = dict(name='imagenet_c', root=None)
img_size = 224
crop_pct = 0.875
preprocess = 'resize_crop'   # AugMix's script: Resize 256 + CenterCrop 224. 'center_crop': Hendrycks' (crop only)
extras = True                # evaluate speckle_noise, gaussian_blur, spatter, saturate when present
partial = False              # True accepts missing corruption/severity folders; the record is then marked partial
batch_size = 256
num_workers = 10
decode = 'auto'              # 'tensor': batched decode on the device (nvJPEG on GPU); 'pil': PIL in the workers
precision = 'auto'
seed = 0
