"""Everything that touches mmengine, for pre-training and every benchmark: distributed set-up that also works on
CPU, the Runner's arguments, loaders, schedules, precision, resuming the run's own checkpoints on torch >= 2.6,
atomic training checkpoints, and the run itself (train then validate, or validate only)."""
import contextlib
import logging
import math
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import torch
import torch.distributed as dist
from mmengine.dataset import DefaultSampler
from mmengine.fileio import LocalBackend, register_backend
from mmengine.hooks import CheckpointHook, Hook, LoggerHook, RuntimeInfoHook
from mmengine.model import BaseDataPreprocessor
from mmengine.runner import CheckpointLoader, find_latest_checkpoint
from mmengine.runner import Runner as _Runner
from mmengine.visualization import LocalVisBackend, TensorboardVisBackend, Visualizer

from . import progress
from .checkpoint import atomic_write
from .errors import ConfigError, DataError, UsageError
from .seeding import sample_seed

LAUNCHERS = ('none', 'pytorch', 'slurm')


# ==================================================================== distributed
def init_distributed(launcher: str):
    """Start the process group before the Runner exists -> (rank, world_size).

    mmengine's own launcher calls ``torch.cuda.set_device`` and fails without a GPU, so on CPU we start gloo
    ourselves (from torchrun's or Slurm's variables); on GPU mmengine's ``init_dist`` does it with NCCL.
    """
    if launcher not in LAUNCHERS:
        raise UsageError(f'--launcher {launcher}: expected one of {", ".join(LAUNCHERS)}')
    if launcher == 'none':
        return 0, 1
    if not dist.is_initialized():
        if launcher == 'slurm' and 'RANK' not in os.environ:
            if 'SLURM_PROCID' not in os.environ or 'SLURM_NTASKS' not in os.environ:
                raise UsageError('--launcher slurm: SLURM_PROCID/SLURM_NTASKS are not set (start the command '
                                 'with srun)')
            os.environ.update(RANK=os.environ['SLURM_PROCID'], WORLD_SIZE=os.environ['SLURM_NTASKS'],
                              LOCAL_RANK=os.environ.get('SLURM_LOCALID', '0'))
            os.environ.setdefault('MASTER_PORT', '29500')
            if 'MASTER_ADDR' not in os.environ:
                nodes = subprocess.getoutput(f'scontrol show hostnames {os.environ.get("SLURM_NODELIST", "")}')
                os.environ['MASTER_ADDR'] = nodes.splitlines()[0] if nodes.strip() else 'localhost'
        missing = [k for k in ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT') if k not in os.environ]
        if missing:
            raise UsageError(f'--launcher {launcher}: {", ".join(missing)} not set (start the command with torchrun '
                             'or srun)')
        if torch.cuda.is_available():
            from mmengine.dist import init_dist
            init_dist('pytorch', backend='nccl')
        else:
            dist.init_process_group('gloo')
    return dist.get_rank(), dist.get_world_size()


def is_main_process() -> bool:
    return not dist.is_initialized() or dist.get_rank() == 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def barrier():
    if dist.is_initialized():
        dist.barrier()


def model_wrapper_cfg():
    """DDP without ``device_ids`` on CPU (mmengine's default passes the local rank, which needs a GPU)."""
    if dist.is_initialized() and not torch.cuda.is_available():
        return dict(type='MMDistributedDataParallel', device_ids=None)
    return None


# ==================================================================== precision
def cpu_has_bf16() -> bool:
    try:
        with open('/proc/cpuinfo') as f:
            flags = f.read()
        return 'avx512_bf16' in flags or 'amx_bf16' in flags
    except OSError:
        return False


def precision_is_bf16(precision: str) -> bool:
    """'auto': bf16 autocast on GPU and on CPUs with native bf16; 'bf16' or 'fp32' as said."""
    if precision not in ('auto', 'bf16', 'fp32'):
        raise ConfigError(f'precision must be auto, bf16 or fp32, got {precision!r}')
    if precision == 'auto':
        return torch.cuda.is_available() or cpu_has_bf16()
    return precision == 'bf16'


def autocast_context(device_type: str, enabled: bool):
    """bf16 autocast where it pays (GPU, or a CPU with native bf16); a no-op otherwise."""
    return torch.autocast(device_type, dtype=torch.bfloat16, enabled=enabled)


# ==================================================================== resume and checkpoints
@contextlib.contextmanager
def trusting_work_dir_checkpoints():
    """mmengine pickles HistoryBuffer and numpy arrays in its checkpoints, which torch.load's default
    ``weights_only=True`` refuses. Resuming reads only the run's own work-dir files, so there (and only
    there) we load them with ``weights_only=False``. Files a user hands in never pass through here."""
    schemes = CheckpointLoader._schemes
    local = schemes['']

    def load_own(filename, map_location):
        return torch.load(os.path.expanduser(filename), map_location=map_location, weights_only=False)
    schemes[''] = load_own
    try:
        yield
    finally:
        schemes[''] = local


class Runner(_Runner):
    """mmengine's Runner that can resume its own checkpoints on torch 2.14 and says so in the log. Unless
    verbose (``-v``), its log goes to the work dir only: the console gets errors and our progress line."""

    def build_logger(self, *args, **kwargs):
        logger = super().build_logger(*args, **kwargs)
        if not progress.verbose():
            for handler in logger.handlers:
                if type(handler) is logging.StreamHandler:
                    handler.setLevel(logging.ERROR)
            progress.log_warnings_to([h for h in logger.handlers if isinstance(h, logging.FileHandler)])
        return logger

    def tell(self, message: str, level='warning'):
        """Log ``message`` and show it on the console even when it is quiet (resuming, and what went wrong)."""
        self.logger.log(logging.WARNING if level == 'warning' else logging.INFO, message)
        if not progress.verbose() and is_main_process():
            print(f'{level}: {message}', file=sys.stderr, flush=True)

    def resume(self, filename, *args, **kwargs):
        self.tell(f'Resuming from {filename}: training continues from its epoch with the same seeds', 'note')
        with trusting_work_dir_checkpoints():
            return super().resume(filename, *args, **kwargs)

    def load_or_resume(self):
        if self._resume and self._load_from is None and not self._has_loaded:
            self._load_from = self.last_good_checkpoint()
            if self._load_from is None:  # (mmengine would pick the damaged newest file again)
                self._resume = False
                self.tell(f'--resume: no finished checkpoint in {self.work_dir}; starting from scratch')
        return super().load_or_resume()

    def last_good_checkpoint(self):
        """The newest complete checkpoint of the work dir: the one ``last_checkpoint`` names, else the highest
        ``epoch_N``/``iter_N``; a damaged file (not a complete zip, e.g. copied in truncated) or an empty
        ``last_checkpoint`` is passed over with a warning. Ours are written atomically and never partial."""
        work = Path(self.work_dir)
        named = find_latest_checkpoint(str(work)) if (work / 'last_checkpoint').exists() else None
        numbered = sorted(work.glob('*_*.pth'), key=lambda p: int(p.stem.rpartition('_')[2])
                          if p.stem.rpartition('_')[2].isdigit() else -1, reverse=True)
        for path in [Path(named)] * bool(named) + numbered:
            if path.is_file() and zipfile.is_zipfile(path):
                return str(path)
            self.tell(f'--resume: {path} is not a complete checkpoint; trying an earlier one')
        return None


class AtomicLocalBackend(LocalBackend):
    """mmengine's local file backend with each write made atomic (:func:`mae_core.checkpoint.atomic_write`):
    ``kill -9`` during a training checkpoint's save leaves the earlier checkpoints and no partial file."""

    def put(self, obj: bytes, filepath) -> None:
        atomic_write(filepath, lambda tmp: Path(tmp).write_bytes(obj))


register_backend('mae_suite_atomic_local', AtomicLocalBackend, force=True)


def default_hooks(checkpoint_interval=1, log_interval=10, max_keep=1, by_epoch=True):
    """Checkpoint every ``checkpoint_interval`` epochs (iterations when not ``by_epoch``), written atomically;
    keep the last ``max_keep`` (one by default: an atomic save never leaves the newest one partial)."""
    return dict(checkpoint=dict(type=CheckpointHook, interval=checkpoint_interval, max_keep_ckpts=max_keep,
                                save_last=True, by_epoch=by_epoch,
                                backend_args=dict(backend='mae_suite_atomic_local')),
                logger=dict(type=LoggerHook, interval=log_interval),
                runtime_info=dict(type=DeferredLossLog, interval=log_interval))


# ==================================================================== no host sync per training step
# Reading a device value back (``.item()``, ``int(tensor)``, a copy from pageable memory) makes the host wait
# until the device has finished the previous step, which leaves the device idle while the next one is launched.
class SeedsOnHost(BaseDataPreprocessor):
    """mmengine's default preprocessor (the batch onto the model's device) but for the sample seeds, which stay
    Python ints: the step's random draws are seeded from them on the host."""

    def forward(self, data, training=False):
        if not isinstance(data, dict) or data.get('seeds') is None:
            return super().forward(data, training)
        seeds = data['seeds']
        out = super().forward({k: v for k, v in data.items() if k != 'seeds'}, training)
        return dict(out, seeds=seeds.tolist() if torch.is_tensor(seeds) else [int(x) for x in seeds])


class DeferredLossLog(RuntimeInfoHook):
    """mmengine's RuntimeInfoHook, except that a step's losses stay on the device until the logger reads them
    (every ``interval`` iterations and at an epoch's end, as :class:`LoggerHook`): one host sync per log line,
    not one per step. The logged values and their order are mmengine's."""

    def __init__(self, interval: int):
        super().__init__()
        self.interval, self.pending = interval, []

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if outputs:
            self.pending.append({k: v.detach() if torch.is_tensor(v) else v for k, v in outputs.items()})
        if (batch_idx + 1) % self.interval == 0 or self.end_of_epoch(runner.train_dataloader, batch_idx):
            self.flush(runner)

    def after_train(self, runner):
        self.flush(runner)
        super().after_train(runner)

    def flush(self, runner):
        for outputs in self.pending:
            for key, value in outputs.items():
                runner.message_hub.update_scalar(f'train/{key}', value)
        self.pending = []


def visualizer_cfg(tensorboard=True):
    backends = [dict(type=LocalVisBackend)] + ([dict(type=TensorboardVisBackend)] if tensorboard else [])
    return dict(type=Visualizer, vis_backends=backends, name=f'vis-{os.getpid()}-{time.time_ns()}')


def runner_kwargs(work_dir, launcher, seed, resume, *, name='run', by_epoch=True, checkpoint_interval=1,
                  log_interval=10, keep_checkpoints=1, cfg=None):
    """The Runner arguments every run shares (``cfg``: the resolved config, saved in the work dir). An
    iteration-based run logs ``Iter(train) [140/150]``, not mmengine's epoch counter."""
    return dict(
        work_dir=str(work_dir), launcher=launcher, resume=resume, randomness=dict(seed=seed),
        default_hooks=default_hooks(checkpoint_interval, log_interval, keep_checkpoints, by_epoch=by_epoch),
        log_processor=dict(by_epoch=by_epoch),
        visualizer=visualizer_cfg(), experiment_name=f'{name}_{time.strftime("%Y%m%d_%H%M%S")}_{time.time_ns() % 10**6}',
        env_cfg=dict(dist_cfg=dict(backend='nccl' if torch.cuda.is_available() else 'gloo')),
        cfg=dict(cfg or {}, model_wrapper_cfg=model_wrapper_cfg()), log_level='INFO')


# ==================================================================== schedules
class FbMaeLrSchedule(Hook):
    """fb/mae's per-iteration lr (``util/lr_sched.adjust_learning_rate``, called by ``engine_pretrain`` and
    ``engine_finetune`` before each step whose index in the epoch is a multiple of ``accum_iter``, at the fractional
    epoch ``step / len(loader) + epoch``): ``peak * epoch / warmup`` during the warm-up, then a half-cycle cosine
    from ``peak`` to ``min_lr``; each param group gets that times its ``lr_scale`` (layer decay). A function of
    the iteration only, so a resumed run sets the same rates. (mmengine's ``LinearLR`` reaches the peak one
    iteration early and its cosine steps differently.)"""
    priority = 'VERY_HIGH'

    def __init__(self, peak: float, warmup_epochs: float, epochs: int, min_lr: float = 0.0, accum_iter: int = 1):
        self.peak, self.warmup, self.epochs, self.min_lr, self.accum = peak, warmup_epochs, epochs, min_lr, accum_iter

    def lr_at(self, epoch: float) -> float:
        if epoch < self.warmup:
            return self.peak * epoch / self.warmup
        return self.min_lr + (self.peak - self.min_lr) * 0.5 * \
            (1. + math.cos(math.pi * (epoch - self.warmup) / (self.epochs - self.warmup)))  # fb/mae's exact order

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if batch_idx % self.accum == 0:
            lr = self.lr_at(runner.epoch + batch_idx / len(runner.train_dataloader))
            for group in runner.optim_wrapper.optimizer.param_groups:
                group['lr'] = lr * group.get('lr_scale', 1.0)


class IterationLrSchedule(Hook):
    """Sets every param group's lr to its base lr x ``factor(iteration)`` before each iteration (a function of the
    iteration only, so a resumed run sets the same rates)."""
    priority = 'VERY_HIGH'

    def __init__(self, factor):
        self.factor = factor

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        for group in runner.optim_wrapper.optimizer.param_groups:
            group['lr'] = group.setdefault('base_lr', group['lr']) * self.factor(runner.iter)


# ==================================================================== data loading
class SeededSampler(torch.utils.data.Sampler):
    """Shuffles per epoch from (seed, epoch), shards by rank, and yields ``(index, sample_seed)`` pairs.

    The dataset draws its augmentation from the pair's seed. ``drop_last``-style padding repeats indices so
    every rank gets the same count (training only). ``endless=True`` runs on through epoch after epoch, for
    iteration-based training: mmengine restarts a finished loader with a 2 s pause, which on a small dataset
    costs more than the training itself.
    """

    def __init__(self, dataset, seed=0, shuffle=True, endless=False):
        self.n, self.seed, self.shuffle, self.endless, self.epoch = len(dataset), seed, shuffle, endless, 0
        self.rank = dist.get_rank() if dist.is_initialized() else 0
        self.world = world_size()
        self.per_rank = -(-self.n // self.world)

    def set_epoch(self, epoch: int):
        self.epoch = epoch

    def __len__(self):
        return self.per_rank

    def __iter__(self):
        epoch = self.epoch
        while True:
            g = torch.Generator().manual_seed(self.seed * 7919 + epoch)
            order = torch.randperm(self.n, generator=g).tolist() if self.shuffle else list(range(self.n))
            order += order[:self.per_rank * self.world - self.n]
            for i in order[self.rank::self.world]:
                yield i, sample_seed(self.seed, epoch, i)
            if not self.endless:
                return
            epoch += 1


def train_loader(dataset, batch_size, num_workers, seed, collate=None, endless=False, source='the training set'):
    """Shuffled from the run's seed (:class:`SeededSampler`), in full batches only."""
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, drop_last=True, collate_fn=collate, num_workers=num_workers,
        sampler=SeededSampler(dataset, seed, endless=endless), pin_memory=torch.cuda.is_available(),
        persistent_workers=num_workers > 0)
    if len(loader) == 0:
        raise DataError(f'{source}: {len(dataset)} training images make no full batch of {batch_size} per process')
    return loader


def val_loader(dataset, batch_size, num_workers, collate=None):
    """In order; each image seen once across ranks (mmengine drops the sampler's padding when it gathers)."""
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, collate_fn=collate,
                                       sampler=DefaultSampler(dataset, shuffle=False), num_workers=num_workers,
                                       pin_memory=torch.cuda.is_available(), persistent_workers=num_workers > 0)


