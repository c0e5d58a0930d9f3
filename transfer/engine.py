"""Training pieces the transfer families share: the paper's LARS, layer-wise lr decay, lr scaling, the top-k
metric, and the Runner arguments every benchmark uses (the distributed and resume glue is in mae_core.engine)."""
import time
from dataclasses import dataclass, field

import torch
from mmengine.dataset import DefaultSampler
from mmengine.evaluator import BaseMetric
from mmengine.hooks import Hook
from mmengine.optim import OptimWrapper
from timm.optim import param_groups_weight_decay

from mae_core import engine as core

from .errors import UsageError


@dataclass
class Outcome:
    """What an adapter hands back to the CLI, which turns it into a run record."""
    metrics: dict
    settings: dict
    data: dict
    model: dict = field(default_factory=dict)  # extra model fields, e.g. the fine-tuned checkpoint


class LARS(torch.optim.Optimizer):
    """LARS as in the paper's linear-probe recipe (You et al.; fb/mae ``util/lars.py``): SGD with momentum,
    weight decay and a trust ratio applied to parameters with more than one dimension only; 1-D parameters
    (biases, norms) take plain SGD steps. timm's ``Lars`` adapts 1-D parameters too, so it is not the same."""

    def __init__(self, params, lr=0.0, weight_decay=0.0, momentum=0.9, trust_coefficient=0.001):
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay, momentum=momentum,
                                      trust_coefficient=trust_coefficient))

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for g in self.param_groups:
            for p in g['params']:
                if p.grad is None:
                    continue
                dp = p.grad
                if p.ndim > 1:
                    dp = dp.add(p, alpha=g['weight_decay'])
                    param_norm, update_norm = torch.norm(p), torch.norm(dp)
                    one = torch.ones_like(param_norm)
                    q = torch.where(param_norm > 0.0,
                                    torch.where(update_norm > 0, g['trust_coefficient'] * param_norm / update_norm,
                                                one), one)
                    dp = dp.mul(q)
                state = self.state[p]
                if 'mu' not in state:
                    state['mu'] = torch.zeros_like(p)
                mu = state['mu']
                mu.mul_(g['momentum']).add_(dp)
                p.add_(mu, alpha=-g['lr'])
        return loss


def layer_id(name: str, depth: int) -> int:
    """fb/mae's layer of a parameter: embeddings 0, block i -> i + 1, everything after the blocks -> depth + 1."""
    if name.startswith(('cls_token', 'pos_embed', 'patch_embed')):
        return 0
    if name.startswith('blocks.'):
        return int(name.split('.')[1]) + 1
    return depth + 1


def layer_decay_groups(vit, weight_decay: float, layer_decay: float):
    """Param groups with lr scale ``layer_decay ** (n - layer_id)``, n = blocks + 1. No weight decay on 1-D
    parameters, ``pos_embed`` and ``cls_token``. (timm's ``param_groups_layer_decay`` puts the last block in the
    head's group, scale 1 instead of ``layer_decay``, so it is not the reference's mapping.)"""
    depth, groups, skip_wd = len(vit.blocks), {}, vit.no_weight_decay()
    for name, p in vit.named_parameters():
        if not p.requires_grad:
            continue
        no_wd = p.ndim == 1 or name in skip_wd
        lid = layer_id(name, depth)
        group = groups.setdefault((lid, no_wd), dict(params=[], weight_decay=0.0 if no_wd else weight_decay,
                                                     lr_scale=layer_decay ** (depth + 1 - lid)))
        group['params'].append(p)
    return list(groups.values())


def scaled_lr(blr: float, batch_per_process: int, accum_iter: int = 1) -> float:
    """lr = blr x total batch / 256 (the paper's rule)."""
    return blr * batch_per_process * core.world_size() * accum_iter / 256


def build_optim_wrapper(model_vit, optim: dict, lr: float, accum_iter: int = 1) -> OptimWrapper:
    """AdamW with layer decay (fine-tuning), or LARS (linear probing), as the config's ``optim.type`` says."""
    kind = optim['type']
    if kind == 'adamw':
        if optim.get('layer_decay', 1.0) < 1.0:
            groups = layer_decay_groups(model_vit, optim['weight_decay'], optim['layer_decay'])
        else:
            groups = param_groups_weight_decay(model_vit, optim['weight_decay'], model_vit.no_weight_decay())
        for g in groups:
            g['lr'] = lr * g.pop('lr_scale', 1.0)
        opt = torch.optim.AdamW(groups, lr=lr, betas=tuple(optim.get('betas', (0.9, 0.999))))
    elif kind == 'lars':
        opt = LARS([p for p in model_vit.parameters() if p.requires_grad], lr=lr,
                   weight_decay=optim.get('weight_decay', 0.0), momentum=optim.get('momentum', 0.9))
    else:
        raise ValueError(f'optim.type must be adamw or lars, got {kind!r}')
    return OptimWrapper(opt, accumulative_counts=accum_iter, clip_grad=optim.get('clip_grad'))


