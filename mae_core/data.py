"""Images for pre-training (any folder, ImageNet layout or flat) and the generated images behind every smoke
run: a learnable synthetic task (class = colour + stripe orientation), deterministic from a seed."""
import os
import shutil
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision import transforms as T
from torchvision.io import ImageReadMode, decode_image, read_file
from torchvision.transforms import v2
from torchvision.transforms.functional import pil_to_tensor

from .errors import ConfigError, MissingFile, UnreadableImage
from .seeding import seeded_draws

IMAGE_SUFFIXES = {'.jpg', '.jpeg', '.png', '.bmp', '.webp', '.tif', '.tiff'}
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@lru_cache()
def imagenet_wnids() -> tuple:
    """The 1000 ImageNet-1K wnids in the standard (sorted) class order, as timm ships them."""
    text = resources.files('timm.data').joinpath('_info/imagenet_synsets.txt').read_text()
    wnids = tuple(line.strip() for line in text.splitlines() if line.strip())
    assert len(wnids) == 1000 and list(wnids) == sorted(wnids)
    return wnids


@lru_cache()
def imagenet_class_index() -> dict:
    return {w: i for i, w in enumerate(imagenet_wnids())}


def list_images(root) -> list:
    root = Path(root)
    if not root.is_dir():
        raise MissingFile(f'{root}: image folder not found (expected a folder of images, flat or in '
                                'class sub-folders)')
    found = []  # os.walk: one scandir per folder, no stat per file (1.28 M files listed in seconds)
    for folder, _, names in os.walk(root, followlinks=True):
        found += [os.path.join(folder, n) for n in names if os.path.splitext(n)[1].lower() in IMAGE_SUFFIXES]
    files = sorted(Path(f) for f in found)
    if not files:
        raise MissingFile(f'{root}: no images found (looked for {sorted(IMAGE_SUFFIXES)} files, recursively)')
    return files


def load_rgb(path) -> Image.Image:
    try:
        with Image.open(path) as im:
            return im.convert('RGB')
    except (OSError, SyntaxError) as e:
        raise UnreadableImage(f'{path}: unreadable image ({e})') from None


def load_rgb_tensor(path) -> torch.Tensor:
    """``[3, H, W]`` uint8 from torchvision's decoders (libjpeg-turbo for JPEG, giving PIL's pixels); a file they
    cannot read as 8-bit RGB (BMP, TIFF, 16-bit PNG, a damaged file) goes through :func:`load_rgb`."""
    try:
        x = decode_image(read_file(str(path)), mode=ImageReadMode.RGB)
        if x.dtype == torch.uint8:
            return x
    except RuntimeError:
        pass
    return pil_to_tensor(load_rgb(path))


# data.decode: 'pil' is fb/mae's pixels; 'tensor' decodes with torchvision and resizes uint8 tensors (1.55x the
# images/s per loader worker, bench/input_pipeline.py), with the same crop, flip and colour draws; crops within 2
# grey levels of 'pil', colour jitter about one level more on average (tests/test_data.py)
DECODERS = ('pil', 'tensor')


AUGMENTATIONS = ('none', 'crop_fixed', 'crop_rand', 'crop_color')  # the rows of Table 1e
# Table 1e's colour jitter: the paper gives no parameters; these are MoCo v3's and BYOL's (brightness 0.4,
# contrast 0.4, saturation 0.2, hue 0.1, applied with probability 0.8, then grey with probability 0.2)
COLOR_JITTER = dict(brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1, p=0.8, grayscale_p=0.2)


