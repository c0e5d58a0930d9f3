"""Robustness (the paper's robustness table): ImageNet-C (mCE), ImageNet-A, ImageNet-R and ImageNet-Sketch,
evaluated on an ImageNet-1K fine-tuned model with no further training (FACTS.md §3).

Inference only, built for speed: large batches, ``torch.inference_mode``, bf16 on GPU, many loader workers, and
batched JPEG decoding on the GPU (``torchvision.io.decode_jpeg(device='cuda')``) when one is present. Every
(corruption, severity) folder goes through one loader, and ranks count correct answers exactly (no padding)."""
from collections import defaultdict
from pathlib import Path

import torch
import torch.distributed as dist
from torchvision import transforms as T
from torchvision.io import ImageReadMode, decode_image, decode_jpeg
from torchvision.transforms import functional as TF
from tqdm import tqdm

from mae_core import engine as core
from mae_core.checkpoint import build_encoder, file_sha256
from mae_core.data import IMAGENET_MEAN, IMAGENET_STD, imagenet_wnids, load_rgb
from mae_core.pretrain import precision_is_bf16

from . import engine
from .datasets import read_wnid_folders
from .errors import DataError, UsageError

# the 15 corruptions of mCE in the released code's order, and AlexNet's top-1 error per severity 1..5
ALEXNET_ERRORS = {
    'gaussian_noise': (0.69528, 0.82542, 0.93554, 0.98138, 0.99452),
    'shot_noise': (0.71224, 0.85108, 0.93574, 0.98182, 0.99146),
    'impulse_noise': (0.78374, 0.89808, 0.94870, 0.98720, 0.99548),
    'defocus_blur': (0.65624, 0.73202, 0.85036, 0.91364, 0.94714),
    'glass_blur': (0.64308, 0.75054, 0.88806, 0.91622, 0.93344),
    'motion_blur': (0.58430, 0.70048, 0.82108, 0.89750, 0.92638),
    'zoom_blur': (0.70008, 0.76992, 0.80784, 0.84198, 0.87198),
    'snow': (0.71726, 0.88392, 0.86468, 0.91870, 0.94952),
    'frost': (0.61390, 0.79734, 0.88790, 0.89942, 0.93430),
    'fog': (0.67474, 0.76050, 0.84378, 0.87260, 0.94500),
    'brightness': (0.45140, 0.48502, 0.54048, 0.62166, 0.72440),
    'contrast': (0.64548, 0.76150, 0.88874, 0.97760, 0.99270),
    'elastic_transform': (0.52596, 0.70116, 0.55686, 0.64076, 0.80554),
    'pixelate': (0.52218, 0.54620, 0.73728, 0.87092, 0.91262),
    'jpeg_compression': (0.51002, 0.54718, 0.57294, 0.65458, 0.74778),
}
CORRUPTIONS = tuple(ALEXNET_ERRORS)
# the 4 extra corruptions (not in mCE): AlexNet's mean error only, so their CE uses the mean
EXTRA_ALEXNET_MEAN = {'speckle_noise': 0.845388, 'gaussian_blur': 0.787108, 'spatter': 0.717512,
                      'saturate': 0.658248}
SEVERITIES = (1, 2, 3, 4, 5)
FULL_SIZES = {'imagenet_c': 50000 * 75, 'imagenet_a': 7500, 'imagenet_r': 30000, 'imagenet_sketch': 50889}


# ==================================================================== the protocol's arithmetic
def corruption_errors(errors: dict) -> dict:
    """mCE from top-1 errors ``{corruption: {severity: error in [0, 1]}}`` (FACTS.md §3).

    CE_c = sum_s E_{s,c} / sum_s E^AlexNet_{s,c} over the severities present; mCE = mean CE over the 15
    corruptions present, in percent; ``mean_error`` is the unnormalised mean over those 15 x severities.
    Extras get ``CE.<name>`` with AlexNet's mean error and stay out of mCE.
    """
    out, ces, all_errors = {}, [], []
    for c, by_sev in errors.items():
        if c in ALEXNET_ERRORS:
            ce = sum(by_sev.values()) / sum(ALEXNET_ERRORS[c][s - 1] for s in by_sev)
            ces.append(ce)
            all_errors += list(by_sev.values())
        elif c in EXTRA_ALEXNET_MEAN:
            ce = sum(by_sev.values()) / (len(by_sev) * EXTRA_ALEXNET_MEAN[c])
        else:
            raise ValueError(f'unknown corruption {c!r}')
        out[f'CE.{c}'] = 100 * ce
        for s, e in by_sev.items():
            out[f'error.{c}.{s}'] = 100 * e
    if ces:
        out['mCE'] = 100 * sum(ces) / len(ces)
        out['mean_error'] = 100 * sum(all_errors) / len(all_errors)
    extras = [e for c, by_sev in errors.items() if c in EXTRA_ALEXNET_MEAN for e in by_sev.values()]
    if extras:
        out['extras_mean_error'] = 100 * sum(extras) / len(extras)
    return out


