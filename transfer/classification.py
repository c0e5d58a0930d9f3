"""Classification transfer: end-to-end fine-tuning, linear probing and partial fine-tuning (Tables 1, 3, 6 and
Fig. 9) on ImageNet-1K, iNaturalist and Places, with the paper's recipes (FACTS.md §2).

One protocol switch in the config: ``finetune`` (all blocks), ``linprobe`` (frozen encoder, cls token,
BatchNorm without affine + linear head, LARS), ``partial`` (the last ``k`` blocks, fc_norm and head)."""

import numpy as np
import torch
import torch.nn as nn
from mmengine.evaluator import BaseMetric, Evaluator
from mmengine.model import BaseModel
from PIL import Image
from timm.data import Mixup, create_transform
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from torchvision import transforms as T

from mae_core import engine
from mae_core.data import IMAGENET_MEAN, IMAGENET_STD
from mae_core.errors import ConfigError
from mae_core.seeding import seeded_draws, step_seed

from . import optim
from .datasets.readers import read_split
from .datasets.torch_dataset import ClassificationDataset
from .task import Outcome, TrainPlan, execute, image_samples

PROTOCOLS = ('finetune', 'linprobe', 'partial')


class Classifier(BaseModel):
    """A ViT classifier as mmengine sees it. In training, every random draw of a step (mixup, drop path)
    comes from the batch's sample seeds, so a resumed run takes exactly the same steps."""

    def __init__(self, vit, mixup=None, criterion=None, bf16=False):
        super().__init__(data_preprocessor=engine.SeedsOnHost())
        self.vit, self.mixup, self.bf16 = vit, mixup, bf16
        self.criterion = criterion or nn.CrossEntropyLoss()

    def forward(self, inputs, labels=None, seeds=None, data_samples=None, mode='tensor'):
        if mode == 'loss':
            with seeded_draws(step_seed(seeds)):
                targets = labels
                if self.mixup is not None:
                    inputs, targets = self.mixup(inputs, labels)
                with engine.autocast_context(inputs.device.type, self.bf16):
                    logits = self.vit(inputs)
            return dict(loss=self.criterion(logits.float(), targets))
        with engine.autocast_context(inputs.device.type, self.bf16):
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
                raise ConfigError(f'partial fine-tuning: k={k} must lie in 0..{depth} for this {depth}-block encoder')
            block = int(name.split('.')[1]) if name.startswith('blocks.') else None
            p.requires_grad = name.startswith(('head.', 'fc_norm.', 'norm.')) or (
                block is not None and block >= depth - k)
        else:
            raise ConfigError(f'protocol must be one of {PROTOCOLS}, got {protocol!r}')
    return [n for n, p in vit.named_parameters() if p.requires_grad]


def build_model(cfg, ctx, num_classes):
    """The encoder from the user's checkpoint, with the protocol's pooling, head and frozen parts."""
    if ctx.eval_only:
        vit = ctx.encoder.build(keep_head=True, img_size=cfg.img_size, learnable_pos=True)
        if vit.num_classes != num_classes:
            raise ConfigError(f'{ctx.encoder.path}: --eval-only needs a classifier with {num_classes} outputs; the '
                              f'file has {vit.num_classes} (key head.weight)')
        return vit
    vit = ctx.encoder.build(img_size=cfg.img_size, num_classes=num_classes, global_pool=cfg.protocol != 'linprobe',
                            learnable_pos=True, drop_path_rate=cfg.drop_path if cfg.protocol != 'linprobe' else 0.0)
    if cfg.protocol == 'linprobe':
        nn.init.trunc_normal_(vit.head.weight, std=0.01)
        vit.head = nn.Sequential(nn.BatchNorm1d(vit.embed_dim, affine=False, eps=1e-6), vit.head)
    set_trainable(vit, cfg.protocol, cfg.get('k', 0))
    return vit


def mixup_and_loss(cfg, num_classes):
    a = cfg.aug
    if cfg.protocol != 'linprobe' and (a.mixup > 0 or a.cutmix > 0):
        return (Mixup(mixup_alpha=a.mixup, cutmix_alpha=a.cutmix, label_smoothing=a.smoothing,
                      num_classes=num_classes), SoftTargetCrossEntropy())
    if cfg.protocol != 'linprobe' and a.smoothing > 0:
        return None, LabelSmoothingCrossEntropy(a.smoothing)
    return None, nn.CrossEntropyLoss()


