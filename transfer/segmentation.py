"""ADE20K semantic segmentation (Table 5): our encoder + Feature2Pyramid + UperNet, the architecture of
mmsegmentation's MAE config (FACTS.md §6) written on torch, with mmsegmentation's parameter names
(``neck.upsample_4x``, ``decode_head.psp_modules``, ``decode_head.lateral_convs``, ``auxiliary_head.convs`` ...).

Evaluation: sliding window at the ground truth's full resolution; mIoU from intersection and union summed over
the whole val set (summed across ranks), averaged over the classes present, as mmsegmentation defines it."""
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.evaluator import BaseMetric, Evaluator
from mmengine.model import BaseModel
from mmengine.optim import LinearLR, PolyLR

from mae_core import engine
from mae_core.seeding import seeded_draws, step_seed
from mae_core.vit import quarter_blocks

from .datasets.ade20k import ADE20K, IGNORE, collate_eval, read_ade
from .task import Outcome, TrainPlan, execute, image_samples, iteration_train_args, load_task_weights


# ==================================================================== model
class ConvModule(nn.Sequential):
    """conv + BatchNorm + activation, named like mmcv's ConvModule (conv, bn, activate)."""

    def __init__(self, cin, cout, k, act=True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, padding=k // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.activate = nn.ReLU(inplace=True) if act else nn.Identity()


class Feature2Pyramid(nn.Module):
    """mmsegmentation's ``Feature2Pyramid`` with rescales (4, 2, 1, 0.5) and its submodule names: four stride-16
    maps -> strides 4, 8, 16, 32, channels unchanged."""

    def __init__(self, dim):
        super().__init__()
        self.upsample_4x = nn.Sequential(nn.ConvTranspose2d(dim, dim, 2, 2), nn.BatchNorm2d(dim), nn.GELU(),
                                         nn.ConvTranspose2d(dim, dim, 2, 2))
        self.upsample_2x = nn.Sequential(nn.ConvTranspose2d(dim, dim, 2, 2))
        self.identity = nn.Identity()
        self.downsample_2x = nn.MaxPool2d(2, 2)

    def forward(self, maps):
        ops = (self.upsample_4x, self.upsample_2x, self.identity, self.downsample_2x)
        return [op(x) for op, x in zip(ops, maps)]


class UPerHead(nn.Module):
    """UperNet: a pyramid pooling module on the coarsest level, FPN top-down fusion, all levels fused."""

    def __init__(self, in_channels, channels, num_classes, pool_scales=(1, 2, 3, 6), dropout=0.1):
        super().__init__()
        self.pool_scales = pool_scales
        self.psp_modules = nn.ModuleList([nn.Sequential(nn.AdaptiveAvgPool2d(s), ConvModule(in_channels, channels, 1))
                                          for s in pool_scales])
        self.bottleneck = ConvModule(in_channels + len(pool_scales) * channels, channels, 3)
        self.lateral_convs = nn.ModuleList([ConvModule(in_channels, channels, 1) for _ in range(3)])
        self.fpn_convs = nn.ModuleList([ConvModule(channels, channels, 3) for _ in range(3)])
        self.fpn_bottleneck = ConvModule(4 * channels, channels, 3)
        self.dropout = nn.Dropout2d(dropout)
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)

    def forward(self, feats):  # feats: strides 4, 8, 16, 32
        top = feats[-1]
        psp = [top] + [F.interpolate(m(top), top.shape[2:], mode='bilinear', align_corners=False)
                       for m in self.psp_modules]
        laterals = [conv(f) for conv, f in zip(self.lateral_convs, feats[:-1])] + [self.bottleneck(torch.cat(psp, 1))]
        for i in range(3, 0, -1):  # top-down
            laterals[i - 1] = laterals[i - 1] + F.interpolate(laterals[i], laterals[i - 1].shape[2:], mode='bilinear',
                                                              align_corners=False)
        outs = [conv(x) for conv, x in zip(self.fpn_convs, laterals[:-1])] + [laterals[-1]]
        outs = [outs[0]] + [F.interpolate(o, outs[0].shape[2:], mode='bilinear', align_corners=False) for o in outs[1:]]
        return self.conv_seg(self.dropout(self.fpn_bottleneck(torch.cat(outs, 1))))


class FCNHead(nn.Module):
    """The auxiliary head on level 2: one 3x3 conv, dropout, classifier."""

    def __init__(self, in_channels, channels, num_classes, dropout=0.1):
        super().__init__()
        self.convs = nn.Sequential(ConvModule(in_channels, channels, 3))
        self.dropout = nn.Dropout2d(dropout)
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)

    def forward(self, x):
        return self.conv_seg(self.dropout(self.convs(x)))


