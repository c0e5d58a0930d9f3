"""Run records: validated on write and read, one clear error naming file and field, written atomically."""
import json
import os
import signal
import subprocess
import sys

import pytest

from mae_core import record as rl


def a_record(**over):
    rec = rl.make_record(benchmark='in1k_linprobe', family='classification', metrics={'top1': 50.0, 'top5': 90.0},
                         headline='top1', model=dict(arch='vit_tiny_patch16', checkpoint='/x.pth', sha256='ab' * 32,
                                                     format='ours'),
                         config={'epochs': 1}, settings={'img_size': 64},
                         data=dict(dataset='imagenet', split='val', subset='smoke', num_images=80), start=0.0, end=1.0)
    rec.update(over)
    return rec


def test_a_written_record_reads_back_with_its_provenance(tmp_path):
    path = rl.write_record(tmp_path, a_record())
    assert path.parent.name == 'in1k_linprobe' and path.suffix == '.json'
    rec = rl.read_record(path)
    assert rec['config_hash'] == rl.config_hash({'epochs': 1}) and rec['code']['git_sha']
    assert rec['env']['world_size'] == 1 and rec['time']['wall_s'] == 1.0
    assert rl.read_records(tmp_path) == [rec]
    assert rl.read_records(tmp_path / 'missing') == []


@pytest.mark.parametrize('field,value,message', [
    ('metrics', {'top1': 'high'}, 'metrics.top1 must be a finite number'),
    ('data', {'dataset': 'x', 'split': 'val', 'num_images': 1}, 'data.subset is missing'),
    ('schema', 'other/v0', "field schema is 'other/v0'"),
    ('headline', 'mIoU', "headline names 'mIoU'")])
def test_a_malformed_record_is_one_error_naming_file_and_field(tmp_path, field, value, message):
    path = tmp_path / 'bad.json'
    path.write_text(json.dumps(a_record(**{field: value})))
    with pytest.raises(rl.RecordError, match=f'bad.json: .*{message}'):
        rl.read_record(path)
    with pytest.raises(rl.RecordError):
        rl.write_record(tmp_path / 'out', a_record(**{field: value}))
    assert not (tmp_path / 'out').exists()


def test_a_process_killed_mid_write_leaves_no_record_and_no_temp_file(tmp_path):
    script = (
        'import json, sys, time\nfrom mae_core import record as rl\nsys.path.insert(0, "tests")\n'
        'from test_records import a_record\n'
        'def slow_dump(obj, f, **kw):\n    f.write("{\\"schema\\": ")\n    f.flush()\n'
        '    print("writing", flush=True)\n    time.sleep(60)\n'
        f'json.dump = slow_dump\nrl.write_record({str(tmp_path)!r}, a_record())\n')
    proc = subprocess.Popen([sys.executable, '-c', script], stdout=subprocess.PIPE, text=True,
                            cwd=os.path.dirname(os.path.dirname(__file__)))
    assert proc.stdout.readline().strip() == 'writing'
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    leftovers = [p for p in tmp_path.rglob('*') if p.is_file()]
    assert leftovers == []