def release_workers(*loaders):
    """Stop the persistent worker processes of finished loaders now, not at garbage collection: ``run_transfer
    all`` runs benchmarks one after another in one process, and idle workers would pile up."""
    for loader in loaders:
        iterator = getattr(loader, '_iterator', None)
        if iterator is not None and hasattr(iterator, '_shutdown_workers'):
            iterator._shutdown_workers()
            loader._iterator = None


# ==================================================================== the run
class RunStatsHook(Hook):
    """The mean loss of the first and the last epoch, and training images/s: the wall time of each epoch's steps,
    loader waits included, checkpointing and validation not (this process's part of the run). The device is
    read once per epoch (once per pass over the loader, and at the end, in an iteration-based run), not per step."""
    priority = 'VERY_LOW'

    def __init__(self, batch_size: int):
        self.batch_size, self.images, self.seconds, self.epoch_start = batch_size, 0, 0.0, None
        self.loss_sum, self.steps = None, 0  # this epoch's, summed on the device
        self.first_loss = self.last_loss = None

    def before_train_epoch(self, runner):
        self.loss_sum, self.steps = None, 0

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if self.epoch_start is None:
            self.epoch_start = time.perf_counter()

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.images += self.batch_size * world_size()
        if outputs and 'loss' in outputs:
            loss = outputs['loss'].detach().double()
            self.loss_sum = loss if self.loss_sum is None else self.loss_sum + loss
            self.steps += 1
        if self.end_of_epoch(runner.train_dataloader, batch_idx) or self.is_last_train_iter(runner):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.seconds += time.perf_counter() - self.epoch_start
            self.epoch_start = None

    def after_train_epoch(self, runner):
        if self.steps:
            self.last_loss = float(self.loss_sum) / self.steps
            if runner.epoch == 0:
                self.first_loss = self.last_loss

    @property
    def images_per_s(self):
        return self.images / self.seconds if self.seconds else 0.0


