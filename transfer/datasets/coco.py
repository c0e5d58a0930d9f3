"""COCO 2017 detection and instance segmentation data: ``annotations/instances_{train,val}2017.json`` (read with
pycocotools) over ``{train,val}2017/``, with ViTDet's large-scale jitter for training."""
import contextlib
import io
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from pycocotools.coco import COCO
from torchvision.transforms import functional as TF

from mae_core.data import load_rgb
from mae_core.errors import DataError, MissingFile

from .readers import check_files_exist


def read_coco(ann: Path) -> COCO:
    """pycocotools' index of an annotation file; a file that is not COCO json (truncated, no categories, images
    without ids, annotations of unknown images) is one error naming it."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
            coco = COCO(str(ann))
    except (ValueError, KeyError, TypeError, AttributeError, IndexError) as e:
        raise DataError(f'{ann}: not a COCO annotation file ({type(e).__name__}: {e})') from None
    for key in ('images', 'annotations', 'categories'):
        if not isinstance(coco.dataset.get(key), list) or (key == 'categories' and not coco.dataset[key]):
            raise DataError(f'{ann}: no {key!r} list (a COCO annotation file has images, annotations, categories)')
    return coco


class Categories:
    """COCO category ids (1..90, with gaps) <-> contiguous labels 1..K (0 is background)."""

    def __init__(self, coco):
        self.ids = sorted(coco.getCatIds())
        self.label = {c: i + 1 for i, c in enumerate(self.ids)}

    def to_id(self, label: int) -> int:
        return self.ids[label - 1]


class COCODetection(torch.utils.data.Dataset):
    """COCO 2017 layout through pycocotools. Training drops crowd boxes and images with no instance, and applies
    large-scale jitter (scale 0.1-2.0 of ``image_size``, crop to a square of it, flip); evaluation keeps every
    image as it is (the detector resizes the longest side to ``image_size`` and maps results back)."""

    def __init__(self, root, split, cfg, train):
        ann = Path(root) / 'annotations' / f'instances_{split}2017.json'
        if not ann.is_file():
            raise MissingFile(f'{ann}: not found (expected the COCO 2017 layout annotations/'
                                    f'instances_{{train,val}}2017.json with images in {split}2017/)')
        self.coco, self.images, self.cfg, self.train = read_coco(ann), Path(root) / f'{split}2017', cfg, train
        self.cats = Categories(self.coco)
        ids = sorted(self.coco.getImgIds())
        if train:
            ids = [i for i in ids if any(not a.get('iscrowd', 0) for a in self.coco.loadAnns(self.coco.getAnnIds(i)))]
        self.ids = ids
        if cfg.get('preflight', True):
            check_files_exist((self.images / im['file_name'] for im in self.coco.dataset['images']), ann)

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, key):
        index, seed = key if isinstance(key, tuple) else (key, key)
        info = self.coco.loadImgs(self.ids[index])[0]
        path = self.images / info['file_name']
        img = TF.pil_to_tensor(load_rgb(path))
        target = dict(image_id=torch.tensor(info['id']))
        if not self.train:
            return dict(inputs=img.float() / 255, targets=target, seeds=seed)
        anns = [a for a in self.coco.loadAnns(self.coco.getAnnIds(info['id'])) if not a.get('iscrowd', 0)]
        masks = torch.from_numpy(np.stack([self.coco.annToMask(a) for a in anns]))  # [N, H, W]
        labels = torch.tensor([self.cats.label[a['category_id']] for a in anns])
        img, masks = large_scale_jitter(img, masks, self.cfg.image_size, self.cfg.jitter, seed)
        keep = masks.flatten(1).any(1).bool()  # any() of uint8 is uint8
        masks, labels = masks[keep], labels[keep]
        target.update(boxes=boxes_from_masks(masks), labels=labels, masks=masks)
        return dict(inputs=img.float() / 255, targets=target, seeds=seed)


def large_scale_jitter(img, masks, size, scale_range, seed):
    """Resize so the image fits a (size x scale) square, scale ~ U(scale_range), then a random size x size crop
    (zero padding where the image is smaller), then a random horizontal flip."""
    g = torch.Generator().manual_seed(seed)
    scale = float(torch.empty(1).uniform_(*scale_range, generator=g))
    h, w = img.shape[1:]
    s = size * scale / max(h, w)
    nh, nw = max(1, round(h * s)), max(1, round(w * s))
    img = TF.resize(img, [nh, nw], antialias=True)
    masks = TF.resize(masks, [nh, nw], interpolation=TF.InterpolationMode.NEAREST)
    y = int(torch.randint(0, max(nh - size, 0) + 1, (1,), generator=g))
    x = int(torch.randint(0, max(nw - size, 0) + 1, (1,), generator=g))
    img, masks = img[:, y:y + size, x:x + size], masks[:, y:y + size, x:x + size]
    pad = (0, size - img.shape[2], 0, size - img.shape[1])
    img, masks = F.pad(img, pad), F.pad(masks, pad)
    if torch.rand(1, generator=g) < 0.5:
        img, masks = img.flip(-1), masks.flip(-1)
    return img, masks


def boxes_from_masks(masks):
    """Tight xyxy boxes of binary masks [N, H, W]."""
    if len(masks) == 0:
        return torch.zeros(0, 4)
    boxes = []
    for m in masks:
        ys, xs = torch.nonzero(m, as_tuple=True)
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    return torch.tensor(boxes, dtype=torch.float32)


def collate(batch):
    return dict(inputs=[b['inputs'] for b in batch], targets=[b['targets'] for b in batch],
                seeds=torch.tensor([b['seeds'] for b in batch]))
