"""``run_transfer.py``: run one registered benchmark (or ``all``) on a checkpoint and write its run record.

    run_transfer.py list
    run_transfer.py BENCH --checkpoint PATH [--data-root DIR] [--smoke] [--records-dir DIR] [--work-dir DIR]
                          [--resume] [--eval-only] [--launcher none|pytorch|slurm] [--cfg-options k=v ...]
                          [--config FILE] [--arch ARCH] [--allow-pickle]
    run_transfer.py all --checkpoint PATH [--smoke] [--force] ...

Bad input (unknown benchmark, missing checkpoint or data root, unreadable config, unknown --cfg-options key)
is one line on standard error and exit code 2, with nothing written. A record is written only when a run
finishes, by rank 0, and its path is the last line of standard output.

This is where a run is put together: inputs are checked, the checkpoint is read once, the benchmarks a run
needs first are found or run, and the family's ``run`` gets everything in a :class:`transfer.task.RunContext`."""
import argparse
import json
import sys
import time
import traceback
from pathlib import Path

import torch

from mae_core import engine
from mae_core.checkpoint import check_writable, open_checkpoint
from mae_core.config import load_config
from mae_core.errors import UsageError, UserError, entry_point
from mae_core.record import config_hash, make_record, read_record, read_records, write_record

from . import classification, detection, robustness, segmentation
from .registry import BENCHMARKS
from .task import RunContext

FAMILIES = {'classification': classification.run, 'robustness': robustness.run, 'detection': detection.run,
            'segmentation': segmentation.run}


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
    p.add_argument('--launcher', default='none', choices=engine.LAUNCHERS)
    p.add_argument('--cfg-options', nargs='+', default=[], metavar='KEY=VALUE')
    p.add_argument('--config', help='another config for the benchmark (e.g. eval_configs/in1k_finetune_448.py)')
    p.add_argument('--arch', help='the encoder arch, for checkpoints of non-standard size')
    p.add_argument('--allow-pickle', action='store_true',
                   help='allow pickled objects in the checkpoint (fb/mae files pickle their args): trusted files only')
    p.add_argument('--force', action='store_true', help='with "all": re-run benchmarks that already have a record')
    return p


def open_user_checkpoint(args):
    if not args.checkpoint:
        raise UsageError('--checkpoint is required')
    if not Path(args.checkpoint).exists():
        raise UsageError(f'--checkpoint {args.checkpoint}: no such file or folder')
    return open_checkpoint(args.checkpoint, args.arch, args.allow_pickle)


def resolve(bench_name, args, encoder=None):
    """Check every input and resolve the config -> (bench, cfg, ctx). Raises a UserError and writes nothing
    (generated smoke data aside, which goes to the cache). ``encoder``: the checkpoint already read."""
    if bench_name not in BENCHMARKS:
        raise UsageError(f'unknown benchmark {bench_name!r}; registered: {", ".join(BENCHMARKS)} (or list, all)')
    bench = BENCHMARKS[bench_name]
    if args.data_root and args.smoke:
        raise UsageError(f'--smoke runs on generated data, so --data-root {args.data_root} would be ignored: '
                         'pass one of them')
    if args.data_root and not Path(args.data_root).is_dir():
        raise UsageError(f'--data-root {args.data_root}: no such folder (expected the {bench.dataset} root)')
    config = Path(args.config) if args.config else (bench.smoke_config if args.smoke else bench.config)
    cfg = load_config(config, args.cfg_options)
    encoder = encoder or open_user_checkpoint(args)
    for key, value in cfg.get('arch_overrides', {}).get(encoder.arch, {}).items():
        if key not in [o.partition('=')[0] for o in args.cfg_options]:  # the user's own options win
            cfg.merge_from_dict({key: value})
    if 'dataset' in cfg:
        if args.data_root:
            cfg.dataset.root = str(Path(args.data_root).resolve())
        elif args.smoke:
            cfg.dataset.root = str(bench.smoke_data(cfg.dataset))
        elif not cfg.dataset.get('root'):
            raise UsageError(f'{bench_name}: no data root: pass --data-root (the {bench.dataset} root in its '
                             f'published layout) or --smoke for generated data')
    work_dir = args.work_dir or str(Path('work_dirs') / bench_name / f'{encoder.sha256[:10]}-'
                                    f'{config_hash(cfg.to_dict())[:10]}{"-smoke" if args.smoke else ""}')
    if engine.is_main_process():  # last: bad input above leaves nothing behind; one rank checks (no race)
        check_writable(args.records_dir, '--records-dir')
        check_writable(work_dir, '--work-dir')
    ctx = RunContext(encoder, args.smoke, str(Path(work_dir).resolve()), args.resume, args.eval_only, args.launcher)
    return bench, cfg, ctx


