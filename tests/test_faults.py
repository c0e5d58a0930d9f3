"""Bad input is one line naming the file, key or option, exit 2, and nothing of the user's is lost: a test per
fault class, and property-based tests (random structures and bytes) for the three parsers that take user input
(checkpoints, run records, --cfg-options), which may only ever answer with their one error type."""
import json
import os
import stat
import sys

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import REPO, run
from mae_core import checkpoint as ck
from mae_core import record as rl
from mae_core.config import load_config
from mae_core.errors import CheckpointError, ConfigError
from mae_core.vit import vit

RUN = [sys.executable, str(REPO / 'run_transfer.py')]
CONVERT = [sys.executable, '-m', 'mae_core.cli', 'convert']
TABLES = [sys.executable, '-m', 'transfer.tables']


class Proc:
    """An entry point's main() run in this process, as a CompletedProcess-like (return code, stderr)."""

    def __init__(self, main, argv, capsys):
        capsys.readouterr()
        self.returncode = main(argv)
        self.stderr = capsys.readouterr().err


def one_line_exit_2(proc, *needles):
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith('error: '), proc.stderr[-2000:]
    assert all(n in lines[0] for n in needles), lines[0]


@pytest.fixture(scope='module')
def encoder_file(tmp_path_factory):
    path = tmp_path_factory.mktemp('ckpt') / 'tiny.pth'
    torch.manual_seed(0)
    return ck.save_ours(path, vit('vit_toy_patch16', img_size=32).state_dict(), dict(arch='vit_toy_patch16'))


# ==================================================================== nothing of the user's is lost
def test_converting_into_an_existing_folder_keeps_the_users_files(encoder_file, tmp_path):
    folder = tmp_path / 'hf'
    folder.mkdir()
    (folder / 'notes.txt').write_text('mine')
    (folder / 'config.json').write_text('{"mine": true}')
    one_line_exit_2(run(CONVERT + [str(encoder_file), str(folder), '--to', 'hf_vitmae'], check=False),
                    str(folder), '--overwrite')
    assert sorted(p.name for p in folder.iterdir()) == ['config.json', 'notes.txt']
    assert json.loads((folder / 'config.json').read_text()) == {'mine': True}
    run(CONVERT + [str(encoder_file), str(folder), '--to', 'hf_vitmae', '--overwrite'])
    assert (folder / 'notes.txt').read_text() == 'mine'  # ours replaced, theirs kept
    assert json.loads((folder / 'config.json').read_text())['model_type'] == 'vit_mae'
    fresh = tmp_path / 'new_hf'
    run(CONVERT + [str(encoder_file), str(fresh), '--to', 'hf_vitmae'])
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o777 & ~_umask()  # not mkdtemp's 0700


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_converting_onto_an_existing_file_or_an_unwritable_place_is_one_line(encoder_file, tmp_path, capsys):
    from mae_core.cli import convert_main
    target = tmp_path / 'out.pth'
    target.write_bytes(b'precious')
    one_line_exit_2(Proc(convert_main, [str(encoder_file), str(target), '--to', 'timm'], capsys), 'already exists')
    assert target.read_bytes() == b'precious'
    one_line_exit_2(Proc(convert_main, [str(encoder_file), str(tmp_path), '--to', 'timm', '--overwrite'], capsys),
                    'is a folder')
    one_line_exit_2(Proc(convert_main, [str(encoder_file), str(target / 'x.pth'), '--to', 'timm'], capsys),
                    'cannot write there')


