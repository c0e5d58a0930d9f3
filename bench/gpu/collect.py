"""Runs every benchmark of ``bench/`` with a time limit each and writes ``OUT/gpu_results.json`` and
``OUT/gpu_results.md``: the device, the date, each benchmark's command, exit code, seconds and printed figures,
and the GPU tests' summary line. On a machine without a GPU each benchmark runs at a toy size (a check that the
kit works end to end, not a measurement).

    python bench/gpu/collect.py --out DIR [--tests-log DIR/gpu_tests.log]
"""
import argparse
import datetime as dt
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
ON_GPU = torch.cuda.is_available()

# (name, arguments on a GPU, arguments elsewhere, time limit in seconds)
BENCHMARKS = [  # the GPU limits sum to 290 s, under run.sh's 300
    ('pretrain_speed', ['--arch', 'vit_large_patch16', '--batch', '128', '--steps', '10', '--compile'],
     ['--arch', 'vit_toy_patch16', '--batch', '2', '--steps', '1', '--img-size', '64'], 100),
    ('eval_speed', ['--arch', 'vit_base_patch16', '--images', '4096', '--batch-size', '512', '--workers', '12'],
     ['--arch', 'vit_toy_patch16', '--images', '16', '--batch-size', '8', '--workers', '0'], 70),
    ('finetune_overhead', ['--arch', 'vit_base_patch16', '--batch', '128', '--iters', '60'],
     ['--arch', 'vit_toy_patch16', '--batch', '4', '--img-size', '64', '--iters', '8'], 60),
    ('infer_speed', ['--arch', 'vit_base_patch16', '--images', '30'],
     ['--arch', 'vit_toy_patch16', '--images', '1', '--image-size', '128'], 60),
    ('ci_cost', None, ['--quick'], 60),  # a CPU cost: measured on CPU machines only
]


def device_name() -> str:
    return torch.cuda.get_device_name(0) if ON_GPU else 'cpu (no GPU: toy sizes, not a measurement)'


def run(name, args, limit):
    cmd = [sys.executable, str(ROOT / 'bench' / f'{name}.py')] + args
    t0 = time.time()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=limit)
        rc, out = proc.returncode, proc.stdout + proc.stderr[-2000:]
    except subprocess.TimeoutExpired as e:
        rc, out = 124, (e.stdout or b'').decode(errors='replace') if isinstance(e.stdout, bytes) else (e.stdout or '')
    return dict(name=name, command=' '.join(cmd[1:]), exit=rc, seconds=round(time.time() - t0, 1),
                output=out.strip())


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--out', required=True)
    p.add_argument('--tests-log', help='the log of pytest -m gpu, whose last lines go into the results')
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = dict(device=device_name(), date=dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds'),
                   torch=torch.__version__, cuda=torch.version.cuda if ON_GPU else None, benchmarks=[])
    if args.tests_log and Path(args.tests_log).is_file():
        results['gpu_tests'] = Path(args.tests_log).read_text(errors='replace').strip().splitlines()[-3:]
    for name, gpu_args, cpu_args, limit in BENCHMARKS:
        chosen = gpu_args if ON_GPU else cpu_args
        if chosen is None:
            continue
        results['benchmarks'].append(run(name, chosen, limit))
        print(f'{name}: exit {results["benchmarks"][-1]["exit"]} in {results["benchmarks"][-1]["seconds"]} s',
              flush=True)
    (out / 'gpu_results.json').write_text(json.dumps(results, indent=2))
    lines = [f'# GPU kit results: {results["device"]}', '', f'{results["date"]}, torch {results["torch"]}'
             + (f', CUDA {results["cuda"]}' if results['cuda'] else ''), '']
    if 'gpu_tests' in results:
        lines += ['GPU tests: ' + ' / '.join(results['gpu_tests']), '']
    for b in results['benchmarks']:
        lines += [f'## {b["name"]} (exit {b["exit"]}, {b["seconds"]} s)', '', f'`{b["command"]}`', '', '```',
                  b['output'], '```', '']
    (out / 'gpu_results.md').write_text('\n'.join(lines))
    return 0 if all(b['exit'] == 0 for b in results['benchmarks']) else 1


if __name__ == '__main__':
    sys.exit(main())
