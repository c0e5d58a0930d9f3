"""What every training run shares on top of mmengine's Runner: distributed set-up that also works on CPU,
resuming the run's own checkpoints on torch >= 2.6, per-sample seeds that make a resumed run draw the same
augmentation and masks, and a hook that measures throughput and the final loss."""
import contextlib
import os
import subprocess
import time
from pathlib import Path

import torch
import torch.distributed as dist
from mmengine.fileio import LocalBackend, register_backend
from mmengine.hooks import Hook
from mmengine.runner import CheckpointLoader
from mmengine.runner import Runner as _Runner

from . import checkpoint

LAUNCHERS = ('none', 'pytorch', 'slurm')


def init_distributed(launcher: str):
    """Start the process group before the Runner exists -> (rank, world_size).

    mmengine's own launcher calls ``torch.cuda.set_device`` and fails without a GPU, so on CPU we start gloo
    ourselves (from torchrun's or Slurm's variables); on GPU mmengine's ``init_dist`` does it with NCCL.
    """
    if launcher not in LAUNCHERS:
        raise ValueError(f'unknown launcher {launcher!r}; expected one of {LAUNCHERS}')
    if launcher == 'none':
        return 0, 1
    if not dist.is_initialized():
        if launcher == 'slurm' and 'RANK' not in os.environ:
            os.environ.update(RANK=os.environ['SLURM_PROCID'], WORLD_SIZE=os.environ['SLURM_NTASKS'],
                              LOCAL_RANK=os.environ.get('SLURM_LOCALID', '0'))
            os.environ.setdefault('MASTER_PORT', '29500')
            if 'MASTER_ADDR' not in os.environ:
                nodes = subprocess.getoutput(f'scontrol show hostnames {os.environ["SLURM_NODELIST"]}')
                os.environ['MASTER_ADDR'] = nodes.splitlines()[0]
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


def model_wrapper_cfg():
    """DDP without ``device_ids`` on CPU (mmengine's default passes the local rank, which needs a GPU)."""
    if dist.is_initialized() and not torch.cuda.is_available():
        return dict(type='MMDistributedDataParallel', device_ids=None)
    return None


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
    """mmengine's Runner that can resume its own checkpoints on torch 2.14 and says so in the log."""

    def resume(self, filename, *args, **kwargs):
        self.logger.info(f'Resuming from {filename}: training continues from its epoch with the same seeds')
        with trusting_work_dir_checkpoints():
            return super().resume(filename, *args, **kwargs)

    def load_or_resume(self):
        if self._resume and self._load_from is None and not self._has_loaded:
            from mmengine.runner import find_latest_checkpoint
            if find_latest_checkpoint(self.work_dir) is None:
                self.logger.warning(f'--resume: no finished checkpoint in {self.work_dir}; starting from scratch')
        return super().load_or_resume()


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The seed of one sample's random draws (crop, flip, mask), a function of (run seed, epoch, index) only,
    so a resumed run, any number of workers and any world size draw exactly the same."""
    return ((seed * 1_000_003 + epoch) * 10_000_019 + index) % (2 ** 62)


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


@contextlib.contextmanager
def seeded_draws(seed: int):
    """Run transforms with torch's, Python's and numpy's global RNGs set from ``seed``, then restore them
    (torchvision draws crops from torch, timm's RandAugment and random erasing from Python and numpy)."""
    import random

    import numpy as np
    py_state, np_state = random.getstate(), np.random.get_state()
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        random.seed(seed)
        np.random.seed(seed % (2 ** 32))
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


class RunStatsHook(Hook):
    """Collects the mean loss of the last epoch and training images/s (this process's part of the run)."""
    priority = 'VERY_LOW'

    def __init__(self, batch_size: int):
        self.batch_size, self.images, self.seconds, self.epoch_losses, self.last_loss = batch_size, 0, 0.0, [], None

    def before_train_epoch(self, runner):
        self.epoch_losses = []

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        self._t = time.perf_counter()

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.seconds += time.perf_counter() - self._t
        self.images += self.batch_size * world_size()
        if outputs and 'loss' in outputs:
            self.epoch_losses.append(float(outputs['loss'].detach()))

    def after_train_epoch(self, runner):
        if self.epoch_losses:
            self.last_loss = sum(self.epoch_losses) / len(self.epoch_losses)

    @property
    def images_per_s(self):
        return self.images / self.seconds if self.seconds else 0.0


class AtomicLocalBackend(LocalBackend):
    """mmengine's local file backend with each write made atomic (:func:`mae_core.checkpoint.atomic_write`):
    ``kill -9`` during a training checkpoint's save leaves the earlier checkpoints and no partial file."""

    def put(self, obj: bytes, filepath) -> None:
        checkpoint.atomic_write(filepath, lambda tmp: Path(tmp).write_bytes(obj))


register_backend('mae_suite_atomic_local', AtomicLocalBackend, force=True)


def default_hooks(checkpoint_interval=1, log_interval=10, max_keep=2, by_epoch=True):
    """Checkpoint every ``checkpoint_interval`` epochs (iterations when not ``by_epoch``), keep the last two,
    each written atomically."""
    from mmengine.hooks import CheckpointHook, LoggerHook
    return dict(checkpoint=dict(type=CheckpointHook, interval=checkpoint_interval, max_keep_ckpts=max_keep,
                                save_last=True, by_epoch=by_epoch,
                                backend_args=dict(backend='mae_suite_atomic_local')),
                logger=dict(type=LoggerHook, interval=log_interval))


def visualizer_cfg(tensorboard=True):
    from mmengine.visualization import LocalVisBackend, TensorboardVisBackend, Visualizer
    backends = [dict(type=LocalVisBackend)] + ([dict(type=TensorboardVisBackend)] if tensorboard else [])
    return dict(type=Visualizer, vis_backends=backends, name=f'vis-{os.getpid()}-{time.time_ns()}')


def autocast_context(device_type: str, enabled: bool):
    """bf16 autocast where it pays (GPU, or a CPU with native bf16); a no-op otherwise."""
    return torch.autocast(device_type, dtype=torch.bfloat16, enabled=enabled)


def cpu_has_bf16() -> bool:
    try:
        with open('/proc/cpuinfo') as f:
            flags = f.read()
        return 'avx512_bf16' in flags or 'amx_bf16' in flags
    except OSError:
        return False


def release_workers(*loaders):
    """Stop the persistent worker processes of finished loaders now, not at garbage collection: ``run_transfer
    all`` runs benchmarks one after another in one process, and idle workers would pile up."""
    for loader in loaders:
        iterator = getattr(loader, '_iterator', None)
        if iterator is not None and hasattr(iterator, '_shutdown_workers'):
            iterator._shutdown_workers()
            loader._iterator = None
