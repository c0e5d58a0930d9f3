"""Inference images/s of our ViTDet Mask R-CNN (COCO, 1024 px) and UperNet (ADE20K, 512 px sliding windows),
beside the figures the reference repositories publish (issue 15, part 2). One image at a time, as those tables
count; random weights and images of COCO's and ADE20K's typical sizes, so only the compute is measured (no
decoding, no metric). The detector keeps 100 detections per image (score threshold 0: untrained heads score
below detectron2's 0.05), the most mask-head work an image can cost.

Published, not measured here (other hardware, other software):
- detectron2 ViTDet, Mask R-CNN, 1024 px, A100 (projects/ViTDet/README.md): ViT-B 0.079 s/image (12.7
  images/s), ViT-L 0.125 (8.0), ViT-H 0.178 (5.6);
- mmsegmentation, UperNet + MAE ViT-B, 512 x 512 (configs/mae/README.md): 7.14 images/s ("Inf time (fps)";
  the README does not name the GPU).

    python bench/infer_speed.py [--arch vit_base_patch16] [--images 20] [--task both]
"""
import argparse
import time
from pathlib import Path

import torch

from mae_core import engine
from mae_core.config import load_config
from mae_core.vit import vit
from transfer.detection import build_detector, global_blocks_for
from transfer.segmentation import UperNetViT, out_blocks_for, slide_inference

CONFIGS = Path(__file__).resolve().parents[1] / 'eval_configs'
ON_GPU = torch.cuda.is_available()
DEVICE = torch.device('cuda' if ON_GPU else 'cpu')
PUBLISHED = {('det', 'vit_base_patch16'): (12.7, 'ViTDet, detectron2, A100'),
             ('det', 'vit_large_patch16'): (8.0, 'ViTDet, detectron2, A100'),
             ('det', 'vit_huge_patch14'): (5.6, 'ViTDet, detectron2, A100'),
             ('seg', 'vit_base_patch16'): (7.14, 'mmseg 1.x README, GPU not named')}


def images_per_s(step, images, warmup=2):
    """Images/s over ``images`` calls of ``step`` after ``warmup`` untimed ones (synchronised at each end)."""
    for _ in range(warmup):
        step()
    torch.cuda.synchronize() if ON_GPU else None
    t0 = time.perf_counter()
    for _ in range(images):
        step()
    torch.cuda.synchronize() if ON_GPU else None
    return images / (time.perf_counter() - t0)


def detector_speed(arch, images, bf16, image_size=None):
    cfg = load_config(CONFIGS / 'coco_maskrcnn.py')
    size = image_size or cfg.image_size
    backbone = vit(arch, img_size=size, learnable_pos=True, window_size=cfg.window_size,
                   global_blocks=global_blocks_for(cfg, arch), rel_pos=cfg.rel_pos)
    cfg.image_size, cfg.test_score_thresh = size, 0.0
    model = build_detector(backbone, 80, cfg).to(DEVICE).eval()
    img = torch.rand(3, 480 * size // 1024, 640 * size // 1024, device=DEVICE)  # COCO's typical 640 x 480

    @torch.no_grad()
    def step():
        with engine.autocast_context(DEVICE.type, bf16):
            model([img])
    return images_per_s(step, images)


def segmenter_speed(arch, images, bf16, crop=None):
    cfg = load_config(CONFIGS / 'ade20k_upernet.py')
    crop = crop or cfg.crop_size
    stride = cfg.stride * crop // cfg.crop_size
    backbone = vit(arch, img_size=crop, learnable_pos=True, rel_pos=cfg.rel_pos, layer_scale_init=cfg.layer_scale_init)
    blocks = out_blocks_for(cfg, arch, len(backbone.blocks))
    model = UperNetViT(backbone, blocks, 150, cfg.channels, cfg.aux_channels, cfg.aux_weight, bf16, crop,
                       stride).to(DEVICE).eval()
    img = torch.rand(1, 3, crop, crop * 4 // 3, device=DEVICE)  # ADE20K's 4:3 images, short side at the crop size
    return images_per_s(lambda: slide_inference(model, img, crop, stride), images)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--arch', default='vit_base_patch16')
    p.add_argument('--images', type=int, default=20, help='timed images per model (after 2 untimed)')
    p.add_argument('--task', choices=('det', 'seg', 'both'), default='both')
    p.add_argument('--image-size', type=int, help="the detector's input side and the segmenter's crop (smaller "
                   'for a quick check; the published figures are at 1024 and 512)')
    args = p.parse_args()
    bf16 = engine.precision_is_bf16('auto')
    print(f'device: {torch.cuda.get_device_name(0) if ON_GPU else "cpu"}, precision: {"bf16" if bf16 else "fp32"}, '
          f'{args.arch}')
    print('| model | ours, images/s | published, images/s |')
    print('|---|---|---|')
    for task in ('det', 'seg'):
        if args.task not in (task, 'both'):
            continue
        speed = (detector_speed if task == 'det' else segmenter_speed)(args.arch, args.images, bf16, args.image_size)
        ref, where = PUBLISHED.get((task, args.arch), (None, ''))
        name = 'Mask R-CNN (ViTDet), COCO 1024' if task == 'det' else 'UperNet, ADE20K 512 slide'
        size = f' at {args.image_size}' if args.image_size else ''
        print(f'| {name}{size} | {speed:.2f} | {f"{ref} ({where})" if ref else "none published"} |')


if __name__ == '__main__':
    main()
