"""Costs that must stay linear at full scale, as ratios measured in one run (issue 15, part 4):

- ``run-transfer all``'s skip check and ``reproduce-tables`` over 1,000 and 10,000 run records: the time at
  10,000 is at most 12 times the time at 1,000 (linear is 10; before this benchmark ``all`` re-read every record
  once per benchmark);
- listing an ImageNet-size training tree (1,281,167 empty files in 1,000 class folders) with the loaders'
  lister, against a tenth of it: at most 12 times.

    python bench/scale_costs.py                 # full size (about 1.3 M empty files in a temp folder)
    python bench/scale_costs.py --files 128117  # records only at full size, a tenth of the files
"""
import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from mae_core.data import list_images  # noqa: E402
from mae_core.record import make_record  # noqa: E402
from transfer import cli, tables  # noqa: E402
from transfer.registry import BENCHMARKS  # noqa: E402


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


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--files', type=int, default=1_281_167, help='files in the simulated ImageNet training tree')
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix='scale_costs_'))
    try:
        rows = records_costs(tmp) + listing_costs(tmp, args.files)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print('| measurement | ratio | bound | met | times |')
    print('|---|---|---|---|---|')
    for what, ratio, bound, times in rows:
        print(f'| {what} | {ratio:.2f} | <= {bound} | {"yes" if ratio <= bound else "NO"} | {times} |')


if __name__ == '__main__':
    os.environ.setdefault('MAE_SUITE_CACHE', tempfile.mkdtemp(prefix='mae_suite_cache_'))
    main()
