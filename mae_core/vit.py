"""The ViT encoder every part of the suite uses.

Built from timm's ``PatchEmbed`` and ``Block``; the state-dict keys are exactly fb/mae's and timm's
(``patch_embed.proj.*``, ``cls_token``, ``pos_embed``, ``blocks.N.*``, ``norm.*`` or ``fc_norm.*``, ``head.*``),
so a checkpoint moves between the three without renaming.
"""
from functools import partial
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import Attention as TimmAttention
from timm.layers import PatchEmbed
from timm.models.vision_transformer import Block as TimmBlock

from .errors import ConfigError

# arch name -> (patch, width, depth, heads); the small ones exist for tests and CPU runs
ARCHS = {
    'vit_toy_patch16': (16, 64, 2, 4),
    'vit_tiny_patch16': (16, 192, 12, 3),
    'vit_small_patch16': (16, 384, 12, 6),
    'vit_base_patch16': (16, 768, 12, 12),
    'vit_large_patch16': (16, 1024, 24, 16),
    'vit_huge_patch14': (14, 1280, 32, 16),
}


def sincos_pos_embed(dim: int, grid_h: int, grid_w: int, cls_token: bool = True) -> torch.Tensor:
    """Fixed 2-D sin-cos table ``[1, (1+) h*w, dim]``, as in the reference (float64, then float32).

    The first half of the channels encodes the column index, the second half the row; within each half
    ``dim/4`` sines come before ``dim/4`` cosines. The cls slot is zeros.
    """
    assert dim % 4 == 0, f'embed_dim must be divisible by 4 for a 2-D sin-cos table, got {dim}'
    omega = torch.arange(dim // 4, dtype=torch.float64) / (dim / 4.0)
    omega = 1.0 / 10000 ** omega  # [D/4]
    rows, cols = torch.meshgrid(torch.arange(grid_h, dtype=torch.float64),
                                torch.arange(grid_w, dtype=torch.float64), indexing='ij')

    def encode(pos):  # [h*w] -> [h*w, D/2]
        out = pos.reshape(-1, 1) * omega.reshape(1, -1)
        return torch.cat([out.sin(), out.cos()], dim=1)

    table = torch.cat([encode(cols), encode(rows)], dim=1)
    if cls_token:
        table = torch.cat([torch.zeros(1, dim, dtype=torch.float64), table], dim=0)
    return table.float().unsqueeze(0)


def window_partition(x: torch.Tensor, window: int):
    """[B, H, W, C] -> [B * nW, window*window, C], zero-padding H and W up to a multiple of the window."""
    B, H, W, C = x.shape
    pad_h, pad_w = (window - H % window) % window, (window - W % window) % window
    x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    Hp, Wp = H + pad_h, W + pad_w
    x = x.view(B, Hp // window, window, Wp // window, window, C).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, window * window, C), (Hp, Wp)


def window_unpartition(x: torch.Tensor, window: int, padded_hw, hw) -> torch.Tensor:
    """Inverse of :func:`window_partition`: [B * nW, window*window, C] -> [B, H, W, C]."""
    (Hp, Wp), (H, W) = padded_hw, hw
    B = x.shape[0] // ((Hp // window) * (Wp // window))
    x = x.view(B, Hp // window, Wp // window, window, window, -1).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(B, Hp, Wp, -1)[:, :H, :W].contiguous()


def resample_pos_table(table: torch.Tensor, grid_hw) -> torch.Tensor:
    """A square position table ``[1, 1+n*n, D]`` (cls slot first) for a ``grid_hw`` grid: the cls slot kept, the
    grid resampled bicubic with ``align_corners=False`` and no antialiasing, as fb/mae's
    ``util/pos_embed.interpolate_pos_embed`` and detectron2's ``get_abs_pos`` do (timm's
    ``resample_abs_pos_embed`` antialiases by default, which gives another table)."""
    old = int(round((table.shape[1] - 1) ** 0.5))
    if tuple(grid_hw) == (old, old):
        return table
    grid = table[:, 1:].reshape(1, old, old, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=tuple(grid_hw), mode='bicubic', align_corners=False)
    return torch.cat([table[:, :1], grid.permute(0, 2, 3, 1).flatten(1, 2)], dim=1)


# Parameters a task adds to a pre-trained encoder; a checkpoint without them leaves them at their initial value
# (zero for relative position, ``layer_scale_init`` for layer scale), where the block computes what it did before.
TASK_ADDED_KEYS = ('attn.rel_pos_h', 'attn.rel_pos_w', 'attn.relative_position_bias_table', 'ls1.gamma', 'ls2.gamma')


def _resize_table(table: torch.Tensor, size) -> torch.Tensor:
    """A relative-position table [*grid, C] linearly resampled to ``size`` (a longer or shorter span)."""
    if tuple(table.shape[:-1]) == tuple(size):
        return table
    mode = 'linear' if table.dim() == 2 else 'bilinear'
    moved = table.movedim(-1, 0).unsqueeze(0).float()
    return F.interpolate(moved, size=tuple(size), mode=mode, align_corners=False)[0].movedim(0, -1).to(table.dtype)


def beit_relative_position_index(h: int, w: int) -> torch.Tensor:
    """[1+hw, 1+hw] indices into a ``relative_position_bias_table`` of (2h-1)(2w-1) + 3 rows, laid out as BEiT and
    mmsegmentation's ``BEiTAttention`` lay them out (its ``relative_position_index`` buffer): patch i to patch j
    at (dy + h - 1) * (2w - 1) + (dx + w - 1); then cls-to-patch, patch-to-cls, cls-to-cls."""
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing='ij')
    ys, xs = ys.flatten(), xs.flatten()
    n = (2 * h - 1) * (2 * w - 1)
    index = torch.empty(1 + h * w, 1 + h * w, dtype=torch.long)
    index[1:, 1:] = (ys[:, None] - ys[None] + h - 1) * (2 * w - 1) + (xs[:, None] - xs[None] + w - 1)
    index[0, :], index[:, 0], index[0, 0] = n, n + 1, n + 2
    return index


class Attention(TimmAttention):
    """timm's attention (same parameters, same names), told on each call the patch ``grid`` its tokens lie on
    (the last h*w tokens; any before them, the cls token, are prefix tokens).

    :meth:`add_rel_pos` adds a relative position term on the logits, zero at first (FACTS.md §5, §6):
    ``'decomposed'`` (ViTDet): per-axis tables ``rel_pos_h``/``rel_pos_w`` [2S-1, head_dim]; the term for query i
    and key j is q_i·R_h[y_i - y_j] + q_i·R_w[x_i - x_j]; prefix tokens get none. ``'bias'`` (BEiT,
    mmsegmentation's MAE): a learned scalar per head and offset, ``relative_position_bias_table``
    [(2S-1)^2 + 3, heads], the 3 extra entries for cls-to-patch, patch-to-cls and cls-to-cls. A table made for
    another grid is resampled to the call's grid.
    """
    rel_pos = None

    def add_rel_pos(self, kind: str, table_grid):
        h, w = table_grid
        if kind == 'decomposed':
            self.rel_pos_h = nn.Parameter(torch.zeros(2 * h - 1, self.head_dim))
            self.rel_pos_w = nn.Parameter(torch.zeros(2 * w - 1, self.head_dim))
        elif kind == 'bias':
            self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * h - 1) * (2 * w - 1) + 3,
                                                                         self.num_heads))
        else:
            raise ValueError(f"rel_pos must be 'decomposed' or 'bias', got {kind!r}")
        self.rel_pos = kind

    def _decomposed(self, q, grid, prefix):
        B, heads, N, _ = q.shape
        h, w = grid
        offsets = lambda n: torch.arange(n, device=q.device)[:, None] - torch.arange(n, device=q.device)[None] + n - 1
        r_h = _resize_table(self.rel_pos_h, (2 * h - 1,))[offsets(h)]  # [h, h, hd]
        r_w = _resize_table(self.rel_pos_w, (2 * w - 1,))[offsets(w)]  # [w, w, hd]
        r_q = q[:, :, prefix:].reshape(B, heads, h, w, -1)
        rel_h = torch.einsum('bnhwc,hkc->bnhwk', r_q, r_h.to(q.dtype))
        rel_w = torch.einsum('bnhwc,wkc->bnhwk', r_q, r_w.to(q.dtype))
        grid_bias = (rel_h[..., :, None] + rel_w[..., None, :]).reshape(B, heads, h * w, h * w)
        return F.pad(grid_bias, (prefix, 0, prefix, 0))

    def _bias(self, q, grid, prefix):
        h, w = grid
        table = self.relative_position_bias_table
        n = table.shape[0] - 3
        side = int(round(n ** 0.5))  # tables are made for square grids
        spans = _resize_table(table[:n].view(side, side, -1), (2 * h - 1, 2 * w - 1)).flatten(0, 1)
        bias = torch.cat([spans, table[n:]])[beit_relative_position_index(h, w).to(q.device)]  # [1+hw, 1+hw, heads]
        bias = bias if prefix else bias[1:, 1:]
        return bias.permute(2, 0, 1).unsqueeze(0).to(q.dtype)

    def forward(self, x, grid=None):
        if self.rel_pos is None:
            return super().forward(x)
        B, N, _ = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        prefix = N - grid[0] * grid[1]
        bias = self._decomposed(q, grid, prefix) if self.rel_pos == 'decomposed' else self._bias(q, grid, prefix)
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=self.attn_drop.p if self.training else 0.)
        x = self.norm(x.transpose(1, 2).reshape(B, N, self.attn_dim))
        return self.proj_drop(self.proj(x))