def drop_unreadable(split):
    """The opt-in ``skip_bad_images``: decode every file first (``verify()`` would pass a truncated JPEG), drop the
    ones PIL cannot read -> the count."""
    good = []
    for path, label in split.samples:
        try:
            with Image.open(path) as im:
                im.load()
            good.append((path, label))
        except (OSError, SyntaxError, ValueError):
            print(f'skipping unreadable image {path}', flush=True)
    skipped, split.samples = len(split.samples) - len(good), good
    return skipped


class TopKAccuracy(BaseMetric):
    """Top-1 / top-5 accuracy in percent over the whole val set (mmengine gathers every rank's results and
    drops the sampler's padding)."""
    default_prefix = ''

    def __init__(self, topk=(1, 5), **kwargs):
        super().__init__(**kwargs)
        self.topk = topk

    def process(self, data_batch, data_samples):
        for logits, label in data_samples:
            k = min(max(self.topk), logits.shape[-1])
            self.results.append((logits.float().topk(k).indices.cpu(), int(label)))

    def compute_metrics(self, results):
        preds = torch.stack([r[0] for r in results])
        labels = torch.tensor([r[1] for r in results])
        self.samples = dict(label=labels.numpy().astype(np.int32), top5=preds.numpy().astype(np.int32))
        hits = preds == labels[:, None]
        out = {f'top{k}': 100.0 * int(hits[:, :k].any(dim=1).sum()) / len(results) for k in self.topk}
        out['num_images'] = len(results)
        return out


def run(bench, cfg, ctx) -> Outcome:
    """Train (unless ``--eval-only``) and evaluate; rank 0 saves a fine-tuned model (not a linear probe)."""
    if cfg.protocol not in PROTOCOLS:
        raise ConfigError(f'{bench.config}: protocol must be one of {PROTOCOLS}, got {cfg.protocol!r}')
    val = read_split(cfg.dataset, cfg.dataset.val_split, cfg.preflight)
    train = None if ctx.eval_only else read_split(cfg.dataset, cfg.dataset.train_split, cfg.preflight)
    num_classes = val.num_classes
    skipped = sum(drop_unreadable(s) for s in (train, val) if s is not None) if cfg.get('skip_bad_images') else 0
    torch.manual_seed(cfg.seed)
    vit = build_model(cfg, ctx, num_classes)
    bf16 = engine.precision_is_bf16(cfg.precision)
    mixup, criterion = mixup_and_loss(cfg, num_classes)
    val_ds = ClassificationDataset(val.samples, eval_transform(cfg.img_size, cfg.aug.crop_pct))
    accuracy = TopKAccuracy()
    plan = TrainPlan(Classifier(vit, mixup, criterion, bf16),
                     engine.val_loader(val_ds, cfg.eval_batch_size, cfg.num_workers), Evaluator(accuracy))
    accum = cfg.get('accum_iter', 1)
    if train is not None:
        train_ds = ClassificationDataset(train.samples, train_transform(cfg))
        plan.train_loader = engine.train_loader(train_ds, cfg.batch_size, cfg.num_workers, cfg.seed,
                                                source=str(train.root))
        lr = optim.scaled_lr(cfg.optim.blr, cfg.batch_size, accum)
        plan.train_args = dict(train_cfg=dict(by_epoch=True, max_epochs=cfg.epochs, val_interval=cfg.epochs),
                               optim_wrapper=optim.build_optim_wrapper(vit, cfg.optim, lr, accum))
        plan.train_hooks = [engine.FbMaeLrSchedule(lr, cfg.warmup_epochs, cfg.epochs, cfg.min_lr, accum)]
        if cfg.protocol != 'linprobe':
            plan.save_as, plan.save_module = 'finetuned.pth', vit
            plan.save_meta = dict(num_classes=num_classes, global_pool=vit.global_pool, img_size=cfg.img_size,
                                  finetuned=dict(benchmark=bench.name, protocol=cfg.protocol, k=cfg.get('k')))
    results, extra = execute(bench.name, cfg, ctx, plan)
    settings = dict(protocol=cfg.protocol, img_size=cfg.img_size, recipe=cfg.recipe, epochs=cfg.epochs,
                    precision='bf16' if bf16 else 'fp32', eval_crop_pct=cfg.aug.crop_pct,
                    total_batch=cfg.batch_size * engine.world_size() * accum)
    if cfg.protocol == 'partial':
        settings['k'] = cfg.k
    data = dict(dataset=cfg.dataset.name, split='val', num_images=int(results['num_images']), root=str(val.root))
    if cfg.get('skip_bad_images'):
        data['skipped_images'] = skipped
    samples = image_samples('topk', [p for p, _ in val.samples], val.root, **accuracy.samples) \
        if engine.is_main_process() else None
    return Outcome({k: float(results[k]) for k in ('top1', 'top5')}, settings, data, extra, samples=samples)
