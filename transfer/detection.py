"""COCO detection and instance segmentation (Table 4): torchvision's Mask R-CNN with our ViT as backbone and
ViTDet's simple feature pyramid (FACTS.md §5), evaluated with pycocotools (APbox, APmask).

As detectron2's ViTDet (``modeling/backbone/vit.py``, ``projects/ViTDet``): the backbone (window blocks padded
after ``norm1``, decomposed relative position, the pre-training position table resampled each forward), the
simple feature pyramid with its names, aligned RoIAlign, L1 box losses, aligned mask targets and square padding.
torchvision's heads keep their own parameter names."""
import contextlib
import io
import json
import types
from collections import OrderedDict
from functools import partial

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.evaluator import BaseMetric, Evaluator
from mmengine.model import BaseModel
from pycocotools import mask as mask_util
from pycocotools.cocoeval import COCOeval
from torchvision.models.convnext import LayerNorm2d
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNConvFCHead, FastRCNNPredictor
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection import roi_heads, rpn
from torchvision.models.detection.rpn import RPNHead
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import MultiScaleRoIAlign, roi_align
from torchvision.ops.poolers import _setup_scales

from mae_core import engine
from mae_core.data import IMAGENET_MEAN, IMAGENET_STD
from mae_core.seeding import seeded_draws, step_seed
from mae_core.vit import quarter_blocks

from .datasets.coco import Categories, COCODetection, collate
from .task import Outcome, TrainPlan, execute, image_samples, iteration_train_args, load_task_weights


# ==================================================================== model
LayerNorm = partial(LayerNorm2d, eps=1e-6)  # detectron2's channels-first LayerNorm ("LN" in ViTDet's configs)


