"""Every checkpoint format a user brings is detected and read; converters round-trip exactly; a wrong file
is one error naming the file and the key; saves are atomic."""
import argparse
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch
import torchvision

from mae_core import checkpoint as ck
from mae_core.mae import mae
from mae_core.vit import vit


@pytest.fixture(scope='module')
def full_sd():
    torch.manual_seed(0)
    return mae('vit_tiny_patch16', decoder_depth=2, decoder_embed_dim=128, decoder_num_heads=4).state_dict()


def encoder_part(sd):
    return {k: v for k, v in sd.items() if not k.startswith(ck.DECODER_PREFIXES)}


def fb_file(path, sd):
    """A file laid out like fb/mae's: pickled argparse args beside the weights."""
    torch.save({'model': sd, 'optimizer': {}, 'epoch': 799, 'args': argparse.Namespace(model='mae_vit_tiny')}, path)
    return path


def test_fb_mae_files_need_the_explicit_pickle_opt_in(full_sd, tmp_path):
    path = fb_file(tmp_path / 'mae_pretrain_vit_tiny.pth', encoder_part(full_sd))
    with pytest.raises(ck.CheckpointError, match='--allow-pickle') as e:
        ck.load_encoder(path)
    assert str(path) in str(e.value)
    sd, info = ck.load_encoder(path, allow_pickle=True)
    assert info['format'] == 'fb_mae_pretrain' and info['arch'] == 'vit_tiny_patch16' and info['img_size'] == 224
    assert all(torch.equal(sd[k], v) for k, v in encoder_part(full_sd).items())


@pytest.mark.parametrize('kind', ['fb_mae_full', 'fb_mae_finetuned', 'timm_pth', 'timm_safetensors', 'hf', 'ours'])
def test_each_format_is_detected_and_gives_the_canonical_encoder(kind, full_sd, tmp_path):
    from safetensors.torch import save_file
    enc = encoder_part(full_sd)
    if kind == 'fb_mae_full':
        path = fb_file(tmp_path / 'x_full.pth', full_sd)
    elif kind == 'fb_mae_finetuned':
        ft = vit('vit_tiny_patch16', num_classes=7, global_pool=True).state_dict()
        path = fb_file(tmp_path / 'finetuned.pth', ft)
        enc = ft
    elif kind == 'timm_pth':
        path = tmp_path / 'timm.pth'
        torch.save(enc, path)
    elif kind == 'timm_safetensors':
        path = tmp_path / 'model.safetensors'
        save_file({k: v.contiguous() for k, v in enc.items()}, path)
    elif kind == 'hf':
        path = ck.export_hf(full_sd, dict(num_heads=3, decoder_num_heads=4), tmp_path / 'hf')
    else:
        path = ck.save_ours(tmp_path / 'ours.pth', full_sd, dict(arch='vit_tiny_patch16', mask_ratio=0.75))
    sd, info = ck.load_encoder(path, keep_head=True, allow_pickle=kind.startswith('fb'))
    expected_format = {'timm_pth': 'timm', 'timm_safetensors': 'timm', 'hf': 'hf_vitmae'}.get(kind, kind)
    assert info['format'] == expected_format and info['arch'] == 'vit_tiny_patch16'
    assert sd.keys() == enc.keys() and all(torch.equal(sd[k], enc[k]) for k in enc)
    if kind == 'fb_mae_finetuned':
        assert info['has_head'] and info['num_classes'] == 7 and info['global_pool']
        model, _ = ck.build_encoder(path, keep_head=True, allow_pickle=True)
        assert model.num_classes == 7 and model.global_pool


def test_round_trips_through_every_converter_give_identical_tensors(full_sd, tmp_path):
    src = ck.save_ours(tmp_path / 'ours.pth', full_sd, dict(arch='vit_tiny_patch16', num_heads=3,
                                                           decoder_num_heads=4))
    chain = [('fb_mae', 'a.pth'), ('hf_vitmae', 'b_hf'), ('ours', 'c.pth'), ('timm', 'd.safetensors'),
             ('timm', 'e.pth')]
    for fmt, name in chain:
        dst = tmp_path / name
        ck.export(src, dst, fmt, arch='vit_tiny_patch16')
        sd, _, _, _ = ck.read_checkpoint(dst)
        expect = full_sd if fmt != 'timm' else encoder_part(full_sd)
        assert sd.keys() == expect.keys() and all(torch.equal(sd[k], expect[k]) for k in expect), fmt
        src = dst