def trained_model(bench, ctx, args):
    """A benchmark that ``requires`` another (robustness: an IN-1K fine-tuned classifier) evaluates the model
    that the newest finished record of that benchmark saved for the same checkpoint; a checkpoint that already
    has a classifier head is that model itself. Under --smoke a missing prerequisite is run first."""
    if not bench.requires or ctx.encoder.info['has_head']:
        return ctx.encoder
    needed = bench.requires[0]

    def newest():
        runs = [r for r in read_records(args.records_dir) if r['benchmark'] == needed and r['status'] == 'finished'
                and r['model']['sha256'] == ctx.encoder.sha256 and (r['data']['subset'] == 'smoke') == ctx.smoke
                and Path(r['model'].get('finetuned_checkpoint', '')).is_file()]
        return runs[-1]['model']['finetuned_checkpoint'] if runs else None
    path = newest()
    if path is None and ctx.smoke:
        args_needed = argparse.Namespace(**{**vars(args), 'config': None, 'cfg_options': [], 'work_dir': None,
                                            'eval_only': False, 'resume': False})
        run_one(*resolve(needed, args_needed, ctx.encoder), args)
        engine.barrier()  # rank 0 writes the record and the trained model
        path = newest()
    if path is None:
        raise UsageError(f'{ctx.encoder.path} has no classifier head and no finished {needed} record in '
                         f'{args.records_dir}: run {needed} on it first (run_transfer.py all does) or pass '
                         'an ImageNet-1K fine-tuned checkpoint')
    return open_checkpoint(path)


def run_one(bench, cfg, ctx, args):
    """Run a resolved benchmark; rank 0 writes the record and returns its path (None on other ranks)."""
    start = time.time()
    if bench.requires:
        ctx.classifier = trained_model(bench, ctx, args)
    outcome = FAMILIES[bench.family](bench, cfg, ctx)
    if not engine.is_main_process():
        return None
    enc = ctx.encoder
    model = dict(arch=enc.arch, checkpoint=enc.path, sha256=enc.sha256, format=enc.info['format'],
                 pretrain=enc.meta.get('pretrain', enc.meta), **outcome.model)
    data = dict(outcome.data, subset=bench.subset(outcome.data['num_images'], ctx.smoke, outcome.incomplete))
    record = make_record(
        benchmark=bench.name, family=bench.family, metrics=outcome.metrics, headline=bench.headline, model=model,
        config=cfg.to_dict(), settings=outcome.settings, data=data, start=start, end=time.time(),
        world_size=engine.world_size(), on_gpu=torch.cuda.is_available())
    try:
        return write_record(args.records_dir, record)
    except OSError as e:  # the numbers must survive a records dir that went away or filled up during the run
        print(json.dumps(record, indent=2, default=str))
        try:
            kept = f'saved as {write_record(Path(ctx.work_dir) / "records", record)}'
        except OSError:
            kept = 'could not be saved in the work dir either'
        raise UsageError(f'--records-dir {args.records_dir}: could not write the record ({e.strerror or e}); it is '
                         f'printed above and {kept}') from None


def finished_record(records_dir, bench_name, sha, cfg_hash):
    for r in read_records(records_dir):
        if (r['benchmark'] == bench_name and r['status'] == 'finished' and r['model']['sha256'] == sha
                and r['config_hash'] == cfg_hash):
            return r
    return None


def run_all(args):
    """Every registered benchmark in turn (prerequisites come first in the registry's order); goes on past
    failures; a summary table; non-zero if any failed. The checkpoint is read once for all of them."""
    encoder = open_user_checkpoint(args)
    rows, failed = [], False
    for name in BENCHMARKS:
        t0 = time.time()
        try:
            bench, cfg, ctx = resolve(name, args, encoder)
            done = None if args.force else finished_record(args.records_dir, name, encoder.sha256,
                                                           config_hash(cfg.to_dict()))
            if done:
                rows.append((name, 'skipped (done)', f'{done["headline"]} {done["metrics"][done["headline"]]:.2f}', 0.0))
                continue
            path = run_one(bench, cfg, ctx, args)
            r = read_record(path) if path else None
            rows.append((name, 'finished', f'{r["headline"]} {r["metrics"][r["headline"]]:.2f}' if r else '',
                         time.time() - t0))
        except UserError as e:
            failed = True
            print(f'error: {name}: {e}', file=sys.stderr)
            rows.append((name, f'failed: {str(e)[:100]}', '', time.time() - t0))
        except Exception as e:  # one benchmark's failure must not stop the others
            failed = True
            traceback.print_exc()
            rows.append((name, f'failed: {type(e).__name__}: {str(e)[:80]}', '', time.time() - t0))
    if engine.is_main_process():
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


@entry_point
def main(argv=None):
    args = parser().parse_args(argv)
    if args.benchmark == 'list':
        list_benchmarks()
        return 0
    if args.launcher != 'none':
        engine.init_distributed(args.launcher)
    if args.benchmark == 'all':
        return run_all(args)
    bench, cfg, ctx = resolve(args.benchmark, args)
    path = run_one(bench, cfg, ctx, args)
    if path is not None:
        print(path)
    return 0


if __name__ == '__main__':
    sys.exit(main())
