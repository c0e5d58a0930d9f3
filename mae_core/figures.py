"""Reconstruction grids like the paper's Fig. 4 (higher mask ratios) and Fig. 6 (masking types): per image,
the original, then for each mask ratio the masked input, the reconstruction, and the reconstruction with the
visible patches pasted back."""
from pathlib import Path

import torch

from .checkpoint import CheckpointError, _depth, infer_arch, read_checkpoint
from .data import IMAGENET_MEAN, IMAGENET_STD, list_images, load_rgb
from .errors import UsageError
from .mae import mae, target_name


def mae_from_checkpoint(path, img_size=None, allow_pickle=False):
    """An MAE with its decoder from any checkpoint that has one (ours, fb/mae full/visualize, HF)."""
    sd, _, meta, _ = read_checkpoint(path, allow_pickle)
    if 'decoder_embed.weight' not in sd:
        raise CheckpointError(f'{path}: no decoder (key decoder_embed.weight missing); reconstructions need a '
                              'full MAE checkpoint (ours, fb/mae *_full.pth / mae_visualize_*.pth, or HF ViTMAE)')
    arch = meta.get('arch') or infer_arch(sd, path)
    target = target_name(meta)
    if target == 'dvae':
        raise CheckpointError(f'{path}: its decoder predicts dVAE tokens (model.target=dvae), not pixels: there '
                              'is no reconstruction to draw')
    grid = int(round((sd['pos_embed'].shape[1] - 1) ** 0.5))
    model = mae(arch, img_size=grid * sd['patch_embed.proj.weight'].shape[-1],
                decoder_embed_dim=sd['decoder_embed.weight'].shape[0], decoder_depth=_depth(sd, 'decoder_blocks.'),
                decoder_num_heads=meta.get('decoder_num_heads') or 16, target=target,
                pca_components=sd['decoder_pred.weight'].shape[0], masking=meta.get('masking', 'random'))
    model.load_state_dict(sd, strict=True)
    return model.eval(), meta


@torch.no_grad()
def reconstruct(model, imgs, mask_ratio, masking='random', seed=0):
    """-> (masked, reconstruction, pasted) images [N, C, H, W] in normalised pixel space."""
    model.masking = masking
    seeds = [seed * 1000 + i for i in range(imgs.shape[0])]
    _, pred, mask = model(imgs, mask_ratio, seeds=seeds)
    if model.target == 'pca':  # coefficients -> pixels: the patch's mean plus the kept components
        pred = pred @ model.decoder_pca_basis.T + model.decoder_pca_mean
    if model.norm_pix_loss:  # the prediction is per-patch normalised: undo it with the patch's own statistics
        target = model.patchify(imgs)
        mean, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True)
        pred = pred * (var + 1e-6) ** 0.5 + mean
    grid = (imgs.shape[2] // model.patch_size, imgs.shape[3] // model.patch_size)
    recon = model.unpatchify(pred, grid)
    m = model.unpatchify(mask.unsqueeze(-1).expand(-1, -1, pred.shape[-1]), grid)  # 1 = removed
    return imgs * (1 - m), recon, imgs * (1 - m) + recon * m


def smoke_note(meta: dict) -> str:
    """A title's note for a model pre-trained on generated images, which reconstructs nothing like the paper's."""
    if 'smoke' not in str(meta.get('pretrain_data', '')):
        return ''
    return (f'\nsmoke model: {meta.get("arch", "")} pre-trained {meta.get("epochs", "?")} epochs on generated '
            'images, not comparable with the paper\'s figures')


def reconstruction_figure(checkpoint, images, out, mask_ratios=(0.75,), masking=None, num=4, img_size=None,
                          seed=0, allow_pickle=False):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from torchvision import transforms as T
    model, meta = mae_from_checkpoint(checkpoint, img_size, allow_pickle)
    patches = model.grid_size[0] * model.grid_size[1]
    bad = [r for r in mask_ratios if not 0 < r < 1 or int(patches * (1 - r)) < 1]
    if bad:
        raise UsageError(f'--mask-ratios {bad[0]:g}: a ratio must lie in (0, 1) and keep at least one of the '
                         f'{patches} patches (at most {1 - 1 / patches:.3f} here)')
    size = model.grid_size[0] * model.patch_size
    tf = T.Compose([T.Resize(size), T.CenterCrop(size), T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    files = list_images(images)
    files = files[:: max(1, len(files) // num)][:num]
    imgs = torch.stack([tf(load_rgb(f)) for f in files])
    masking = masking or meta.get('masking', 'random')
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    show = lambda x: (x * std + mean).clamp(0, 1).permute(0, 2, 3, 1).numpy()
    columns = [('original', show(imgs))]
    for r in mask_ratios:
        masked, recon, pasted = reconstruct(model, imgs, r, masking, seed)
        columns += [(f'masked {r:.0%}', show(masked)), ('reconstruction', show(recon)),
                    ('+ visible', show(pasted))]
    fig, axes = plt.subplots(len(files), len(columns), figsize=(1.6 * len(columns), 1.6 * len(files)),
                             squeeze=False)
    for j, (title, batch) in enumerate(columns):
        for i in range(len(files)):
            axes[i][j].imshow(batch[i])
            axes[i][j].axis('off')
        axes[0][j].set_title(title, fontsize=7)
    fig.suptitle(f'{Path(checkpoint).name}: {masking} masking' + smoke_note(meta), fontsize=8)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
