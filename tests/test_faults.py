"""Bad input is one line naming the file, key or option, exit 2, and nothing of the user's is lost: a test per
fault class, and property-based tests (random structures and bytes) for the three parsers that take user input
(checkpoints, run records, --cfg-options), which may only ever answer with their one error type."""
import json
import math
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
