"""Masked autoencoder (He et al., CVPR 2022): the encoder sees only the visible patches, a light decoder
reconstructs the removed ones from the latent tokens and mask tokens, and the loss is computed on removed
patches only.

The reconstruction target (Table 1d, Table 7): ``pixel`` and ``norm_pix`` (pixels, or per-patch normalised
pixels; mean squared error, exactly fb/mae's), ``pca`` (the largest PCA coefficients of each patch, fitted on
training patches and kept in the checkpoint; mean squared error) and ``dvae`` (the token of each patch from
DALL-E's discrete VAE encoder, as BEiT; cross-entropy over its 8192 tokens).

The encoder is :class:`mae_core.vit.VisionTransformer` itself (this class extends it), so the state-dict keys
are the reference's: a fb/mae checkpoint loads with ``load_state_dict(strict=True)``.
"""
from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.models.vision_transformer import Block

from . import masking as masking_lib
from .data import IMAGENET_MEAN, IMAGENET_STD
from .errors import ConfigError
from .vit import ARCHS, VisionTransformer, resample_pos_table, sincos_pos_embed

TARGETS = ('pixel', 'norm_pix', 'pca', 'dvae')
DVAE_EPS = 0.1  # DALL-E's logit-Laplace pixel mapping (dall_e.utils.map_pixels)


def target_name(settings, default='pixel'):
    """The reconstruction target a config's ``model`` section or a checkpoint's meta names; older ones say only
    ``norm_pix_loss``; ``default`` where neither is there."""
    if settings.get('target'):
        return settings['target']
    if settings.get('norm_pix_loss') is None:
        return default
    return 'norm_pix' if settings['norm_pix_loss'] else 'pixel'


