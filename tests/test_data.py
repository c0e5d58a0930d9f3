"""``data.decode='tensor'`` (torchvision's decoder, uint8 resize) against fb/mae's PIL pipeline: the same crops and
flips from the same seed, pixels within 2 grey levels, the same crop scale and aspect-ratio distribution over
independent draws; files torchvision cannot read as 8-bit RGB go through PIL."""
import io

import numpy as np
import pytest
import torch
from PIL import Image

from mae_core.data import (AUGMENTATIONS, IMAGENET_MEAN, IMAGENET_STD, PretrainImages, load_rgb, load_rgb_tensor,
                           pretrain_transform)
from mae_core.errors import ConfigError, UnreadableImage
from torchvision.transforms.functional import pil_to_tensor

# torchvision 0.29 points to torchcodec for decoding (same pixels and speed here); its decoders still work
pytestmark = pytest.mark.filterwarnings('ignore:The image decoding:DeprecationWarning')
MEAN, STD = torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)[:, None, None]


def grey_levels(x):
    return x * STD * 255 + MEAN * 255


def photo_like(path, seed, size=(500, 375)):
    """An ImageNet-size JPEG (quality 90): smooth content plus noise."""
    rng = np.random.default_rng(seed)
    base = Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).resize(size, Image.BICUBIC)
    noisy = np.clip(np.asarray(base).astype(np.int16) + rng.integers(-10, 10, base.size[::-1] + (3,)), 0, 255)
    Image.fromarray(noisy.astype(np.uint8)).save(path, quality=90)


def dataset(root, decode, scale=(0.2, 1.0), size=224):
    return PretrainImages(root, size, scale, 'crop_rand', decode)


def test_same_seed_gives_the_same_crop_and_flip_within_two_grey_levels(tmp_path):
    for k in range(12):
        photo_like(tmp_path / f'{k}.jpg', k)
    pil, tensor = dataset(tmp_path, 'pil'), dataset(tmp_path, 'tensor')
    worst = []
    for k in range(12):
        for seed in (k, 100 + k):
            a, b = pil[(k, seed)]['inputs'], tensor[(k, seed)]['inputs']
            assert a.shape == b.shape == (3, 224, 224) and b.dtype == torch.float32
            worst.append((grey_levels(a) - grey_levels(b)).abs().max().item())
    assert max(worst) <= 2.01, worst  # a different crop or flip would differ by tens of levels


@pytest.mark.parametrize('augmentation', AUGMENTATIONS)
def test_every_augmentation_draws_the_same_from_the_same_seed(tmp_path, augmentation):
    """Table 1e's rows through both decoders: the same crop, flip and colour draws. Crops agree within 2 grey
    levels; torchvision's tensor colour jitter (hue in floats) differs from PIL's (hue in uint8 HSV) by about one
    level on average, a few pixels by up to ~15; another draw would differ by tens on average."""
    for k in range(4):
        photo_like(tmp_path / f'{k}.jpg', k, size=(400, 300))
    pil, tensor = (PretrainImages(tmp_path, 96, (0.2, 1.0), augmentation, d) for d in ('pil', 'tensor'))
    diffs = [(grey_levels(pil[(k, seed)]['inputs']) - grey_levels(tensor[(k, seed)]['inputs'])).abs()
             for k in range(4) for seed in (7 * k, 100 + k)]
    if augmentation == 'crop_color':
        assert max(d.mean().item() for d in diffs) < 2.0
        assert (grey_levels(pil[(0, 0)]['inputs']) - grey_levels(tensor[(0, 1)]['inputs'])).abs().mean() > 10
    else:
        assert max(d.max().item() for d in diffs) <= 2.01


def crop_box(x, width, height):
    """The crop's (scale, log aspect ratio), read off an output of the coordinate image: red encodes x, green y."""
    g = grey_levels(x)
    xs, ys = g[0].mean(0), g[1].mean(1)  # red along the columns, green along the rows
    x0, x1 = sorted((xs[0].item(), xs[-1].item()))
    y0, y1 = ys[0].item(), ys[-1].item()
    w, h = (x1 - x0) / 255 * width, (y1 - y0) / 255 * height
    return w * h / (width * height), np.log(w / h)


