# Robustness evaluation of an IN-1K fine-tuned model, no further training (FACTS.md §3).
img_size = 224
crop_pct = 0.875
preprocess = 'resize_crop'   # Resize 256 + CenterCrop 224 (AugMix's script); 'center_crop': crop only (Hendrycks')
batch_size = 256
num_workers = 10
decode = 'auto'              # 'tensor': batched decode on the device (nvJPEG on GPU); 'pil': PIL in the workers
precision = 'auto'
seed = 0
