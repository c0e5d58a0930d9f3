"""COCO detection and instance segmentation (Table 4): torchvision's Mask R-CNN with our ViT as backbone and
ViTDet's simple feature pyramid (FACTS.md §5), evaluated with pycocotools (APbox, APmask).

Differences from detectron2's ViTDet that remain (also listed in eval_configs/coco_maskrcnn.py): torchvision's box
regression loss is smooth-L1 with beta 1/9 (detectron2: L1), images are padded to a multiple of 32 per batch
instead of to a 1024 square, and mask targets are cropped with torchvision's unaligned RoIAlign."""
import copy
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.evaluator import BaseMetric, Evaluator
from mmengine.model import BaseModel
from mmengine.optim import LinearLR, MultiStepLR, OptimWrapper
from torchvision.models.convnext import LayerNorm2d
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNConvFCHead, FastRCNNPredictor
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.rpn import RPNHead
from torchvision.ops import MultiScaleRoIAlign, roi_align
from torchvision.ops.poolers import _setup_scales
from torchvision.transforms import functional as TF

from mae_core import engine as core
from mae_core.checkpoint import build_encoder, read_task_model, save_ours
from mae_core.data import IMAGENET_MEAN, IMAGENET_STD, load_rgb
from mae_core.pretrain import precision_is_bf16

from . import engine


# ==================================================================== model
def conv_ln(cin, cout, k):
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), LayerNorm2d(cout))