def pretrain_transform(img_size: int, crop_scale=(0.2, 1.0), augmentation='crop_rand', decode='pil'):
    """The pre-training augmentation of Table 1e, each with a random horizontal flip as in the paper:
    ``crop_rand`` (the default, fb/mae's): RandomResizedCrop(``crop_scale``, bicubic); ``crop_fixed``: a random
    crop of fixed size (``img_size`` out of the image resized to ``img_size / 0.875``, as the usual 224 of 256);
    ``crop_color``: ``crop_rand`` then colour jitter (:data:`COLOR_JITTER`); ``none``: the centre crop of that
    resized image.

    ``decode='pil'`` takes a PIL image (fb/mae's pixels); ``'tensor'`` a uint8 tensor (:func:`load_rgb_tensor`),
    through torchvision's v2 transforms, which draw the same crops and flips from the same random state."""
    if decode not in DECODERS:
        raise ConfigError(f'data.decode {decode!r}: expected one of {", ".join(DECODERS)}')
    t = T if decode == 'pil' else v2
    bicubic = T.InterpolationMode.BICUBIC
    resized = t.Resize(int(round(img_size / 0.875)), interpolation=bicubic)
    crops = {'none': [resized, t.CenterCrop(img_size)], 'crop_fixed': [resized, t.RandomCrop(img_size)],
             'crop_rand': [t.RandomResizedCrop(img_size, scale=tuple(crop_scale), interpolation=bicubic)]}
    if augmentation == 'crop_color':
        j = COLOR_JITTER
        steps = crops['crop_rand'] + [t.RandomApply([t.ColorJitter(j['brightness'], j['contrast'], j['saturation'],
                                                                   j['hue'])], p=j['p']),
                                      t.RandomGrayscale(j['grayscale_p'])]
    elif augmentation in crops:
        steps = crops[augmentation]
    else:
        raise ConfigError(f'data.augmentation {augmentation!r}: expected one of {", ".join(AUGMENTATIONS)}')
    to_float = [T.ToTensor()] if decode == 'pil' else [v2.ToDtype(torch.float32, scale=True)]
    return t.Compose(steps + [t.RandomHorizontalFlip()] + to_float + [t.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


class PretrainImages(torch.utils.data.Dataset):
    """Every image under ``root``; indexed by ``(index, sample_seed)`` from :class:`SeededSampler`.

    Returns ``dict(inputs=[3, H, W], seeds=int)``: the seed also fixes the sample's mask.
    """

    def __init__(self, root, img_size=224, crop_scale=(0.2, 1.0), augmentation='crop_rand', decode='pil'):
        self.transform = pretrain_transform(img_size, crop_scale, augmentation, decode)
        self.load = load_rgb if decode == 'pil' else load_rgb_tensor
        self.files = list_images(root)

    def __len__(self):
        return len(self.files)

    def __getitem__(self, key):
        index, seed = key if isinstance(key, tuple) else (key, key)
        img = self.load(self.files[index])
        with seeded_draws(seed):
            x = self.transform(img)
        return dict(inputs=x, seeds=seed)


# ==================================================================== generated images
def cache_dir() -> Path:
    return Path(os.environ.get('MAE_SUITE_CACHE', Path.home() / '.cache' / 'mae_suite'))


def cached(name: str, make) -> Path:
    """``<cache>/<name>``, made by ``make(tmp_root)`` the first time: in a temp folder, then renamed, so an
    interrupted generation leaves no half data set."""
    root = cache_dir() / name
    if root.exists():
        return root
    tmp = root.with_name(f'.{root.name}.tmp{os.getpid()}')
    shutil.rmtree(tmp, ignore_errors=True)
    root.parent.mkdir(parents=True, exist_ok=True)
    try:
        make(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        os.replace(tmp, root)
    except OSError:  # another process made it first
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def smoke_wnids(num_classes: int = 10) -> list:
    """Classes for generated data: wnids that ImageNet-A and ImageNet-R both contain, spread over the 1000."""
    info = resources.files('timm.data').joinpath('_info')
    a = set(info.joinpath('imagenet_a_synsets.txt').read_text().split())
    r = set(info.joinpath('imagenet_r_synsets.txt').read_text().split())
    both = [w for w in imagenet_wnids() if w in a and w in r]
    step = len(both) // num_classes
    return [both[i * step] for i in range(num_classes)]


def synthetic_image(label: int, num_classes: int, rng: np.random.Generator, size: int = 80) -> np.ndarray:
    """One [size, size, 3] uint8 image whose class shows as its colour and stripe orientation."""
    hue = label / num_classes
    base = 0.5 + 0.4 * np.cos(2 * np.pi * (hue + np.array([0.0, 1 / 3, 2 / 3])))  # class colour
    angle = np.pi * ((label * 3) % num_classes) / num_classes
    yy, xx = np.mgrid[0:size, 0:size] / size
    phase = rng.uniform(0, 2 * np.pi)
    stripes = np.sin(2 * np.pi * 4 * (xx * np.cos(angle) + yy * np.sin(angle)) + phase)
    img = base[None, None] * (0.75 + 0.2 * stripes[..., None])
    cy, cx, rad = rng.uniform(0.2, 0.8, 2).tolist() + [rng.uniform(0.08, 0.2)]  # a distractor disc
    disc = ((yy - cy) ** 2 + (xx - cx) ** 2) < rad ** 2
    img[disc] = rng.uniform(0, 1, 3)
    img = img + rng.normal(0, 0.04, img.shape)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def write_image(path, array: np.ndarray, quality=90):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, quality=quality)


def make_class_folders(root, wnids, per_class: int, seed: int, size=80, prefix='img', ext='.JPEG'):
    """ImageNet layout ``root/<wnid>/<prefix>_<k>.JPEG``; class k of ``wnids`` is drawn as synthetic label k."""
    rng = np.random.default_rng(seed)
    for label, wnid in enumerate(wnids):
        for k in range(per_class):
            write_image(Path(root) / wnid / f'{prefix}_{wnid}_{k:04d}{ext}',
                        synthetic_image(label, len(wnids), rng, size))
    return Path(root)
