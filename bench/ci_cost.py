"""What the 95 % intervals cost, on simulated full-size outcomes, as ratios measured in one run.

Bounds (issue 16): 1,000 resamples of top-1 (50,000 images), mIoU (2,000 images, 150 classes) and mCE
(3.75 M images in 15 x 5 groups) each cost less than 50 times computing that metric once from its samples;
200 resamples of COCO AP (5,000 images, 100 detections each) cost at most 2 times one full pycocotools
evaluation of the same detections (the matching is reused, only the accumulation is redone).

    python bench/ci_cost.py            # full size (the COCO part takes a few minutes on 2 cores)
    python bench/ci_cost.py --quick    # a tenth of the COCO images, to try it
"""
import argparse
import contextlib
import copy
import io
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from transfer import intervals  # noqa: E402
from transfer.detection import coco_matches  # noqa: E402
from transfer.robustness import ALEXNET_ERRORS  # noqa: E402


def timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def ids(n):
    return dict(names=np.array([f'{i:08d}' for i in range(n)]), image=np.arange(n, dtype=np.int32))


def classification(rng, n=50_000):
    label = rng.integers(0, 1000, n).astype(np.int32)
    top5 = rng.integers(0, 1000, (n, 5)).astype(np.int32)
    top5[:, 0] = np.where(rng.random(n) < 0.83, label, top5[:, 0])
    return dict(kind=np.array('topk'), label=label, top5=top5, **ids(n))


def imagenet_c(rng, per_group=50_000):
    groups = [f'{c}/{s}' for c in ALEXNET_ERRORS for s in range(1, 6)]
    n = per_group * len(groups)
    label = rng.integers(0, 1000, n).astype(np.int32)
    top5 = rng.integers(0, 1000, (n, 5)).astype(np.int16).astype(np.int32)
    top5[:, 0] = np.where(rng.random(n) < 0.6, label, top5[:, 0])
    return dict(kind=np.array('imagenet_c'), names=np.array([f'{i:08d}' for i in range(per_group)]),
                image=np.tile(np.arange(per_group, dtype=np.int32), len(groups)), label=label, top5=top5,
                group=np.repeat(np.arange(len(groups), dtype=np.int16), per_group), group_names=np.array(groups))


def segmentation(rng, n=2000, k=150):
    label = rng.integers(0, 20_000, (n, k)) * (rng.random((n, k)) < 0.1)
    pred = (label * rng.uniform(0.5, 1.2, (n, k))).astype(np.int64)
    inter = np.minimum(label, pred) * rng.uniform(0.6, 1.0, (n, k))
    inter = inter.astype(np.int64)
    areas = np.stack([inter, label + pred - inter, pred, label], axis=1)
    return dict(kind=np.array('segmentation'), areas=areas, **ids(n))


def coco(rng, n=5000, cats=80, per_image=100):
    images = [dict(id=i + 1, width=640, height=480, file_name=f'{i}.jpg') for i in range(n)]
    anns, dets = [], []
    for img in range(1, n + 1):
        boxes = rng.uniform([0, 0, 10, 10], [560, 400, 80, 80], (7, 4))
        cat = rng.integers(1, cats + 1, 7)
        for b, c in zip(boxes, cat):
            anns.append(dict(id=len(anns) + 1, image_id=img, category_id=int(c), bbox=b.tolist(),
                             area=float(b[2] * b[3]), iscrowd=0))
        jitter = boxes[rng.integers(0, 7, per_image)] + rng.normal(0, 8, (per_image, 4))
        jitter[:, 2:] = np.abs(jitter[:, 2:]) + 1
        for b, c, s in zip(jitter, rng.integers(1, cats + 1, per_image), rng.random(per_image)):
            dets.append(dict(image_id=img, category_id=int(c), bbox=b.tolist(), score=float(s)))
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = dict(images=images, annotations=anns, categories=[dict(id=c, name=str(c)) for c in
                                                                        range(1, cats + 1)])
        gt.createIndex()
        res = gt.loadRes(copy.deepcopy(dets))
    return gt, res


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--quick', action='store_true')
    args = p.parse_args()
    rng = np.random.default_rng(0)
    rows = []
    tmp = tempfile.mkdtemp(prefix='ci_cost_')
    for name, samples, metric in (('top-1, 50,000 images', classification(rng), 'top1'),
                                  ('mIoU, 2,000 images x 150 classes', segmentation(rng), 'mIoU'),
                                  ('mCE, 3.75 M images', imagenet_c(rng), 'mCE')):
        side = Path(tmp) / f'{metric}.samples.npz'
        np.savez_compressed(side, **samples)

        def from_sidecar():
            with np.load(side, allow_pickle=False) as z:
                intervals.metrics({k: z[k] for k in z.files})
        once, compute = timed(from_sidecar), timed(lambda: intervals.metrics(samples))
        boot = timed(lambda: intervals.interval(samples, resamples=1000))
        rows.append((f'{name}: 1,000 resamples / the metric from its sidecar (read + compute)', boot / once, 50))
        rows.append((f'{name}: 1,000 resamples / the metric computed alone (not the bound)', boot / compute, None))
    n = 500 if args.quick else 5000
    gt, res = coco(rng, n)
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(gt, res, 'bbox')
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    full = time.perf_counter() - t0
    samples = dict(kind=np.array('detection'), **ids(n), **coco_matches(ev, 'bbox'))
    assert abs(intervals.metrics(samples)['APbox'] - 100 * ev.stats[0]) < 1e-9
    boot = timed(lambda: intervals.interval(samples, resamples=200))
    rows.append((f'COCO AP, {n:,} images x 100 detections: 200 resamples / one pycocotools evaluation',
                 boot / full, 2))
    print('| measurement | ratio | bound | met |')
    print('|---|---|---|---|')
    for what, ratio, bound in rows:
        met = '' if bound is None else 'yes' if ratio < bound else 'NO'
        print(f'| {what} | {ratio:.2f} | {"" if bound is None else f"< {bound}"} | {met} |')
    shutil.rmtree(tmp)
    print(f'\n(pycocotools evaluation of the simulated COCO set: {full:.1f} s)')


if __name__ == '__main__':
    main()
