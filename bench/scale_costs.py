"""Costs that must stay linear at full scale, as ratios measured in one run (issue 15, part 4):

- ``run-transfer all``'s skip check and ``reproduce-tables`` over 1,000 and 10,000 run records: the time at
  10,000 is at most 12 times the time at 1,000 (linear is 10; before this benchmark ``all`` re-read every record
  once per benchmark);
- listing an ImageNet-size training tree (1,281,167 empty files in 1,000 class folders) with the loaders'
  lister, against a tenth of it: at most 12 times;
- the per-image work of evaluation at full size, with the metrics the benchmarks use (mmengine's
  ``process`` for every image, then ``compute_metrics``): COCO (5,000 images of 640 x 480, 7 objects and 100
  detections with full-image masks each, as torchvision's Mask R-CNN returns them: RLE encoding, pycocotools'
  box and mask evaluation, the per-image matches kept for the intervals) and ADE20K (2,000 label maps of 683 x
  512, 150 classes), against a tenth: at most 12 times.

    python bench/scale_costs.py                 # full size (about 1.3 M empty files in a temp folder)
    python bench/scale_costs.py --files 128117 --coco-images 500 --ade-images 200   # a quick check
"""
import argparse
import contextlib
import io
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from pycocotools.coco import COCO

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from mae_core.data import list_images  # noqa: E402
from mae_core.record import make_record  # noqa: E402
from transfer import cli, tables  # noqa: E402
from transfer.datasets.coco import Categories  # noqa: E402
from transfer.detection import COCOMetric  # noqa: E402
from transfer.registry import BENCHMARKS  # noqa: E402
from transfer.segmentation import IoUMetric  # noqa: E402


def write_records(root: Path, n: int):
    """``n`` valid records spread over every benchmark and 100 checkpoints (written directly as JSON)."""
    template = make_record(benchmark='in1k_finetune', family='classification', metrics=dict(top1=80.0),
                           headline='top1', model=dict(arch='vit_base_patch16', checkpoint='x.pth', sha256='0' * 64,
                                                       format='ours', pretrain=dict(epochs=800, decoder_depth=8)),
                           config=dict(seed=0), settings={}, data=dict(dataset='d', split='val', subset='full',
                                                                     num_images=50000), start=0.0, end=1.0)
    names = list(BENCHMARKS)
    for i in range(n):
        bench = names[i % len(names)]
        rec = dict(template, benchmark=bench, run_id=f'run{i:06d}', family=BENCHMARKS[bench].family,
                   headline=BENCHMARKS[bench].headline, metrics={BENCHMARKS[bench].headline: 50.0 + i % 7},
                   model=dict(template['model'], sha256=f'{i % 100:064d}'), config=dict(seed=i % 3),
                   config_hash=f'{i:016d}')
        path = root / bench / f'run{i:06d}.json'
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(rec))


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def records_costs(tmp: Path) -> list:
    rows = []
    cost = {}
    for n in (1000, 10000):
        root = tmp / f'records_{n}'
        write_records(root, n)
        cost[n] = (timed(lambda: cli.finished_records(root)),
                   timed(lambda: tables.reproduce(root, tmp / f'report_{n}', ['md'])))
    for i, what in enumerate(('run-transfer all: skip check (records read once)', 'reproduce-tables')):
        rows.append((f'{what}, 10,000 / 1,000 records', cost[10000][i] / cost[1000][i], 12,
                     f'{cost[1000][i]:.2f} s / {cost[10000][i]:.2f} s'))
    return rows


