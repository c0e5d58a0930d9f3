# ViT-H at 448 px (Tables 3 and 6, the robustness table): the position embedding is interpolated (bicubic, no
# antialiasing, as fb/mae) from the pre-training grid. Run with:
#   run_transfer.py in1k_finetune --config eval_configs/in1k_finetune_448.py ...
# Evaluation follows fb/mae's repository (util/datasets.build_transform): above 224 px crop_pct is 1.0, i.e.
# Resize(448) + CenterCrop(448) of the whole image, not 448 / 0.875.
_base_ = ['./in1k_finetune.py']
img_size = 448
batch_size = 8
aug = dict(crop_pct=1.0)