class TopKAccuracy(BaseMetric):
    """Top-1 / top-5 accuracy in percent over the whole val set (mmengine gathers every rank's results and
    drops the sampler's padding). ``class_subset`` scores a 1000-way model on the given logits only."""
    default_prefix = ''

    def __init__(self, topk=(1, 5), class_subset=None, **kwargs):
        super().__init__(**kwargs)
        self.topk = topk
        self.class_subset = torch.as_tensor(class_subset) if class_subset is not None else None

    def process(self, data_batch, data_samples):
        for logits, label in data_samples:
            if self.class_subset is not None:
                logits = logits[..., self.class_subset]
            k = min(max(self.topk), logits.shape[-1])
            self.results.append((logits.float().topk(k).indices.cpu(), int(label)))

    def compute_metrics(self, results):
        preds = torch.stack([r[0] for r in results])
        labels = torch.tensor([r[1] for r in results])
        hits = preds == labels[:, None]
        out = {f'top{k}': 100.0 * hits[:, :k].any(dim=1).float().mean().item() for k in self.topk}
        out['num_images'] = len(results)
        return out


def runner_kwargs(work_dir, launcher, seed, resume, checkpoint_interval=1, log_interval=10, name='run', by_epoch=True):
    """The Runner arguments every transfer benchmark shares."""
    return dict(
        work_dir=str(work_dir), launcher=launcher, resume=resume, randomness=dict(seed=seed),
        default_hooks=core.default_hooks(checkpoint_interval, log_interval, by_epoch=by_epoch),
        visualizer=core.visualizer_cfg(), experiment_name=f'{name}_{time.strftime("%Y%m%d_%H%M%S")}_{time.time_ns() % 10**6}',
        env_cfg=dict(dist_cfg=dict(backend='nccl' if torch.cuda.is_available() else 'gloo')),
        cfg=dict(model_wrapper_cfg=core.model_wrapper_cfg()), log_level='INFO')


def make_loaders(cfg, train_ds, val_ds, eval_batch_size, collate=None, val_collate=None, endless=False,
                 source='the training set'):
    """(train loader or None, val loader). Validation runs in order and sees each image once across ranks;
    training shuffles from the run's seed (:class:`mae_core.engine.SeededSampler`; ``endless`` for
    iteration-based training) in full batches. Workers, pinned memory and persistent workers from ``cfg``."""
    common = dict(num_workers=cfg.num_workers, pin_memory=torch.cuda.is_available(),
                  persistent_workers=cfg.num_workers > 0)
    val_loader = torch.utils.data.DataLoader(val_ds, batch_size=eval_batch_size, collate_fn=val_collate or collate,
                                             sampler=DefaultSampler(val_ds, shuffle=False), **common)
    if train_ds is None:
        return None, val_loader
    train_loader = torch.utils.data.DataLoader(train_ds, batch_size=cfg.batch_size, drop_last=True, collate_fn=collate,
                                               sampler=core.SeededSampler(train_ds, cfg.seed, endless=endless), **common)
    if len(train_loader) == 0:
        raise UsageError(f'{source}: {len(train_ds)} training images make no full batch of {cfg.batch_size}')
    return train_loader, val_loader


def encoder_and_head_groups(model, vit, lr, weight_decay, layer_decay):
    """Layer-decayed groups for the encoder ``vit`` inside ``model``; plain groups (no weight decay on 1-D
    parameters) for everything else: necks and heads."""
    groups = layer_decay_groups(vit, weight_decay, layer_decay)
    for g in groups:
        g['lr'] = lr * g.pop('lr_scale')
    encoder = {id(p) for p in vit.parameters()}
    rest = [p for p in model.parameters() if id(p) not in encoder and p.requires_grad]
    return groups + [dict(params=[p for p in rest if p.ndim > 1], weight_decay=weight_decay, lr=lr),
                     dict(params=[p for p in rest if p.ndim <= 1], weight_decay=0.0, lr=lr)]


class KeepMetrics(Hook):
    """Keeps the metrics of the last validation."""

    def __init__(self):
        self.metrics = None

    def after_val_epoch(self, runner, metrics=None):
        self.metrics = dict(metrics or {})


def train_or_evaluate(model, train_loader, val_loader, evaluator, runner_kwargs, eval_only, **train_args):
    """mmengine's Runner: validation only (``eval_only``), or training (``train_args``: train_cfg,
    optim_wrapper, param_scheduler) then the final validation -> the metrics. Loader workers are released after."""
    keep = KeepMetrics()
    try:
        if eval_only:
            runner = core.Runner(model=model, val_dataloader=val_loader, val_cfg=dict(), val_evaluator=evaluator,
                                 custom_hooks=[keep], **runner_kwargs)
            runner.val()
        else:
            runner = core.Runner(model=model, train_dataloader=train_loader, val_dataloader=val_loader,
                                 val_cfg=dict(), val_evaluator=evaluator, custom_hooks=[keep], **train_args,
                                 **runner_kwargs)
            runner.train()
            if keep.metrics is None:  # resumed after the last step had been saved: evaluate it now
                keep.metrics = runner.val_loop.run()
    finally:
        core.release_workers(train_loader, val_loader)
    return keep.metrics
