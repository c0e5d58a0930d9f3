"""Run records: one JSON per finished run (pre-training and every benchmark), the only input of
``reproduce-tables`` besides the paper's CSVs.

A record is written atomically at the end of a run and validated on write and on read. Fields (DESIGN.md):
schema, run_id, benchmark, family, status, metrics (percent, named as in the paper), headline, model, config,
config_hash, settings (what changes a number's meaning), data (subset!), code, env, time.
"""
import datetime as dt
import hashlib
import io
import json
import math
import os
import platform
import subprocess
from pathlib import Path

import numpy as np

from .checkpoint import atomic_write
from .errors import UserError

SCHEMA = 'mae-suite/run-record/v1'
FULL = 'full'  # the only subset whose numbers stand beside the paper's
SUBSETS = ('full', 'partial', 'smoke', 'custom')  # custom: pre-training on another image folder than ImageNet's
STATUSES = ('finished',)  # a record is written only when its run finishes
PRETRAIN = 'mae_pretrain'  # the benchmark name of pre-training records
DEFAULT_DIR = 'results/runs'  # every command's default --records-dir (the demo's too)
NUMBER = (int, float)

# field -> (type, required keys inside it)
FIELDS = {
    'schema': (str, ()), 'run_id': (str, ()), 'benchmark': (str, ()), 'family': (str, ()), 'status': (str, ()),
    'metrics': (dict, ()), 'headline': (str, ()),
    'model': (dict, ('arch', 'checkpoint', 'sha256', 'format')),
    'config': (dict, ()), 'config_hash': (str, ()), 'settings': (dict, ()),
    'data': (dict, ('dataset', 'split', 'subset', 'num_images')),
    'code': (dict, ('version', 'git_sha', 'dirty')),
    'env': (dict, ('torch', 'device', 'world_size')),
    'time': (dict, ('start', 'end', 'wall_s', 'device_hours')),
}


# (field, key) -> the type every consumer relies on
TYPED = {('model', 'arch'): str, ('model', 'checkpoint'): str, ('model', 'sha256'): str, ('model', 'format'): str,
         ('model', 'pretrain'): (dict, type(None)), ('data', 'dataset'): str, ('data', 'split'): str,
         ('data', 'subset'): str, ('data', 'num_images'): int, ('code', 'git_sha'): str, ('code', 'dirty'): bool,
         ('env', 'device'): str, ('env', 'world_size'): int, ('time', 'start'): str, ('time', 'end'): str,
         ('time', 'wall_s'): NUMBER, ('time', 'device_hours'): NUMBER}


class RecordError(UserError, ValueError):
    """A malformed record; the message names the file and the field."""


def validate(rec: dict, where='<record>', benchmarks=None) -> dict:
    """Every field a consumer uses, with its type; finite metrics; known status and subset; with ``benchmarks``,
    a registered benchmark (or pre-training)."""
    if not isinstance(rec, dict):
        raise RecordError(f'{where}: a record must be a JSON object')
    for field, (typ, keys) in FIELDS.items():
        if field not in rec:
            raise RecordError(f'{where}: missing field {field!r}')
        if not isinstance(rec[field], typ):
            raise RecordError(f'{where}: field {field!r} must be {typ.__name__}, got {type(rec[field]).__name__}')
        for k in keys:
            if k not in rec[field]:
                raise RecordError(f'{where}: field {field}.{k} is missing')
    for (field, key), typ in TYPED.items():
        value = rec[field].get(key)
        if key in rec[field] and (not isinstance(value, typ) or isinstance(value, bool) and typ is not bool):
            raise RecordError(f'{where}: field {field}.{key} must be {getattr(typ, "__name__", "a number")}, '
                              f'got {value!r}')
    if rec['schema'] != SCHEMA:
        raise RecordError(f'{where}: field schema is {rec["schema"]!r}, this version reads {SCHEMA!r}')
    if rec['status'] not in STATUSES:
        raise RecordError(f'{where}: field status is {rec["status"]!r}; a record is written only when its run '
                          'finishes')
    if rec['data']['subset'] not in SUBSETS:
        raise RecordError(f'{where}: field data.subset is {rec["data"]["subset"]!r}, expected one of {SUBSETS}')
    if benchmarks is not None and rec['benchmark'] not in benchmarks and rec['benchmark'] != PRETRAIN:
        raise RecordError(f'{where}: field benchmark {rec["benchmark"]!r} is not a registered benchmark')
    for name, value in rec['metrics'].items():
        if not isinstance(value, NUMBER) or isinstance(value, bool) or not math.isfinite(value):
            shown = name if isinstance(name, str) and name.isprintable() else repr(name)
            raise RecordError(f'{where}: field metrics.{shown} must be a finite number, got {value!r}')
    if rec['status'] == 'finished' and rec['headline'] not in rec['metrics']:
        raise RecordError(f'{where}: field headline names {rec["headline"]!r}, which is not in metrics')
    for name, bounds in (rec.get('ci95') or {}).items():
        if not (isinstance(bounds, list) and len(bounds) == 2 and all(isinstance(b, NUMBER) and math.isfinite(b)
                                                                        for b in bounds) and bounds[0] <= bounds[1]):
            raise RecordError(f'{where}: field ci95.{name} must be [low, high], got {bounds!r}')
    side = rec.get('samples')
    if side is not None and not (isinstance(side, dict) and isinstance(side.get('file'), str)
                                 and isinstance(side.get('sha256'), str) and '/' not in side['file']):
        raise RecordError(f'{where}: field samples must name a file beside the record and its sha256')
    return rec