class MaskedAutoencoder(VisionTransformer):

    def __init__(self, img_size=224, patch_size=16, in_chans=3, embed_dim=1024, depth=24, num_heads=16,
                 decoder_embed_dim=512, decoder_depth=8, decoder_num_heads=16, mlp_ratio=4.0,
                 norm_pix_loss=False, masking='random', encoder_mask_tokens=False, norm_eps=1e-6, target=None,
                 pca_components=96, tokenizer=None, vocab_size=8192):
        if masking not in masking_lib.KINDS:
            raise ConfigError(f'unknown masking {masking!r}; expected one of {masking_lib.KINDS}')
        target = target or ('norm_pix' if norm_pix_loss else 'pixel')
        if target not in TARGETS:
            raise ConfigError(f'model.target {target!r}: expected one of {", ".join(TARGETS)}')
        if norm_pix_loss and target != 'norm_pix':
            raise ConfigError(f'model.norm_pix_loss=True contradicts model.target={target!r}: set only target')
        self.target, self.norm_pix_loss = target, target == 'norm_pix'
        self.masking, self.encoder_mask_tokens = masking, encoder_mask_tokens
        # ------------------------------------------------------------ encoder (the ViT itself)
        super().__init__(img_size, patch_size, in_chans, embed_dim, depth, num_heads, mlp_ratio, norm_eps=norm_eps,
                         initialize=False)
        if encoder_mask_tokens:  # "encoder w/ [M]" (Table 1c, Table 2): mask tokens enter the encoder instead
            self.encoder_mask_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        # ------------------------------------------------------------ decoder
        norm_layer = partial(nn.LayerNorm, eps=norm_eps)
        num_patches = self.grid_size[0] * self.grid_size[1]
        self.decoder_embed = nn.Linear(embed_dim, decoder_embed_dim)
        if not encoder_mask_tokens:
            self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_embed_dim))
        self.decoder_pos_embed = nn.Parameter(sincos_pos_embed(decoder_embed_dim, *self.grid_size),
                                              requires_grad=False)
        self.decoder_blocks = nn.ModuleList([
            Block(decoder_embed_dim, decoder_num_heads, mlp_ratio, qkv_bias=True, norm_layer=norm_layer)
            for _ in range(decoder_depth)])
        self.decoder_norm = norm_layer(decoder_embed_dim)
        patch_dim = patch_size ** 2 * in_chans
        out = {'pca': pca_components, 'dvae': vocab_size}.get(target, patch_dim)
        self.decoder_pred = nn.Linear(decoder_embed_dim, out)
        if target == 'pca':  # fitted before training (:meth:`fit_pca`), saved with the decoder
            self.register_buffer('decoder_pca_mean', torch.zeros(patch_dim))
            self.register_buffer('decoder_pca_basis', torch.zeros(patch_dim, pca_components))
        if target == 'dvae':
            if tokenizer is None:
                raise ConfigError('model.target=\'dvae\' needs the DALL-E tokenizer: set model.dvae_weights')
            self.tokenizer = tokenizer.eval().requires_grad_(False)  # frozen; never saved in final.pth
        assert self.decoder_pos_embed.shape[1] == num_patches + 1
        self.initialize_weights()

    def initialize_weights(self):
        super().initialize_weights()
        for name in ('mask_token', 'encoder_mask_token'):
            if hasattr(self, name):
                nn.init.normal_(getattr(self, name), std=0.02)

    # ---------------------------------------------------------------- patches
    def patchify(self, imgs: torch.Tensor) -> torch.Tensor:
        """[N, C, H, W] -> [N, L, p*p*C] (pixel order within a patch: row, column, channel)."""
        p, (h, w) = self.patch_size, (imgs.shape[2] // self.patch_size, imgs.shape[3] // self.patch_size)
        x = imgs.reshape(imgs.shape[0], imgs.shape[1], h, p, w, p)
        x = torch.einsum('nchpwq->nhwpqc', x)
        return x.reshape(imgs.shape[0], h * w, p * p * imgs.shape[1])

    def unpatchify(self, x: torch.Tensor, grid_hw=None) -> torch.Tensor:
        """[N, L, p*p*C] -> [N, C, H, W]."""
        p, c = self.patch_size, self.in_chans
        h, w = grid_hw or self.grid_size
        x = x.reshape(x.shape[0], h, w, p, p, c)
        x = torch.einsum('nhwpqc->nchpwq', x)
        return x.reshape(x.shape[0], c, h * p, w * p)

    # ---------------------------------------------------------------- encoder
    def forward_encoder(self, imgs, mask_ratio, noise=None, seeds=None):
        tokens, cls, grid = self.embed(imgs)  # [N, L, D], [N, 1, D]
        N, L, D = tokens.shape
        m = masking_lib.sample(self.masking, N, grid, mask_ratio, noise=noise, seeds=seeds, device=imgs.device)
        if self.encoder_mask_tokens:
            pos = self.pos_embed_for(grid)[:, 1:]
            removed = m.mask.unsqueeze(-1).to(tokens.dtype)  # [N, L, 1]
            x = tokens * (1 - removed) + (self.encoder_mask_token + pos) * removed
        else:
            x = torch.gather(tokens, 1, m.ids_keep.unsqueeze(-1).expand(-1, -1, D))  # [N, K, D]
        x, _ = self.run_blocks(torch.cat([cls, x], dim=1), grid)
        return self.norm(x), m, grid

    # ---------------------------------------------------------------- decoder
    def forward_decoder(self, x, m: masking_lib.Masking, grid):
        x = self.decoder_embed(x)  # [N, 1+K, Dd]
        if not self.encoder_mask_tokens:
            N, K1, Dd = x.shape
            L = m.ids_restore.shape[1]
            mask_tokens = self.mask_token.expand(N, L + 1 - K1, -1)
            x_ = torch.cat([x[:, 1:], mask_tokens], dim=1)  # [N, L, Dd], shuffled order
            x_ = torch.gather(x_, 1, m.ids_restore.unsqueeze(-1).expand(-1, -1, Dd))  # unshuffle
            x = torch.cat([x[:, :1], x_], dim=1)
        x = x + resample_pos_table(self.decoder_pos_embed, grid)
        for blk in self.decoder_blocks:
            x = blk(x)
        x = self.decoder_pred(self.decoder_norm(x))
        return x[:, 1:]  # [N, L, p*p*C], cls token removed

    # ---------------------------------------------------------------- targets
    @torch.no_grad()
    def fit_pca(self, patches: torch.Tensor) -> float:
        """Fit the PCA target on training patches [M, p*p*C] (normalised pixels): the mean and the
        ``pca_components`` leading principal directions -> the fraction of the patches' variance they keep."""
        patches = patches.double()
        mean = patches.mean(0)
        eigvals, eigvecs = torch.linalg.eigh(torch.cov((patches - mean).T))  # ascending
        k = self.decoder_pca_basis.shape[1]
        self.decoder_pca_mean.copy_(mean.float())
        self.decoder_pca_basis.copy_(eigvecs[:, -k:].flip(1).float())
        return float(eigvals[-k:].sum() / eigvals.sum())

    @torch.no_grad()
    def dvae_tokens(self, imgs) -> torch.Tensor:
        """DALL-E's token of each patch [N, L]. As BEiT, the tokenizer sees the same crop at 8 pixels per patch
        (112 px for 224 / 16), mapped by DALL-E's ``map_pixels``; the resize is done here on the tensor
        (antialiased bicubic) where BEiT resizes in its loader with PIL's Lanczos."""
        mean = torch.tensor(IMAGENET_MEAN, device=imgs.device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=imgs.device).view(1, 3, 1, 1)
        h, w = imgs.shape[2] // self.patch_size, imgs.shape[3] // self.patch_size
        x = F.interpolate((imgs.float() * std + mean).clamp(0, 1), size=(8 * h, 8 * w), mode='bicubic',
                          antialias=True, align_corners=False).clamp(0, 1)
        logits = self.tokenizer((1 - 2 * DVAE_EPS) * x + DVAE_EPS)  # [N, vocab, h, w]
        return logits.argmax(1).flatten(1)

    def target_of(self, imgs) -> torch.Tensor:
        """What the decoder predicts for every patch: [N, L, p*p*C] pixels, [N, L, k] PCA coefficients, or
        [N, L] dVAE tokens."""
        if self.target == 'dvae':
            return self.dvae_tokens(imgs)
        target = self.patchify(imgs)
        if self.target == 'pca':
            return (target - self.decoder_pca_mean) @ self.decoder_pca_basis
        if self.norm_pix_loss:
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True)
            target = (target - mean) / (var + 1.e-6) ** .5
        return target

    # ---------------------------------------------------------------- loss
    def forward_loss(self, imgs, pred, mask):
        """Mean squared error per patch (cross-entropy per patch for dVAE tokens), averaged over removed
        patches only."""
        target = self.target_of(imgs)
        if self.target == 'dvae':
            loss = F.cross_entropy(pred.transpose(1, 2), target, reduction='none')  # [N, L]
        else:
            loss = ((pred - target) ** 2).mean(dim=-1)  # [N, L]
        return (loss * mask).sum() / mask.sum()

    def forward(self, imgs, mask_ratio=0.75, noise=None, seeds=None):
        """-> (loss, pred [N, L, p*p*C], mask [N, L]). ``noise`` or per-sample ``seeds`` fix the masking."""
        latent, m, grid = self.forward_encoder(imgs, mask_ratio, noise, seeds)
        pred = self.forward_decoder(latent, m, grid)
        loss = self.forward_loss(imgs, pred.float(), m.mask)
        return loss, pred, m.mask


