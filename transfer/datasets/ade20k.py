"""ADE20K (SceneParsing 2016): ``ADEChallengeData2016/{images,annotations}/{training,validation}``, 150 classes
(label 0 'other' is ignored), with mmsegmentation's training pipeline (random resize, crop with
``cat_max_ratio``, flip, photometric distortion, padding)."""
import random
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.transforms import functional as TF

from mae_core.data import IMAGENET_MEAN, IMAGENET_STD
from mae_core.errors import DataError, MissingFile, UnreadableImage

IGNORE = 255  # the label of pixels that are not scored
NUM_CLASSES = 150


def read_ade(root, split, preflight=True):
    """``ADEChallengeData2016/{images,annotations}/{training,validation}``: (image, label png) pairs."""
    sub = {'train': 'training', 'val': 'validation'}[split]
    base = Path(root) / 'ADEChallengeData2016' if (Path(root) / 'ADEChallengeData2016').is_dir() else Path(root)
    images, labels = base / 'images' / sub, base / 'annotations' / sub
    for folder in (images, labels):
        if not folder.is_dir():
            raise MissingFile(f'{folder}: not found (expected the ADE20K layout ADEChallengeData2016/'
                                    '{images,annotations}/{training,validation})')
    pairs = []
    for img in sorted(images.glob('*.jpg')):
        lab = labels / (img.stem + '.png')
        if not lab.exists():
            raise DataError(f'{lab}: the annotation of {img.name} is missing')
        with Image.open(img) as a, Image.open(lab) as b:  # headers only: seconds for the whole set
            if a.size != b.size:
                raise DataError(f'{lab}: annotation of {b.size[0]}x{b.size[1]} pixels for an image of '
                                f'{a.size[0]}x{a.size[1]} ({img.name})')
        pairs.append((img, lab))
    if split == 'val' and preflight:  # the labels scored at the end are checked before any training starts
        for img, lab in pairs:
            with Image.open(lab) as b:
                raw = np.asarray(b)
            check_labels(raw, lab)
    if not pairs:
        raise MissingFile(f'{images}: no .jpg images')
    return pairs


def check_labels(raw: np.ndarray, path):
    bad = raw[(raw > NUM_CLASSES) & (raw != IGNORE)] if raw.ndim == 2 else None
    if raw.ndim != 2 or bad.size:
        found = f'shape {raw.shape}' if raw.ndim != 2 else f'label {int(bad.max())}'
        raise DataError(f'{path}: labels must be one channel of 0..{NUM_CLASSES} (or {IGNORE}); found {found}')


def reduce_zero_label(label: np.ndarray) -> np.ndarray:
    """ADE20K's 0 ('other') -> ignored; 1..150 -> 0..149; an ignored 255 stays ignored (mmsegmentation's
    ``LoadAnnotations(reduce_zero_label=True)``)."""
    out = label.astype(np.int64) - 1
    out[(out < 0) | (label == IGNORE)] = IGNORE
    return out


def photometric(img: torch.Tensor, rng: random.Random) -> torch.Tensor:
    """mmsegmentation's PhotoMetricDistortion on a uint8 tensor: brightness, contrast, saturation, hue."""
    img = img.float()
    if rng.random() < 0.5:
        img = img + rng.uniform(-32, 32)
    if rng.random() < 0.5:
        img = img * rng.uniform(0.5, 1.5)
    img = img.clamp(0, 255).to(torch.uint8)
    if rng.random() < 0.5:
        img = TF.adjust_saturation(img, rng.uniform(0.5, 1.5))
    if rng.random() < 0.5:
        img = TF.adjust_hue(img, rng.uniform(-18, 18) / 360)
    return img


class ADE20K(torch.utils.data.Dataset):
    """Training: random resize (ratio of ``scale``), random crop with ``cat_max_ratio``, flip, photometric
    distortion, padding (labels with 255). Evaluation: resize to ``scale`` keeping the ratio; the label stays at
    full resolution."""

    def __init__(self, pairs, cfg, train):
        self.pairs, self.cfg, self.train = pairs, cfg, train

    def __len__(self):
        return len(self.pairs)

    def load(self, i):
        img_path, lab_path = self.pairs[i]
        try:
            img = torch.from_numpy(np.array(Image.open(img_path).convert('RGB'))).permute(2, 0, 1)
            raw = np.asarray(Image.open(lab_path))
        except (OSError, SyntaxError) as e:
            raise UnreadableImage(f'{img_path}: unreadable image or annotation ({e})') from None
        check_labels(raw, lab_path)
        return img, torch.from_numpy(reduce_zero_label(raw))

    def __getitem__(self, key):
        index, seed = key if isinstance(key, tuple) else (key, key)
        img, lab = self.load(index)
        long_side, short_side = self.cfg.scale
        if not self.train:
            s = min(long_side / max(img.shape[1:]), short_side / min(img.shape[1:]))
            img = TF.resize(img, [round(img.shape[1] * s), round(img.shape[2] * s)], antialias=True)
            return dict(inputs=normalize(img), labels=lab, seeds=seed)
        rng = random.Random(seed)
        ratio = rng.uniform(*self.cfg.ratio_range)
        s = min(long_side * ratio / max(img.shape[1:]), short_side * ratio / min(img.shape[1:]))
        size = [max(1, round(img.shape[1] * s)), max(1, round(img.shape[2] * s))]
        img = TF.resize(img, size, antialias=True)
        lab = TF.resize(lab[None], size, interpolation=TF.InterpolationMode.NEAREST)[0]
        img, lab = self.crop(img, lab, rng)
        if rng.random() < 0.5:
            img, lab = img.flip(-1), lab.flip(-1)
        img = photometric(img, rng)
        c = self.cfg.crop_size
        pad_h, pad_w = c - img.shape[1], c - img.shape[2]
        x = F.pad(normalize(img), (0, pad_w, 0, pad_h))
        lab = F.pad(lab, (0, pad_w, 0, pad_h), value=IGNORE)
        return dict(inputs=x, labels=lab, seeds=seed)

    def crop(self, img, lab, rng):
        """A random crop in which no class covers more than ``cat_max_ratio`` (10 tries, as mmsegmentation)."""
        c = self.cfg.crop_size
        H, W = lab.shape
        for _ in range(10):
            y, x = rng.randint(0, max(H - c, 0)), rng.randint(0, max(W - c, 0))
            cut = lab[y:y + c, x:x + c]
            _, counts = torch.unique(cut[cut != IGNORE], return_counts=True)
            if len(counts) > 1 and counts.max() / counts.sum() < self.cfg.cat_max_ratio:
                break
        return img[:, y:y + c, x:x + c], lab[y:y + c, x:x + c]


def normalize(img: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1) * 255
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1) * 255
    return (img.float() - mean) / std


def collate_eval(batch):
    return dict(inputs=[b['inputs'] for b in batch], labels=[b['labels'] for b in batch],
                seeds=torch.tensor([b['seeds'] for b in batch]))
