"""``run_transfer.py``: run one registered benchmark (or ``all``) on a checkpoint and write its run record.

    run_transfer.py list
    run_transfer.py BENCH --checkpoint PATH [--data-root DIR] [--smoke] [--records-dir DIR] [--work-dir DIR]
                          [--resume] [--eval-only] [--launcher none|pytorch|slurm] [--cfg-options k=v ...]
                          [--config FILE] [--arch ARCH] [--allow-pickle]
    run_transfer.py all --checkpoint PATH [--smoke] [--force] ...

Bad input (unknown benchmark, missing checkpoint or data root, unreadable config, unknown --cfg-options key)
is one line on standard error and exit code 2, with nothing written. A record is written only when a run
finishes, by rank 0, and its path is the last line of standard output."""
import argparse
import re
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from mae_core import engine as core
from mae_core.checkpoint import CheckpointError, file_sha256, load_encoder
from mae_core.cli import load_config
from mae_core.data import UnreadableImage

from . import record as rec_lib
from .errors import DataError, UsageError
from .registry import BENCHMARKS


@dataclass
class RunContext:
    checkpoint: str
    arch: str
    allow_pickle: bool
    smoke: bool
    work_dir: str
    resume: bool
    eval_only: bool
    launcher: str
    records_dir: str
    info: dict
    sha256: str


def parser():
    p = argparse.ArgumentParser('run_transfer.py', description='Run MAE transfer benchmarks and write run records.')
    p.add_argument('benchmark', help='a registered benchmark, "list" or "all"')
    p.add_argument('--checkpoint', help='ours, fb/mae .pth, timm .pth/.safetensors, or a Hugging Face ViTMAE folder')
    p.add_argument('--data-root', help='the dataset root in its published layout')
    p.add_argument('--smoke', action='store_true', help='the smoke config on generated data (made on first use)')
    p.add_argument('--records-dir', default='results/runs')
    p.add_argument('--work-dir', help='default: work_dirs/<benchmark>/<checkpoint sha>-<config hash>')
    p.add_argument('--resume', action='store_true', help='continue from the last checkpoint in the work dir')
    p.add_argument('--eval-only', action='store_true', help='evaluate an already fine-tuned checkpoint')
    p.add_argument('--launcher', default='none', choices=core.LAUNCHERS)
    p.add_argument('--cfg-options', nargs='+', default=[], metavar='KEY=VALUE')
    p.add_argument('--config', help='another config for the benchmark (e.g. eval_configs/in1k_finetune_448.py)')
    p.add_argument('--arch', help='the encoder arch, for checkpoints of non-standard size')
    p.add_argument('--allow-pickle', action='store_true',
                   help='allow pickled objects in the checkpoint (fb/mae files pickle their args): trusted files only')
    p.add_argument('--force', action='store_true', help='with "all": re-run benchmarks that already have a record')
    return p


def resolve(bench_name, args):
    """Check every input and resolve the config -> (bench, cfg, ctx); raises UsageError, writes nothing."""
    if bench_name not in BENCHMARKS:
        raise UsageError(f'unknown benchmark {bench_name!r}; registered: {", ".join(BENCHMARKS)} (or list, all)')
    bench = BENCHMARKS[bench_name]
    if not args.checkpoint:
        raise UsageError('--checkpoint is required')
    if not Path(args.checkpoint).exists():
        raise UsageError(f'--checkpoint {args.checkpoint}: no such file or folder')
    if args.data_root and not Path(args.data_root).is_dir():
        raise UsageError(f'--data-root {args.data_root}: no such folder (expected the {bench.dataset} root)')
    config = Path(args.config) if args.config else (bench.smoke_config if args.smoke else bench.config)
    try:
        cfg = load_config(config, args.cfg_options)
    except SystemExit:
        raise UsageError('') from None  # load_config already printed the reason
    try:
        sd, info = load_encoder(args.checkpoint, args.arch, keep_head=True, allow_pickle=args.allow_pickle)
    except CheckpointError as e:
        raise UsageError(str(e)) from None
    for key, value in cfg.get('arch_overrides', {}).get(info['arch'], {}).items():
        if key not in [o.partition('=')[0] for o in args.cfg_options]:  # the user's own options win
            cfg.merge_from_dict({key: value})
    if 'dataset' in cfg:
        if args.data_root:
            cfg.dataset.root = str(Path(args.data_root).resolve())
        elif not args.smoke and not cfg.dataset.get('root'):
            raise UsageError(f'{bench_name}: no data root: pass --data-root (the {bench.dataset} root in its '
                             f'published layout) or --smoke for generated data')
    sha = file_sha256(args.checkpoint)
    resolved = cfg.to_dict()
    work_dir = args.work_dir or str(Path('work_dirs') / bench_name /
                                    f'{sha[:10]}-{rec_lib.config_hash(resolved)[:10]}{"-smoke" if args.smoke else ""}')
    ctx = RunContext(str(Path(args.checkpoint).resolve()), info['arch'], args.allow_pickle, args.smoke,
                     str(Path(work_dir).resolve()),
                     args.resume, args.eval_only, args.launcher, args.records_dir, info, sha)
    return bench, cfg, ctx


