"""Optimisers of the transfer recipes: the paper's LARS (linear probing), fb/mae's layer-wise lr decay (fine-tuning,
detection, segmentation) and the lr scaling rule."""
import torch
from mmengine.optim import OptimWrapper
from timm.optim import param_groups_weight_decay

from mae_core import engine
from mae_core.errors import ConfigError


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
    return blr * batch_per_process * engine.world_size() * accum_iter / 256


def build_optim_wrapper(model_vit, optim: dict, lr: float, accum_iter: int = 1) -> OptimWrapper:
    """AdamW with layer decay (fine-tuning), or LARS (linear probing), as the config's ``optim.type`` says."""
    kind = optim['type']
    if kind == 'adamw':
        if optim.get('layer_decay', 1.0) < 1.0:
            groups = layer_decay_groups(model_vit, optim['weight_decay'], optim['layer_decay'])
        else:
            groups = param_groups_weight_decay(model_vit, optim['weight_decay'], model_vit.no_weight_decay())
        for g in groups:  # the schedule sets lr x lr_scale every iteration, as fb/mae does
            g['lr'] = lr * g.get('lr_scale', 1.0)
        opt = torch.optim.AdamW(groups, lr=lr, betas=tuple(optim.get('betas', (0.9, 0.999))))
    elif kind == 'lars':
        opt = LARS([p for p in model_vit.parameters() if p.requires_grad], lr=lr,
                   weight_decay=optim.get('weight_decay', 0.0), momentum=optim.get('momentum', 0.9))
    else:
        raise ConfigError(f'optim.type must be adamw or lars, got {kind!r}')
    return OptimWrapper(opt, accumulative_counts=accum_iter, clip_grad=optim.get('clip_grad'))


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


def adamw_encoder_and_head(model, vit, optim: dict) -> OptimWrapper:
    """AdamW (0.9, 0.999) over :func:`encoder_and_head_groups`, at the recipe's lr for its total batch
    (detection and segmentation give the lr directly)."""
    groups = encoder_and_head_groups(model, vit, optim['lr'], optim['weight_decay'], optim['layer_decay'])
    return OptimWrapper(torch.optim.AdamW(groups, lr=optim['lr'], betas=(0.9, 0.999)))