# ==================================================================== one line for each kind of bad input
@pytest.mark.parametrize('case', ['empty', 'hf_not_json', 'hf_list', 'pos_1d', 'arch_in_meta', 'arch_option'])
def test_bad_checkpoints_are_one_line(case, encoder_file, tmp_path):
    sd = torch.load(encoder_file, weights_only=True)
    path, extra = tmp_path / 'bad.pth', []
    if case == 'empty':
        path.write_bytes(b'')
    elif case in ('hf_not_json', 'hf_list'):
        path = tmp_path / 'hf'
        path.mkdir()
        (path / 'config.json').write_text('{not json' if case == 'hf_not_json' else '[1, 2]')
    elif case == 'pos_1d':
        sd['model']['pos_embed'] = torch.zeros(17)
        torch.save(sd, path)
    elif case == 'arch_in_meta':
        sd['meta']['arch'] = 'vit_gigantic_patch3'
        torch.save(sd, path)
    else:
        path, extra = encoder_file, ['--arch', 'vit_bogus']
    proc = run(RUN + ['in1k_linprobe', '--checkpoint', str(path), '--smoke', '--records-dir',
                      str(tmp_path / 'r')] + extra, cwd=tmp_path, check=False)
    one_line_exit_2(proc, str(path if case != 'arch_option' else encoder_file))
    assert not (tmp_path / 'r').exists()


@pytest.mark.parametrize('option, needle', [
    ('optim.blr=abc', 'optim.blr=abc: expected a number'), ('epochs=abc', 'epochs=abc: expected an integer'),
    ('batch_size=0', 'batch_size=0: must be > 0'), ('epochs=2.5', 'expected an integer'), ('optim=3', 'optim=3'),
    ('aug.crop_pct=1.5', 'must be in [0, 1]'), ('protocol=7', 'expected a string'), ('epochs.x=1', 'epochs is not a section')])
def test_cfg_options_are_checked_against_the_config(option, needle, encoder_file, tmp_path, capsys):
    from transfer.cli import main
    one_line_exit_2(Proc(main, ['in1k_linprobe', '--checkpoint', str(encoder_file), '--smoke', '--records-dir',
                                str(tmp_path / 'r'), '--cfg-options', option], capsys), needle)
    assert not (tmp_path / 'r').exists()


@pytest.mark.parametrize('args, needle', [
    (['--data-root', '{empty}'], 'no images found'), (['--cfg-options', 'model.masking=bogus'], "unknown masking 'bogus'"),
    (['--records-dir', '{file}/r'], '--records-dir')])
def test_mae_pretrain_bad_input_is_one_line(args, needle, tmp_path):
    (tmp_path / 'empty').mkdir()
    (tmp_path / 'file').write_text('')
    args = [a.format(empty=tmp_path / 'empty', file=tmp_path / 'file') for a in args]
    proc = run([sys.executable, '-m', 'mae_core.cli', 'pretrain', '--config',
                str(REPO / 'eval_configs/pretrain/mae_tiny_cpu.py'), '--work-dir', str(tmp_path / 'w')] + args,
               cwd=tmp_path, check=False)
    one_line_exit_2(proc, needle)
    assert not (tmp_path / 'w').exists()