def run_one(bench, cfg, ctx):
    """Run a resolved benchmark; rank 0 writes the record and returns its path (None on other ranks)."""
    start = time.time()
    if ctx.smoke and 'dataset' in cfg:
        cfg.dataset.root = str(bench.smoke_data(cfg.dataset))
    outcome = bench.run(bench, cfg, ctx)
    if not core.is_main_process():
        return None
    import torch
    model = dict(arch=ctx.arch, checkpoint=ctx.checkpoint, sha256=ctx.sha256, format=ctx.info['format'],
                 pretrain=ctx.info['meta'].get('pretrain', ctx.info['meta']), **outcome.model)
    record = rec_lib.make_record(
        benchmark=bench.name, family=bench.family, metrics=outcome.metrics, headline=bench.headline, model=model,
        config=cfg.to_dict(), settings=outcome.settings, data=outcome.data, start=start, end=time.time(),
        world_size=core.world_size(), on_gpu=torch.cuda.is_available())
    return rec_lib.write_record(ctx.records_dir, record)


def one_line(e: Exception) -> str:
    """The message of an input error; one raised in a DataLoader worker arrives with the worker's traceback,
    whose last line is the original ``module.Class: message``."""
    last = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
    return re.sub(r'^[\w.]+: ', '', last) if len(str(e).strip().splitlines()) > 1 else last


def finished_record(records_dir, bench_name, sha, cfg_hash):
    for r in rec_lib.read_records(records_dir):
        if (r['benchmark'] == bench_name and r['status'] == 'finished' and r['model']['sha256'] == sha
                and r['config_hash'] == cfg_hash):
            return r
    return None


def run_all(args):
    """Every registered benchmark in turn; goes on past failures; a summary table; non-zero if any failed."""
    rows, failed = [], False
    for name in BENCHMARKS:
        t0 = time.time()
        try:
            bench, cfg, ctx = resolve(name, args)
            if args.smoke and 'dataset' in cfg:  # the record's config holds the generated root
                cfg.dataset.root = str(bench.smoke_data(cfg.dataset))
            done = None if args.force else finished_record(args.records_dir, name, ctx.sha256,
                                                           rec_lib.config_hash(cfg.to_dict()))
            if done:
                rows.append((name, 'skipped (done)', f'{done["headline"]} {done["metrics"][done["headline"]]:.2f}', 0.0))
                continue
            path = run_one(bench, cfg, ctx)
            r = rec_lib.read_record(path) if path else None
            rows.append((name, 'finished', f'{r["headline"]} {r["metrics"][r["headline"]]:.2f}' if r else '', time.time() - t0))
        except (UsageError, FileNotFoundError, DataError, CheckpointError, UnreadableImage) as e:
            failed = True
            print(f'error: {name}: {one_line(e)}', file=sys.stderr)
            rows.append((name, f'failed: {one_line(e)[:100]}', '', time.time() - t0))
        except Exception as e:  # one benchmark's failure must not stop the others
            failed = True
            traceback.print_exc()
            rows.append((name, f'failed: {type(e).__name__}: {str(e)[:80]}', '', time.time() - t0))
    if core.is_main_process():
        print('\n' + summary_table(rows))
    return 1 if failed else 0


def summary_table(rows):
    head = ('benchmark', 'status', 'headline', 'wall s')
    body = [(b, s, h, f'{t:.1f}') for b, s, h, t in rows]
    widths = [max(len(str(r[i])) for r in [head] + body) for i in range(4)]
    line = lambda r: '  '.join(str(c).ljust(w) for c, w in zip(r, widths))
    return '\n'.join([line(head), line(['-' * w for w in widths])] + [line(r) for r in body])


def list_benchmarks():
    rows = [('benchmark', 'family', 'dataset', 'metrics', 'paper')]
    rows += [(b.name, b.family, b.dataset, ','.join(b.metrics), b.paper_table) for b in BENCHMARKS.values()]
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for r in rows:
        print('  '.join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


def main(argv=None):
    args = parser().parse_args(argv)
    try:
        if args.benchmark == 'list':
            list_benchmarks()
            return 0
        if args.launcher != 'none':
            core.init_distributed(args.launcher)
        if args.benchmark == 'all':
            return run_all(args)
        bench, cfg, ctx = resolve(args.benchmark, args)
        path = run_one(bench, cfg, ctx)
    except (FileNotFoundError, DataError, CheckpointError, UnreadableImage) as e:  # data or a file is not right
        print(f'error: {one_line(e)}', file=sys.stderr)
        return 2
    except UsageError as e:
        if str(e):
            print(f'error: {e}', file=sys.stderr)
        return 2
    if path is not None:
        print(path)
    return 0


if __name__ == '__main__':
    sys.exit(main())