class UperNetViT(BaseModel):
    """backbone (our ViT) -> neck -> decode_head (+ auxiliary_head in training)."""

    def __init__(self, backbone, out_blocks, num_classes, channels=768, aux_channels=256, aux_weight=0.4, bf16=False,
                 crop=512, stride=341):
        super().__init__(data_preprocessor=engine.SeedsOnHost())
        dim = backbone.embed_dim
        self.backbone, self.out_blocks, self.aux_weight, self.bf16 = backbone, tuple(out_blocks), aux_weight, bf16
        self.crop, self.stride = crop, stride  # sliding-window evaluation
        self.neck = Feature2Pyramid(dim)
        self.decode_head = UPerHead(dim, channels, num_classes)
        self.auxiliary_head = FCNHead(dim, aux_channels, num_classes)

    def pyramid(self, x):
        return self.neck(self.backbone.forward_intermediates(x, self.out_blocks))

    def logits(self, x):
        """[B, 3, H, W] -> class logits [B, K, H, W] (upsampled from stride 4)."""
        with engine.autocast_context(x.device.type, self.bf16):
            out = self.decode_head(self.pyramid(x))
        return F.interpolate(out.float(), x.shape[2:], mode='bilinear', align_corners=False)

    def forward(self, inputs, labels=None, seeds=None, data_samples=None, mode='tensor'):
        if mode == 'loss':
            with seeded_draws(step_seed(seeds)), engine.autocast_context(inputs.device.type, self.bf16):
                feats = self.pyramid(inputs)
                main, aux = self.decode_head(feats), self.auxiliary_head(feats[2])
            up = lambda t: F.interpolate(t.float(), labels.shape[1:], mode='bilinear', align_corners=False)
            return dict(loss_decode=F.cross_entropy(up(main), labels, ignore_index=IGNORE),
                        loss_aux=self.aux_weight * F.cross_entropy(up(aux), labels, ignore_index=IGNORE))
        preds = []
        for img, lab in zip(inputs, labels):  # logits back to the ground truth's full resolution
            logits = slide_inference(self, img[None], self.crop, self.stride)
            preds.append((F.interpolate(logits, lab.shape, mode='bilinear', align_corners=False)[0].argmax(0), lab))
        return preds


@torch.no_grad()
def slide_inference(model, img, crop: int, stride: int):
    """Logits [1, K, H, W] from overlapping crop x crop windows (mmsegmentation's 'slide' mode): each window's
    logits are added into place and divided by how many windows saw each pixel."""
    _, _, H, W = img.shape
    rows, cols = max(H - crop + stride - 1, 0) // stride + 1, max(W - crop + stride - 1, 0) // stride + 1
    total = count = None
    for r in range(rows):
        for c in range(cols):
            y1, x1 = min(r * stride, max(H - crop, 0)), min(c * stride, max(W - crop, 0))
            y2, x2 = min(y1 + crop, H), min(x1 + crop, W)
            window = img[:, :, y1:y2, x1:x2]
            pad_h, pad_w = crop - window.shape[2], crop - window.shape[3]
            out = model.logits(F.pad(window, (0, pad_w, 0, pad_h)))[:, :, :y2 - y1, :x2 - x1]
            if total is None:
                total = img.new_zeros(1, out.shape[1], H, W)
                count = img.new_zeros(1, 1, H, W)
            total[:, :, y1:y2, x1:x2] += out
            count[:, :, y1:y2, x1:x2] += 1
    return total / count


# ==================================================================== metric
def intersect_and_union(pred: torch.Tensor, label: torch.Tensor, num_classes: int) -> torch.Tensor:
    """One image's per-class areas [4, K]: intersection, union, prediction, label, over the pixels whose label
    is not ignored (mmsegmentation's ``IoUMetric.intersect_and_union``)."""
    keep = label != IGNORE
    pred, label = pred[keep].long(), label[keep].long()
    count = lambda x: torch.bincount(x, minlength=num_classes)[:num_classes]
    inter, area_pred, area_label = count(pred[pred == label]), count(pred), count(label)
    return torch.stack([inter, area_pred + area_label - inter, area_pred, area_label])


