"""MAE pre-training on mmengine's Runner (Table 8 recipe): AdamW (0.9, 0.95), lr = blr x batch / 256,
per-iteration linear warm-up then cosine, RandomResizedCrop + flip, bf16 autocast where it pays.

Every run ends with ``WORK_DIR/final.pth`` in our format and a run record of family ``pretrain``."""
import time
from pathlib import Path

import torch
from mmengine.config import Config
from mmengine.model import BaseModel
from mmengine.optim import OptimWrapper
from timm.optim import param_groups_weight_decay

from . import engine
from .checkpoint import check_writable, file_sha256, save_ours
from .data import PretrainImages, cache_dir, cached, load_rgb, make_class_folders, pretrain_transform, smoke_wnids
from .dvae import load_tokenizer
from .errors import ConfigError
from .mae import mae, target_name
from .record import DEFAULT_DIR, make_record, write_record


IMAGENET_TRAIN_SIZE = 1281167  # a pre-training record says "full" only on exactly ImageNet-1K's train set


class PretrainModel(BaseModel):
    """The MAE as mmengine sees it: a batch ``dict(inputs, seeds)`` in, ``dict(loss=...)`` out."""

    def __init__(self, mae_model, mask_ratio: float, bf16: bool):
        super().__init__(data_preprocessor=engine.SeedsOnHost())
        self.mae, self.mask_ratio, self.bf16 = mae_model, mask_ratio, bf16

    def forward(self, inputs, seeds=None, data_samples=None, mode='loss'):
        with engine.autocast_context(inputs.device.type, self.bf16):
            loss, _, _ = self.mae(inputs, self.mask_ratio, seeds=seeds)
        return dict(loss=loss.float())


def generated_images(spec: dict) -> Path:
    """The generated pre-training image folder for ``spec`` (made once, then cached; rank 0 makes it)."""
    n, per, seed, size = spec['num_classes'], spec['per_class'], spec.get('seed', 0), spec.get('size', 80)
    name = f'pretrain_images_c{n}_p{per}_s{seed}_{size}px'
    if engine.is_main_process():
        cached(name, lambda tmp: make_class_folders(tmp, smoke_wnids(n), per, seed=seed + 1000, size=size,
                                                    prefix='pretrain'))
    engine.barrier()
    return cache_dir() / name


def pretrain_meta(cfg) -> dict:
    m = cfg.model
    target = target_name(m)
    meta = dict(arch=cfg.arch, img_size=cfg.data.img_size, mask_ratio=m.mask_ratio, masking=m.masking,
                decoder_depth=m.decoder_depth, decoder_embed_dim=m.decoder_embed_dim,
                decoder_num_heads=m.decoder_num_heads, target=target, norm_pix_loss=target == 'norm_pix',
                encoder_mask_tokens=m.encoder_mask_tokens, epochs=cfg.schedule.epochs, seed=cfg.seed,
                crop_scale=list(cfg.data.crop_scale), augmentation=cfg.data.get('augmentation', 'crop_rand'),
                decode=cfg.data.get('decode', 'pil'))
    if target == 'pca':
        meta['pca_components'] = m.get('pca_components', 96)
    if target == 'dvae':
        meta['dvae_weights'] = str(m.dvae_weights)
    return meta


PCA_IMAGES = 1000  # the PCA target is fitted on the patches of this many training images (seeded choice)


def fit_pca_target(model, dataset, seed: int) -> dict:
    """Fit the PCA target on the patches of ``PCA_IMAGES`` training images chosen by ``seed``, each the centre
    crop of Table 1e's 'none' (no random draw) -> what the record says of the fit."""
    chosen = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:PCA_IMAGES]
    centre = pretrain_transform(model.grid_size[0] * model.patch_size, augmentation='none')
    imgs = torch.stack([centre(load_rgb(dataset.files[int(i)])) for i in chosen])
    kept = model.fit_pca(model.patchify(imgs).flatten(0, 1))
    return dict(pca_images=len(chosen), pca_seed=seed, pca_kept_variance=round(kept, 6))


