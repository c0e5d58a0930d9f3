"""Shared fixtures. The session makes one tiny pre-trained checkpoint (the real ``mae-pretrain`` config) and
runs every registered benchmark once in smoke mode (``run_transfer.py all --smoke``); tests read from both.

Generated data goes to a per-session cache folder, never to the user's ~/.cache."""
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get('MAE_SUITE_TEST_CACHE') or tempfile.mkdtemp(prefix='mae_suite_test_cache_'))
os.environ['MAE_SUITE_CACHE'] = str(CACHE)


def pytest_addoption(parser):
    parser.addoption('--regen-references', action='store_true',
                     help='rewrite results/reference/<bench>.json from this run instead of comparing')


def run(args, cwd=None, env=None, check=True, timeout=600):
    """Run a project command as a user would; returns the CompletedProcess (output captured)."""
    proc = subprocess.run(args, cwd=cwd or REPO, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    if check and proc.returncode != 0:
        raise AssertionError(f'{args} exited {proc.returncode}\n--- stdout\n{proc.stdout[-4000:]}\n'
                             f'--- stderr\n{proc.stderr[-4000:]}')
    return proc


def kill_when(args, ready: Path, cwd=None, timeout=240):
    """Start a project command and ``kill -9`` it as soon as ``ready`` exists (fails if it ended first)."""
    proc = subprocess.Popen(args, cwd=cwd or REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    while not ready.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    assert proc.poll() is None, f'{args} ended before {ready} appeared'
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.fixture(scope='session')
def tiny_checkpoint(tmp_path_factory):
    """``mae-pretrain --config eval_configs/pretrain/mae_tiny_cpu.py``: (final.pth, its record)."""
    out = tmp_path_factory.mktemp('pretrain')
    proc = run([sys.executable, '-m', 'mae_core.cli', 'pretrain', '--config',
                str(REPO / 'eval_configs/pretrain/mae_tiny_cpu.py'), '--work-dir', str(out / 'work'),
                '--records-dir', str(out / 'records')])
    final = out / 'work' / 'final.pth'
    assert final.exists(), proc.stdout[-2000:]
    return final, Path(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope='session')
def smoke_all(tiny_checkpoint, tmp_path_factory):
    """``run_transfer.py all --checkpoint final.pth --smoke`` once: {benchmark: record}, records dir, stdout."""
    from mae_core.record import read_records
    cwd = tmp_path_factory.mktemp('all')
    records = cwd / 'records'
    proc = run([sys.executable, str(REPO / 'run_transfer.py'), 'all', '--checkpoint', str(tiny_checkpoint[0]),
                '--smoke', '--records-dir', str(records)], cwd=cwd, timeout=1200)
    return {r['benchmark']: r for r in read_records(records)}, records, proc.stdout