def miou_from_areas(areas: torch.Tensor) -> dict:
    """Areas [4, K] summed over the val set -> mIoU (mean over classes with a non-empty union), aAcc and per-class
    IoU, in percent (mmsegmentation's ``total_area_to_metrics``)."""
    inter, union, _, area_label = areas.double()
    iou = inter / union  # nan where a class is neither in the labels nor predicted
    out = {'mIoU': 100 * float(torch.nanmean(iou)), 'aAcc': 100 * float(inter.sum() / area_label.sum())}
    out.update({f'IoU.{k}': 100 * float(v) for k, v in enumerate(iou) if not torch.isnan(v)})
    return out


class IoUMetric(BaseMetric):
    """Keeps each image's areas; mmengine gathers them from every rank, drops the images the sampler repeated to
    even out the ranks, and the sums over the whole val set give the metrics."""
    default_prefix = ''

    def __init__(self, num_classes):
        super().__init__()
        self.num_classes = num_classes

    def process(self, data_batch, data_samples):
        for pred, label in data_samples:
            self.results.append(intersect_and_union(pred.cpu(), label.cpu(), self.num_classes))

    def compute_metrics(self, results):
        areas = torch.stack(results)
        self.samples = dict(areas=areas.numpy().astype(np.int64))
        return miou_from_areas(areas.sum(0))


# ==================================================================== run
def out_blocks_for(cfg, arch: str, depth: int) -> list:
    """The blocks whose maps feed the pyramid: ``cfg.out_blocks`` itself, or its entry for ``arch``; else the
    last block of each quarter."""
    blocks = cfg.out_blocks.get(arch) if isinstance(cfg.out_blocks, dict) else cfg.out_blocks
    return list(blocks or quarter_blocks(depth))


def run(bench, cfg, ctx) -> Outcome:
    root = cfg.dataset.root
    val = ADE20K(read_ade(root, 'val', cfg.preflight), cfg, train=False)
    torch.manual_seed(cfg.seed)
    backbone = ctx.encoder.build(img_size=cfg.crop_size, learnable_pos=True, drop_path_rate=cfg.drop_path,
                                 rel_pos=cfg.rel_pos, layer_scale_init=cfg.layer_scale_init)
    out_blocks = out_blocks_for(cfg, ctx.encoder.arch, len(backbone.blocks))
    bf16 = engine.precision_is_bf16(cfg.precision)
    model = UperNetViT(backbone, out_blocks, cfg.dataset.num_classes, cfg.channels, cfg.aux_channels,
                       cfg.aux_weight, bf16, cfg.crop_size, cfg.stride)
    iou = IoUMetric(cfg.dataset.num_classes)
    plan = TrainPlan(model, engine.val_loader(val, 1, cfg.num_workers, collate_eval), Evaluator(iou), by_epoch=False,
                     checkpoint_interval=cfg.checkpoint_interval)
    if ctx.eval_only:
        load_task_weights(model, ctx)
    else:
        train = ADE20K(read_ade(root, 'train'), cfg, train=True)
        plan.train_loader = engine.train_loader(train, cfg.batch_size, cfg.num_workers, cfg.seed, endless=True,
                                                source=f'{root}/images/training')
        warm = min(cfg.warmup_iters, cfg.max_iters)  # mmseg's MAE: linear warm-up from 1e-6, then poly to 0
        schedule = [dict(type=LinearLR, start_factor=1e-6, by_epoch=False, begin=0, end=warm)]
        if cfg.max_iters > warm:
            schedule.append(dict(type=PolyLR, power=1.0, eta_min=0.0, by_epoch=False, begin=warm, end=cfg.max_iters))
        plan.train_args = iteration_train_args(model, model.backbone, cfg, schedule)
        plan.save_as, plan.save_module = 'segmenter.pth', model
        plan.save_meta = dict(task=bench.name, encoder_prefix='backbone.', out_blocks=list(out_blocks))
    metrics, extra = execute(bench.name, cfg, ctx, plan)
    settings = dict(crop_size=cfg.crop_size, stride=cfg.stride, scale=list(cfg.scale), max_iters=cfg.max_iters,
                    out_blocks=list(out_blocks), rel_pos=cfg.rel_pos, layer_scale_init=cfg.layer_scale_init,
                    recipe=cfg.recipe, precision='bf16' if bf16 else 'fp32',
                    total_batch=cfg.batch_size * engine.world_size())
    data = dict(dataset='ade20k', split='val', num_images=len(val), root=str(root))
    samples = image_samples('segmentation', [img for img, _ in val.pairs], root, **iou.samples) \
        if engine.is_main_process() else None
    return Outcome({k: float(v) for k, v in metrics.items()}, settings, data, extra, samples=samples)