def pretrain(cfg: Config, work_dir, data_root=None, resume=False, launcher='none', records_dir=DEFAULT_DIR,
             allow_pickle=False):
    """Run the pre-training in ``cfg``; returns ``(final_checkpoint, record_path)`` (None on ranks > 0)."""
    start = time.time()
    rank, world = engine.init_distributed(launcher)
    if rank == 0:  # before any work; one rank checks, so that no two make and remove the same folder
        check_writable(records_dir, '--records-dir')
        check_writable(work_dir, '--work-dir')
    root = data_root or cfg.data.get('root')
    generated = root is None
    if generated:
        if not cfg.data.get('generated'):
            raise ConfigError('no --data-root given and the config has neither data.root nor data.generated')
        root = generated_images(cfg.data.generated)
    dataset = PretrainImages(root, cfg.data.img_size, cfg.data.crop_scale, cfg.data.get('augmentation', 'crop_rand'),
                             cfg.data.get('decode', 'pil'))
    target = target_name(cfg.model)
    tokenizer = load_tokenizer(cfg.model.dvae_weights, allow_pickle) if target == 'dvae' else None
    torch.manual_seed(cfg.seed)  # weight init
    options = {k: v for k, v in cfg.model.items() if k not in ('mask_ratio', 'dvae_weights', 'norm_pix_loss')}
    model = mae(cfg.arch, img_size=cfg.data.img_size, tokenizer=tokenizer, **{**options, 'target': target})
    fitted = fit_pca_target(model, dataset, cfg.seed) if target == 'pca' else {}
    bf16 = engine.precision_is_bf16(cfg.get('precision', 'auto'))
    total_batch = cfg.data.batch_size * world
    lr = cfg.optim.blr * total_batch / 256
    optimizer = torch.optim.AdamW(param_groups_weight_decay(model, cfg.optim.weight_decay), lr=lr,
                                  betas=tuple(cfg.optim.betas))
    loader = engine.train_loader(dataset, cfg.data.batch_size, cfg.data.num_workers, cfg.seed, source=str(root))
    stats = engine.RunStatsHook(cfg.data.batch_size)
    kwargs = engine.runner_kwargs(work_dir, launcher, cfg.seed, resume, name='pretrain', cfg=cfg.to_dict(),
                                  checkpoint_interval=cfg.get('checkpoint_interval', 1),
                                  log_interval=cfg.get('log_interval', 10),
                                  keep_checkpoints=cfg.get('keep_checkpoints', 1))
    schedule = engine.FbMaeLrSchedule(lr, cfg.schedule.warmup_epochs, cfg.schedule.epochs,
                                      cfg.schedule.get('min_lr', 0.0))
    engine.run(PretrainModel(model, cfg.model.mask_ratio, bf16), kwargs, loader, hooks=[schedule, stats],
               train_cfg=dict(by_epoch=True, max_epochs=cfg.schedule.epochs, val_interval=10 ** 9),
               optim_wrapper=OptimWrapper(optimizer, clip_grad=None))
    if rank != 0:
        return None, None
    meta = {**pretrain_meta(cfg), **fitted, 'num_heads': model.blocks[0].attn.num_heads, 'total_batch': total_batch,
            'pretrain_data': 'generated (smoke)' if generated else Path(root).name,
            'lr': lr, 'precision': 'bf16' if bf16 else 'fp32'}
    weights = {k: v for k, v in model.state_dict().items() if not k.startswith('tokenizer.')}  # the user's file
    final = save_ours(Path(work_dir) / 'final.pth', weights, meta)
    end = time.time()
    rec = make_record(
        benchmark='mae_pretrain', family='pretrain', headline='loss' if stats.last_loss is not None else 'images_per_s',
        metrics=dict(images_per_s=stats.images_per_s, **({} if stats.last_loss is None else dict(loss=stats.last_loss)),
                     **({} if stats.first_loss is None else dict(loss_first_epoch=stats.first_loss))),
        model=dict(arch=cfg.arch, checkpoint=str(final), sha256=file_sha256(final), format='ours', pretrain=meta),
        config=cfg.to_dict(), settings=dict(img_size=cfg.data.img_size, precision=meta['precision']),
        data=dict(dataset='generated' if generated else 'image folder', split='train',
                  subset='smoke' if generated else ('full' if len(dataset) == IMAGENET_TRAIN_SIZE else 'custom'),
                  num_images=len(dataset),
                  root=str(root)), start=start, end=end, world_size=world, on_gpu=torch.cuda.is_available())
    return final, write_record(records_dir, rec)