@pytest.mark.parametrize('case', ['launcher_pytorch', 'launcher_slurm'])
def test_a_launcher_without_its_environment_is_one_line(case, encoder_file, tmp_path):
    env = {k: '' for k in ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT', 'SLURM_PROCID', 'SLURM_NTASKS')}
    clean = {k: v for k, v in os.environ.items() if k not in env}
    import subprocess
    proc = subprocess.run(RUN + ['in1k_linprobe', '--checkpoint', str(encoder_file), '--smoke', '--launcher',
                                 case.split('_')[1]], cwd=tmp_path, capture_output=True, text=True, env=clean)
    one_line_exit_2(proc, '--launcher')


def test_reproduce_tables_refuses_bad_records_and_says_what_is_missing(tmp_path, capsys):
    from transfer.tables import main as tables
    good = _record()
    cases = {'utf8': b'\xff\xfe not utf-8', 'nan': json.dumps(good).replace('50.0', 'NaN').encode(),
             'running': json.dumps({**good, 'status': 'running'}).encode(),
             'subset': json.dumps({**good, 'data': {**good['data'], 'subset': 3}}).encode(),
             'unknown': json.dumps({**good, 'benchmark': 'no_such_bench'}).encode(),
             'time_end': json.dumps({**good, 'time': {**good['time'], 'end': 5}}).encode(),
             'pretrain': json.dumps({**good, 'model': {**good['model'], 'pretrain': 'x'}}).encode(),
             'sha': json.dumps({**good, 'model': {**good['model'], 'sha256': 5}}).encode(),
             'ckpt_null': json.dumps({**good, 'model': {**good['model'], 'checkpoint': None}}).encode()}
    for name, data in cases.items():
        records = tmp_path / name
        (records / 'in1k_linprobe').mkdir(parents=True)
        (records / 'in1k_linprobe' / 'r.json').write_bytes(data)
        one_line_exit_2(Proc(tables, ['--records-dir', str(records), '--out', str(tmp_path / 'o' / name)], capsys),
                        'r.json')
    folder = tmp_path / 'dirs'
    (folder / 'in1k_linprobe' / 'x.json').mkdir(parents=True)  # a folder named like a record is not one
    assert Proc(tables, ['--records-dir', str(folder), '--out', str(tmp_path / 'o2'), '--formats', 'md'],
                capsys).returncode == 0
    (tmp_path / 'file').write_text('')
    one_line_exit_2(run(TABLES + ['--out', str(tmp_path / 'file')], check=False), '--out')  # as a user runs it
    missing = Proc(tables, ['--records-dir', str(tmp_path / 'none'), '--out', str(tmp_path / 'o3'), '--formats', 'md'],
                   capsys)
    assert missing.returncode == 0 and 'does not exist' in missing.stderr


def _record():
    return rl.make_record(benchmark='in1k_linprobe', family='classification', metrics={'top1': 50.0}, headline='top1',
                          model=dict(arch='vit_tiny_patch16', checkpoint='/x.pth', sha256='ab' * 32, format='ours'),
                          config={}, settings={}, start=0.0, end=1.0,
                          data=dict(dataset='imagenet', split='val', subset='smoke', num_images=80))


# ==================================================================== properties: only ever the one error type
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                    max_leaves=12)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(field=st.sampled_from(sorted(rl.FIELDS)), key=st.text(max_size=12) | st.sampled_from(
    ['arch', 'checkpoint', 'sha256', 'pretrain', 'subset', 'num_images', 'end', 'device_hours', 'top1']), value=JSON)
def test_the_record_validator_only_ever_raises_record_error(field, key, value):
    rec = _record()
    if isinstance(rec[field], dict) and key:
        rec[field] = {**rec[field], key: value}
    else:
        rec[field] = value
    try:
        rl.validate(rec, 'r.json', benchmarks={'in1k_linprobe'})
    except rl.RecordError as e:
        assert str(e).startswith('r.json: ') and '\n' not in str(e)


TENSOR_KEYS = ['patch_embed.proj.weight', 'patch_embed.proj.bias', 'cls_token', 'pos_embed', 'norm.weight',
               'blocks.0.attn.qkv.weight', 'blocks.0.norm1.weight', 'head.weight', 'fc_norm.weight', 'mask_token',
               'decoder_embed.weight', 'vit.embeddings.cls_token', 'module.cls_token', 'blocks.x.mlp.fc1.weight']
TENSORS = st.lists(st.integers(0, 5), max_size=4).map(lambda shape: torch.zeros(shape))
STATE = st.dictionaries(st.sampled_from(TENSOR_KEYS), TENSORS | JSON, max_size=8)
CHECKPOINT = (STATE | st.fixed_dictionaries({'model': STATE}) | st.fixed_dictionaries({'state_dict': STATE})
              | st.fixed_dictionaries({'model': STATE, 'meta': st.dictionaries(
                  st.sampled_from(['arch', 'encoder_prefix', 'num_heads']), JSON | st.sampled_from(
                      ['vit_toy_patch16', 'vit_tiny_patch16', 'backbone.']), max_size=3)}) | JSON)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(obj=CHECKPOINT, arch=st.none() | st.sampled_from(['vit_toy_patch16', 'nope']))
def test_the_checkpoint_reader_only_ever_raises_checkpoint_error(obj, arch, tmp_path):
    path = tmp_path / 'random.pth'
    torch.save(obj, path)
    try:
        handle = ck.open_checkpoint(path, arch)
        handle.build(keep_head=True)
    except CheckpointError as e:
        assert str(e).startswith(str(path)) and '\n' not in str(e)


