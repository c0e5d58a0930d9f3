# ViT-H at 448 px (Tables 3 and 6, the robustness table): the position embedding is interpolated (bicubic)
# from the pre-training grid. Run with: run_transfer.py in1k_finetune --config eval_configs/in1k_finetune_448.py
_base_ = ['./in1k_finetune.py']
img_size = 448
batch_size = 8
