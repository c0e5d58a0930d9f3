"""Robustness (the paper's robustness table): ImageNet-C (mCE), ImageNet-A, ImageNet-R and ImageNet-Sketch,
evaluated on an ImageNet-1K fine-tuned model with no further training (FACTS.md §3).

Inference only, built for speed: large batches, ``torch.inference_mode``, bf16 on GPU, many loader workers, and
batched JPEG decoding on the GPU (``torchvision.io.decode_jpeg(device='cuda')``) when one is present. Every
(corruption, severity) folder goes through one loader, and ranks count correct answers exactly (no padding)."""
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torchvision import transforms as T
from torchvision.io import ImageReadMode, decode_image, decode_jpeg
from torchvision.transforms import functional as TF

from mae_core import engine, progress
from mae_core.data import IMAGENET_MEAN, IMAGENET_STD, imagenet_wnids, load_rgb
from mae_core.errors import DataError, UnreadableImage, UsageError

from .datasets.readers import read_imagenet_c, read_wnid_folders, timm_class_subset
from .task import Outcome, image_samples

# AlexNet's top-1 error per severity 1..5 of the 15 corruptions of mCE (datasets.readers.IMAGENET_C_CORRUPTIONS)
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
# the 4 extra corruptions (not in mCE): AlexNet's mean error only, so their CE uses the mean
EXTRA_ALEXNET_MEAN = {'speckle_noise': 0.845388, 'gaussian_blur': 0.787108, 'spatter': 0.717512,
                      'saturate': 0.658248}


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
            return (str(path), Path(path).read_bytes()), label, group
        return self.transform(load_rgb(path)), label, group


def collate(batch):
    images, labels, groups = zip(*batch)
    images = list(images) if isinstance(images[0], tuple) else torch.stack(images)
    return images, torch.tensor(labels), torch.tensor(groups)


