"""Image and label stay aligned through every training transform: ADE20K's resize / crop / flip / photometric
distortion / padding, and COCO's large-scale jitter. The label is drawn from the image itself (bright pixels are
one class, dark ones another), so any shift, flip or scale applied to one but not the other shows."""
import numpy as np
import pytest
import torch
from mmengine.config import ConfigDict
from PIL import Image

from mae_core.data import IMAGENET_MEAN, IMAGENET_STD
from transfer.datasets.ade20k import ADE20K, IGNORE
from transfer.datasets.coco import large_scale_jitter


def blocks(h, w, seed, size=8):
    """A random pattern of square blocks: True where bright."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((-(-h // size), -(-w // size))) < 0.5
    return np.kron(coarse, np.ones((size, size), bool))[:h, :w]


def interior(mask: torch.Tensor) -> torch.Tensor:
    """Pixels whose 3 x 3 neighbourhood is all the same class."""
    m = mask.float()[None, None]
    same = torch.nn.functional.max_pool2d(m, 3, 1, 1) == -torch.nn.functional.max_pool2d(-m, 3, 1, 1)
    return same[0, 0]


def assert_aligned(bright: torch.Tensor, label: torch.Tensor, valid: torch.Tensor):
    """Away from class edges, the image's bright pixels are the label's class: resampling blends edges, and
    nearest-neighbour label resizing (PyTorch's, and OpenCV's that mmsegmentation uses) sits up to about a pixel
    off bilinear image resizing, so a few edge pixels may differ (< 5 %); a flip of either shows as tens of
    percent, which the mirrored label demonstrates wherever the pattern is not itself symmetric."""
    inside = valid & interior(label)
    assert inside.sum() > 100
    wrong = ((bright != label) & inside).sum() / inside.sum()
    assert wrong < 0.05, float(wrong)
    both = inside & inside.flip(-1)
    if (label != label.flip(-1))[both].float().mean() > 0.2:
        assert ((bright != label.flip(-1)) & both).sum() / both.sum() > 0.2


@pytest.mark.parametrize('seed', range(6))
def test_ade20k_training_pipeline_keeps_label_on_image(tmp_path, seed):
    bright = blocks(90, 130, seed)
    img = np.where(bright[..., None], 220, 30).astype(np.uint8).repeat(3, axis=2)
    label = np.where(bright, 5, 9).astype(np.uint8)  # ADE20K classes 5 and 9 (4 and 8 after reduce_zero_label)
    Image.fromarray(img).save(tmp_path / 'a.jpg', quality=100)
    Image.fromarray(label).save(tmp_path / 'a.png')
    cfg = ConfigDict(scale=(256, 64), ratio_range=(0.5, 2.0), crop_size=64, cat_max_ratio=0.75)
    ds = ADE20K([(tmp_path / 'a.jpg', tmp_path / 'a.png')], cfg, train=True)
    for draw in range(8):
        out = ds[(0, seed * 100 + draw)]
        mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
        grey = (out['inputs'] * std + mean).mean(0)
        lab = out['labels']
        scored = lab != IGNORE
        # photometric distortion moves brightness and contrast but keeps bright above dark
        threshold = (grey[scored & (lab == 4)].mean() + grey[scored & (lab == 8)].mean()) / 2
        assert_aligned(grey > threshold, lab == 4, scored)
        if (~scored).any():  # padding is padding in both
            assert (grey[~scored] == grey[~scored].flatten()[0]).all()


@pytest.mark.parametrize('seed', range(6))
def test_large_scale_jitter_keeps_masks_on_image(seed):
    bright = torch.from_numpy(blocks(100, 150, seed))
    img = torch.where(bright, 220, 30).to(torch.uint8).expand(3, -1, -1).contiguous()
    masks = torch.stack([bright, ~bright]).to(torch.uint8)
    out_img, out_masks = large_scale_jitter(img, masks, 128, (0.5, 1.7), seed)
    assert_aligned(out_img[0] > 125, out_masks[0].bool(), out_masks.bool().any(0))
    assert (out_img[:, ~out_masks.bool().any(0)] == 0).all()  # outside the image: zero padding in both
