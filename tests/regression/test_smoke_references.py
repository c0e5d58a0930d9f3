"""The regression tier: each registered benchmark's smoke run (from the session's ``all --smoke``) against
its committed reference in results/reference/<bench>.json. ``pytest --regen-references`` rewrites them."""
import json

import pytest

from conftest import REPO
from mae_core.record import now_iso
from transfer.registry import BENCHMARKS

REFERENCE = REPO / 'results' / 'reference'
TOLERANCE = {'top1': 10.0, 'top5': 10.0, 'mCE': 10.0, 'mean_error': 10.0, 'mIoU': 10.0, 'aAcc': 10.0,
             'APbox': 10.0, 'APmask': 10.0}  # points; smoke val sets hold 80 images (1 image = 1.25 points)


@pytest.mark.parametrize('name', list(BENCHMARKS))
def test_smoke_metrics_match_the_committed_reference(name, smoke_all, request):
    rec = smoke_all[0][name]
    assert rec['status'] == 'finished' and rec['data']['subset'] == 'smoke'
    path = REFERENCE / f'{name}.json'
    if request.config.getoption('--regen-references'):
        REFERENCE.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(dict(
            benchmark=name, metrics={k: rec['metrics'][k] for k in BENCHMARKS[name].metrics},
            tolerance={k: TOLERANCE[k] for k in BENCHMARKS[name].metrics},
            how=('pytest tests/regression --regen-references: the tiny MAE of eval_configs/pretrain/mae_tiny_cpu.py, '
                 f'then run_transfer.py {name} --smoke (config {rec["config_hash"]}) on a 2-core CPU'),
            made=now_iso(), git_sha=rec['code']['git_sha']), indent=2) + '\n')
        return
    assert path.exists(), f'{path} is missing: run pytest tests/regression --regen-references and commit it'
    ref = json.loads(path.read_text())
    for metric, expected in ref['metrics'].items():
        assert abs(rec['metrics'][metric] - expected) <= ref['tolerance'][metric], (metric, rec['metrics'], ref)
