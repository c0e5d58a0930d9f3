"""mae-pretrain: a usable checkpoint in our format and a pretrain record; torchrun on CPU; resume after
kill -9 gives the weights of an uninterrupted run."""
import sys
from pathlib import Path

import torch

from conftest import REPO, kill_when, run
from mae_core.checkpoint import load_encoder
from mae_core.record import read_record

CONFIG = str(REPO / 'eval_configs/pretrain/mae_tiny_cpu.py')
SHORT = ['--cfg-options', 'schedule.epochs=4', 'data.generated.per_class=8', 'data.batch_size=16']


def test_final_checkpoint_loads_weights_only_and_the_record_holds_the_settings(tiny_checkpoint):
    final, record_path = tiny_checkpoint
    obj = torch.load(final, weights_only=True)  # tensors and plain types only
    assert obj['meta']['arch'] == 'vit_tiny_patch16' and obj['meta']['mask_ratio'] == 0.75
    sd, info = load_encoder(final)
    assert info['format'] == 'ours' and not any(k.startswith('decoder') for k in sd)
    rec = read_record(record_path)
    assert rec['family'] == 'pretrain' and rec['model']['sha256'] and rec['data']['subset'] == 'smoke'
    assert rec['metrics']['images_per_s'] > 0 and 0 < rec['metrics']['loss'] < 1.0  # norm-pix loss fell below 1
    assert rec['model']['pretrain']['decoder_depth'] == 2 and rec['time']['device_hours'] > 0


def test_torchrun_two_processes_on_cpu_with_tensor_decoding_write_one_checkpoint_and_one_record(tmp_path):
    proc = run([sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2', '-m', 'mae_core.cli',
                'pretrain', '--config', CONFIG, '--launcher', 'pytorch', '--work-dir', str(tmp_path / 'w'),
                '--records-dir', str(tmp_path / 'r')] + SHORT + ['data.decode=tensor'], timeout=300)
    records = list((tmp_path / 'r').glob('*/*.json'))
    assert len(records) == 1, proc.stdout[-2000:]
    rec = read_record(records[0])
    assert rec['env']['world_size'] == 2 and rec['model']['pretrain']['total_batch'] == 32
    assert rec['model']['pretrain']['decode'] == 'tensor' and rec['metrics']['loss'] > 0
    torch.load(tmp_path / 'w' / 'final.pth', weights_only=True)


def test_resume_after_kill_gives_the_weights_of_an_uninterrupted_run(tmp_path):
    args = [sys.executable, '-m', 'mae_core.cli', 'pretrain', '--config', CONFIG, '--records-dir',
            str(tmp_path / 'r')] + SHORT
    run(args + ['--work-dir', str(tmp_path / 'straight')], timeout=300)
    killed = tmp_path / 'killed'
    kill_when(args + ['--work-dir', str(killed)], killed / 'epoch_2.pth')
    assert not (killed / 'final.pth').exists(), 'the run finished before it could be killed'
    out = run(args + ['--work-dir', str(killed), '--resume'], timeout=300)
    assert 'Resuming from' in out.stdout + out.stderr
    a = torch.load(tmp_path / 'straight' / 'final.pth', weights_only=True)['model']
    b = torch.load(killed / 'final.pth', weights_only=True)['model']
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_reconstruction_figure_keeps_the_visible_patches(tiny_checkpoint, tmp_path):
    from mae_core.figures import mae_from_checkpoint, reconstruct, reconstruction_figure
    from mae_core.pretrain import generated_images
    from mmengine.config import Config
    images = generated_images(Config.fromfile(CONFIG).data.generated)
    out = run([sys.executable, '-m', 'mae_core.cli', 'figures', '--checkpoint', str(tiny_checkpoint[0]), '--images',
               str(images), '--out', str(tmp_path / 'recon.png'), '--mask-ratios', '0.75,0.9', '--num', '2'])
    assert Path(out.stdout.strip()).stat().st_size > 5000
    model, meta = mae_from_checkpoint(tiny_checkpoint[0])
    imgs = torch.randn(2, 3, 64, 64)
    masked, recon, pasted = reconstruct(model, imgs, 0.75)
    visible = masked != 0
    assert torch.equal(pasted[visible], imgs[visible]) and not torch.equal(recon, imgs)
    from mae_core.checkpoint import CheckpointError
    import pytest
    encoder_only = tmp_path / 'enc.pth'
    torch.save({k: v for k, v in torch.load(tiny_checkpoint[0], weights_only=True)['model'].items()
                if not k.startswith(('decoder', 'mask_token'))}, encoder_only)
    with pytest.raises(CheckpointError, match='no decoder'):
        reconstruction_figure(encoder_only, images, tmp_path / 'x.png')
