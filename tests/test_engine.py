"""The shared engine against fb/mae's reference behaviour: the per-iteration learning rate; a training step that
does not read the device back (seeds kept on the host, losses read once per log line and once per epoch)."""
import math

import torch


def fb_mae_lr(epoch, peak, warmup_epochs, epochs, min_lr):
    """fb/mae ``util/lr_sched.adjust_learning_rate`` (commit be47fef), transcribed."""
    if epoch < warmup_epochs:
        return peak * epoch / warmup_epochs
    return min_lr + (peak - min_lr) * 0.5 * (1. + math.cos(math.pi * (epoch - warmup_epochs) / (epochs - warmup_epochs)))


def test_the_lr_of_every_iteration_is_fb_maes(tmp_path):
    """fb/mae's ``engine_finetune.train_one_epoch`` sets the lr before each step whose index in the epoch is a
    multiple of ``accum_iter``, at the fractional epoch ``step / len(loader) + epoch``, times each group's
    ``lr_scale``; our engine's schedule hook, run by mmengine's real loop, must set the same rates."""
    from mmengine.hooks import Hook
    from mmengine.model import BaseModel
    from mmengine.optim import OptimWrapper

    from mae_core import engine

    class Tiny(BaseModel):
        def __init__(self):
            super().__init__()
            self.a, self.b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 1)

        def forward(self, inputs, seeds=None, data_samples=None, mode='loss'):
            return dict(loss=self.b(self.a(inputs)).pow(2).mean())

    class Record(Hook):
        priority = 'LOWEST'

        def __init__(self):
            self.seen = []

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            self.seen.append([g['lr'] for g in runner.optim_wrapper.optimizer.param_groups])

    data = [dict(inputs=torch.randn(2), seeds=i) for i in range(10)]
    loader = torch.utils.data.DataLoader(data, batch_size=2, shuffle=True)  # 5 steps per epoch
    model = Tiny()
    peak, warmup, epochs, min_lr, accum = 0.1, 1.5, 4, 1e-3, 2
    groups = [dict(params=model.a.parameters(), lr_scale=1.0), dict(params=model.b.parameters(), lr_scale=0.5)]
    record = Record()
    engine.run(model, engine.runner_kwargs(tmp_path, 'none', 0, False, log_interval=100), loader,
               hooks=[engine.FbMaeLrSchedule(peak, warmup, epochs, min_lr, accum), record],
               train_cfg=dict(by_epoch=True, max_epochs=epochs, val_interval=10 ** 9),
               optim_wrapper=OptimWrapper(torch.optim.SGD(groups, lr=peak), accumulative_counts=accum))
    expected, lr = [], None
    for epoch in range(epochs):
        for step in range(5):
            if step % accum == 0:
                lr = fb_mae_lr(step / 5 + epoch, peak, warmup, epochs, min_lr)
            expected.append([lr * 1.0, lr * 0.5])
    assert record.seen == expected


def test_steps_get_host_seeds_and_losses_reach_the_log_in_order_once_per_log_line(tmp_path):
    """mmengine's RuntimeInfoHook reads every step's loss (``.item()``, a host sync on a GPU); ours keeps them on
    the device until the logger's line (every ``log_interval`` steps, and at an epoch's end) and then hands
    mmengine the same values in the same order. Seeds reach the step as Python ints, not device tensors."""
    from mmengine.hooks import Hook
    from mmengine.model import BaseModel
    from mmengine.optim import OptimWrapper

    from mae_core import engine

    class Tiny(BaseModel):
        def __init__(self):
            super().__init__(data_preprocessor=engine.SeedsOnHost())
            self.a, self.seen_seeds = torch.nn.Linear(2, 1), []

        def forward(self, inputs, seeds=None, data_samples=None, mode='loss'):
            self.seen_seeds.append(seeds)
            return dict(loss=self.a(inputs).pow(2).mean())

    class Watch(Hook):
        priority = 'LOWEST'  # after the runtime-info and logger hooks

        def __init__(self):
            self.losses, self.logged = [], []

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            self.losses.append(float(outputs['loss'].detach()))
            history = runner.message_hub.log_scalars.get('train/loss')
            self.logged.append(len(history.data[0]) if history else 0)

    data = [dict(inputs=torch.randn(2), seeds=2 ** 61 + i) for i in range(10)]
    model, watch, stats = Tiny(), Watch(), engine.RunStatsHook(2)
    engine.run(model, engine.runner_kwargs(tmp_path, 'none', 0, False, log_interval=3),
               torch.utils.data.DataLoader(data, batch_size=2), hooks=[watch, stats],
               train_cfg=dict(by_epoch=True, max_epochs=2, val_interval=10 ** 9),
               optim_wrapper=OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1)))
    assert all(type(s) is list and all(type(x) is int for x in s) for s in model.seen_seeds)
    assert model.seen_seeds[0] == [2 ** 61, 2 ** 61 + 1]
    assert watch.logged == [0, 0, 3, 3, 5, 5, 5, 8, 8, 10]  # mmengine's own hook: 1, 2, ..., 10
    from mmengine.logging import MessageHub
    assert list(MessageHub.get_current_instance().get_scalar('train/loss').data[0]) == watch.losses
    assert stats.last_loss == sum(watch.losses[5:]) / 5 and stats.first_loss == sum(watch.losses[:5]) / 5


def test_the_step_seed_is_the_int64_sum_of_the_sample_seeds_mod_2_to_the_62():
    """The step seed used to be ``int(seeds.sum()) % 2**62`` on the batch tensor (int64, wrapping); summed on the
    host it is the same number, so runs draw as before."""
    from mae_core.seeding import sample_seed, step_seed
    for seeds in ([sample_seed(7, 3, i) for i in range(128)], [2 ** 62 - 1 - i for i in range(128)]):
        assert step_seed(seeds) == int(torch.tensor(seeds).sum()) % (2 ** 62)
    assert sum(seeds) > 2 ** 63  # the tensor sum wrapped


def test_eval_above_224_px_resizes_the_whole_image_as_fb_mae():
    """fb/mae ``util/datasets.build_transform(is_train=False)``: crop_pct 224/256 up to 224 px, else 1.0."""
    from pathlib import Path

    from mae_core.config import load_config
    from transfer.classification import eval_transform
    configs = Path(__file__).resolve().parent.parent / 'eval_configs'
    for name, size, resize in (('in1k_finetune.py', 224, 256), ('in1k_finetune_448.py', 448, 448)):
        cfg = load_config(configs / name)
        first = eval_transform(cfg.img_size, cfg.aug.crop_pct).transforms[0]
        assert cfg.img_size == size and first.size == resize