def class_subset(name: str):
    """The sorted 1000-class indices of ImageNet-A/R's 200 classes, as timm ships them (None for the others)."""
    if name not in ('imagenet_a', 'imagenet_r'):
        return None
    from importlib import resources
    text = resources.files('timm.data').joinpath(f'_info/{name}_indices.txt').read_text()
    return [int(line) for line in text.split()]


# ==================================================================== data
def imagenet_c_folders(root, extras: bool, partial: bool):
    """[(corruption, severity, folder)] of the released layout ``root/<corruption>/<1..5>/<wnid>/``.

    A missing one of the 15 x 5 is an error listing everything missing, unless ``partial``."""
    root = Path(root)
    found, missing = [], []
    for c in CORRUPTIONS + (tuple(EXTRA_ALEXNET_MEAN) if extras else ()):
        for s in SEVERITIES:
            folder = root / c / str(s)
            if folder.is_dir():
                found.append((c, s, folder))
            elif c in ALEXNET_ERRORS:
                missing.append(f'{c}/{s}')
    if missing and not partial:
        raise FileNotFoundError(f'{root}: ImageNet-C is incomplete, missing {len(missing)} of 75 corruption/severity '
                                f'folders: {", ".join(missing)}. Pass --cfg-options partial=True for a run marked '
                                'partial')
    if not found:
        raise FileNotFoundError(f'{root}: no <corruption>/<severity>/<wnid>/ folders of ImageNet-C found')
    return found, missing


class GroupedImages(torch.utils.data.Dataset):
    """Samples ``(path, label, group)``; returns a preprocessed image, or the file's bytes for batched
    decoding on the device (``decode='tensor'``)."""

    def __init__(self, samples, transform=None, decode='pil'):
        self.samples, self.transform, self.decode = samples, transform, decode

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        path, label, group = self.samples[i]
        if self.decode == 'tensor':  # plain bytes: a tensor per file would cost a shared-memory handle each
            return Path(path).read_bytes(), label, group
        return self.transform(load_rgb(path)), label, group


def collate(batch):
    images, labels, groups = zip(*batch)
    images = list(images) if isinstance(images[0], bytes) else torch.stack(images)
    return images, torch.tensor(labels), torch.tensor(groups)