def mae(arch: str, **kwargs) -> MaskedAutoencoder:
    """MAE with the encoder of ``arch`` (a name in ``mae_core.vit.ARCHS``) and the paper's decoder (8 x 512)."""
    if arch not in ARCHS:
        raise ConfigError(f'unknown arch {arch!r}; expected one of {", ".join(ARCHS)}')
    patch, width, depth, heads = ARCHS[arch]
    defaults = dict(patch_size=patch, embed_dim=width, depth=depth, num_heads=heads,
                    decoder_embed_dim=512, decoder_depth=8, decoder_num_heads=16)
    if width < 512:  # small test encoders get a decoder no wider than themselves
        defaults.update(decoder_embed_dim=width, decoder_num_heads=heads, decoder_depth=2)
    return MaskedAutoencoder(**{**defaults, **kwargs})


def mae_vit_toy_patch16(**kwargs):
    return mae('vit_toy_patch16', **kwargs)


def mae_vit_tiny_patch16(**kwargs):
    return mae('vit_tiny_patch16', **kwargs)


def mae_vit_small_patch16(**kwargs):
    return mae('vit_small_patch16', **kwargs)


def mae_vit_base_patch16(**kwargs):
    return mae('vit_base_patch16', **kwargs)


def mae_vit_large_patch16(**kwargs):
    return mae('vit_large_patch16', **kwargs)


def mae_vit_huge_patch14(**kwargs):
    return mae('vit_huge_patch14', **kwargs)


# short aliases, as in the reference
mae_vit_base = mae_vit_base_patch16
mae_vit_large = mae_vit_large_patch16
mae_vit_huge = mae_vit_huge_patch14