def config_hash(cfg: dict) -> str:
    return hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode()).hexdigest()[:16]


def code_info() -> dict:
    from importlib.metadata import PackageNotFoundError, version
    root = Path(__file__).resolve().parent.parent
    try:
        ver = version('mae-transfer-suite')
    except PackageNotFoundError:
        ver = 'unknown'

    def git(*args):
        try:
            return subprocess.run(['git', *args], cwd=root, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ''
    sha = git('rev-parse', 'HEAD') or 'unknown'
    dirty = bool(git('status', '--porcelain', '--untracked-files=no')) if sha != 'unknown' else False
    return dict(version=ver, git_sha=sha, dirty=dirty)


def env_info(world_size: int = 1) -> dict:
    import timm
    import torch
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f'cpu ({platform.processor() or platform.machine()})'
    try:
        import mmengine
        mm = mmengine.__version__
    except ImportError:
        mm = None
    return dict(torch=torch.__version__, timm=timm.__version__, mmengine=mm, python=platform.python_version(),
                device=device, world_size=world_size)


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')


def time_info(start: float, end: float, world_size: int, on_gpu: bool) -> dict:
    wall = end - start
    iso = lambda t: dt.datetime.fromtimestamp(t, dt.timezone.utc).isoformat(timespec='seconds')
    return dict(start=iso(start), end=iso(end), wall_s=round(wall, 3),
                device_hours=round(wall * world_size / 3600, 6), device_kind='gpu' if on_gpu else 'cpu')


def make_record(*, benchmark, family, metrics, headline, model, config, settings, data, start, end,
                world_size=1, on_gpu=False, status='finished') -> dict:
    stamp = dt.datetime.fromtimestamp(end, dt.timezone.utc).strftime('%Y%m%dT%H%M%SZ')
    rec = dict(schema=SCHEMA, run_id=f'{stamp}-{model["sha256"][:8]}-{os.getpid()}', benchmark=benchmark,
               family=family, status=status, metrics={k: float(v) for k, v in metrics.items()}, headline=headline,
               model=model, config=config, config_hash=config_hash(config), settings=settings, data=data,
               code=code_info(), env=env_info(world_size), time=time_info(start, end, world_size, on_gpu))
    return validate(rec)


def write_record(records_dir, rec: dict, samples: dict = None) -> Path:
    """Validate and write ``RECORDS/<benchmark>/<run_id>.json`` atomically; returns the path. ``samples`` (what
    each evaluated image contributed, numpy arrays) go first, atomically, to ``<run_id>.samples.npz`` beside it,
    and the record names that file and its sha256: a record never names a partial sidecar."""
    validate(rec)
    path = Path(records_dir) / rec['benchmark'] / f'{rec["run_id"]}.json'
    if samples is not None:  # hashed as written, not read back
        side, buffer = path.with_name(f'{rec["run_id"]}.samples.npz'), io.BytesIO()
        np.savez_compressed(buffer, **samples)
        data = buffer.getvalue()
        atomic_write(side, lambda tmp: Path(tmp).write_bytes(data))
        rec['samples'] = dict(file=side.name, sha256=hashlib.sha256(data).hexdigest(),
                              kind=str(samples.get('kind', '')))

    def write(tmp):
        with open(tmp, 'w') as f:
            json.dump(rec, f, indent=2, sort_keys=False, default=str, allow_nan=False)
    return atomic_write(path, write)


def read_record(path, benchmarks=None) -> dict:
    path = Path(path)
    try:
        rec = json.loads(path.read_text(encoding='utf-8'), parse_constant=_no_constant)
    except (ValueError, OSError) as e:  # bad JSON, NaN/Infinity, bad UTF-8, unreadable
        raise RecordError(f'{path}: not a readable JSON record ({e})') from None
    return validate(rec, str(path), benchmarks)


def read_samples(record_path, rec=None):
    """The samples the record at ``record_path`` names, checked against its sha256; None for a record without
    them (older records)."""
    record_path = Path(record_path)
    rec = rec or read_record(record_path)
    side = rec.get('samples')
    if not side:
        return None
    path = record_path.with_name(side['file'])
    if not path.is_file():
        raise RecordError(f'{record_path}: its samples file {path} is missing')
    data = path.read_bytes()  # read once: hashed, then parsed
    if hashlib.sha256(data).hexdigest() != side['sha256']:
        raise RecordError(f'{path}: sha256 differs from the one its record {record_path.name} names')
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _no_constant(name):
    raise ValueError(f'{name} is not a number JSON allows')


def read_records(records_dir, benchmarks=None) -> list:
    """Every record under ``records_dir`` (``<bench>/<run_id>.json``), oldest first; [] if there is none."""
    root = Path(records_dir)
    if not root.is_dir():
        return []
    recs = [read_record(p, benchmarks) for p in sorted(root.glob('*/*.json')) if p.is_file()]
    return sorted(recs, key=lambda r: r['time']['end'])
