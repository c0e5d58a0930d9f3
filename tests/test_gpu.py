"""What only a GPU can show, run by ``bench/gpu/run.sh`` on a lent GPU machine (``pytest -m gpu``); skipped
elsewhere. bf16 autocast training, batched nvJPEG decoding against the CPU decoder, torch.compile of the
pre-training step, and every family's smoke run (training steps included) on CUDA."""
import sys

import numpy as np
import pytest
import torch
from mmengine.config import ConfigDict

from conftest import REPO, run
from mae_core.data import synthetic_image, write_image
from mae_core.mae import mae
from mae_core.record import read_records
from transfer.registry import BENCHMARKS
from transfer.robustness import decode_on_device

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')]


def test_bf16_autocast_training_steps_lower_the_loss_on_cuda():
    torch.manual_seed(0)
    model = mae('vit_toy_patch16', img_size=64).cuda()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    imgs = torch.randn(16, 3, 64, 64, device='cuda')
    losses = []
    for _ in range(20):
        with torch.autocast('cuda', dtype=torch.bfloat16):
            loss, _, _ = model(imgs, 0.75, seeds=list(range(16)))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]


def test_nvjpeg_batch_decoding_matches_the_cpu_decoder(tmp_path):
    rng = np.random.default_rng(0)
    files = []
    for i in range(8):
        path = tmp_path / f'{i}.JPEG'
        write_image(path, synthetic_image(i, 8, rng, 96 + 8 * i), quality=90)
        files.append((str(path), path.read_bytes()))
    cfg = ConfigDict(img_size=64, crop_pct=0.875, preprocess='resize_crop')
    gpu = decode_on_device(files, cfg, torch.device('cuda')).cpu()
    cpu = decode_on_device(files, cfg, torch.device('cpu'))
    assert gpu.shape == cpu.shape == (8, 3, 64, 64)
    assert (gpu - cpu).abs().mean() < 0.05  # decoders differ in IDCT rounding only


def test_torch_compile_of_the_pretraining_step_gives_the_eager_loss():
    torch.manual_seed(0)
    model = mae('vit_toy_patch16', img_size=64).cuda()
    imgs = torch.randn(8, 3, 64, 64, device='cuda')
    noise = torch.rand(8, 16, device='cuda')
    eager = model(imgs, 0.75, noise=noise)[0]
    compiled = torch.compile(model)(imgs, 0.75, noise=noise)[0]
    assert torch.allclose(eager, compiled, rtol=1e-3, atol=1e-4)


def test_every_family_runs_its_smoke_benchmarks_on_cuda(tmp_path):
    """A short pre-training, then ``run_transfer.py all --smoke``: every benchmark trains (where it does) and
    evaluates on the GPU and writes its record with intervals."""
    run([sys.executable, '-m', 'mae_core.cli', 'pretrain', '--config', str(REPO / 'eval_configs/pretrain/mae_tiny_cpu.py'),
         '--work-dir', str(tmp_path / 'pre'), '--records-dir', str(tmp_path / 'r'), '--cfg-options',
         'schedule.epochs=2', 'data.generated.per_class=8'], timeout=120)
    run([sys.executable, str(REPO / 'run_transfer.py'), 'all', '--checkpoint', str(tmp_path / 'pre' / 'final.pth'),
         '--smoke', '--records-dir', str(tmp_path / 'r')], cwd=tmp_path, timeout=200)
    records = {r['benchmark']: r for r in read_records(tmp_path / 'r')}
    assert set(BENCHMARKS) <= set(records)
    for name in BENCHMARKS:
        assert records[name]['env']['device'] == torch.cuda.get_device_name(0), name
        assert records[name]['ci95'], name
