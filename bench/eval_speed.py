"""Inference throughput of the robustness evaluation path, end to end (read, decode, resize, model), on
generated 224 px JPEGs: PIL decoding in loader workers vs batched decoding on the device (nvJPEG on a GPU).

    python bench/eval_speed.py [--arch vit_base_patch16] [--images 512] [--batch-size 256] [--workers 8]

Prints images/s per path and the ratio to the PIL path, measured in one run. The issue's target is >= 6,250
images/s for ViT-B on one H100 (the full ImageNet-C, 3.75 M images, in 10 minutes)."""
import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from mmengine.config import ConfigDict

from mae_core.data import synthetic_image, write_image
from mae_core.vit import vit
from transfer.robustness import predict

TARGET = 6250


def make_jpegs(root: Path, n: int):
    rng = np.random.default_rng(0)
    for i in range(n):
        write_image(root / 'n01440764' / f'{i:05d}.JPEG', synthetic_image(i % 10, 10, rng, 224), quality=85)
    return [(p, 0, 0) for p in sorted((root / 'n01440764').iterdir())]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    on_gpu = torch.cuda.is_available()
    p.add_argument('--arch', default='vit_base_patch16')
    p.add_argument('--images', type=int, default=2048 if on_gpu else 128)
    p.add_argument('--batch-size', type=int, default=256 if on_gpu else 32)
    p.add_argument('--workers', type=int, default=8 if on_gpu else 2)
    args = p.parse_args()
    device = torch.device('cuda' if on_gpu else 'cpu')
    model = vit(args.arch, num_classes=1000, global_pool=True).to(device).eval()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        samples = make_jpegs(Path(tmp), args.images)
        for decode in ('pil', 'tensor'):
            cfg = ConfigDict(img_size=224, crop_pct=0.875, preprocess='center_crop', batch_size=args.batch_size,
                             num_workers=args.workers, decode=decode, precision='auto')
            predict(model, samples[: args.batch_size], cfg)
            if on_gpu:
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            predict(model, samples, cfg)
            if on_gpu:
                torch.cuda.synchronize()
            rows.append((decode, args.images / (time.perf_counter() - t0)))
    name = torch.cuda.get_device_name(0) if on_gpu else 'cpu'
    print(f'\n{args.arch}, {args.images} generated 224 px JPEGs (stored 224, centre crop), batch {args.batch_size}, '
          f'{args.workers} workers, {name}')
    print(f'{"decode path":<34}{"images/s":>10}{"vs PIL":>9}')
    base = rows[0][1]
    for decode, rate in rows:
        label = 'PIL in workers + CPU resize' if decode == 'pil' else f'batched decode on {device.type}'
        print(f'{label:<34}{rate:>10.1f}{rate / base:>8.2f}x')
    best = max(r for _, r in rows)
    if on_gpu:
        print(f'target >= {TARGET} images/s on one H100 (ViT-B): {"met" if best >= TARGET else "NOT met"} ({best:.0f})')
    else:
        print(f'target >= {TARGET} images/s applies to one H100; not measured here (no GPU)')


if __name__ == '__main__':
    main()