def listing_costs(tmp: Path, files: int) -> list:
    cost = {}
    for n in (files // 10, files):
        root = tmp / f'tree_{n}'
        for i in range(n):
            folder = root / f'n{i % 1000:08d}'
            if i < 1000:
                folder.mkdir(parents=True)
            (folder / f'img_{i:08d}.JPEG').touch()
        cost[n] = timed(lambda: list_images(root))
        shutil.rmtree(root)
    small, big = files // 10, files
    return [(f'listing a training tree, {big:,} / {small:,} files', cost[big] / cost[small], 12,
             f'{cost[small]:.2f} s / {cost[big]:.2f} s')]


POOL = 16  # distinct simulated images, reused under new image ids (their making is not what is measured)


def coco_pool(rng, cats=80, objects=7, per_image=100, height=480, width=640):
    """Per image: its objects (box, category) and a torchvision-style output around them (100 detections,
    boxes jittered from the objects, full-image soft masks filling each box)."""
    pool = []
    for _ in range(POOL):
        xy = rng.uniform(0, [width - 90, height - 90], (objects, 2))
        boxes = np.concatenate([xy, xy + rng.uniform(10, 90, (objects, 2))], 1)
        labels = rng.integers(1, cats + 1, objects)
        pick = rng.integers(0, objects, per_image)
        det = boxes[pick] + rng.normal(0, 4, (per_image, 4))
        det[:, 2:] = np.maximum(det[:, 2:], det[:, :2] + 2)
        det = np.clip(det, 0, [width - 1, height - 1, width - 1, height - 1])
        masks = torch.zeros(per_image, 1, height, width)
        for m, (x1, y1, x2, y2) in zip(masks, det.astype(int)):
            m[0, y1:y2, x1:x2] = 0.9
        pool.append(((boxes, labels), dict(boxes=torch.tensor(det, dtype=torch.float32), masks=masks,
                                           labels=torch.tensor(np.where(rng.random(per_image) < 0.7, labels[pick],
                                                                        rng.integers(1, cats + 1, per_image))),
                                           scores=torch.tensor(rng.random(per_image), dtype=torch.float32))))
    return pool


def coco_cost(pool, n, cats=80):
    """Seconds of COCOMetric over ``n`` images (process each, then compute_metrics), and the detections' json."""
    images, anns = [], []
    for i in range(n):
        (boxes, labels), _ = pool[i % POOL]
        images.append(dict(id=i + 1, width=640, height=480, file_name=f'{i}.jpg'))
        for (x1, y1, x2, y2), c in zip(boxes, labels):
            poly = [x1, y1, x2, y1, x2, y2, x1, y2]
            anns.append(dict(id=len(anns) + 1, image_id=i + 1, category_id=int(c), bbox=[x1, y1, x2 - x1, y2 - y1],
                             area=float((x2 - x1) * (y2 - y1)), iscrowd=0, segmentation=[poly]))
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = dict(images=images, annotations=anns,
                          categories=[dict(id=c, name=str(c)) for c in range(1, cats + 1)])
        gt.createIndex()
    metric = COCOMetric(gt, Categories(gt))
    t0 = time.perf_counter()
    for i in range(n):
        metric.process(None, [(pool[i % POOL][1], i + 1)])
    metric.compute_metrics(metric.results)
    return time.perf_counter() - t0, metric.samples['coco_json'].nbytes


def ade_cost(rng, n, classes=150, height=512, width=683):
    labels = [torch.from_numpy(rng.integers(0, classes, (height // 8, width // 8), dtype=np.uint8)).repeat_interleave(
        8, 0).repeat_interleave(8, 1)[:height, :width] for _ in range(POOL)]
    preds = [torch.where(torch.rand(lab.shape) < 0.3, torch.randint(0, classes, lab.shape), lab.long())
             for lab in labels]
    metric = IoUMetric(classes)
    t0 = time.perf_counter()
    for i in range(n):
        metric.process(None, [(preds[i % POOL], labels[i % POOL])])
    metric.compute_metrics(metric.results)
    return time.perf_counter() - t0


def evaluation_costs(coco_images: int, ade_images: int) -> list:
    rng = np.random.default_rng(0)
    pool = coco_pool(rng)
    rows = []
    small, big = coco_images // 10, coco_images
    (t_small, _), (t_big, json_bytes) = coco_cost(pool, small), coco_cost(pool, big)
    rows.append((f'COCO evaluation (boxes + masks), {big:,} / {small:,} images', t_big / t_small, 12,
                 f'{t_small:.1f} s / {t_big:.1f} s ({1000 * t_big / big:.0f} ms per image; detections kept '
                 f'for the intervals: {json_bytes / 2 ** 20:.0f} MB)'))
    small, big = ade_images // 10, ade_images
    t_small, t_big = ade_cost(rng, small), ade_cost(rng, big)
    rows.append((f'ADE20K evaluation (areas + mIoU), {big:,} / {small:,} images', t_big / t_small, 12,
                 f'{t_small:.2f} s / {t_big:.2f} s ({1000 * t_big / big:.1f} ms per image)'))
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--files', type=int, default=1_281_167, help='files in the simulated ImageNet training tree')
    p.add_argument('--coco-images', type=int, default=5000, help="images in the simulated COCO val set")
    p.add_argument('--ade-images', type=int, default=2000, help="images in the simulated ADE20K val set")
    args = p.parse_args()
    torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp(prefix='scale_costs_'))
    try:
        rows = records_costs(tmp) + listing_costs(tmp, args.files) + evaluation_costs(args.coco_images,
                                                                                       args.ade_images)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print('| measurement | ratio | bound | met | times |')
    print('|---|---|---|---|---|')
    for what, ratio, bound, times in rows:
        print(f'| {what} | {ratio:.2f} | <= {bound} | {"yes" if ratio <= bound else "NO"} | {times} |')


if __name__ == '__main__':
    os.environ.setdefault('MAE_SUITE_CACHE', tempfile.mkdtemp(prefix='mae_suite_cache_'))
    main()
