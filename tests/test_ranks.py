"""Every family's metric over a val set that the world size does not divide (7 images on 3 gloo ranks) equals the
single-process metric: no image dropped, none counted twice (mmengine's sampler repeats images to even out the
ranks; the metrics must drop them)."""
import json
import shutil
import socket
import sys

import pytest

from conftest import REPO, run
from mae_core.record import read_record

SEVEN = 7


def _classification(root, tmp):
    out = tmp / 'imagenet'
    kept = sorted((root / 'val').rglob('*.JPEG'))[::11][:SEVEN]
    for p in kept:
        (out / 'val' / p.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(p, out / 'val' / p.parent.name / p.name)
    return out


def _robustness(root, tmp):
    out = tmp / 'imagenet-a'
    for p in sorted(root.rglob('*.JPEG'))[::11][:SEVEN]:
        (out / p.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(p, out / p.parent.name / p.name)
    return out


def _coco(root, tmp):
    out = tmp / 'coco'
    shutil.copytree(root, out)
    ann = out / 'annotations' / 'instances_val2017.json'
    data = json.loads(ann.read_text())
    keep = {im['id'] for im in data['images'][:SEVEN]}
    data['images'] = [im for im in data['images'] if im['id'] in keep]
    data['annotations'] = [a for a in data['annotations'] if a['image_id'] in keep]
    ann.write_text(json.dumps(data))
    return out


def _ade(root, tmp):
    out = tmp / 'ade'
    shutil.copytree(root, out)
    base = out / 'ADEChallengeData2016'
    for img in sorted((base / 'images' / 'validation').glob('*.jpg'))[SEVEN:]:
        img.unlink()
        (base / 'annotations' / 'validation' / (img.stem + '.png')).unlink()
    return out


CASES = {'in1k_finetune': ('in1k_finetune', _classification), 'imagenet_a': ('in1k_finetune', _robustness),
         'coco_maskrcnn': ('coco_maskrcnn', _coco), 'ade20k_upernet': ('ade20k_upernet', _ade)}


@pytest.mark.parametrize('name', list(CASES))
def test_three_ranks_score_seven_images_as_one_process_does(name, smoke_all, tmp_path):
    from pathlib import Path
    records = smoke_all[0]
    trained, make = CASES[name]
    root = make(Path(records[name]['config']['dataset']['root']), tmp_path)
    args = [str(REPO / 'run_transfer.py'), name, '--checkpoint', records[trained]['model']['finetuned_checkpoint'],
            '--data-root', str(root), '--config', str(REPO / f'eval_configs/{name}_smoke.py')]
    args += ['--eval-only'] if name == trained else []
    one = read_record(run([sys.executable] + args + ['--records-dir', str(tmp_path / 'one')],
                          cwd=tmp_path).stdout.strip().splitlines()[-1])
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    three = read_record(run([sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '3',
                             '--master_port', str(port)] + args + ['--launcher', 'pytorch', '--records-dir',
                                                                   str(tmp_path / 'three')],
                            cwd=tmp_path, timeout=400).stdout.strip().splitlines()[-1])
    assert one['data']['num_images'] == three['data']['num_images'] == SEVEN and three['env']['world_size'] == 3
    assert three['metrics'] == pytest.approx(one['metrics'], abs=1e-9)
