"""Small generated datasets in each real format, for smoke runs, tests and the demo.

Deterministic from a seed, made on first use under the cache folder, written to a temp folder and renamed, so
an interrupted generation never leaves a half dataset behind. The classes are the learnable synthetic task of
``mae_core.data`` (colour + stripe orientation), on wnids that ImageNet-A and -R both contain."""
import json
import random
from pathlib import Path

import numpy as np

from PIL import Image, ImageDraw

from mae_core.data import cached, make_class_folders, smoke_wnids, synthetic_image, write_image

from .readers import IMAGENET_C_CORRUPTIONS, IMAGENET_C_EXTRAS, SEVERITIES

NUM_CLASSES, TRAIN_PER_CLASS, VAL_PER_CLASS, SIZE = 10, 24, 8, 80


def _labelled_images(split: str, seed: int):
    """[(label, k, image)] for a split: the same classes in every format, different draws per split."""
    rng = np.random.default_rng(seed + (0 if split == 'train' else 1))
    per = TRAIN_PER_CLASS if split == 'train' else VAL_PER_CLASS
    return [(c, k, synthetic_image(c, NUM_CLASSES, rng, SIZE)) for c in range(NUM_CLASSES) for k in range(per)]


def imagenet(seed=0) -> Path:
    def make(root):
        wnids = smoke_wnids(NUM_CLASSES)
        make_class_folders(root / 'train', wnids, TRAIN_PER_CLASS, seed, SIZE, prefix='train')
        make_class_folders(root / 'val', wnids, VAL_PER_CLASS, seed + 1, SIZE, prefix='val')
    return cached(f'smoke/imagenet_s{seed}', make)


def inat(year: int, seed=None) -> Path:
    """Each year its own images (seed 10 x year by default), so that a reader mixing up the years shows."""
    seed = 10 * year if seed is None else seed

    def make(root):
        cats = [dict(id=c, name=f'species_{c}', supercategory='Synthetica') for c in range(NUM_CLASSES)]
        for split in ('train', 'val'):
            images, anns = [], []
            for i, (c, k, img) in enumerate(_labelled_images(split, seed)):
                rel = f'train_val{year}/Synthetica/species_{c}/{split}_{k:04d}.jpg'
                write_image(root / rel, img)
                images.append(dict(id=i, file_name=rel, width=SIZE, height=SIZE))
                anns.append(dict(id=i, image_id=i, category_id=c))
            (root / f'{split}{year}.json').write_text(json.dumps(dict(images=images, annotations=anns,
                                                                        categories=cats)))
    return cached(f'smoke/inat{year}_s{seed}', make)


def places365(seed=3650) -> Path:  # Places205 and Places365: different images
    def make(root):
        lines = {'train': [], 'val': []}
        for split in ('train', 'val'):
            for n, (c, k, img) in enumerate(_labelled_images(split, seed)):
                if split == 'train':
                    rel = f'/s/scene_{c}/{k + 1:08d}.jpg'
                    write_image(root / 'data_256' / rel.lstrip('/'), img)
                else:
                    rel = f'Places365_val_{n + 1:08d}.jpg'
                    write_image(root / 'val_256' / rel, img)
                lines[split].append(f'{rel} {c}')
        (root / 'places365_train_standard.txt').write_text('\n'.join(lines['train']) + '\n')
        (root / 'places365_val.txt').write_text('\n'.join(lines['val']) + '\n')
    return cached(f'smoke/places365_s{seed}', make)


def places205(seed=2050) -> Path:
    def make(root):
        (root / 'trainvalsplit_places205').mkdir(parents=True)
        for split in ('train', 'val'):
            lines = []
            for c, k, img in _labelled_images(split, seed):
                rel = f's/scene_{c}/{split}_{k:06d}.jpg'
                write_image(root / 'images256' / rel, img)
                lines.append(f'{rel} {c}')
            (root / 'trainvalsplit_places205' / f'{split}_places205.csv').write_text('\n'.join(lines) + '\n')
    return cached(f'smoke/places205_s{seed}', make)