def eval_transform(cfg):
    """'resize_crop': Resize(img_size / crop_pct) + CenterCrop (AugMix's script, our default); 'center_crop':
    a centre crop of the stored images (Hendrycks' script)."""
    norm = [T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    if cfg.preprocess == 'center_crop':
        return T.Compose([T.CenterCrop(cfg.img_size)] + norm)
    return T.Compose([T.Resize(int(cfg.img_size / cfg.crop_pct), interpolation=T.InterpolationMode.BICUBIC),
                      T.CenterCrop(cfg.img_size)] + norm)


def decode_on_device(data: list, cfg, device) -> torch.Tensor:
    """File bytes -> normalised [N, 3, S, S] on ``device``: batched nvJPEG on CUDA (CPU decode elsewhere)."""
    data = [torch.frombuffer(bytearray(d), dtype=torch.uint8) for d in data]
    try:
        imgs = decode_jpeg(data, mode=ImageReadMode.RGB, device=device)
    except RuntimeError:  # not all JPEG: decode one by one on the CPU
        imgs = [decode_image(d, mode=ImageReadMode.RGB).to(device) for d in data]
    out = []
    for img in imgs:
        if cfg.preprocess != 'center_crop':
            img = TF.resize(img, int(cfg.img_size / cfg.crop_pct), interpolation=T.InterpolationMode.BICUBIC,
                            antialias=True)
        out.append(TF.center_crop(img, cfg.img_size))
    x = torch.stack(out).float().div_(255)
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
    return (x - mean) / std


# ==================================================================== evaluation
@torch.inference_mode()
def count_correct(model, samples, group_names, cfg, subset=None, desc='eval'):
    """-> {group: [correct, total]} summed over ranks; each rank takes every world-th sample, no padding."""
    device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    decode = cfg.decode if cfg.decode != 'auto' else ('tensor' if device.type == 'cuda' else 'pil')
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    mine = samples[rank::world]
    loader = torch.utils.data.DataLoader(
        GroupedImages(mine, eval_transform(cfg), decode), batch_size=cfg.batch_size, num_workers=cfg.num_workers,
        collate_fn=collate, pin_memory=device.type == 'cuda', shuffle=False)
    bf16 = precision_is_bf16(cfg.precision)
    subset_t = torch.as_tensor(subset, device=device) if subset is not None else None
    counts = torch.zeros(len(group_names), 2, dtype=torch.long, device=device)
    bar = tqdm(total=len(mine), desc=desc, unit='img', disable=rank != 0, mininterval=2.0)
    current = None
    for images, labels, groups in loader:
        if isinstance(images, list):
            images = decode_on_device(images, cfg, device)
        images, labels, groups = images.to(device, non_blocking=True), labels.to(device), groups.to(device)
        with core.autocast_context(device.type, bf16):
            logits = model(images)
        if subset_t is not None:
            logits = logits[:, subset_t]
        correct = (logits.argmax(dim=1) == labels).long()
        counts[:, 0].index_add_(0, groups, correct)
        counts[:, 1].index_add_(0, groups, torch.ones_like(correct))
        name = group_names[int(groups[-1])]
        if name.split('/')[0] != current:
            current = name.split('/')[0]
            bar.set_description(f'{desc} {current}')
        bar.update(len(labels))
    bar.close()
    if dist.is_initialized():
        dist.all_reduce(counts)
    return {g: counts[i].tolist() for i, g in enumerate(group_names)}


def finetuned_checkpoint(ctx):
    """The IN-1K fine-tuned model to evaluate: the checkpoint itself if it has a 1000-way head, else the model
    the newest ``in1k_finetune`` record of this checkpoint saved; under --smoke that run is made if missing."""
    if ctx.info['has_head']:
        return ctx.checkpoint
    from . import cli
    from .record import read_records
    subset_ok = (lambda r: r['data']['subset'] == 'smoke') if ctx.smoke else (lambda r: r['data']['subset'] != 'smoke')
    runs = [r for r in read_records(ctx.records_dir) if r['benchmark'] == 'in1k_finetune' and r['status'] == 'finished'
            and r['model']['sha256'] == ctx.sha256 and subset_ok(r)
            and Path(r['model'].get('finetuned_checkpoint', '')).is_file()]
    if runs:
        return runs[-1]['model']['finetuned_checkpoint']
    if not ctx.smoke:
        raise UsageError(f'{ctx.checkpoint} has no classifier head and no in1k_finetune record in '
                             f'{ctx.records_dir}: run in1k_finetune on it first (run_transfer.py all does) or pass '
                             'an ImageNet-1K fine-tuned checkpoint')
    args = cli.parser().parse_args(['in1k_finetune', '--checkpoint', ctx.checkpoint, '--smoke', '--records-dir',
                                    ctx.records_dir, '--launcher', ctx.launcher] +
                                   (['--allow-pickle'] if ctx.allow_pickle else []))
    bench, cfg, ft_ctx = cli.resolve('in1k_finetune', args)
    cli.run_one(bench, cfg, ft_ctx)
    if dist.is_initialized():
        dist.barrier()  # rank 0 writes the fine-tuned model
    return str(Path(ft_ctx.work_dir) / 'finetuned.pth')


def run(bench, cfg, ctx) -> engine.Outcome:
    path = finetuned_checkpoint(ctx)
    model, info = build_encoder(path, ctx.arch if path == ctx.checkpoint else None, ctx.allow_pickle,
                                keep_head=True, img_size=cfg.img_size, learnable_pos=True)
    if model.num_classes != 1000:
        raise UsageError(f'{path}: {bench.name} needs a 1000-way ImageNet classifier; key head.weight has '
                         f'{model.num_classes} outputs')
    model = model.to('cuda' if torch.cuda.is_available() else 'cpu').eval()
    root = Path(cfg.dataset.root)
    if bench.name == 'imagenet_c':
        folders, missing = imagenet_c_folders(root, cfg.extras, cfg.partial)
        names = [f'{c}/{s}' for c, s, _ in folders]
        samples = [(p, y, g) for g, (_, _, folder) in enumerate(folders) for p, y in read_wnid_folders(folder).samples]
        counts = count_correct(model, samples, names, cfg, desc='IN-C')
        errors = defaultdict(dict)
        for name, (correct, total) in counts.items():
            c, s = name.split('/')
            errors[c][int(s)] = 1 - correct / total
        metrics = corruption_errors(errors)
        n_images, partial = len(samples), bool(missing)
    else:
        subset = class_subset(bench.name)
        split = read_wnid_folders(root)
        if subset is not None:  # labels become positions in the 200-class list
            position = {idx: i for i, idx in enumerate(subset)}
            outside = next(((p, y) for p, y in split.samples if y not in position), None)
            if outside:
                raise DataError(f'{outside[0].parent}: wnid {imagenet_wnids()[outside[1]]} is not one of '
                                 f'{bench.dataset}\'s 200 classes')
            split.samples = [(p, position[y]) for p, y in split.samples]
        counts = count_correct(model, [(p, y, 0) for p, y in split.samples], ['all'], cfg, subset, desc=bench.name)
        correct, total = counts['all']
        metrics = dict(top1=100.0 * correct / total)
        n_images, partial = total, False
    subset_name = 'smoke' if ctx.smoke else ('partial' if partial or n_images != FULL_SIZES[bench.name] else 'full')
    settings = dict(img_size=cfg.img_size, preprocess=cfg.preprocess, crop_pct=cfg.crop_pct,
                    precision='bf16' if precision_is_bf16(cfg.precision) else 'fp32')
    data = dict(dataset=bench.name, split='val', subset=subset_name, num_images=int(n_images), root=str(root))
    return engine.Outcome(metrics, settings, data, dict(evaluated_checkpoint=str(path), evaluated_sha256=file_sha256(path)))