class Block(TimmBlock):
    """timm's block (same parameters, same names) that passes the token grid to its attention. With ``window``
    > 0 it attends within non-overlapping windows exactly as detectron2's ViTDet block does
    (``detectron2/modeling/backbone/vit.py``): ``norm1``, zero-pad the token map to a multiple of the window,
    attend per window, un-pad, then the residual with per-sample stochastic depth."""

    def __init__(self, dim, num_heads, mlp_ratio, window=0, **kwargs):
        super().__init__(dim, num_heads, mlp_ratio, attn_layer=Attention, **kwargs)
        self.window = window

    def forward(self, x, grid=None):
        shortcut, x = x, self.norm1(x)
        if self.window:
            B, _, C = x.shape
            windows, padded = window_partition(x.view(B, *grid, C), self.window)
            x = self.attn(windows, (self.window, self.window))
            x = window_unpartition(x, self.window, padded, grid).view(B, -1, C)
        else:
            x = self.attn(x, grid)
        x = shortcut + self.drop_path1(self.ls1(x))
        return x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))


class VisionTransformer(nn.Module):
    """Plain ViT with a cls token.

    ``global_pool=True`` is the fine-tuning layout of fb/mae (average of patch tokens, then ``fc_norm``, no
    ``norm``); otherwise the cls token after ``norm`` feeds the head (pre-training and linear probing).
    ``learnable_pos=False`` keeps the sin-cos table frozen, as in pre-training.
    ``window_size`` > 0 runs every block not in ``global_blocks`` on non-overlapping windows (ViTDet); the cls
    token is then dropped after the position embedding, since a window has no place for it.
    ``rel_pos`` ('decomposed' or 'bias', see :class:`Attention`) and ``layer_scale_init`` are what detection and
    segmentation add to a pre-trained encoder; both start where the block computes what it did.
    ``pos_grid``: the grid of the absolute position table (default: the image's), resampled to the input's grid on
    every forward; detectron2's ViTDet keeps the pre-training table (14 x 14) and resamples it so.
    ``initialize=False`` leaves the weights to a subclass that initialises once when it is complete.
    """

    def __init__(self, img_size=224, patch_size=16, in_chans=3, embed_dim=768, depth=12, num_heads=12,
                 mlp_ratio=4.0, num_classes=0, global_pool=False, drop_path_rate=0.0, learnable_pos=False,
                 window_size=0, global_blocks: Sequence[int] = (), norm_eps=1e-6, rel_pos: str = None,
                 layer_scale_init: float = None, pos_grid=None, initialize=True):
        super().__init__()
        norm_layer = partial(nn.LayerNorm, eps=norm_eps)
        self.patch_size, self.embed_dim, self.in_chans = patch_size, embed_dim, in_chans
        self.num_classes, self.global_pool = num_classes, global_pool
        self.window_size, self.global_blocks = window_size, tuple(global_blocks)

        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim, strict_img_size=False)
        self.grid_size = self.patch_embed.grid_size
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_grid = tuple(pos_grid or self.grid_size)
        self.pos_embed = nn.Parameter(sincos_pos_embed(embed_dim, *self.pos_grid), requires_grad=learnable_pos)
        dpr = torch.linspace(0, drop_path_rate, depth).tolist()  # stochastic depth decay rule
        windows = [window_size if window_size and i not in self.global_blocks else 0 for i in range(depth)]
        self.blocks = nn.ModuleList([
            Block(embed_dim, num_heads, mlp_ratio, window=windows[i], qkv_bias=True, drop_path=dpr[i],
                  norm_layer=norm_layer, init_values=layer_scale_init) for i in range(depth)])
        self.rel_pos = rel_pos
        if rel_pos:
            for blk in self.blocks:
                blk.attn.add_rel_pos(rel_pos, (blk.window,) * 2 if blk.window else self.grid_size)
        if global_pool:
            self.fc_norm = norm_layer(embed_dim)
        else:
            self.norm = norm_layer(embed_dim)
        self.head = nn.Linear(embed_dim, num_classes) if num_classes > 0 else nn.Identity()
        if initialize:
            self.initialize_weights()

    # ---------------------------------------------------------------- init
    def initialize_weights(self):
        # Not named ``init_weights``: mmengine's Runner calls that on every sub-module after it is built, which
        # would re-initialise an encoder we have just loaded from a checkpoint.
        w = self.patch_embed.proj.weight.data
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))  # like nn.Linear, not a conv fan-in
        nn.init.normal_(self.cls_token, std=0.02)
        self.apply(self._init_module)
        if isinstance(self.head, nn.Linear):  # fine-tuning head, as in the reference
            nn.init.trunc_normal_(self.head.weight, std=2e-5)

    @staticmethod
    def _init_module(m):
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    # ---------------------------------------------------------------- optimiser helpers
    @torch.jit.ignore
    def no_weight_decay(self):
        return {'pos_embed', 'cls_token'}

    # ---------------------------------------------------------------- embedding
    def pos_embed_for(self, grid_hw) -> torch.Tensor:
        """Position table for a grid of ``grid_hw`` patches (bicubic resampling, cls slot kept)."""
        return resample_pos_table(self.pos_embed, grid_hw)

    def embed(self, x: torch.Tensor):
        """Images [B, C, H, W] -> patch tokens with position [B, L, D], cls token with position [B, 1, D], grid."""
        grid = (x.shape[-2] // self.patch_size, x.shape[-1] // self.patch_size)
        if x.shape[-2] % self.patch_size or x.shape[-1] % self.patch_size:
            raise ValueError(f'input size {tuple(x.shape[-2:])} is not a multiple of the patch size {self.patch_size}')
        pos = self.pos_embed_for(grid)
        tokens = self.patch_embed(x) + pos[:, 1:]
        cls = (self.cls_token + pos[:, :1]).expand(x.shape[0], -1, -1)
        return tokens, cls, grid

    # ---------------------------------------------------------------- trunk
    def run_blocks(self, x: torch.Tensor, grid, out_blocks: Sequence[int] = ()):
        """All blocks on [B, (1+)L, D] whose last L tokens lie on ``grid`` -> the final tokens, and those after
        each of ``out_blocks`` (in the order asked; an index may repeat)."""
        taken = {}
        for i, blk in enumerate(self.blocks):
            x = blk(x, grid)
            if i in out_blocks:
                taken[i] = x
        return x, [taken[i] for i in out_blocks]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images -> all tokens after the last block, [B, 1+L, D], normalised unless ``global_pool`` (timm's
        meaning: ``fc_norm`` comes after pooling)."""
        tokens, cls, grid = self.embed(x)
        x, _ = self.run_blocks(torch.cat([cls, tokens], dim=1), grid)
        return x if self.global_pool else self.norm(x)

    def forward_intermediates(self, x: torch.Tensor, indices: Sequence[int] = None):
        """Images -> token maps [B, D, H/p, W/p] after each block of ``indices`` (default: the last), not
        normalised: timm's ``forward_intermediates(..., intermediates_only=True)``, except that indices keep
        the order asked and may repeat. Detection and segmentation build their pyramids from these."""
        indices = tuple(indices) if indices is not None else (len(self.blocks) - 1,)
        tokens, cls, grid = self.embed(x)
        with_cls = not self.window_size
        x = torch.cat([cls, tokens], dim=1) if with_cls else tokens
        _, outs = self.run_blocks(x, grid, indices)
        prefix = 1 if with_cls else 0
        return [o[:, prefix:].transpose(1, 2).reshape(o.shape[0], -1, *grid) for o in outs]

    def forward_head(self, tokens: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if self.global_pool:
            x = self.fc_norm(tokens[:, 1:].mean(dim=1))  # [B, D]
        else:
            x = tokens[:, 0]
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def quarter_blocks(depth: int) -> tuple:
    """The last block of each quarter of ``depth`` blocks (2, 5, 8, 11 of 12): the feature maps a pyramid takes
    when a config names none (the MAE paper's detection variant, UperNet's default); block 0 at most for a model
    of fewer than four blocks."""
    return tuple(max(depth * k // 4 - 1, 0) for k in (1, 2, 3, 4))


def vit(arch: str, **kwargs) -> VisionTransformer:
    """Build an encoder by arch name (see ``ARCHS``); keyword arguments override the defaults."""
    if arch not in ARCHS:
        raise ConfigError(f'unknown arch {arch!r}; expected one of {", ".join(ARCHS)}')
    patch, width, depth, heads = ARCHS[arch]
    return VisionTransformer(**{**dict(patch_size=patch, embed_dim=width, depth=depth, num_heads=heads), **kwargs})


def vit_base_patch16(**kwargs):
    return vit('vit_base_patch16', **kwargs)


def vit_large_patch16(**kwargs):
    return vit('vit_large_patch16', **kwargs)


def vit_huge_patch14(**kwargs):
    return vit('vit_huge_patch14', **kwargs)


def vit_tiny_patch16(**kwargs):
    return vit('vit_tiny_patch16', **kwargs)


def vit_small_patch16(**kwargs):
    return vit('vit_small_patch16', **kwargs)
