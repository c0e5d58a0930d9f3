"""Pre-training input pipeline per CPU core, on generated ImageNet-size JPEGs (500 x 375, quality 90), as
ratios to fb/mae's transform measured in one run (issue 15, part 3; a measurement, the loader itself is still
fb/mae's):

- fb/mae: PIL decode, RandomResizedCrop(224, 0.2-1, bicubic), flip, ToTensor, Normalize;
- the same crops with uint8 output (normalised on the device instead): pixel-identical before normalisation;
- one ``Image.resize(box=crop)`` instead of crop + resize, uint8 out: checked pixel-identical here;
- the same with ``reducing_gap=1.5`` (changes pixels: would be opt-in);
- PIL's ``draft`` (DCT-scaled decoding) where the crop allows a 2x or larger reduction.

    python bench/input_pipeline.py [--images 200] [--repeat 3]
"""
import argparse
import io
import time

import numpy as np
import torch
from PIL import Image
from torchvision import transforms as T
from torchvision.transforms import functional as TF

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def jpegs(n, seed=0):
    """ImageNet-like files: smooth content plus sensor-like noise, 500 x 375, quality 90."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        base = Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).resize((500, 375), Image.BICUBIC)
        noisy = np.clip(np.asarray(base).astype(np.int16) + rng.integers(-10, 10, (375, 500, 3)), 0, 255)
        buf = io.BytesIO()
        Image.fromarray(noisy.astype(np.uint8)).save(buf, 'JPEG', quality=90)
        out.append(buf.getvalue())
    return out


def crop_params(im):
    return T.RandomResizedCrop.get_params(im, (0.2, 1.0), (3 / 4, 4 / 3))


def fb_mae(data):
    im = Image.open(io.BytesIO(data)).convert('RGB')
    i, j, h, w = crop_params(im)
    x = TF.resized_crop(im, i, j, h, w, [224, 224], interpolation=T.InterpolationMode.BICUBIC)
    x = TF.hflip(x) if torch.rand(1) < 0.5 else x
    return TF.normalize(TF.to_tensor(x), MEAN, STD)


def uint8_out(data):
    im = Image.open(io.BytesIO(data)).convert('RGB')
    i, j, h, w = crop_params(im)
    x = TF.resized_crop(im, i, j, h, w, [224, 224], interpolation=T.InterpolationMode.BICUBIC)
    x = TF.hflip(x) if torch.rand(1) < 0.5 else x
    return torch.from_numpy(np.array(x)).permute(2, 0, 1)


def box_resize(data, gap=None):
    im = Image.open(io.BytesIO(data)).convert('RGB')
    i, j, h, w = crop_params(im)
    x = im.resize((224, 224), Image.BICUBIC, box=(j, i, j + w, i + h), reducing_gap=gap)
    x = x.transpose(Image.FLIP_LEFT_RIGHT) if torch.rand(1) < 0.5 else x
    return torch.from_numpy(np.array(x)).permute(2, 0, 1)


def drafted(data):
    im = Image.open(io.BytesIO(data))
    i, j, h, w = crop_params(im)
    scale = 1
    while min(h, w) // (2 * scale) >= 224 and scale < 8:
        scale *= 2
    if scale > 1:
        full = im.size
        im.draft('RGB', (full[0] // scale, full[1] // scale))
        f = im.size[0] / full[0]
        i, j, h, w = int(i * f), int(j * f), max(1, int(h * f)), max(1, int(w * f))
    im = im.convert('RGB')
    x = im.resize((224, 224), Image.BICUBIC, box=(j, i, j + w, i + h))
    x = x.transpose(Image.FLIP_LEFT_RIGHT) if torch.rand(1) < 0.5 else x
    return torch.from_numpy(np.array(x)).permute(2, 0, 1)


def identical(data, seed) -> bool:
    """The same crop and flip (same seed) through crop + resize and through one box resize: equal pixels?"""
    torch.manual_seed(seed)
    a = uint8_out(data)
    torch.manual_seed(seed)
    return torch.equal(a, box_resize(data))


def per_core(fn, data, repeat):
    torch.manual_seed(0)
    t0 = time.perf_counter()
    for _ in range(repeat):
        for d in data:
            fn(d)
    return repeat * len(data) / (time.perf_counter() - t0)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--images', type=int, default=200)
    p.add_argument('--repeat', type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(1)
    data = jpegs(args.images)
    same = all(identical(d, k) for k, d in enumerate(data[:50]))
    rows = [('fb/mae transform (reference)', fb_mae), ('same crops, uint8 out', uint8_out),
            ('one box resize, uint8 out', box_resize), ('box resize, reducing_gap=1.5 (changes pixels)',
                                                       lambda d: box_resize(d, 1.5)),
            ('PIL draft where the crop allows, box resize', drafted)]
    ref = None
    print('| transform (one core) | images/s | ratio to fb/mae |')
    print('|---|---|---|')
    for name, fn in rows:
        speed = per_core(fn, data, args.repeat)
        ref = ref or speed
        print(f'| {name} | {speed:.0f} | {speed / ref:.2f} |')
    print(f'\nbox resize pixel-identical to crop + resize on the first 50 images: {same}; target (issue 15): >= 1.30')


if __name__ == '__main__':
    main()