def for_dataset(spec: dict) -> Path:
    """The generated root for a config's ``dataset`` section."""
    fmt = spec['format']
    if fmt == 'imagenet':
        return imagenet()
    if fmt == 'inat':
        return inat(spec['year'])
    if fmt == 'places365':
        return places365()
    if fmt == 'places205':
        return places205()
    raise ValueError(f'no smoke data generator for dataset.format {fmt!r}')


# ==================================================================== robustness sets
def _styled(style: str, img: np.ndarray, rng) -> np.ndarray:
    """A distribution shift per set: sketches are grey edges, renditions posterised, adversarial cluttered."""
    if style == 'sketch':
        grey = img.mean(axis=2)
        edges = np.abs(np.diff(grey, axis=0, prepend=grey[:1])) + np.abs(np.diff(grey, axis=1, prepend=grey[:, :1]))
        out = 255 - np.clip(edges * 4, 0, 255)
        return np.repeat(out[..., None], 3, axis=2).astype(np.uint8)
    if style == 'rendition':
        return ((img // 64) * 64 + 32).astype(np.uint8)
    noise = rng.integers(0, 255, img.shape)
    mask = rng.random(img.shape[:2]) < 0.25
    out = img.copy()
    out[mask] = noise[mask]
    return out


def robustness_folders(style: str, seed=0) -> Path:
    """ImageNet-A/R/Sketch-style ``root/<wnid>/*.JPEG`` on the smoke classes (in both A's and R's 200)."""
    def make(root):
        rng = np.random.default_rng(seed + 7)
        wnids = smoke_wnids(NUM_CLASSES)
        for c, k, img in _labelled_images('val', seed):
            write_image(root / wnids[c] / f'{style}_{k:04d}.JPEG', _styled(style, img, rng))
    return cached(f'smoke/imagenet_{style}_s{seed}', make)


def corrupted(img: np.ndarray, name: str, severity: int, draw: int) -> np.ndarray:
    """One IN-C corruption of a uint8 HxWx3 image, the same for the same ``draw``. Most corruptions draw from
    numpy's and Python's global generators; impulse_noise (skimage) and glass_blur (numba) take their own seed."""
    from imagecorruptions import corrupt  # 1 s to import, and only needed to make the IN-C smoke set
    np.random.seed(draw)
    random.seed(draw)
    own = dict(seed=draw) if name in ('impulse_noise', 'glass_blur') else {}
    return np.asarray(corrupt(img, corruption_name=name, severity=severity, **own)).astype(np.uint8)


def imagenet_c(seed=0, per_class=2) -> Path:
    """The released IN-C layout ``root/<corruption>/<1..5>/<wnid>/*.JPEG`` (all 19 corruptions), made with the
    maintained ``imagecorruptions`` fork from generated val images, saved at JPEG quality 85 like the release."""
    CORRUPTIONS_ALL = IMAGENET_C_CORRUPTIONS + IMAGENET_C_EXTRAS

    def make(root):
        wnids = smoke_wnids(NUM_CLASSES)
        base = [(c, k, img) for c, k, img in _labelled_images('val', seed) if k < per_class]
        for name in CORRUPTIONS_ALL:
            for s in SEVERITIES:
                for c, k, img in base:
                    draw = (seed * 100003 + CORRUPTIONS_ALL.index(name) * 1009 + s * 101 + c * 11 + k) % 2 ** 32
                    out = corrupted(img, name, s, draw)
                    write_image(root / name / str(s) / wnids[c] / f'{k:04d}.JPEG', out, quality=85)
    return cached(f'smoke/imagenet_c_s{seed}', make)


# ==================================================================== ADE20K
def ade20k(seed=0, train=40, val=8) -> Path:
    """``ADEChallengeData2016/{images,annotations}/{training,validation}``: scenes of a few classes whose colour
    and texture say what they are, label 0 ('other', ignored) on a border, labels 1..150 as in the release."""
    def scene(rng, h, w):
        classes = rng.choice(np.arange(2, 12), size=4, replace=False)
        label = np.ones((h, w), np.uint8) * rng.integers(12, 15)  # a background class
        for c in classes:  # rectangles and discs of a class each
            y, x = rng.integers(0, h - 16), rng.integers(0, w - 16)
            bh, bw = rng.integers(12, h // 2), rng.integers(12, w // 2)
            if rng.random() < 0.5:
                label[y:y + bh, x:x + bw] = c
            else:
                yy, xx = np.mgrid[0:h, 0:w]
                label[(yy - y) ** 2 + (xx - x) ** 2 < (bh // 2) ** 2] = c
        label[:2], label[:, :2] = 0, 0
        hue = label.astype(float) / 15
        img = 0.5 + 0.4 * np.stack([np.cos(2 * np.pi * (hue + o)) for o in (0, 1 / 3, 2 / 3)], axis=2)
        img *= 0.85 + 0.15 * np.sin(np.arange(w)[None, :, None] * (label[..., None] % 3 + 1) * 0.8)
        img += rng.normal(0, 0.03, img.shape)
        return (np.clip(img, 0, 1) * 255).astype(np.uint8), label

    def make(root):
        rng = np.random.default_rng(seed)
        base = root / 'ADEChallengeData2016'
        for split, n, (h, w) in (('training', train, (80, 80)), ('validation', val, (96, 128))):
            for i in range(n):
                img, label = scene(rng, h, w)
                write_image(base / 'images' / split / f'ADE_{split[:5]}_{i:08d}.jpg', img)
                (base / 'annotations' / split).mkdir(parents=True, exist_ok=True)
                Image.fromarray(label.astype(np.uint8)).save(base / 'annotations' / split / f'ADE_{split[:5]}_{i:08d}.png')
    return cached(f'smoke/ade20k_s{seed}', make)


# ==================================================================== COCO
def coco(seed=0, train=48, val=12, size=128) -> Path:
    """The COCO 2017 layout (``annotations/instances_{train,val}2017.json``, ``{train,val}2017/``): shapes with
    polygon masks, category ids with gaps (as COCO's 1..90), and a crowd region per image to be ignored."""
    shapes = {1: 'square', 3: 'disc', 7: 'triangle'}
    colours = {1: (220, 60, 40), 3: (40, 180, 70), 7: (50, 90, 220)}

    def polygon(kind, cx, cy, r):
        if kind == 'square':
            return [cx - r, cy - r, cx + r, cy - r, cx + r, cy + r, cx - r, cy + r]
        if kind == 'triangle':
            return [cx, cy - r, cx + r, cy + r, cx - r, cy + r]
        return [v for a in np.linspace(0, 2 * np.pi, 16, endpoint=False) for v in (cx + r * np.cos(a), cy + r * np.sin(a))]

    def make(root):
        rng = np.random.default_rng(seed)
        cats = [dict(id=c, name=n, supercategory='shape') for c, n in shapes.items()]
        for split, n in (('train', train), ('val', val)):
            images, anns = [], []
            for i in range(n):
                canvas = Image.fromarray((rng.normal(128, 12, (size, size, 3))).clip(0, 255).astype(np.uint8))
                draw = ImageDraw.Draw(canvas)
                for k in range(rng.integers(1, 4)):
                    c = int(rng.choice(list(shapes)))
                    r = float(rng.uniform(10, 28))
                    cx, cy = rng.uniform(r, size - r, 2).tolist()
                    poly = [round(v, 1) for v in polygon(shapes[c], cx, cy, r)]
                    draw.polygon(poly, fill=colours[c])
                    xs, ys = poly[0::2], poly[1::2]
                    bbox = [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]
                    anns.append(dict(id=len(anns) + 1, image_id=i + 1, category_id=c, segmentation=[poly],
                                     area=bbox[2] * bbox[3] * 0.7, bbox=bbox, iscrowd=0))
                anns.append(dict(id=len(anns) + 1, image_id=i + 1, category_id=1, iscrowd=1, area=64.0,
                                 bbox=[0, 0, 8, 8], segmentation=[[0, 0, 8, 0, 8, 8, 0, 8]]))
                name = f'{i + 1:012d}.jpg'
                (root / f'{split}2017').mkdir(parents=True, exist_ok=True)
                canvas.save(root / f'{split}2017' / name, quality=92)
                images.append(dict(id=i + 1, file_name=name, width=size, height=size))
            (root / 'annotations').mkdir(parents=True, exist_ok=True)
            (root / 'annotations' / f'instances_{split}2017.json').write_text(
                json.dumps(dict(images=images, annotations=anns, categories=cats)))
    return cached(f'smoke/coco_s{seed}', make)