def ks_statistic(a, b):
    grid = np.sort(np.concatenate([a, b]))
    cdf = lambda s: np.searchsorted(np.sort(s), grid, side='right') / len(s)
    return np.abs(cdf(a) - cdf(b)).max()


def test_independent_draws_have_the_crop_distribution_of_fb_mae(tmp_path):
    """Scale and aspect-ratio histograms of 'tensor' vs 'pil' crops, from disjoint seeds: a two-sample
    Kolmogorov-Smirnov statistic below the 0.1 % critical value; a changed crop range is caught by the same test."""
    width, height = 256, 256
    xx, yy = np.meshgrid(np.arange(width) * 255 / (width - 1), np.arange(height) * 255 / (height - 1))
    coords = np.stack([xx, yy, np.full_like(xx, 128)], -1).round().astype(np.uint8)
    Image.fromarray(coords).save(tmp_path / 'coords.png')  # lossless: the colours are the coordinates
    n = 300

    def draws(decode, seeds, scale=(0.2, 1.0)):
        ds = dataset(tmp_path, decode, scale, size=64)
        return np.array([crop_box(ds[(0, s)]['inputs'], width, height) for s in seeds])

    pil, tensor = draws('pil', range(n)), draws('tensor', range(n, 2 * n))
    critical = 1.95 * np.sqrt(2 / n)  # alpha = 0.001
    assert 0.15 < pil[:, 0].mean() < 0.75 and pil[:, 1].std() > 0.1  # the estimates see real crops
    for column in (0, 1):  # scale, log aspect ratio
        assert ks_statistic(pil[:, column], tensor[:, column]) < critical
    narrower = draws('tensor', range(n, 2 * n), scale=(0.5, 1.0))
    assert ks_statistic(pil[:, 0], narrower[:, 0]) > critical


@pytest.mark.parametrize('kind', ['grey jpeg', 'cmyk jpeg', 'bmp', '16-bit png', 'rgba png'])
def test_files_torchvision_cannot_read_as_rgb_give_pils_pixels(tmp_path, kind):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (40, 52, 3), dtype=np.uint8)
    path = tmp_path / {'bmp': 'x.bmp', '16-bit png': 'x.png', 'rgba png': 'x.png'}.get(kind, 'x.jpg')
    if kind == 'grey jpeg':
        Image.fromarray(rgb[..., 0]).save(path, quality=95)
    elif kind == 'cmyk jpeg':
        Image.fromarray(rgb).convert('CMYK').save(path, quality=95)
    elif kind == '16-bit png':
        Image.fromarray(rgb[..., 0].astype(np.uint16) * 257).save(path)
    elif kind == 'rgba png':
        Image.fromarray(np.concatenate([rgb, rgb[..., :1]], -1)).save(path)
    else:
        Image.fromarray(rgb).save(path)
    got = load_rgb_tensor(path)
    assert got.dtype == torch.uint8 and got.shape == (3, 40, 52)
    assert (got.int() - pil_to_tensor(load_rgb(path)).int()).abs().max() <= 1


def test_damaged_file_and_unknown_decoder_are_named(tmp_path):
    broken = tmp_path / 'broken.jpg'
    buf = io.BytesIO()
    Image.new('RGB', (60, 60)).save(buf, 'JPEG')
    broken.write_bytes(buf.getvalue()[:40])
    with pytest.raises(UnreadableImage, match='broken.jpg'):
        load_rgb_tensor(broken)
    with pytest.raises(ConfigError, match='data.decode'):
        pretrain_transform(224, decode='nvjpeg')


def test_a_loader_worker_draws_what_the_main_process_draws(tmp_path):
    """In a worker, ``seeded_draws`` seeds without keeping the global states; the samples are the same."""
    from mae_core import engine
    for k in range(6):
        photo_like(tmp_path / f'{k}.jpg', k, size=(200, 150))
    ds = PretrainImages(tmp_path, 64, (0.2, 1.0), 'crop_color', 'pil')
    batches = list(engine.train_loader(ds, 3, 1, seed=5))
    keys = list(engine.SeededSampler(ds, seed=5))
    direct = torch.stack([ds[key]['inputs'] for key in keys])
    assert torch.equal(torch.cat([b['inputs'] for b in batches]), direct)
    assert [int(s) for b in batches for s in b['seeds']] == [seed for _, seed in keys]
