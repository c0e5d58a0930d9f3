"""Classification transfer: end-to-end fine-tuning, linear probing and partial fine-tuning (Tables 1, 3, 6 and
Fig. 9) on ImageNet-1K, iNaturalist and Places, with the paper's recipes (FACTS.md §2).

One protocol switch in the config: ``finetune`` (all blocks), ``linprobe`` (frozen encoder, cls token,
BatchNorm without affine + linear head, LARS), ``partial`` (the last ``k`` blocks, fc_norm and head)."""
from pathlib import Path

import torch
import torch.nn as nn
from mmengine.evaluator import Evaluator
from mmengine.model import BaseModel
from timm.data import Mixup, create_transform
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from torchvision import transforms as T

from mae_core import engine as core
from mae_core.checkpoint import build_encoder, save_ours
from mae_core.data import IMAGENET_MEAN, IMAGENET_STD
from mae_core.pretrain import build_schedulers, precision_is_bf16

from . import engine
from .datasets import ClassificationDataset, read_split
from .errors import UsageError

PROTOCOLS = ('finetune', 'linprobe', 'partial')
# the published val sets: a run on fewer images is recorded as a partial subset, never as comparable
FULL_VAL_SIZES = {'imagenet': 50000, 'inat2017': 95986, 'inat2018': 24426, 'inat2019': 3030,
                  'places205': 20500, 'places365': 36500}


class Classifier(BaseModel):
    """A ViT classifier as mmengine sees it. In training, every random draw of a step (mixup, drop path)
    comes from the batch's sample seeds, so a resumed run takes exactly the same steps."""

    def __init__(self, vit, mixup=None, criterion=None, bf16=False):
        super().__init__()
        self.vit, self.mixup, self.bf16 = vit, mixup, bf16
        self.criterion = criterion or nn.CrossEntropyLoss()

    def forward(self, inputs, labels=None, seeds=None, data_samples=None, mode='tensor'):
        if mode == 'loss':
            with core.seeded_draws(int(seeds.sum()) % (2 ** 62)):
                targets = labels
                if self.mixup is not None:
                    inputs, targets = self.mixup(inputs, labels)
                with core.autocast_context(inputs.device.type, self.bf16):
                    logits = self.vit(inputs)
            return dict(loss=self.criterion(logits.float(), targets))
        with core.autocast_context(inputs.device.type, self.bf16):
            logits = self.vit(inputs).float()
        return logits if mode == 'tensor' else list(zip(logits, labels))