@settings(max_examples=120, deadline=None)
@given(key=st.sampled_from(['epochs', 'optim.blr', 'optim.type', 'aug.crop_pct', 'batch_size', 'dataset.root',
                            'skip_bad_images', 'optim', 'aug.mixup', 'nope', 'optim.nope.x']) | st.text(max_size=10),
       value=st.text(max_size=12) | st.sampled_from(['0', '-1', '1e9', 'None', '(1, 2)', "{'a': 1}", 'nan', 'inf']))
def test_the_cfg_options_parser_only_ever_raises_config_error(key, value):
    try:
        load_config(REPO / 'eval_configs' / 'in1k_linprobe_smoke.py', [f'{key}={value}'])
    except ConfigError as e:
        assert '\n' not in str(e)


# ==================================================================== data faults, found before the work and named
def test_dataset_faults_are_one_line_naming_the_file(tmp_path, capsys):
    import shutil

    import numpy as np
    from PIL import Image

    from transfer.datasets import ade20k, coco, readers, smoke
    places = tmp_path / 'places365'
    shutil.copytree(smoke.places365(), places)
    with open(places / 'places365_val.txt', 'ab') as f:
        f.write('Places365_val_caf\xe9.jpg 3\n'.encode('latin-1'))
    with pytest.raises(readers.DataError, match=r'places365_val.txt:81: not UTF-8'):
        readers.read_places365(places, 'val')
    inat = tmp_path / 'inat'
    shutil.copytree(smoke.inat(2019), inat)
    gone = sorted((inat / 'train_val2019').rglob('val_*.jpg'))[3]
    gone.unlink()
    spec = dict(name='inat2019', format='inat', year=2019, root=str(inat), num_classes=10)
    with pytest.raises(readers.DataError, match=f'names {gone}, which does not exist'):
        readers.read_split(spec, 'val')
    assert len(readers.read_split(spec, 'val', preflight=False).samples) == 80  # skipped when asked
    root = tmp_path / 'coco'
    shutil.copytree(smoke.coco(), root)
    ann = root / 'annotations' / 'instances_val2017.json'
    text = ann.read_text()
    ann.write_text(text[:len(text) // 2])
    with pytest.raises(readers.DataError, match='instances_val2017.json: not a COCO annotation file'):
        coco.read_coco(ann)
    data = json.loads(text)
    ann.write_text(json.dumps({k: v for k, v in data.items() if k != 'categories'}))
    with pytest.raises(readers.DataError, match="instances_val2017.json: no 'categories' list"):
        coco.read_coco(ann)
    ade = tmp_path / 'ade'
    shutil.copytree(smoke.ade20k(), ade)
    label = sorted((ade / 'ADEChallengeData2016' / 'annotations' / 'validation').glob('*.png'))[0]
    raw = np.asarray(Image.open(label)).copy()
    raw[5, 5] = 200
    Image.fromarray(raw).save(label)
    with pytest.raises(readers.DataError, match=f'{label.name}: labels must be one channel of 0..150 .* label 200'):
        ade20k.read_ade(ade, 'val')  # before any training
    Image.fromarray(raw[:-4]).save(label)
    with pytest.raises(readers.DataError, match=f'{label.name}: annotation of .* for an image of'):
        ade20k.read_ade(ade, 'val')


def test_a_broken_jpeg_is_named_on_the_tensor_decoding_path_and_skipped_when_asked(tmp_path):
    from mmengine.config import ConfigDict

    from mae_core.errors import UnreadableImage
    from transfer import robustness
    from transfer.classification import drop_unreadable
    from transfer.datasets import smoke
    from transfer.datasets.readers import Split
    good = sorted(smoke.robustness_folders('sketch').rglob('*.JPEG'))[0]
    broken = tmp_path / 'broken.JPEG'
    broken.write_bytes(good.read_bytes()[:len(good.read_bytes()) // 3])  # a truncated JPEG passes Image.verify()
    cfg = ConfigDict(img_size=64, crop_pct=0.875, preprocess='resize_crop')
    with pytest.raises(UnreadableImage, match='broken.JPEG: unreadable image'):
        robustness.decode_on_device([(str(good), good.read_bytes()), (str(broken), broken.read_bytes())], cfg,
                                    torch.device('cpu'))
    split = Split([(good, 0), (broken, 0)], 1000, tmp_path)
    assert drop_unreadable(split) == 1 and split.samples == [(good, 0)]


def test_an_unwritable_records_dir_fails_before_any_work(encoder_file, tmp_path, capsys):
    from transfer.cli import main
    (tmp_path / 'a_file').write_text('')
    one_line_exit_2(Proc(main, ['in1k_linprobe', '--checkpoint', str(encoder_file), '--smoke', '--records-dir',
                                str(tmp_path / 'a_file' / 'records'), '--work-dir', str(tmp_path / 'w')], capsys),
                    '--records-dir', 'cannot write there')
    assert not (tmp_path / 'w').exists()


def test_resume_passes_over_a_damaged_last_checkpoint(encoder_file, tmp_path):
    args = RUN + ['in1k_linprobe', '--checkpoint', str(encoder_file), '--smoke', '--work-dir', str(tmp_path / 'w'),
                  '--records-dir', str(tmp_path / 'r'), '--cfg-options', 'epochs=2', 'keep_checkpoints=2']
    run(args, cwd=tmp_path)
    newest = tmp_path / 'w' / 'epoch_2.pth'
    newest.write_bytes(newest.read_bytes()[:1000])  # damaged outside our atomic writes
    (tmp_path / 'w' / 'last_checkpoint').write_text('')
    proc = run(args + ['--resume'], cwd=tmp_path)
    assert 'epoch_2.pth is not a complete checkpoint' in proc.stdout + proc.stderr
    assert len(list((tmp_path / 'r').glob('*/*.json'))) == 2


def test_all_killed_at_random_points_then_resumed_ends_as_an_uninterrupted_run(smoke_all, tiny_checkpoint, tmp_path):
    """``run_transfer.py all --smoke`` (three benchmarks, one of them needing another's model) killed with SIGKILL
    at seeded random moments, three times, then run to completion with --resume: one record per benchmark, no
    temporary file anywhere, and the metrics of the session's uninterrupted run."""
    import random
    import signal
    import subprocess
    import time
    names = ['in1k_finetune', 'in1k_linprobe', 'imagenet_sketch']
    driver = ('import sys; from transfer import cli, registry; '
              f'cli.BENCHMARKS = {{n: registry.BENCHMARKS[n] for n in {names!r}}}; sys.exit(cli.main(sys.argv[1:]))')
    args = [sys.executable, '-c', driver, 'all', '--checkpoint', str(tiny_checkpoint[0]), '--smoke', '--records-dir',
            str(tmp_path / 'records')]
    rng = random.Random(0)
    for _ in range(3):
        proc = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env={**os.environ, 'PYTHONPATH': str(REPO)})
        time.sleep(rng.uniform(4, 20))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    run(args + ['--resume'], cwd=tmp_path, env={'PYTHONPATH': str(REPO)})
    records = {}
    for path in (tmp_path / 'records').glob('*/*.json'):
        records.setdefault(path.parent.name, []).append(rl.read_record(path))
    assert sorted(records) == sorted(names) and all(len(r) == 1 for r in records.values())
    for name in names:
        assert records[name][0]['metrics'] == smoke_all[0][name]['metrics'], name
    leftovers = [p for p in tmp_path.rglob('*') if p.name.startswith('.') and p.name.endswith('.tmp')]
    assert leftovers == []


@pytest.mark.parametrize('ratios', ['75', '0.95', 'abc'])
def test_mae_figures_refuses_ratios_that_mask_everything(ratios, tiny_checkpoint, tmp_path):
    """A 64 px tiny model has 16 patches: 0.95 would keep none, 75 is a percentage typed as a ratio."""
    from mae_core.pretrain import generated_images
    from mmengine.config import Config
    images = generated_images(Config.fromfile(str(REPO / 'eval_configs/pretrain/mae_tiny_cpu.py')).data.generated)
    proc = run([sys.executable, '-m', 'mae_core.cli', 'figures', '--checkpoint', str(tiny_checkpoint[0]), '--images',
                str(images), '--out', str(tmp_path / 'f.png'), '--mask-ratios', ratios], check=False)
    one_line_exit_2(proc, '--mask-ratios')
    assert not (tmp_path / 'f.png').exists()
