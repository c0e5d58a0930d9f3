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

from mae_core import engine, progress
from mae_core.checkpoint import check_writable, open_checkpoint
from mae_core.config import HelpFormatter, load_config
from mae_core.errors import UsageError, UserError, entry_point
from mae_core.record import DEFAULT_DIR, FULL, config_hash, make_record, read_records, write_record

from . import classification, detection, intervals, robustness, segmentation
from .registry import BENCHMARKS
from .task import RunContext

FAMILIES = {'classification': classification.run, 'robustness': robustness.run, 'detection': detection.run,
            'segmentation': segmentation.run}


DESCRIPTION = """Run MAE transfer benchmarks on a checkpoint and write a run record for each.

  run-transfer list                                        the registered benchmarks
  run-transfer BENCH --checkpoint PATH --data-root DIR     one benchmark on its dataset
  run-transfer BENCH --checkpoint PATH --smoke             on generated data, in seconds
  run-transfer all --checkpoint PATH [--smoke]             every benchmark; finished ones are skipped

(python run_transfer.py is the same command.) Bad input is one line on standard error and exit code 2.
The console shows one progress line per benchmark; mmengine's full log is in the work dir (-v: everything)."""


def parser():
    p = argparse.ArgumentParser('run-transfer', description=DESCRIPTION, formatter_class=HelpFormatter)
    p.add_argument('benchmark', help='a registered benchmark, "list" or "all"')
    p.add_argument('--checkpoint', help='ours, fb/mae .pth, timm .pth/.safetensors, or a Hugging Face ViTMAE folder')
    p.add_argument('--data-root', help='the dataset root in its published layout')
    p.add_argument('--smoke', action='store_true', help='the smoke config on generated data (made on first use)')
    p.add_argument('--records-dir', default=DEFAULT_DIR,
                   help='where run records go; "all" skips a benchmark with a finished record here')
    p.add_argument('--work-dir', help='the run\'s checkpoints and logs; default: work_dirs/<benchmark>/<checkpoint '
                                      'sha>-<config hash>; with "all", the folder that replaces work_dirs/')
    p.add_argument('--resume', action='store_true', help='continue from the last checkpoint in the work dir')
    p.add_argument('--eval-only', action='store_true', help='evaluate an already fine-tuned checkpoint')
    p.add_argument('--launcher', default='none', choices=engine.LAUNCHERS,
                   help='pytorch under torchrun, slurm under srun')
    p.add_argument('--cfg-options', nargs='+', default=[], metavar='KEY=VALUE',
                   help='override config values, e.g. batch_size=64 (a key the config lacks is an error)')
    p.add_argument('--config', help='another config for the benchmark (e.g. eval_configs/in1k_finetune_448.py)')
    p.add_argument('--arch', help='the encoder arch, for checkpoints of non-standard size')
    p.add_argument('--allow-pickle', action='store_true',
                   help='allow pickled objects in the checkpoint (fb/mae files pickle their args): trusted files only')
    p.add_argument('--force', action='store_true', help='with "all": re-run benchmarks that already have a record')
    p.add_argument('--seed', type=int, help='the run\'s seed (the config\'s seed otherwise); recorded')
    p.add_argument('--seeds', help='comma-separated seeds, e.g. 0,1,2: the benchmark runs once with each, in turn '
                                   '(the report shows their mean, std and n)')
    p.add_argument('-v', '--verbose', action='store_true', help='print mmengine\'s log and warnings as they come')
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
    work_dir = args.work_dir if args.work_dir and args.benchmark != 'all' else str(
        Path(args.work_dir or 'work_dirs') / bench_name /
        f'{encoder.sha256[:10]}-{config_hash(cfg.to_dict())[:10]}{"-smoke" if args.smoke else ""}')
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
        args_needed = argparse.Namespace(**{**vars(args), 'config': None, 'cfg_options': [], 'eval_only': False,
                                            'resume': False,
                                            'work_dir': args.work_dir if args.benchmark == 'all' else None})
        run_one(*resolve(needed, args_needed, ctx.encoder), args, label=f'{needed} (needed by {bench.name})')
        engine.barrier()  # rank 0 writes the record and the trained model
        path = newest()
    if path is None:
        raise UsageError(f'{ctx.encoder.path} has no classifier head and no finished {needed} record in '
                         f'{args.records_dir}: run {needed} on it first (run_transfer.py all does) or pass '
                         'an ImageNet-1K fine-tuned checkpoint')
    return open_checkpoint(path)


def run_one(bench, cfg, ctx, args, label=None):
    """Run a resolved benchmark under its progress line; rank 0 writes the record and returns it with its path
    (None on other ranks)."""
    with progress.task(label or bench.name) as line:
        record, path = _run_and_record(bench, cfg, ctx, args)
        if record is not None:
            line.finish(headline(record))
    return None if record is None else (record, path)


def headline(record) -> str:
    subset = record['data']['subset']
    return (f'{record["headline"]} {record["metrics"][record["headline"]]:.2f}' +
            ('' if subset == FULL else f' ({subset})'))


