# ImageNet-C (robustness table): mCE, the mean over the 15 corruptions of CE_c = sum_s E_{s,c} / sum_s E^AlexNet_{s,c}
# (FACTS.md §3), of an IN-1K fine-tuned model with no further training; the unnormalised mean error, the full
# 15 x 5 table and the 4 extra corruptions (apart, never in mCE) go into the record too.
# Layout: <root>/<corruption>/<1..5>/<wnid>/*.JPEG (the release).
_base_ = ['./_base_/robustness.py']
dataset = dict(name='imagenet_c', root=None)
extras = True                # evaluate speckle_noise, gaussian_blur, spatter, saturate when present
partial = False              # True accepts missing corruption/severity folders; the record is then marked partial
