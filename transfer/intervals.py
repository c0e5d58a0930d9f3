"""How sure each number is. Every evaluation keeps what each image contributed (its *samples*, written beside the
record as a sidecar); from them this module recomputes each headline metric, gives its 95 % percentile-bootstrap
interval over the evaluated images, and compares two runs on the same images (the bootstrap of the paired
difference, and McNemar's exact test for top-1).

Resampling works on counts, never image by image in Python: the number of correct images in a resample of n
images is exactly Binomial(n, accuracy); ImageNet-C resamples images within each corruption and severity (one
binomial, or for a pair one multinomial, per group); mIoU and AP draw multinomial image counts that weight each
image's areas or detections. The samples of a kind:

- ``topk``: ``label`` [N], ``top5`` [N, 5] (predicted classes, best first), ``names`` + ``image`` (image ids)
- ``imagenet_c``: the same, plus ``group`` [N] indexing ``group_names`` ('corruption/severity')
- ``segmentation``: ``areas`` [N, 4, K] (intersection, union, prediction, label per class), image ids
- ``detection``: per IoU type (``bbox``/``segm``) the matching pycocotools made at area 'all' and 100
  detections (``<t>_det_image``, ``_det_cat``, ``_det_score``, ``_det_tp``/``_det_fp`` [10, D], ``_npig``
  [N, K]), image ids, and the detections themselves as COCO json (``coco_json``)
"""
import math

import numpy as np
import torch

from .robustness import ALEXNET_ERRORS, corruption_errors
from .segmentation import miou_from_areas

RESAMPLES, LEVEL, SEED = 1000, 0.95, 0
METHOD = 'percentile bootstrap over the evaluated images'
HEADLINES = {'topk': ('top1', 'top5'), 'imagenet_c': ('mCE', 'mean_error'), 'segmentation': ('mIoU', 'aAcc'),
             'detection': ('APbox', 'APmask')}
RECALLS = np.linspace(0.0, 1.00, 101)  # pycocotools' recThrs
IOU_TYPES = (('bbox', 'APbox'), ('segm', 'APmask'))


class NotPaired(ValueError):
    """Two runs' samples are not of the same images (or not of the same kind)."""


def kind_of(samples) -> str:
    return str(samples['kind'])


def image_ids(samples) -> np.ndarray:
    """Each evaluated sample's image id (with its group for ImageNet-C): what two runs must share to be paired."""
    ids = samples['names'][samples['image']]
    if 'group' in samples:
        ids = np.char.add(np.char.add(samples['group_names'][samples['group']], '/'), ids)
    return ids


def _hits(samples) -> np.ndarray:
    """[N, 5]: whether each of a sample's five predictions is its label."""
    return samples['top5'] == samples['label'][:, None]


def _iou_types(samples) -> list:
    """The (pycocotools IoU type, metric) pairs the detection samples hold."""
    return [(t, name) for t, name in IOU_TYPES if f'{t}_det_tp' in samples]


# ==================================================================== the metrics, recomputed from samples
def metrics(samples) -> dict:
    """Every metric the record holds for this kind, from the samples alone."""
    kind = kind_of(samples)
    if kind == 'topk':
        hits = _hits(samples)
        return {'top1': 100.0 * hits[:, 0].mean(), 'top5': 100.0 * hits.any(1).mean()}
    if kind == 'imagenet_c':
        wrong, total = _group_counts(samples)
        return corruption_errors(_errors_by_group(samples['group_names'], wrong / total))
    if kind == 'segmentation':
        return miou_from_areas(torch.from_numpy(samples['areas'].sum(0)))
    if kind == 'detection':
        ones = np.ones((1, len(samples['image'])))
        return {name: float(weighted_ap(samples, t, ones)[0]) for t, name in _iou_types(samples)}
    raise ValueError(f'unknown samples kind {kind!r}')


def _group_counts(samples):
    wrong = ~_hits(samples)[:, 0]
    g, n = samples['group'], len(samples['group_names'])
    return np.bincount(g, weights=wrong, minlength=n), np.bincount(g, minlength=n).astype(float)


def _errors_by_group(group_names, errors) -> dict:
    out = {}
    for name, e in zip(group_names, errors):
        c, s = str(name).split('/')
        out.setdefault(c, {})[int(s)] = float(e)
    return out


# ==================================================================== intervals
def interval(samples, resamples=RESAMPLES, seed=SEED) -> dict:
    """{metric: [lo, hi]}: the 95 % percentile-bootstrap interval of each headline metric of this kind."""
    draws = bootstrap(samples, resamples, np.random.default_rng(seed))
    return {m: _percentiles(v) for m, v in draws.items()}


def _percentiles(values) -> list:
    lo, hi = np.percentile(values, [50 * (1 - LEVEL), 50 * (1 + LEVEL)])
    return [round(float(lo), 6), round(float(hi), 6)]