def _run_and_record(bench, cfg, ctx, args):
    start = time.time()
    if bench.requires:
        ctx.classifier = trained_model(bench, ctx, args)
    outcome = FAMILIES[bench.family](bench, cfg, ctx)
    if not engine.is_main_process():
        return None, None
    enc = ctx.encoder
    model = dict(arch=enc.arch, checkpoint=enc.path, sha256=enc.sha256, format=enc.info['format'],
                 pretrain=enc.meta.get('pretrain', enc.meta), **outcome.model)
    data = dict(outcome.data, subset=bench.subset(outcome.data['num_images'], ctx.smoke, outcome.incomplete))
    record = make_record(
        benchmark=bench.name, family=bench.family, metrics=outcome.metrics, headline=bench.headline, model=model,
        config=cfg.to_dict(), settings=outcome.settings, data=data, start=start, end=time.time(),
        world_size=engine.world_size(), on_gpu=torch.cuda.is_available())
    settings_seed = cfg.get('seed')
    if settings_seed is not None:
        record['settings'].setdefault('seed', settings_seed)
    if outcome.samples is not None:  # how sure each number is: 95 % bootstrap over the evaluated images
        record['ci95'] = intervals.interval(outcome.samples)
        record['ci'] = dict(method=intervals.METHOD, level=intervals.LEVEL, resamples=intervals.RESAMPLES,
                            seed=intervals.SEED)
    try:
        return record, write_record(args.records_dir, record, outcome.samples)
    except OSError as e:  # the numbers must survive a records dir that went away or filled up during the run
        print(json.dumps(record, indent=2, default=str))
        try:
            kept = f'saved as {write_record(Path(ctx.work_dir) / "records", record, outcome.samples)}'
        except OSError:
            kept = 'could not be saved in the work dir either'
        raise UsageError(f'--records-dir {args.records_dir}: could not write the record ({e.strerror or e}); it is '
                         f'printed above and {kept}') from None


def finished_records(records_dir) -> dict:
    """{(benchmark, checkpoint sha, config hash): record} of the finished records, read once for ``all``."""
    return {(r['benchmark'], r['model']['sha256'], r['config_hash']): r for r in read_records(records_dir)
            if r['status'] == 'finished'}


def run_all(args):
    """Every registered benchmark in turn (prerequisites come first in the registry's order); goes on past
    failures; a summary table, then each failure's message in full; non-zero if any failed. The checkpoint is
    read once for all of them, and the records dir once for the skip check."""
    encoder = open_user_checkpoint(args)
    done = {} if args.force else finished_records(args.records_dir)
    rows, errors, main_rank = [], [], engine.is_main_process()
    for i, name in enumerate(BENCHMARKS, 1):
        t0, label = time.time(), f'[{i}/{len(BENCHMARKS)}] {name}'
        try:
            bench, cfg, ctx = resolve(name, args, encoder)
            record = done.get((name, encoder.sha256, config_hash(cfg.to_dict())))
            if record:
                rows.append((name, 'skipped (done)', headline(record), 0.0))
                if main_rank:
                    progress.Line(label).finish(f'skipped, finished before: {headline(record)}')
                continue
            result = run_one(bench, cfg, ctx, args, label)
            rows.append((name, 'finished', headline(result[0]) if result else '', time.time() - t0))
        except Exception as e:  # one benchmark's failure must not stop the others
            if not isinstance(e, UserError):
                traceback.print_exc()
            message = str(e) if isinstance(e, UserError) else f'{type(e).__name__}: {e}'
            errors.append(message if message.startswith(name) else f'{name}: {message}')
            rows.append((name, 'FAILED', '', time.time() - t0))
            if main_rank:
                progress.Line(label).finish('FAILED (the message follows the summary)')
    if main_rank:
        print('\n' + summary_table(rows))
        for message in errors:
            print(f'error: {message}', file=sys.stderr)
    return 1 if errors else 0


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
    progress.set_verbose(args.verbose)
    if args.benchmark == 'list':
        list_benchmarks()
        return 0
    if args.launcher != 'none':
        engine.init_distributed(args.launcher)
    seeds = parse_seeds(args)
    if args.benchmark == 'all':
        if len(seeds) > 1:
            raise UsageError('--seeds runs one benchmark with several seeds; with "all" pass --seed')
        return run_all(with_seed(args, seeds[0]))
    encoder = None
    for seed in seeds:
        one = with_seed(args, seed)
        bench, cfg, ctx = resolve(args.benchmark, one, encoder)
        encoder = ctx.encoder  # read once for every seed
        result = run_one(bench, cfg, ctx, one, label=None if seed is None else f'{bench.name} (seed {seed})')
        if result is not None:
            print(result[1])
    return 0


def parse_seeds(args) -> list:
    """[None] (the config's seed), [--seed], or the --seeds list."""
    if args.seeds is not None and args.seed is not None:
        raise UsageError('--seed and --seeds exclude each other')
    if args.seeds is None:
        return [args.seed]
    try:
        seeds = [int(s) for s in args.seeds.split(',') if s.strip()]
    except ValueError:
        raise UsageError(f'--seeds {args.seeds}: expected comma-separated integers, e.g. 0,1,2') from None
    if not seeds or any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise UsageError(f'--seeds {args.seeds}: expected distinct non-negative integers, e.g. 0,1,2')
    return seeds


def with_seed(args, seed):
    """``args`` with ``seed=N`` among its --cfg-options (the user's own seed= option is replaced)."""
    if seed is None:
        return args
    if seed < 0:
        raise UsageError(f'--seed {seed}: expected a non-negative integer')
    options = [o for o in args.cfg_options if o.partition('=')[0] != 'seed'] + [f'seed={seed}']
    return argparse.Namespace(**{**vars(args), 'cfg_options': options})


if __name__ == '__main__':
    sys.exit(main())