def eval_transform(img_size: int, crop_pct: float = 0.875):
    """Resize to img_size / crop_pct (256 for 224), centre crop img_size: the reference's eval."""
    return T.Compose([T.Resize(int(img_size / crop_pct), interpolation=T.InterpolationMode.BICUBIC),
                      T.CenterCrop(img_size), T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


def train_transform(cfg):
    if cfg.protocol == 'linprobe':  # the linear-probe recipe: crop + flip only
        return T.Compose([T.RandomResizedCrop(cfg.img_size, interpolation=T.InterpolationMode.BICUBIC),
                          T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    a = cfg.aug
    return create_transform(cfg.img_size, is_training=True, auto_augment=a.auto_augment, interpolation='bicubic',
                            re_prob=a.re_prob, re_mode='pixel', re_count=1, mean=IMAGENET_MEAN, std=IMAGENET_STD)


def set_trainable(vit, protocol: str, k: int = 0):
    """Freeze what the protocol keeps fixed; returns the names of the parameters that train."""
    depth = len(vit.blocks)
    for name, p in vit.named_parameters():
        if protocol == 'finetune':
            p.requires_grad = True
        elif protocol == 'linprobe':
            p.requires_grad = name.startswith('head.')
        elif protocol == 'partial':
            if not 0 <= k <= depth:
                raise UsageError(f'partial fine-tuning: k={k} must lie in 0..{depth} for this {depth}-block encoder')
            block = int(name.split('.')[1]) if name.startswith('blocks.') else None
            p.requires_grad = name.startswith(('head.', 'fc_norm.', 'norm.')) or (
                block is not None and block >= depth - k)
        else:
            raise UsageError(f'protocol must be one of {PROTOCOLS}, got {protocol!r}')
    return [n for n, p in vit.named_parameters() if p.requires_grad]


def build_model(cfg, ctx, num_classes):
    """The encoder from the user's checkpoint, with the protocol's pooling, head and frozen parts."""
    global_pool = cfg.protocol != 'linprobe'
    if ctx.eval_only:
        vit, info = build_encoder(ctx.checkpoint, ctx.arch, ctx.allow_pickle, keep_head=True,
                                  img_size=cfg.img_size, learnable_pos=True)
        if vit.num_classes != num_classes:
            raise UsageError(f'{ctx.checkpoint}: --eval-only needs a classifier with {num_classes} outputs; the '
                             f'file has {vit.num_classes} (key head.weight)')
        return vit, info
    vit, info = build_encoder(ctx.checkpoint, ctx.arch, ctx.allow_pickle, img_size=cfg.img_size,
                              num_classes=num_classes, global_pool=global_pool, learnable_pos=True,
                              drop_path_rate=cfg.drop_path if cfg.protocol != 'linprobe' else 0.0)
    if cfg.protocol == 'linprobe':
        nn.init.trunc_normal_(vit.head.weight, std=0.01)
        vit.head = nn.Sequential(nn.BatchNorm1d(vit.embed_dim, affine=False, eps=1e-6), vit.head)
    set_trainable(vit, cfg.protocol, cfg.get('k', 0))
    return vit, info


def loaders(cfg, train, val):
    val_ds = ClassificationDataset(val.samples, eval_transform(cfg.img_size, cfg.aug.crop_pct))
    train_ds = None if train is None else ClassificationDataset(train.samples, train_transform(cfg))
    return engine.make_loaders(cfg, train_ds, val_ds, cfg.eval_batch_size, source=train and train.root)


def mixup_and_loss(cfg, num_classes):
    a = cfg.aug
    if cfg.protocol != 'linprobe' and (a.mixup > 0 or a.cutmix > 0):
        return (Mixup(mixup_alpha=a.mixup, cutmix_alpha=a.cutmix, label_smoothing=a.smoothing,
                      num_classes=num_classes), SoftTargetCrossEntropy())
    if cfg.protocol != 'linprobe' and a.smoothing > 0:
        return None, LabelSmoothingCrossEntropy(a.smoothing)
    return None, nn.CrossEntropyLoss()


def drop_unreadable(split):
    """The opt-in ``skip_bad_images``: check every file first, drop the ones PIL cannot read -> the count."""
    from PIL import Image
    good = []
    for path, label in split.samples:
        try:
            with Image.open(path) as im:
                im.verify()
            good.append((path, label))
        except (OSError, SyntaxError, ValueError):
            print(f'skipping unreadable image {path}', flush=True)
    skipped, split.samples = len(split.samples) - len(good), good
    return skipped


def data_section(cfg, ctx, val, n_images, skipped=0):
    name = cfg.dataset.name
    full = FULL_VAL_SIZES.get(name)
    subset = 'smoke' if ctx.smoke else ('full' if n_images == full else 'partial')
    section = dict(dataset=name, split='val', subset=subset, num_images=int(n_images), root=str(val.root))
    if cfg.get('skip_bad_images'):
        section['skipped_images'] = skipped
    return section


def run(bench, cfg, ctx) -> engine.Outcome:
    """Train (unless ``--eval-only``) and evaluate; rank 0 saves the fine-tuned model in our format."""
    if cfg.protocol not in PROTOCOLS:
        raise UsageError(f'{bench.config}: protocol must be one of {PROTOCOLS}, got {cfg.protocol!r}')
    val = read_split(cfg.dataset, cfg.dataset.val_split)
    train = None if ctx.eval_only else read_split(cfg.dataset, cfg.dataset.train_split)
    num_classes = val.num_classes
    skipped = sum(drop_unreadable(s) for s in (train, val) if s is not None) if cfg.get('skip_bad_images') else 0
    torch.manual_seed(cfg.seed)
    vit, info = build_model(cfg, ctx, num_classes)
    bf16 = precision_is_bf16(cfg.precision)
    mixup, criterion = mixup_and_loss(cfg, num_classes)
    train_loader, val_loader = loaders(cfg, train, val)
    kwargs = engine.runner_kwargs(ctx.work_dir, ctx.launcher, cfg.seed, ctx.resume, name=bench.name,
                                  log_interval=cfg.get('log_interval', 10))
    model = Classifier(vit, mixup, criterion, bf16)
    train_args = {}
    if not ctx.eval_only:
        lr = engine.scaled_lr(cfg.optim.blr, cfg.batch_size, cfg.get('accum_iter', 1))
        train_args = dict(train_cfg=dict(by_epoch=True, max_epochs=cfg.epochs, val_interval=cfg.epochs),
                          optim_wrapper=engine.build_optim_wrapper(vit, cfg.optim, lr, cfg.get('accum_iter', 1)),
                          param_scheduler=build_schedulers(cfg.epochs, cfg.warmup_epochs))
    results = engine.train_or_evaluate(model, train_loader, val_loader, Evaluator(engine.TopKAccuracy()), kwargs,
                                       ctx.eval_only, **train_args)
    metrics = {k: float(v) for k, v in results.items() if k in ('top1', 'top5')}
    n_images = int(results['num_images'])
    settings = dict(protocol=cfg.protocol, img_size=cfg.img_size, recipe=cfg.recipe, epochs=cfg.epochs,
                    precision='bf16' if bf16 else 'fp32', eval_crop_pct=cfg.aug.crop_pct,
                    total_batch=cfg.batch_size * core.world_size() * cfg.get('accum_iter', 1))
    if cfg.protocol == 'partial':
        settings['k'] = cfg.k
    extra = dict(work_dir=ctx.work_dir)
    if not ctx.eval_only and core.is_main_process() and cfg.protocol != 'linprobe':
        meta = dict(arch=info['arch'], num_classes=num_classes, global_pool=vit.global_pool, img_size=cfg.img_size,
                    finetuned=dict(benchmark=bench.name, protocol=cfg.protocol, k=cfg.get('k')),
                    pretrain=info['meta'])
        extra['finetuned_checkpoint'] = str(save_ours(Path(ctx.work_dir) / 'finetuned.pth', vit.state_dict(), meta))
    return engine.Outcome(metrics, settings, data_section(cfg, ctx, val, n_images, skipped), extra)
