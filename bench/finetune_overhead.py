"""The cost of our fine-tuning loop (mmengine's Runner with our hooks: fb/mae's per-iteration lr, the seeded
sampler, logging, the progress line) against a plain PyTorch loop over the same model, data, optimiser and
precision, as a ratio measured in one run (issue 15: within 3 % on a GPU). Images are in memory, so only the
loops differ; the first iterations (warm-up) are not timed.

    python bench/finetune_overhead.py [--arch vit_base_patch16] [--batch 64] [--iters 40]
"""
import argparse
import tempfile
import time

import torch
import torch.nn as nn
from mmengine.hooks import Hook
from mmengine.optim import OptimWrapper

from mae_core import engine
from mae_core.vit import vit
from transfer.classification import Classifier

ON_GPU = torch.cuda.is_available()
DEVICE = torch.device('cuda' if ON_GPU else 'cpu')
WARMUP = 5


class InMemory(torch.utils.data.Dataset):
    """Random images and labels, already tensors, indexed as the seeded sampler indexes."""

    def __init__(self, n, size):
        g = torch.Generator().manual_seed(0)
        self.x, self.y = torch.randn(n, 3, size, size, generator=g), torch.randint(0, 1000, (n,), generator=g)

    def __len__(self):
        return len(self.y)

    def __getitem__(self, key):
        index, seed = key
        return dict(inputs=self.x[index], labels=int(self.y[index]), seeds=seed)


class Clock(Hook):
    """Wall time from the end of the warm-up to the end of the last iteration (synchronised once at each end)."""
    priority = 'LOWEST'

    def __init__(self):
        self.t0 = self.t1 = None

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.iter + 1 == WARMUP:
            torch.cuda.synchronize() if ON_GPU else None
            self.t0 = time.perf_counter()
        if runner.iter + 1 == runner.max_iters:
            torch.cuda.synchronize() if ON_GPU else None
            self.t1 = time.perf_counter()


def optimizer(model):
    return torch.optim.AdamW(model.parameters(), lr=1e-4, fused=ON_GPU)


def ours(model, loader, iters, bf16):
    clock = Clock()
    with tempfile.TemporaryDirectory() as work:
        kwargs = engine.runner_kwargs(work, 'none', 0, False, name='bench', by_epoch=False,
                                      checkpoint_interval=10 ** 9, log_interval=10)
        kwargs['visualizer'] = None
        engine.run(Classifier(model, bf16=bf16).to(DEVICE), kwargs, loader,
                   hooks=[engine.FbMaeLrSchedule(1e-4, 1, 100), clock],
                   train_cfg=dict(by_epoch=False, max_iters=iters, val_interval=10 ** 9),
                   optim_wrapper=OptimWrapper(optimizer(model)))
    return (iters - WARMUP) / (clock.t1 - clock.t0)


def plain(model, loader, iters, bf16):
    model = model.to(DEVICE)
    opt, loss_fn, done, t0 = optimizer(model), nn.CrossEntropyLoss(), 0, None
    while done < iters:
        for batch in loader:
            x, y = batch['inputs'].to(DEVICE, non_blocking=True), batch['labels'].to(DEVICE, non_blocking=True)
            with torch.autocast(DEVICE.type, dtype=torch.bfloat16, enabled=bf16):
                loss = loss_fn(model(x).float(), y)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            done += 1
            if done == WARMUP:
                torch.cuda.synchronize() if ON_GPU else None
                t0 = time.perf_counter()
            if done == iters:
                break
    torch.cuda.synchronize() if ON_GPU else None
    return (iters - WARMUP) / (time.perf_counter() - t0)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--arch', default='vit_base_patch16' if ON_GPU else 'vit_tiny_patch16')
    p.add_argument('--batch', type=int, default=64 if ON_GPU else 16)
    p.add_argument('--img-size', type=int, default=224 if ON_GPU else 96)
    p.add_argument('--iters', type=int, default=60 if ON_GPU else 25)
    args = p.parse_args()
    bf16 = engine.precision_is_bf16('auto')
    data = InMemory(args.batch * 8, args.img_size)
    loader = engine.train_loader(data, args.batch, 4 if ON_GPU else 0, seed=0, endless=True)
    speeds = {}
    for name, fn in (('plain PyTorch loop', plain), ('ours (mmengine + hooks)', ours)):
        torch.manual_seed(0)
        model = vit(args.arch, num_classes=1000, global_pool=True, img_size=args.img_size)
        speeds[name] = fn(model, loader, args.iters, bf16) * args.batch
    device = torch.cuda.get_device_name(0) if ON_GPU else 'cpu'
    print(f'{args.arch}, batch {args.batch} at {args.img_size} px, {"bf16" if bf16 else "fp32"}, {device}')
    for name, s in speeds.items():
        print(f'  {name}: {s:.1f} img/s')
    ratio = speeds['ours (mmengine + hooks)'] / speeds['plain PyTorch loop']
    print(f'ours / plain: {ratio:.3f} (target on a GPU: >= 0.97)')


if __name__ == '__main__':
    main()