def bootstrap(samples, resamples, rng) -> dict:
    """{metric: [resamples] values} over image resamples."""
    kind = kind_of(samples)
    if kind == 'topk':
        n = len(samples['label'])
        hits = _hits(samples)
        return {'top1': 100.0 * rng.binomial(n, hits[:, 0].mean(), resamples) / n,
                'top5': 100.0 * rng.binomial(n, hits.any(1).mean(), resamples) / n}
    if kind == 'imagenet_c':
        wrong, total = _group_counts(samples)
        errors = rng.binomial(total.astype(np.int64), wrong / total, (resamples, len(total))) / total
        return _mce_of(samples['group_names'], errors)
    if kind == 'segmentation':
        out = {'mIoU': [], 'aAcc': []}
        for weights in _image_weights(len(samples['image']), resamples, rng):
            for k, v in _resampled_miou(samples['areas'], weights).items():
                out[k].append(v)
        return {k: np.concatenate(v) for k, v in out.items()}
    if kind == 'detection':
        return {name: np.concatenate([weighted_ap(samples, t, w) for w in
                                      _image_weights(len(samples['image']), resamples, rng, chunk=50)])
                for t, name in _iou_types(samples)}
    raise ValueError(f'unknown samples kind {kind!r}')


def _image_weights(n, resamples, rng, chunk=500):
    """Chunks of [b, n] image counts (each row sums to n: n images drawn with replacement), counted with one
    bincount per chunk."""
    done = 0
    while done < resamples:
        b = min(chunk, resamples - done)
        draws = rng.integers(0, n, (b, n)) + np.arange(b)[:, None] * n
        yield np.bincount(draws.ravel(), minlength=b * n).reshape(b, n).astype(np.float32)
        done += b


def _resampled_miou(areas, weights) -> dict:
    """Per-image areas [N, 4, K] summed with each row of image ``weights`` [B, N] (one matrix product) -> mIoU
    and aAcc per row (as :func:`segmentation.miou_from_areas`)."""
    sums = (weights @ areas.reshape(len(areas), -1).astype(np.float32)).reshape(len(weights), *areas.shape[1:])
    inter, union, label = sums[:, 0], sums[:, 1], sums[:, 3]
    with np.errstate(invalid='ignore', divide='ignore'):
        iou = np.where(union > 0, inter / union, np.nan)
    return {'mIoU': 100 * np.nanmean(iou, axis=1), 'aAcc': 100 * inter.sum(1) / label.sum(1)}


def _mce_of(group_names, errors) -> dict:
    """Rows of per-group error rates [B, G] -> mCE and the unnormalised mean error per row (the 15 corruptions
    of mCE only, as :func:`robustness.corruption_errors`)."""
    corruptions = sorted({str(g).split('/')[0] for g in group_names} & set(ALEXNET_ERRORS))
    member = np.zeros((len(group_names), len(corruptions)))
    alexnet = np.zeros(len(corruptions))
    for i, name in enumerate(group_names):
        c, s = str(name).split('/')
        if c in ALEXNET_ERRORS:
            member[i, corruptions.index(c)] = 1
            alexnet[corruptions.index(c)] += ALEXNET_ERRORS[c][int(s) - 1]
    ce = (errors @ member) / alexnet
    in_mce = member.any(1)
    return {'mCE': 100 * ce.mean(1), 'mean_error': 100 * errors[:, in_mce].mean(1)}


