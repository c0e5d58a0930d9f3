"""Input pipelines per CPU core, on generated ImageNet-size JPEG files (500 x 375, quality 90), as ratios to
fb/mae's transforms measured in one run (issue 15, part 3). Pre-training:

- fb/mae: PIL decode, RandomResizedCrop(224, 0.2-1, bicubic), flip, ToTensor, Normalize;
- ours, ``data.decode='pil'`` (the default: fb/mae's pixels) and ``data.decode='tensor'`` (torchvision's
  libjpeg-turbo decoder and uint8 antialiased resize, the same crops and flips): ``PretrainImages`` itself;
- candidates tried before: uint8 output, one ``Image.resize(box=crop)``, ``reducing_gap=1.5``, PIL's ``draft``;
  and OpenCV's decoder + ``INTER_CUBIC`` resize (no antialiasing: aliased pixels when shrinking).

Fine-tuning: timm's ``create_transform`` with fb/mae's arguments vs ours (``transfer.classification``).

    python bench/input_pipeline.py [--images 200] [--repeat 3]
"""
import argparse
import io
import itertools
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image
from torchvision import transforms as T
from torchvision.transforms import functional as TF
from timm.data import create_transform

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mae_core import engine  # noqa: E402
from mae_core.config import load_config  # noqa: E402
from mae_core.data import IMAGENET_MEAN, IMAGENET_STD, PretrainImages, load_rgb  # noqa: E402
from transfer.classification import train_transform  # noqa: E402


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
    return TF.normalize(TF.to_tensor(x), IMAGENET_MEAN, IMAGENET_STD)


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


def opencv_cubic(data):
    x = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    i, j, h, w = crop_params(torch.empty(1, *x.shape[:2]))
    x = cv2.resize(x[i:i + h, j:j + w], (224, 224), interpolation=cv2.INTER_CUBIC)
    return torch.from_numpy(x[..., ::-1].copy()).permute(2, 0, 1)


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


def one_pass(transform, files) -> float:
    t0 = time.perf_counter()
    for f in files:
        transform(f)
    return time.perf_counter() - t0


def round_robin(runs: dict, repeat: int) -> dict:
    """Images/s of each of ``runs`` (name -> a function doing one timed pass, returning (images, seconds)): the
    fastest of ``repeat`` passes after an untimed one, the runs taking turns so that a busy moment of the
    machine falls on all of them alike."""
    best = {name: 0.0 for name in runs}
    for k in range(repeat + 1):
        for name, run in runs.items():
            images, seconds = run()
            best[name] = best[name] if k == 0 else max(best[name], images / seconds)
    return best


class FbMaeImages(torch.utils.data.Dataset):
    """fb/mae's pre-training data: each file decoded by PIL (read whole, then decoded) and the transform of
    main_pretrain.py."""

    def __init__(self, files):
        self.files = files

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        return fb_mae(self.files[i].read_bytes())


def loader_epoch(loader):
    t0 = time.perf_counter()
    n = sum(len(b['inputs'] if isinstance(b, dict) else b) for b in loader)
    return n, time.perf_counter() - t0


def loaders(root, files, repeat, batch=20):
    """fb/mae's loader and ours (``engine.train_loader``: the seeded sampler), one worker process each."""
    runs = {'fb/mae: DataLoader, 1 worker (reference)': torch.utils.data.DataLoader(
        FbMaeImages(files), batch, shuffle=True, drop_last=True, num_workers=1, persistent_workers=True)}
    for decode in ('pil', 'tensor'):
        ds = PretrainImages(root, 224, (0.2, 1.0), 'crop_rand', decode)
        runs[f"ours, data.decode='{decode}': engine.train_loader, 1 worker"] = engine.train_loader(ds, batch, 1,
                                                                                                    seed=0)
    speeds = round_robin({name: (lambda loader=loader: loader_epoch(loader)) for name, loader in runs.items()},
                         repeat)
    return ratio_table('loader (one worker process)', speeds)


def ratio_table(what, speeds: dict) -> list:
    ref = next(iter(speeds.values()))
    return [f'| {what} | images/s | ratio to fb/mae |', '|---|---|---|'] + [
        f'| {name} | {speed:.0f} | {speed / ref:.2f} |' for name, speed in speeds.items()]


def ours(root, decode):
    ds = PretrainImages(root, 224, (0.2, 1.0), 'crop_rand', decode)
    index, seeds = {f: k for k, f in enumerate(ds.files)}, itertools.count()
    return lambda f: ds[(index[f], next(seeds))]  # as the seeded sampler draws: a seed per sample


def table(rows, files, repeat):
    speeds = round_robin({name: (lambda fn=fn: (len(files), one_pass(fn, files))) for name, fn in rows}, repeat)
    return ratio_table('transform (one core)', speeds)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--images', type=int, default=200)
    p.add_argument('--repeat', type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    with tempfile.TemporaryDirectory() as root:
        for k, d in enumerate(jpegs(args.images)):
            Path(root, f'{k:05d}.JPEG').write_bytes(d)
        files = sorted(Path(root).iterdir())
        same = all(identical(f.read_bytes(), k) for k, f in enumerate(files[:50]))
        fb = lambda f: fb_mae(f.read_bytes())
        pretraining = [('fb/mae transform (reference)', fb),
                       ("ours, data.decode='pil' (default)", ours(root, 'pil')),
                       ("ours, data.decode='tensor' (opt-in)", ours(root, 'tensor')),
                       ('same crops, uint8 out', lambda f: uint8_out(f.read_bytes())),
                       ('one box resize, uint8 out', lambda f: box_resize(f.read_bytes())),
                       ('box resize, reducing_gap=1.5 (changes pixels)', lambda f: box_resize(f.read_bytes(), 1.5)),
                       ('PIL draft where the crop allows, box resize', lambda f: drafted(f.read_bytes())),
                       ('OpenCV decode + INTER_CUBIC, uint8 out (aliased)', lambda f: opencv_cubic(f.read_bytes()))]
        print('\n'.join(table(pretraining, files, args.repeat)))
        print()
        print('\n'.join(loaders(root, files, args.repeat)))
        cfg = load_config(Path(__file__).resolve().parents[1] / 'eval_configs/in1k_finetune.py')
        fb_ft = create_transform(224, is_training=True, auto_augment='rand-m9-mstd0.5-inc1', interpolation='bicubic',
                                 re_prob=0.25, re_mode='pixel', re_count=1)  # fb/mae's main_finetune.build_transform
        ours_ft = train_transform(cfg)
        finetuning = [('fb/mae fine-tuning transform (timm, RandAugment + erasing)', lambda f: fb_ft(load_rgb(f))),
                      ('ours (transfer.classification.train_transform)', lambda f: ours_ft(load_rgb(f)))]
        print()
        print('\n'.join(table(finetuning, files, args.repeat)))
    print(f'\nbox resize pixel-identical to crop + resize on the first 50 images: {same}; target (issue 15, '
          'pre-training): >= 1.30')


if __name__ == '__main__':
    main()