class SimpleFeaturePyramid(nn.Module):
    """ViTDet's pyramid from the last stride-16 map (``variant='vitdet'``), or the MAE paper's: four equal block
    subsets, each rescaled (``variant='mae'``). Strides 4, 8, 16, 32 (+ 'pool', 64), 256 channels, LayerNorm."""

    def __init__(self, vit, variant='vitdet', out_channels=256):
        super().__init__()
        dim, depth = vit.embed_dim, len(vit.blocks)
        self.vit, self.variant, self.out_channels = vit, variant, out_channels
        self.out_blocks = (depth - 1,) * 4 if variant == 'vitdet' else tuple(max(depth * (i + 1) // 4 - 1, 0) for i in range(4))
        self.scale4 = nn.Sequential(nn.ConvTranspose2d(dim, dim // 2, 2, 2), LayerNorm2d(dim // 2), nn.GELU(),
                                    nn.ConvTranspose2d(dim // 2, dim // 4, 2, 2))
        self.scale8 = nn.ConvTranspose2d(dim, dim // 2, 2, 2)
        self.scale16 = nn.Identity()
        self.scale32 = nn.MaxPool2d(2)
        self.outputs = nn.ModuleList([nn.Sequential(conv_ln(c, out_channels, 1), conv_ln(out_channels, out_channels, 3))
                                      for c in (dim // 4, dim // 2, dim, dim)])

    def forward(self, x):
        maps = self.vit.forward_features(x, self.out_blocks)
        levels = [op(m) for op, m in zip((self.scale4, self.scale8, self.scale16, self.scale32), maps)]
        feats = OrderedDict((str(i), out(f)) for i, (out, f) in enumerate(zip(self.outputs, levels)))
        feats['pool'] = F.max_pool2d(feats['3'], 1, 2)  # p6
        return feats


class AlignedRoIAlign(MultiScaleRoIAlign):
    """torchvision's multi-scale RoIAlign (same level assignment) with ``aligned=True``, detectron2's ROIAlignV2:
    a box in pixel coordinates is shifted by half a feature cell, so its samples land where the box lies."""

    def forward(self, x, boxes, image_shapes):
        feats = [x[name] for name in self.featmap_names]
        if self.scales is None:
            self.scales, self.map_levels = _setup_scales(feats, image_shapes, self.canonical_scale,
                                                         self.canonical_level)
        rois = torch.cat([torch.cat([torch.full_like(b[:, :1], i), b], 1) for i, b in enumerate(boxes)])
        levels = self.map_levels(boxes)
        out = feats[0].new_zeros((len(rois), feats[0].shape[1], *self.output_size))
        for level, (feat, scale) in enumerate(zip(feats, self.scales)):
            idx = torch.where(levels == level)[0]
            out[idx] = roi_align(feat, rois[idx], self.output_size, scale, self.sampling_ratio,
                                 aligned=True).to(out.dtype)
        return out


def build_detector(vit, num_classes, cfg):
    """Mask R-CNN as ViTDet: 2-conv RPN, 4conv1fc box head and 4-conv mask head with LayerNorm, aligned RoIAlign
    with sampling ratio 0, 1000 RPN proposals after NMS in training; RoI sample sizes and test proposals from ``cfg``."""
    c = cfg.channels  # 256 in ViTDet
    backbone = SimpleFeaturePyramid(vit, cfg.pyramid, c)
    levels = ['0', '1', '2', '3']
    anchors = AnchorGenerator(tuple((s,) for s in cfg.anchor_sizes), ((0.5, 1.0, 2.0),) * 5)
    return MaskRCNN(
        backbone, num_classes=None, min_size=cfg.image_size, max_size=cfg.image_size,
        image_mean=list(IMAGENET_MEAN), image_std=list(IMAGENET_STD), rpn_anchor_generator=anchors,
        rpn_head=RPNHead(c, 3, conv_depth=2), rpn_post_nms_top_n_train=1000,
        rpn_post_nms_top_n_test=cfg.rpn_post_nms_test, rpn_batch_size_per_image=cfg.rpn_batch_per_image,
        box_batch_size_per_image=cfg.box_batch_per_image,
        box_roi_pool=AlignedRoIAlign(levels, 7, sampling_ratio=0),
        box_head=FastRCNNConvFCHead((c, 7, 7), [c] * 4, [1024], norm_layer=LayerNorm2d),
        box_predictor=FastRCNNPredictor(1024, num_classes + 1),
        mask_roi_pool=AlignedRoIAlign(levels, 14, sampling_ratio=0),
        mask_head=MaskRCNNHeads(c, [c] * 4, 1, norm_layer=LayerNorm2d),
        mask_predictor=MaskRCNNPredictor(c, c, num_classes + 1),
        box_score_thresh=cfg.test_score_thresh, box_detections_per_img=100)


class Detector(BaseModel):
    """Mask R-CNN as mmengine sees it: lists of images and targets in, a loss dict or detections out."""

    def __init__(self, detector, bf16=False):
        super().__init__()
        self.detector, self.bf16 = detector, bf16

    def forward(self, inputs, targets=None, seeds=None, data_samples=None, mode='tensor'):
        device = inputs[0].device.type
        if mode == 'loss':
            with core.seeded_draws(int(seeds.sum()) % (2 ** 62)), core.autocast_context(device, self.bf16):
                losses = self.detector(inputs, targets)
            return {k: v.float() for k, v in losses.items()}
        with core.autocast_context(device, self.bf16):
            dets = self.detector(inputs)
        return [(d, t['image_id']) for d, t in zip(dets, targets)]


# ==================================================================== data
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
        from pycocotools.coco import COCO
        ann = Path(root) / 'annotations' / f'instances_{split}2017.json'
        if not ann.is_file():
            raise FileNotFoundError(f'{ann}: not found (expected the COCO 2017 layout annotations/'
                                    f'instances_{{train,val}}2017.json with images in {split}2017/)')
        self.coco, self.images, self.cfg, self.train = COCO(str(ann)), Path(root) / f'{split}2017', cfg, train
        self.cats = Categories(self.coco)
        ids = sorted(self.coco.getImgIds())
        if train:
            ids = [i for i in ids if any(not a.get('iscrowd', 0) for a in self.coco.loadAnns(self.coco.getAnnIds(i)))]
        self.ids = ids

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


# ==================================================================== evaluation
def to_coco_results(dets: dict, image_id: int, cats: Categories, with_masks=True):
    """One image's detections -> COCO result dicts: boxes xywh, masks RLE with ``counts`` as str."""
    from pycocotools import mask as mask_util
    out = []
    boxes = dets['boxes'].float().cpu()
    masks = (dets['masks'][:, 0] > 0.5).cpu().numpy() if with_masks and 'masks' in dets else None
    for i, (box, label, score) in enumerate(zip(boxes, dets['labels'].cpu(), dets['scores'].float().cpu())):
        x1, y1, x2, y2 = box.tolist()
        r = dict(image_id=int(image_id), category_id=cats.to_id(int(label)), bbox=[x1, y1, x2 - x1, y2 - y1],
                 score=float(score))
        if masks is not None:
            rle = mask_util.encode(np.asfortranarray(masks[i].astype(np.uint8)))
            rle['counts'] = rle['counts'].decode('ascii')
            r['segmentation'] = rle
        out.append(r)
    return out


def coco_ap(coco_gt, results, kinds=('bbox', 'segm')) -> dict:
    """pycocotools' AP, AP50, AP75, APs, APm, APl in percent, named APbox*/APmask*."""
    import contextlib
    import io
    from pycocotools.cocoeval import COCOeval
    out = {}
    for kind in kinds:
        name = 'APbox' if kind == 'bbox' else 'APmask'
        if not results:
            out.update({f'{name}{s}': 0.0 for s in ('', '50', '75', '_s', '_m', '_l')})
            continue
        with contextlib.redirect_stdout(io.StringIO()):
            ev = COCOeval(coco_gt, coco_gt.loadRes(copy.deepcopy(results)), kind)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        for s, v in zip(('', '50', '75', '_s', '_m', '_l'), ev.stats[:6]):
            out[f'{name}{s}'] = 100 * max(float(v), 0.0)  # pycocotools says -1 where no such object exists
    return out


class COCOMetric(BaseMetric):
    """Collects every image's detections (mmengine gathers them from every rank exactly once, dropping the
    sampler's padding) and scores them with pycocotools on rank 0."""
    default_prefix = ''

    def __init__(self, coco_gt, cats):
        super().__init__()
        self.coco_gt, self.cats = coco_gt, cats

    def process(self, data_batch, data_samples):
        for dets, image_id in data_samples:
            self.results.append(to_coco_results(dets, int(image_id), self.cats))

    def compute_metrics(self, results):
        return coco_ap(self.coco_gt, [r for image in results for r in image])


# ==================================================================== run
def run(bench, cfg, ctx) -> engine.Outcome:
    root = cfg.dataset.root
    val = COCODetection(root, 'val', cfg, train=False)
    train = None if ctx.eval_only else COCODetection(root, 'train', cfg, train=True)
    torch.manual_seed(cfg.seed)
    globals_ = cfg.global_blocks.get(ctx.arch) if isinstance(cfg.global_blocks, dict) else cfg.global_blocks
    vit, info = build_encoder(ctx.checkpoint, ctx.arch, ctx.allow_pickle, img_size=cfg.image_size,
                              learnable_pos=True, drop_path_rate=cfg.drop_path, window_size=cfg.window_size,
                              global_blocks=globals_ or (), rel_pos=cfg.rel_pos)
    bf16 = precision_is_bf16(cfg.precision)
    model = Detector(build_detector(vit, len(val.cats.ids), cfg), bf16)
    if ctx.eval_only:
        model.load_state_dict(read_task_model(ctx.checkpoint), strict=True)
    train_loader, val_loader = engine.make_loaders(cfg, train, val, cfg.eval_batch_size, collate, endless=True,
                                                   source=f'{root}/train2017')
    kwargs = engine.runner_kwargs(ctx.work_dir, ctx.launcher, cfg.seed, ctx.resume, name=bench.name, by_epoch=False,
                                  checkpoint_interval=cfg.checkpoint_interval, log_interval=cfg.log_interval)
    train_args = {}
    if not ctx.eval_only:  # the recipe gives the lr for its batch directly
        groups = engine.encoder_and_head_groups(model, vit, cfg.optim.lr, cfg.optim.weight_decay,
                                                cfg.optim.layer_decay)
        warm = min(cfg.warmup_iters, cfg.max_iters)
        scheds = [dict(type=LinearLR, start_factor=1e-3, by_epoch=False, begin=0, end=warm),
                  dict(type=MultiStepLR, milestones=list(cfg.lr_steps), gamma=0.1, by_epoch=False, begin=0,
                       end=cfg.max_iters)]
        train_args = dict(train_cfg=dict(by_epoch=False, max_iters=cfg.max_iters, val_interval=cfg.max_iters),
                          optim_wrapper=OptimWrapper(torch.optim.AdamW(groups, lr=cfg.optim.lr, betas=(0.9, 0.999))),
                          param_scheduler=scheds)
    evaluator = Evaluator(COCOMetric(val.coco, val.cats))
    results = engine.train_or_evaluate(model, train_loader, val_loader, evaluator, kwargs, ctx.eval_only, **train_args)
    metrics = {k: float(v) for k, v in results.items()}
    extra = dict(work_dir=ctx.work_dir)
    if not ctx.eval_only and core.is_main_process():
        meta = dict(arch=info['arch'], task='coco_maskrcnn', encoder_prefix='detector.backbone.vit.', pretrain=info['meta'])
        extra['finetuned_checkpoint'] = str(save_ours(Path(ctx.work_dir) / 'detector.pth', model.state_dict(), meta))
    subset = 'smoke' if ctx.smoke else ('full' if len(val) == 5000 else 'partial')
    settings = dict(image_size=cfg.image_size, pyramid=cfg.pyramid, window_size=cfg.window_size, rel_pos=cfg.rel_pos,
                    max_iters=cfg.max_iters, recipe=cfg.recipe, precision='bf16' if bf16 else 'fp32',
                    total_batch=cfg.batch_size * core.world_size())
    data = dict(dataset='coco2017', split='val', subset=subset, num_images=len(val), root=str(root))
    return engine.Outcome(metrics, settings, data, extra)