# ==================================================================== COCO AP with image weights
def weighted_ap(samples, iou_type, weights, budget=2e7) -> np.ndarray:
    """AP (pycocotools' ``stats[0]``: area 'all', 100 detections, mean over IoU 0.50:0.95, 101 recall points and
    the categories with ground truth) for each row of image ``weights`` [B, N], in percent. With weights of one it
    is pycocotools' own number (same order, same float64 arithmetic); a weight w counts an image w times (its
    detections and its ground truth), which redoes only pycocotools' accumulation, never the matching."""
    img, cat = samples[f'{iou_type}_det_image'], samples[f'{iou_type}_det_cat']
    score, tp, fp = samples[f'{iou_type}_det_score'], samples[f'{iou_type}_det_tp'], samples[f'{iou_type}_det_fp']
    npig = samples[f'{iou_type}_npig'].astype(np.float64)  # [N, K] non-ignored ground truth per image, category
    weights = np.asarray(weights, np.float64)
    rows, thresholds = weights.shape[0], tp.shape[0]
    gt = weights @ npig  # [B, K]
    total, count = np.zeros(rows), np.zeros(rows)
    for k in range(npig.shape[1]):
        has_gt = gt[:, k] > 0
        if not has_gt.any():
            continue
        mine = np.flatnonzero(cat == k)  # stored as pycocotools concatenates them: by image, then by score
        mine = mine[np.argsort(-score[mine], kind='mergesort')]
        ap = np.zeros(rows)
        step = max(1, int(budget // max(1, thresholds * len(mine))))
        for r0 in range(0, rows, step) if len(mine) else ():
            w = weights[r0:r0 + step, img[mine]][:, None, :]  # [b, 1, D]
            tp_sum, fp_sum = np.cumsum(w * tp[:, mine], axis=2), np.cumsum(w * fp[:, mine], axis=2)
            recall = tp_sum / np.where(gt[r0:r0 + step, k] > 0, gt[r0:r0 + step, k], 1.0)[:, None, None]
            prec = tp_sum / (fp_sum + tp_sum + np.spacing(1))
            prec = np.maximum.accumulate(prec[..., ::-1], axis=2)[..., ::-1]  # the envelope, right to left
            for i in range(prec.shape[0]):
                q = np.zeros((thresholds, len(RECALLS)))
                for t in range(thresholds):
                    at = np.searchsorted(recall[i, t], RECALLS, side='left')
                    ok = at < len(mine)
                    q[t, ok] = prec[i, t, at[ok]]
                ap[r0 + i] = q.mean()
        total += np.where(has_gt, ap, 0.0)
        count += has_gt
    with np.errstate(invalid='ignore', divide='ignore'):
        return np.where(count > 0, 100 * total / count, 0.0)


# ==================================================================== paired comparison
def compare(a, b, resamples=RESAMPLES, seed=SEED) -> dict:
    """{metric: (a, b, a - b, [lo, hi] of a - b)} over the same images, resampled together; for top-1 also
    ``mcnemar``: (a right b wrong, a wrong b right, exact two-sided p)."""
    kind = kind_of(a)
    if kind != kind_of(b) or not np.array_equal(image_ids(a), image_ids(b)):
        raise NotPaired('the two runs were not evaluated on the same images')
    rng = np.random.default_rng(seed)
    ma, mb = metrics(a), metrics(b)
    if kind == 'topk':
        draws, n = {}, len(a['label'])
        for m, k in (('top1', 1), ('top5', 5)):
            ra, rb = (_hits(s)[:, :k].any(1) for s in (a, b))
            cells = rng.multinomial(n, [np.mean(ra & ~rb), np.mean(~ra & rb), np.mean(ra == rb)], resamples)
            draws[m] = 100.0 * (cells[:, 0] - cells[:, 1]) / n
    elif kind == 'imagenet_c':
        draws = _paired_mce(a, b, resamples, rng)
    else:
        draws = {m: [] for m in HEADLINES[kind]}
        for weights in _image_weights(len(a['image']), resamples, rng, chunk=50 if kind == 'detection' else 200):
            for m, (va, vb) in _paired_rows(kind, a, b, weights).items():
                draws[m].append(va - vb)
        draws = {m: np.concatenate(v) for m, v in draws.items() if v}
    out = {m: (ma[m], mb[m], ma[m] - mb[m], _percentiles(v)) for m, v in draws.items() if m in ma}
    if kind == 'topk':
        ra, rb = (_hits(s)[:, 0] for s in (a, b))
        only_a, only_b = int(np.sum(ra & ~rb)), int(np.sum(~ra & rb))
        out['mcnemar'] = (only_a, only_b, mcnemar_exact(only_a, only_b))
    return out


def _paired_rows(kind, a, b, weights) -> dict:
    if kind == 'segmentation':
        rows = [_resampled_miou(s['areas'], weights) for s in (a, b)]
        return {m: (rows[0][m], rows[1][m]) for m in rows[0]}
    return {name: (weighted_ap(a, t, weights), weighted_ap(b, t, weights)) for t, name in _iou_types(a)}


def _paired_mce(a, b, resamples, rng) -> dict:
    """Per corruption and severity, a multinomial over (both wrong, only a wrong, only b wrong, both right),
    its cell counts taken with one bincount each."""
    wa, wb = (~_hits(s)[:, 0] for s in (a, b))
    groups, names = a['group'], a['group_names']
    count = lambda cell: np.bincount(groups, weights=cell, minlength=len(names))
    cells = np.stack([count(wa & wb), count(wa & ~wb), count(~wa & wb), count(~wa & ~wb)], axis=1)  # [G, 4]
    errors_a, errors_b = np.zeros((resamples, len(names))), np.zeros((resamples, len(names)))
    for g, cell in enumerate(cells):
        n = int(cell.sum())
        draws = rng.multinomial(n, cell / n, resamples)
        errors_a[:, g], errors_b[:, g] = (draws[:, 0] + draws[:, 1]) / n, (draws[:, 0] + draws[:, 2]) / n
    ra, rb = _mce_of(names, errors_a), _mce_of(names, errors_b)
    return {m: ra[m] - rb[m] for m in ra}


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """McNemar's exact test: the two-sided binomial p-value of the discordant pairs under p = 1/2."""
    n, k = only_a + only_b, min(only_a, only_b)
    if n == 0:
        return 1.0
    logs = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) - n * math.log(2) for i in range(k + 1)]
    top = max(logs)
    tail = math.exp(top) * sum(math.exp(x - top) for x in logs)
    return min(1.0, 2 * tail)