class ConvNorm(nn.Conv2d):
    """detectron2's ``Conv2d(..., bias=False, norm=LN)``: the same parameter names (``weight``, ``norm.*``)."""

    def __init__(self, cin, cout, k):
        super().__init__(cin, cout, k, padding=k // 2, bias=False)
        self.norm = LayerNorm(cout)

    def forward(self, x):
        return self.norm(super().forward(x))


class SimpleFeaturePyramid(nn.Module):
    """ViTDet's simple feature pyramid (detectron2 ``modeling/backbone/vit.py`` ``SimpleFeaturePyramid`` with scale
    factors 4, 2, 1, 0.5 and ``LastLevelMaxPool``), with its submodule names ``simfp_2`` ... ``simfp_5``: from the
    last stride-16 map (``variant='vitdet'``), or the MAE paper's variant, where each level takes the map after
    its own quarter of the blocks (``variant='mae'``). Strides 4, 8, 16, 32 and 'pool' (64)."""

    def __init__(self, vit, variant='vitdet', out_channels=256):
        super().__init__()
        dim, depth, out = vit.embed_dim, len(vit.blocks), out_channels
        self.vit, self.variant, self.out_channels = vit, variant, out
        self.out_blocks = (depth - 1,) * 4 if variant == 'vitdet' else quarter_blocks(depth)
        self.simfp_2 = nn.Sequential(nn.ConvTranspose2d(dim, dim // 2, 2, 2), LayerNorm(dim // 2), nn.GELU(),
                                     nn.ConvTranspose2d(dim // 2, dim // 4, 2, 2),
                                     ConvNorm(dim // 4, out, 1), ConvNorm(out, out, 3))
        self.simfp_3 = nn.Sequential(nn.ConvTranspose2d(dim, dim // 2, 2, 2), ConvNorm(dim // 2, out, 1),
                                     ConvNorm(out, out, 3))
        self.simfp_4 = nn.Sequential(ConvNorm(dim, out, 1), ConvNorm(out, out, 3))
        self.simfp_5 = nn.Sequential(nn.MaxPool2d(2, 2), ConvNorm(dim, out, 1), ConvNorm(out, out, 3))

    def forward(self, x):
        maps = self.vit.forward_intermediates(x, self.out_blocks)
        stages = (self.simfp_2, self.simfp_3, self.simfp_4, self.simfp_5)
        feats = OrderedDict((str(i), stage(m)) for i, (stage, m) in enumerate(zip(stages, maps)))
        feats['pool'] = F.max_pool2d(feats['3'], 1, 2)  # LastLevelMaxPool: p6
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


class SquarePadTransform(GeneralizedRCNNTransform):
    """torchvision's resize (longest side to ``image_size``) and normalisation; the batch is then zero-padded to
    an ``image_size`` square, as detectron2's ViTDet pads (``square_pad``), not to its largest image rounded up
    to 32."""

    def batch_images(self, images, size_divisible=32):
        side = self.max_size
        batched = images[0].new_zeros(len(images), images[0].shape[0], side, side)
        for img, out in zip(images, batched):
            out[:, :img.shape[1], :img.shape[2]].copy_(img)
        return batched


_WITH_L1 = types.ModuleType('functional_with_l1_box_loss')
_WITH_L1.__dict__.update(vars(F))
_WITH_L1.smooth_l1_loss = lambda input, target, beta=1.0, reduction='mean': F.l1_loss(input, target, reduction=reduction)


@contextlib.contextmanager
def vitdet_losses():
    """ViTDet's losses inside torchvision's Mask R-CNN, for one training step. torchvision hard-codes smooth-L1
    with beta 1/9 for box regression (``rpn.RegionProposalNetwork.compute_loss``, ``roi_heads.fastrcnn_loss``) and
    crops mask targets with unaligned RoIAlign (``roi_heads.project_masks_on_boxes``); detectron2's ViTDet uses L1
    (``smooth_l1_beta = 0``) and ``ROIAlign(aligned=True)`` (``BitMasks.crop_and_resize``). Those two modules'
    ``F`` and ``roi_align`` names are swapped for ones that compute that, and put back after."""
    saved = rpn.F, roi_heads.F, roi_heads.roi_align
    rpn.F = roi_heads.F = _WITH_L1
    roi_heads.roi_align = partial(roi_align, aligned=True)
    try:
        yield
    finally:
        rpn.F, roi_heads.F, roi_heads.roi_align = saved


def build_detector(vit, num_classes, cfg):
    """Mask R-CNN as ViTDet: 2-conv RPN, 4conv1fc box head and 4-conv mask head with LayerNorm, aligned RoIAlign
    with sampling ratio 0, 1000 RPN proposals after NMS in training; RoI sample sizes and test proposals from ``cfg``."""
    c = cfg.channels  # 256 in ViTDet
    backbone = SimpleFeaturePyramid(vit, cfg.pyramid, c)
    levels = ['0', '1', '2', '3']
    anchors = AnchorGenerator(tuple((s,) for s in cfg.anchor_sizes), ((0.5, 1.0, 2.0),) * 5)
    model = MaskRCNN(
        backbone, num_classes=None, min_size=cfg.image_size, max_size=cfg.image_size,
        image_mean=list(IMAGENET_MEAN), image_std=list(IMAGENET_STD), rpn_anchor_generator=anchors,
        rpn_head=RPNHead(c, 3, conv_depth=2), rpn_post_nms_top_n_train=1000,
        rpn_post_nms_top_n_test=cfg.rpn_post_nms_test, rpn_batch_size_per_image=cfg.rpn_batch_per_image,
        box_batch_size_per_image=cfg.box_batch_per_image,
        box_roi_pool=AlignedRoIAlign(levels, 7, sampling_ratio=0),
        box_head=FastRCNNConvFCHead((c, 7, 7), [c] * 4, [1024], norm_layer=LayerNorm),
        box_predictor=FastRCNNPredictor(1024, num_classes + 1),
        mask_roi_pool=AlignedRoIAlign(levels, 14, sampling_ratio=0),
        mask_head=MaskRCNNHeads(c, [c] * 4, 1, norm_layer=LayerNorm),
        mask_predictor=MaskRCNNPredictor(c, c, num_classes + 1),
        box_score_thresh=cfg.test_score_thresh, box_detections_per_img=100)
    model.transform = SquarePadTransform(cfg.image_size, cfg.image_size, list(IMAGENET_MEAN), list(IMAGENET_STD))
    return model


class Detector(BaseModel):
    """Mask R-CNN as mmengine sees it: lists of images and targets in, a loss dict or detections out."""

    def __init__(self, detector, bf16=False):
        super().__init__(data_preprocessor=engine.SeedsOnHost())
        self.detector, self.bf16 = detector, bf16

    def forward(self, inputs, targets=None, seeds=None, data_samples=None, mode='tensor'):
        device = inputs[0].device.type
        if mode == 'loss':
            with seeded_draws(step_seed(seeds)), engine.autocast_context(device, self.bf16), \
                    vitdet_losses():
                losses = self.detector(inputs, targets)
            return {k: v.float() for k, v in losses.items()}
        with engine.autocast_context(device, self.bf16):
            dets = self.detector(inputs)
        return [(d, t['image_id']) for d, t in zip(dets, targets)]


# ==================================================================== evaluation
def to_coco_results(dets: dict, image_id: int, cats: Categories, with_masks=True):
    """One image's detections -> COCO result dicts: boxes xywh, masks RLE with ``counts`` as str."""
    boxes = dets['boxes'].float().cpu()
    rles = None
    if with_masks and 'masks' in dets:
        # [N, W, H] in C order is [H, W, N] in Fortran order: pycocotools encodes all masks in one call
        binary = (dets['masks'][:, 0] > 0.5).transpose(1, 2).to(torch.uint8).contiguous().cpu().numpy()
        rles = mask_util.encode(binary.T) if len(binary) else []
    out = []
    for i, (box, label, score) in enumerate(zip(boxes, dets['labels'].cpu(), dets['scores'].float().cpu())):
        x1, y1, x2, y2 = box.tolist()
        r = dict(image_id=int(image_id), category_id=cats.to_id(int(label)), bbox=[x1, y1, x2 - x1, y2 - y1],
                 score=float(score))
        if rles is not None:
            r['segmentation'] = dict(size=rles[i]['size'], counts=rles[i]['counts'].decode('ascii'))
        out.append(r)
    return out


def coco_ap(coco_gt, results, kinds=('bbox', 'segm'), samples=None) -> dict:
    """pycocotools' AP, AP50, AP75, APs, APm, APl in percent, named APbox*/APmask*. Into ``samples`` (a dict)
    go the per-image matches pycocotools made (:func:`coco_matches`), from which the intervals are drawn.

    Mask AP is scored without the boxes, as detectron2's ``_evaluate_predictions_on_coco`` does
    (``evaluation/coco_evaluation.py``): given a box, pycocotools takes the box's area for the size ranges of
    APmask_s/m/l instead of the mask's. ``loadRes`` adds keys to each result; shallow copies keep ours intact."""
    out = {}
    for kind in kinds:
        name = 'APbox' if kind == 'bbox' else 'APmask'
        if not results:
            out.update({f'{name}{s}': 0.0 for s in ('', '50', '75', '_s', '_m', '_l')})
            continue
        copies = [dict(r) for r in results] if kind == 'bbox' else \
            [{k: v for k, v in r.items() if k != 'bbox'} for r in results]
        with contextlib.redirect_stdout(io.StringIO()):
            ev = COCOeval(coco_gt, coco_gt.loadRes(copies), kind)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        for s, v in zip(('', '50', '75', '_s', '_m', '_l'), ev.stats[:6]):
            out[f'{name}{s}'] = 100 * max(float(v), 0.0)  # pycocotools says -1 where no such object exists
        if samples is not None:
            samples.update(coco_matches(ev, kind))
    return out


def coco_matches(ev, prefix: str) -> dict:
    """What pycocotools' accumulation reads for its headline AP (area 'all', 100 detections per image and
    category), in its order (category, image, score): each kept detection's image, category, score and, per IoU
    threshold, whether it is a true or a false positive (neither when matched to an ignored object), and the
    number of non-ignored objects per image and category."""
    p = ev.params
    n_img, n_area = len(p.imgIds), len(p.areaRng)
    image, cat, score, tp, fp = [], [], [], [], []
    npig = np.zeros((n_img, len(p.catIds)), np.int32)
    for k in range(len(p.catIds)):
        for i in range(n_img):
            e = ev.evalImgs[k * n_area * n_img + i]  # area index 0: 'all'
            if e is None:
                continue
            npig[i, k] = np.count_nonzero(np.asarray(e['gtIgnore']) == 0)
            matched, ignored = e['dtMatches'][:, :p.maxDets[-1]] != 0, e['dtIgnore'][:, :p.maxDets[-1]].astype(bool)
            d = matched.shape[1]
            image += [i] * d
            cat += [k] * d
            score += list(e['dtScores'][:d])
            tp.append(matched & ~ignored)
            fp.append(~matched & ~ignored)
    empty = np.zeros((len(p.iouThrs), 0), bool)
    return {f'{prefix}_det_image': np.array(image, np.int32), f'{prefix}_det_cat': np.array(cat, np.int32),
            f'{prefix}_det_score': np.array(score, np.float64), f'{prefix}_npig': npig,
            f'{prefix}_det_tp': np.concatenate(tp, axis=1) if tp else empty,
            f'{prefix}_det_fp': np.concatenate(fp, axis=1) if fp else empty}


class COCOMetric(BaseMetric):
    """Collects every image's detections (mmengine gathers them from every rank exactly once, dropping the
    sampler's padding) and scores them with pycocotools on rank 0, keeping the matches and detections as samples."""
    default_prefix = ''

    def __init__(self, coco_gt, cats):
        super().__init__()
        self.coco_gt, self.cats, self.samples = coco_gt, cats, {}

    def process(self, data_batch, data_samples):
        for dets, image_id in data_samples:
            self.results.append(to_coco_results(dets, int(image_id), self.cats))

    def compute_metrics(self, results):
        detections = [r for image in results for r in image]
        self.samples = dict(coco_json=np.frombuffer(json.dumps(detections).encode(), dtype=np.uint8))
        return coco_ap(self.coco_gt, detections, samples=self.samples)


# ==================================================================== run
def vitdet_lr_factor(it: int, warmup_iters: int, steps: tuple, warmup_factor: float = 0.001) -> float:
    """detectron2's ``WarmupParamScheduler(MultiStepParamScheduler([1, 0.1, 0.01], milestones=steps),
    warmup_factor=0.001, warmup_length=warmup_iters / max_iter)`` under ``LRMultiplier``, at iteration ``it``:
    a linear ramp from 0.001 to 1 over the warm-up, times 0.1 for each step passed."""
    value = 0.1 ** sum(it >= m for m in steps)
    if it < warmup_iters:
        alpha = it / warmup_iters
        return value * (warmup_factor * (1 - alpha) + alpha)
    return value


def global_blocks_for(cfg, arch: str) -> tuple:
    """The blocks with global attention: ``cfg.global_blocks`` itself, or its entry for ``arch``; none if unset."""
    blocks = cfg.global_blocks.get(arch) if isinstance(cfg.global_blocks, dict) else cfg.global_blocks
    return tuple(blocks or ())


def run(bench, cfg, ctx) -> Outcome:
    root = cfg.dataset.root
    val = COCODetection(root, 'val', cfg, train=False)
    torch.manual_seed(cfg.seed)
    vit = ctx.encoder.build(img_size=cfg.image_size, learnable_pos=True, drop_path_rate=cfg.drop_path,
                            window_size=cfg.window_size, global_blocks=global_blocks_for(cfg, ctx.encoder.arch),
                            rel_pos=cfg.rel_pos,
                            pos_grid=ctx.encoder.info['pos_grid'])  # the pre-training table, as detectron2 keeps it
    bf16 = engine.precision_is_bf16(cfg.precision)
    model = Detector(build_detector(vit, len(val.cats.ids), cfg), bf16)
    coco_metric = COCOMetric(val.coco, val.cats)
    plan = TrainPlan(model, engine.val_loader(val, cfg.eval_batch_size, cfg.num_workers, collate),
                     Evaluator(coco_metric), by_epoch=False,
                     checkpoint_interval=cfg.checkpoint_interval)
    if ctx.eval_only:
        load_task_weights(model, ctx)
    else:
        train = COCODetection(root, 'train', cfg, train=True)
        plan.train_loader = engine.train_loader(train, cfg.batch_size, cfg.num_workers, cfg.seed, collate,
                                                endless=True, source=f'{root}/train2017')
        plan.train_args = iteration_train_args(model, vit, cfg, [])
        plan.train_hooks = [engine.IterationLrSchedule(partial(vitdet_lr_factor, warmup_iters=cfg.warmup_iters,
                                                               steps=tuple(cfg.lr_steps)))]
        plan.save_as, plan.save_module = 'detector.pth', model
        plan.save_meta = dict(task=bench.name, encoder_prefix='detector.backbone.vit.')
    metrics, extra = execute(bench.name, cfg, ctx, plan)
    settings = dict(image_size=cfg.image_size, pyramid=cfg.pyramid, window_size=cfg.window_size, rel_pos=cfg.rel_pos,
                    max_iters=cfg.max_iters, recipe=cfg.recipe, precision='bf16' if bf16 else 'fp32',
                    total_batch=cfg.batch_size * engine.world_size())
    data = dict(dataset='coco2017', split='val', num_images=len(val), root=str(root))
    samples = image_samples('detection', [val.coco.imgs[i]['file_name'] for i in val.ids], **coco_metric.samples) \
        if engine.is_main_process() else None
    return Outcome({k: float(v) for k, v in metrics.items()}, settings, data, extra, samples=samples)