def test_wrong_files_give_one_error_naming_the_file_and_key(full_sd, tmp_path):
    junk = tmp_path / 'junk.pth'
    rng = random.Random(0)
    for _ in range(300):  # junk bytes trip the unpickler in many ways (IndexError, KeyError, UnicodeDecodeError...)
        junk.write_bytes(rng.randbytes(1000))
        with pytest.raises(ck.CheckpointError, match='junk.pth: '):
            ck.load_encoder(junk)
    good = ck.save_ours(tmp_path / 'good.pth', full_sd, dict(arch='vit_tiny_patch16'))
    truncated = tmp_path / 'truncated.pth'
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ck.CheckpointError, match='truncated.pth: not a readable'):
        ck.load_encoder(truncated)
    resnet = tmp_path / 'resnet.pth'
    torch.save(torchvision.models.resnet18().state_dict(), resnet)
    with pytest.raises(ck.CheckpointError, match=r"resnet.pth: not a ViT/MAE checkpoint: key 'patch_embed.proj.weight'.*conv1.weight"):
        ck.load_encoder(resnet)
    with pytest.raises(ck.CheckpointError, match=r'good.pth: --arch vit_small_patch16 does not match.*patch_embed.proj.weight'):
        ck.load_encoder(good, arch='vit_small_patch16')
    sd, _ = ck.load_encoder(good)
    with pytest.raises(ck.CheckpointError, match=r"good.pth: key 'cls_token' has shape \(1, 1, 192\), the model expects \(1, 1, 384\)"):
        ck.load_into(vit('vit_small_patch16'), {k: v for k, v in sd.items() if k != 'pos_embed'}, good)
    with pytest.raises(ck.CheckpointError, match='nothing.pth: no such'):
        ck.load_encoder(tmp_path / 'nothing.pth')


def test_a_non_standard_size_needs_arch(tmp_path):
    odd = vit('vit_toy_patch16', depth=3)
    path = tmp_path / 'odd.pth'
    torch.save(odd.state_dict(), path)
    with pytest.raises(ck.CheckpointError, match='pass --arch'):
        ck.load_encoder(path)


def test_a_save_killed_mid_write_leaves_the_old_file_and_nothing_else(tmp_path):
    target = tmp_path / 'ckpt.pth'
    ck.save_checkpoint({'v': torch.zeros(2)}, target)
    script = (f'import time, torch\nfrom mae_core.checkpoint import atomic_write\n'
              f'def slow(tmp):\n    open(tmp, "wb").write(b"partial")\n    print("writing", flush=True)\n'
              f'    time.sleep(60)\natomic_write({str(target)!r}, slow)\n')
    proc = subprocess.Popen([sys.executable, '-c', script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == 'writing'
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(0.1)
    assert [p.name for p in tmp_path.iterdir()] == ['ckpt.pth']
    assert torch.equal(torch.load(target, weights_only=True)['v'], torch.zeros(2))


def test_training_checkpoints_are_saved_through_the_atomic_writer(tmp_path, monkeypatch):
    """mmengine's checkpoint hook writes through the backend named in our default hooks, which is atomic_write
    (whose kill -9 behaviour the test above shows)."""
    from mmengine.fileio import get_file_backend
    from mae_core import engine
    from mae_core.engine import default_hooks
    written, real = [], ck.atomic_write
    monkeypatch.setattr(engine, 'atomic_write', lambda path, fn: (written.append(str(path)), real(path, fn)))
    backend = get_file_backend(str(tmp_path), backend_args=default_hooks()['checkpoint']['backend_args'])
    backend.put(b'weights', str(tmp_path / 'iter_50.pth'))
    assert written == [str(tmp_path / 'iter_50.pth')] and (tmp_path / 'iter_50.pth').read_bytes() == b'weights'
    assert [p.name for p in tmp_path.iterdir()] == ['iter_50.pth']