def eval_transform(cfg):
    """'resize_crop': Resize(img_size / crop_pct) + CenterCrop (AugMix's script, our default); 'center_crop':
    a centre crop of the stored images (Hendrycks' script)."""
    norm = [T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    if cfg.preprocess == 'center_crop':
        return T.Compose([T.CenterCrop(cfg.img_size)] + norm)
    return T.Compose([T.Resize(int(cfg.img_size / cfg.crop_pct), interpolation=T.InterpolationMode.BICUBIC),
                      T.CenterCrop(cfg.img_size)] + norm)


def decode_on_device(files: list, cfg, device) -> torch.Tensor:
    """(path, file bytes) pairs -> normalised [N, 3, S, S] on ``device``: batched nvJPEG on CUDA (CPU decode
    elsewhere). A file that decodes neither way is one error naming it."""
    data = [torch.frombuffer(bytearray(d), dtype=torch.uint8) for _, d in files]
    try:
        imgs = decode_jpeg(data, mode=ImageReadMode.RGB, device=device)
    except RuntimeError:  # not all JPEG (or a broken one): decode one by one on the CPU
        imgs = [_decode_one(path, d).to(device) for (path, _), d in zip(files, data)]
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


def _decode_one(path, data):
    try:
        return decode_image(data, mode=ImageReadMode.RGB)
    except RuntimeError as e:
        raise UnreadableImage(f'{path}: unreadable image ({str(e).splitlines()[0][:120]})') from None


# ==================================================================== evaluation
@torch.inference_mode()
def predict(model, samples, cfg, subset=None) -> np.ndarray:
    """The top-5 classes [N, 5] of every sample, in order, on every rank: each rank takes every world-th sample
    (no padding) and the ranks exchange their predictions."""
    device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    decode = cfg.decode if cfg.decode != 'auto' else ('tensor' if device.type == 'cuda' else 'pil')
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    mine = samples[rank::world]
    loader = torch.utils.data.DataLoader(
        GroupedImages(mine, eval_transform(cfg), decode), batch_size=cfg.batch_size, num_workers=cfg.num_workers,
        collate_fn=collate, pin_memory=device.type == 'cuda', shuffle=False)
    bf16 = engine.precision_is_bf16(cfg.precision)
    subset_t = torch.as_tensor(subset, device=device) if subset is not None else None
    top, done = [], 0
    for images, labels, _ in loader:
        if isinstance(images, list):
            images = decode_on_device(images, cfg, device)
        with engine.autocast_context(device.type, bf16):
            logits = model(images.to(device, non_blocking=True))
        if subset_t is not None:
            logits = logits[:, subset_t]
        top.append(logits.float().topk(min(5, logits.shape[1]), dim=1).indices.to(torch.int16).cpu())
        done += len(labels)
        progress.show('eval', done, len(mine))
    top = torch.cat(top).numpy() if top else np.zeros((0, 5), np.int16)
    if not dist.is_initialized():
        return top
    parts = [None] * world
    dist.all_gather_object(parts, top)
    out = np.zeros((len(samples), parts[0].shape[1]), np.int16)
    for r, part in enumerate(parts):
        out[r::world] = part
    return out


def robustness_samples(kind, samples, top5, names_of, group_names=None) -> dict:
    """The samples (:mod:`transfer.intervals`) of the ``(path, label, group)`` list and its predictions; an image
    is named by ``names_of(path)``, and with ``group_names`` each sample keeps its group."""
    paths, labels, groups = zip(*samples)
    grouped = {} if group_names is None else dict(group=np.array(groups, dtype=np.int16),
                                                  group_names=np.array(group_names))
    return image_samples(kind, [names_of(p) for p in paths], label=np.array(labels, dtype=np.int32),
                         top5=top5.astype(np.int32), **grouped)


def count_correct(kept, group_names) -> dict:
    """-> {group: [correct, total]} from the samples' top-1 predictions (one group without ``group``)."""
    groups = kept['group'].astype(np.int64) if 'group' in kept else np.zeros(len(kept['label']), np.int64)
    correct = np.bincount(groups, weights=kept['top5'][:, 0] == kept['label'], minlength=len(group_names))
    total = np.bincount(groups, minlength=len(group_names))
    return {g: [int(correct[i]), int(total[i])] for i, g in enumerate(group_names)}


def imagenet_c(model, root, cfg):
    """-> (metrics, images in the 15 x 5 of mCE, images of the extra corruptions, a mCE folder was missing,
    samples)."""
    folders, missing = read_imagenet_c(root, cfg.extras, cfg.partial)
    names = [f'{c}/{s}' for c, s, _ in folders]
    samples = [(p, y, g) for g, (_, _, folder) in enumerate(folders) for p, y in read_wnid_folders(folder).samples]
    kept = robustness_samples('imagenet_c', samples, predict(model, samples, cfg),
                              lambda p: f'{p.parent.name}/{p.name}', names)
    counts = count_correct(kept, names)
    errors = defaultdict(dict)
    for name, (correct, total) in counts.items():
        c, s = name.split('/')
        errors[c][int(s)] = 1 - correct / total
    in_mce = sum(total for name, (_, total) in counts.items() if name.split('/')[0] in ALEXNET_ERRORS)
    return corruption_errors(errors), in_mce, len(samples) - in_mce, bool(missing), kept


def top1(model, bench, root, cfg):
    """-> (metrics, images, samples): top-1 over wnid folders, on the 200-class logits where the set has a
    subset."""
    split = read_wnid_folders(root)
    subset = timm_class_subset(bench.class_subset) if bench.class_subset else None
    if subset is not None:  # labels become positions in the 200-class list
        position = {idx: i for i, idx in enumerate(subset)}
        outside = next(((p, y) for p, y in split.samples if y not in position), None)
        if outside:
            raise DataError(f'{outside[0].parent}: wnid {imagenet_wnids()[outside[1]]} is not one of '
                            f'{bench.dataset}\'s 200 classes')
        split.samples = [(p, position[y]) for p, y in split.samples]
    samples = [(p, y, 0) for p, y in split.samples]
    kept = robustness_samples('topk', samples, predict(model, samples, cfg, subset),
                              lambda p: str(Path(p).relative_to(root)))
    hits = kept['top5'] == kept['label'][:, None]
    return (dict(top1=100.0 * int(hits[:, 0].sum()) / len(hits), top5=100.0 * int(hits.any(1).sum()) / len(hits)),
            len(hits), kept)


def run(bench, cfg, ctx) -> Outcome:
    """Evaluate the IN-1K classifier the CLI resolved (``ctx.classifier``) with no further training."""
    classifier = ctx.classifier
    model = classifier.build(keep_head=True, img_size=cfg.img_size, learnable_pos=True)
    if model.num_classes != 1000:
        raise UsageError(f'{classifier.path}: {bench.name} needs a 1000-way ImageNet classifier; key head.weight '
                         f'has {model.num_classes} outputs')
    model = model.to('cuda' if torch.cuda.is_available() else 'cpu').eval()
    root = Path(cfg.dataset.root)
    data = dict(dataset=bench.name, split='val', root=str(root))
    incomplete = False
    if bench.headline == 'mCE':  # ImageNet-C: the release's corruption/severity folders
        metrics, data['num_images'], data['extra_images'], incomplete, samples = imagenet_c(model, root, cfg)
    else:
        metrics, data['num_images'], samples = top1(model, bench, root, cfg)
    settings = dict(img_size=cfg.img_size, preprocess=cfg.preprocess, crop_pct=cfg.crop_pct,
                    precision='bf16' if engine.precision_is_bf16(cfg.precision) else 'fp32')
    return Outcome(metrics, settings, data, dict(evaluated_checkpoint=classifier.path,
                                                 evaluated_sha256=classifier.sha256), incomplete,
                   samples if engine.is_main_process() else None)