class ProgressHook(Hook):
    """Reports training and validation steps to the progress line (:mod:`mae_core.progress`)."""
    priority = 'VERY_LOW'

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        progress.show('train', runner.iter + 1, runner.max_iters)

    def after_val_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        progress.show('eval', batch_idx + 1, len(runner.val_dataloader))


class KeepMetrics(Hook):
    """Keeps the metrics of the last validation."""

    def __init__(self):
        self.metrics = None

    def after_val_epoch(self, runner, metrics=None):
        self.metrics = dict(metrics or {})


def run(model, kwargs, train_loader=None, val_loader=None, evaluator=None, hooks=(), **train_args):
    """mmengine's Runner with ``kwargs`` (:func:`runner_kwargs`): training (``train_args``: train_cfg,
    optim_wrapper, param_scheduler) then the final validation, or validation only when there is no
    ``train_loader`` -> the last validation's metrics (None without a ``val_loader``). Loader workers are
    released after."""
    keep = KeepMetrics()
    parts = dict(custom_hooks=[keep, ProgressHook(), *hooks])
    if val_loader is not None:
        parts.update(val_dataloader=val_loader, val_cfg=dict(), val_evaluator=evaluator)
    if train_loader is not None:
        parts.update(train_dataloader=train_loader, **train_args)
    try:
        runner = Runner(model=model, **parts, **kwargs)
        if train_loader is None:
            runner.val()
        else:
            runner.train()
            if val_loader is not None and keep.metrics is None:  # resumed after the last step had been saved
                keep.metrics = runner.val_loop.run()
    finally:
        release_workers(train_loader, val_loader)
    return keep.metrics
