"""Per-sample seeds: every random draw of a sample (crop, flip, mask, mixup) comes from (run seed, epoch, index),
so a resumed run, any number of loader workers and any world size draw exactly the same."""
import contextlib
import random

import numpy as np
import torch


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The seed of one sample's random draws, a function of (run seed, epoch, index) only."""
    return ((seed * 1_000_003 + epoch) * 10_000_019 + index) % (2 ** 62)


def step_seed(sample_seeds) -> int:
    """The seed of a training step's own draws (mixup, drop path): its samples' seeds summed, mod 2**62 (the
    same number as the int64 sum the batch tensor gives: 2**62 divides 2**64)."""
    return sum(int(s) for s in sample_seeds) % (2 ** 62)


@contextlib.contextmanager
def seeded_draws(seed: int):
    """Run transforms with torch's, Python's and numpy's global RNGs set from ``seed``, then restore them
    (torchvision draws crops from torch, timm's RandAugment and random erasing from Python and numpy).

    Seeds torch's CPU generator, and the current GPU's only where CUDA is initialised: a data-loader worker forked
    from a process using CUDA must not touch CUDA (it would raise), and ``torch.manual_seed`` queues a lazy seed
    for every device type (0.1 ms of the ~3 ms an ImageNet image takes a loader core). In a loader worker nothing
    draws outside this context, so the states are not kept there (numpy's costs 0.07 ms to save and restore)."""
    keep = torch.utils.data.get_worker_info() is None
    cuda = keep and torch.cuda.is_initialized()  # never in a forked loader worker
    if keep:
        py_state, np_state, cpu_state = random.getstate(), np.random.get_state(), torch.default_generator.get_state()
        cuda_state = torch.cuda.get_rng_state() if cuda else None
    torch.default_generator.manual_seed(seed)
    if cuda:
        torch.cuda.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    try:
        yield
    finally:
        if keep:
            random.setstate(py_state)
            np.random.set_state(np_state)
            torch.default_generator.set_state(cpu_state)
            if cuda:
                torch.cuda.set_rng_state(cuda_state)
