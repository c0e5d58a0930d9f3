"""Pre-training step speed (forward, backward, AdamW step), ratios measured in one run:

- the shape of Table 2: encoder w/ [M] vs w/o [M] (decoder depth 8), and w/ [M] vs w/o [M] with decoder depth 1
  (the paper: 2.8x and 3.7x for ViT-L);
- our step vs transformers' ViTMAEForPreTraining (which matches the reference bit for bit) with the same weights,
  batch and precision, and our bf16 step vs its fp32 step (the CPU default is bf16 autocast where supported);
- on a GPU: bf16, fused AdamW, every variant eager, then (``--compile``) our main step compiled once, and MFU
  from a FLOP count of the real step. Each row prints as it is measured.

    python bench/pretrain_speed.py [--arch vit_base_patch16] [--batch 8] [--steps 3] [--compile] [--peak-tflops 989]

Run it on an idle machine: on 2 cores anything else running skews the ratios.
"""
import argparse
import tempfile
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from mae_core.checkpoint import export_hf
from mae_core.engine import cpu_has_bf16
from mae_core.mae import mae

ON_GPU = torch.cuda.is_available()
DEVICE = torch.device('cuda' if ON_GPU else 'cpu')


def sync():
    if ON_GPU:
        torch.cuda.synchronize()


def timed_step(model, loss_fn, imgs, steps, bf16, compile_=False):
    """Seconds per training step (after warm-up), and the FLOPs of one step (None when compiled: counting
    through a compiled graph is not reliable; the eager count of the same model holds)."""
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, fused=ON_GPU)
    fn = torch.compile(loss_fn) if compile_ else loss_fn

    def step():
        with torch.autocast(DEVICE.type, dtype=torch.bfloat16, enabled=bf16):
            loss = fn(imgs)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    step()
    flops = None
    if compile_:
        step()
    else:
        with FlopCounterMode(display=False) as counter:
            step()
        flops = counter.get_total_flops()
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return (time.perf_counter() - t0) / steps, flops


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--arch', default='vit_large_patch16' if ON_GPU else 'vit_base_patch16')
    p.add_argument('--batch', type=int, default=128 if ON_GPU else 8)
    p.add_argument('--steps', type=int, default=10 if ON_GPU else 3)
    p.add_argument('--img-size', type=int, default=224)
    p.add_argument('--compile', action='store_true', help='also time our step under torch.compile (GPU)')
    p.add_argument('--peak-tflops', type=float, default=989.0, help='dense bf16 peak for MFU (H100/H200: 989)')
    args = p.parse_args()
    torch.manual_seed(0)
    imgs = torch.randn(args.batch, 3, args.img_size, args.img_size, device=DEVICE)
    bf16_ok = ON_GPU or cpu_has_bf16()
    build = lambda **kw: mae(args.arch, img_size=args.img_size, norm_pix_loss=True, **kw).to(DEVICE).train()
    device = torch.cuda.get_device_name(0) if ON_GPU else 'cpu'
    print(f'{args.arch} MAE, batch {args.batch} at {args.img_size} px, mask 75 %, {args.steps} timed steps, {device}')
    print(f'{"step":<44}{"s/step":>9}{"img/s":>9}{"TFLOP/step":>12}', flush=True)
    rows = {}

    def measure(name, model, loss_fn, bf16, compile_=False):
        """Time one step and print its row at once (a run cut short by a time limit keeps what it measured)."""
        sec, flops = timed_step(model, loss_fn, imgs, args.steps, bf16, compile_)
        rows[name] = sec, flops
        tflops = f'{flops / 1e12:>12.2f}' if flops else f'{"(as eager)":>12}'
        print(f'{name:<44}{sec:>9.3f}{args.batch / sec:>9.1f}{tflops}', flush=True)

    precision = 'bf16' if ON_GPU else 'fp32'
    ours_name, hf_name = f'ours, w/o [M], dec 8, {precision}', f'transformers ViTMAE, {precision}'
    ours = build()
    ours_loss = lambda x: ours(x, 0.75)[0]
    measure(ours_name, ours, ours_loss, ON_GPU)
    for name, kw in (('w/ [M], dec 8', dict(encoder_mask_tokens=True)), ('w/o [M], dec 1', dict(decoder_depth=1)),
                     ('w/ [M], dec 1', dict(encoder_mask_tokens=True, decoder_depth=1))):
        m = build(**kw)
        measure(f'ours, {name}, {precision}', m, lambda x, m=m: m(x, 0.75)[0], ON_GPU)
        del m
    from transformers import ViTMAEForPreTraining
    with tempfile.TemporaryDirectory() as tmp:
        meta = dict(norm_pix_loss=True, num_heads=ours.blocks[0].attn.num_heads, decoder_num_heads=16)
        export_hf({k: v.cpu() for k, v in ours.state_dict().items()}, meta, f'{tmp}/hf')
        hf = ViTMAEForPreTraining.from_pretrained(f'{tmp}/hf').to(DEVICE).train()
    hf_loss = lambda x: hf(pixel_values=x).loss
    measure(hf_name, hf, hf_loss, ON_GPU)
    if not ON_GPU:
        measure('transformers ViTMAE, bf16' if bf16_ok else 'transformers ViTMAE, fp32 (again)', hf, hf_loss, bf16_ok)
        if bf16_ok:
            measure('ours, w/o [M], dec 8, bf16', ours, ours_loss, True)
    best = f'{ours_name}, torch.compile' if args.compile else ours_name
    if args.compile:
        measure(best, ours, ours_loss, ON_GPU, compile_=True)
    t = {k: v[0] for k, v in rows.items()}
    with_m = t[f'ours, w/ [M], dec 8, {precision}']
    print('\nratios (same run)')
    print(f'  w/ [M] / w/o [M], decoder 8: {with_m / t[ours_name]:.2f}x (Table 2, ViT-L: 2.8x)')
    print(f'  w/ [M] dec 8 / w/o [M] dec 1: {with_m / t[f"ours, w/o [M], dec 1, {precision}"]:.2f}x '
          '(Table 2, ViT-L: 3.7x)')
    print(f'  ours vs transformers, both {precision}, eager: {t[hf_name] / t[ours_name]:.2f}x '
          '(target >= 1.0 on CPU fp32, >= 1.3 on GPU bf16)')
    if args.compile:
        print(f'  ours compiled vs transformers eager, both {precision}: {t[hf_name] / t[best]:.2f}x')
    if not ON_GPU and bf16_ok:
        print(f'  ours bf16 vs transformers fp32: {t["transformers ViTMAE, fp32"] / t["ours, w/o [M], dec 8, bf16"]:.2f}x')
        print(f'  ours bf16 vs transformers bf16: {t["transformers ViTMAE, bf16"] / t["ours, w/o [M], dec 8, bf16"]:.2f}x')
    if ON_GPU:
        flops = rows[ours_name][1]  # the eager count: the compiled step does the same math
        print(f'  MFU of our step{" (compiled)" if args.compile else ""}: '
              f'{100 * flops / t[best] / (args.peak_tflops * 1e12):.1f} % of {args.peak_tflops:g} TFLOP/s '
              '(target >= 40 %)')

if __name__ == '__main__':
    main()
