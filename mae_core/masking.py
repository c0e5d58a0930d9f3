"""Mask sampling (Table 1f): random (the reference algorithm), block-wise (BEiT) and grid.

Every sampler returns a :class:`Masking`: ``mask`` is float ``[N, L]`` in the original patch order, 0 = kept,
1 = removed; ``ids_keep`` [N, K] are the kept patches in the order the encoder sees them, and ``ids_restore``
[N, L] puts a sequence of (kept + removed) tokens back into patch order. Block and grid masks are expressed as
a noise whose sort keeps exactly the unmasked patches, so all three share the reference's bookkeeping.
"""
import math
import random
from dataclasses import dataclass

import torch

from .errors import ConfigError

KINDS = ('random', 'block', 'grid')


@dataclass
class Masking:
    mask: torch.Tensor         # [N, L] float, 1 = removed
    ids_keep: torch.Tensor     # [N, K]
    ids_restore: torch.Tensor  # [N, L]


def num_kept(num_patches: int, mask_ratio: float) -> int:
    return int(num_patches * (1 - mask_ratio))


def from_noise(noise: torch.Tensor, len_keep: int) -> Masking:
    """The reference bookkeeping: the ``len_keep`` smallest noise values are kept."""
    N, L = noise.shape
    ids_shuffle = torch.argsort(noise, dim=1)  # ascend: small is keep, large is remove
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    ids_keep = ids_shuffle[:, :len_keep]
    mask = torch.ones(N, L, device=noise.device)
    mask[:, :len_keep] = 0
    mask = torch.gather(mask, dim=1, index=ids_restore)  # unshuffle to patch order
    return Masking(mask, ids_keep, ids_restore)


def random_masking(N: int, grid_hw, mask_ratio: float, noise: torch.Tensor = None, device=None) -> Masking:
    """Per-sample random masking by argsort of uniform noise; pass ``noise`` [N, L] to fix the draw."""
    L = grid_hw[0] * grid_hw[1]
    if noise is None:
        noise = torch.rand(N, L, device=device)
    if noise.shape != (N, L):
        raise ValueError(f'noise must have shape {(N, L)}, got {tuple(noise.shape)}')
    return from_noise(noise, num_kept(L, mask_ratio))


def grid_masking(N: int, grid_hw, mask_ratio: float = 0.75, device=None) -> Masking:
    """Keep one patch of every 2x2 cell (the top-left one): a 75 % mask with a regular pattern."""
    if abs(mask_ratio - 0.75) > 1e-6:
        raise ConfigError(f'grid masking keeps one of every four patches, so mask_ratio must be 0.75, got {mask_ratio}')
    h, w = grid_hw
    rows, cols = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing='ij')
    removed = ((rows % 2 != 0) | (cols % 2 != 0)).flatten().float()
    len_keep = int((removed == 0).sum())
    # patch index as a tie-breaker keeps the kept patches in raster order
    noise = removed + torch.arange(h * w, device=device) / (h * w + 1.0)
    return from_noise(noise.expand(N, -1).contiguous(), len_keep)


def block_mask(grid_hw, num_masked: int, rng: random.Random, min_block: int = 16,
               aspect=(0.3, 1 / 0.3)) -> torch.Tensor:
    """One BEiT-style block-wise mask [h, w] with exactly ``num_masked`` ones.

    Rectangles of at least ``min_block`` patches with log-uniform aspect ratio are added until the count is
    reached; the last rectangle is cut to a raster-order prefix so the count is exact and it stays contiguous.
    """
    h, w = grid_hw
    mask = torch.zeros(h, w, dtype=torch.bool)
    log_aspect = (math.log(aspect[0]), math.log(aspect[1]))
    while int(mask.sum()) < num_masked:
        remaining = num_masked - int(mask.sum())
        area = rng.uniform(min(min_block, remaining), max(min(min_block, remaining), remaining))
        ratio = math.exp(rng.uniform(*log_aspect))
        bh = max(1, min(h, int(round(math.sqrt(area * ratio)))))
        bw = max(1, min(w, int(round(math.sqrt(area / ratio)))))
        top, left = rng.randint(0, h - bh), rng.randint(0, w - bw)
        block = torch.zeros(h, w, dtype=torch.bool)
        block[top:top + bh, left:left + bw] = True
        new = (block & ~mask).flatten().nonzero().flatten()
        mask.view(-1)[new[:remaining]] = True
    return mask


def block_masking(N: int, grid_hw, mask_ratio: float, rngs=None, device=None) -> Masking:
    """Block-wise masking; ``rngs`` is one ``random.Random`` per sample (fresh ones if omitted)."""
    L = grid_hw[0] * grid_hw[1]
    len_keep = num_kept(L, mask_ratio)
    rngs = rngs or [random.Random(int(torch.randint(0, 2**31, ()))) for _ in range(N)]
    masks = torch.stack([block_mask(grid_hw, L - len_keep, r).flatten() for r in rngs]).float().to(device)
    noise = masks + torch.arange(L, device=device) / (L + 1.0)
    return from_noise(noise, len_keep)


def to_device(x: torch.Tensor, device) -> torch.Tensor:
    """A host tensor onto ``device`` without making the host wait for the device's queue (a copy from pageable
    memory would: once per training step)."""
    if torch.device(device or 'cpu').type != 'cuda':
        return x.to(device)
    return x.pin_memory().to(device, non_blocking=True)


def sample(kind: str, N: int, grid_hw, mask_ratio: float, noise: torch.Tensor = None, seeds=None,
           device=None) -> Masking:
    """Dispatch on ``kind``. ``noise`` fixes a random mask; ``seeds`` (one int per sample) fix any kind."""
    if kind == 'random':
        if noise is None and seeds is not None:
            L = grid_hw[0] * grid_hw[1]
            noise = torch.stack([torch.rand(L, generator=torch.Generator().manual_seed(int(s))) for s in seeds])
            noise = to_device(noise, device)
        return random_masking(N, grid_hw, mask_ratio, noise, device)
    if kind == 'block':
        rngs = [random.Random(int(s)) for s in seeds] if seeds is not None else None
        return block_masking(N, grid_hw, mask_ratio, rngs, device)
    if kind == 'grid':
        return grid_masking(N, grid_hw, mask_ratio, device)
    raise ConfigError(f'unknown masking {kind!r}; expected one of {KINDS}')
