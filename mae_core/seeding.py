"""Per-sample seeds: every random draw of a sample (crop, flip, mask, mixup) comes from (run seed, epoch, index),
so a resumed run, any number of loader workers and any world size draw exactly the same."""
import contextlib
import random

import numpy as np
import torch


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The seed of one sample's random draws, a function of (run seed, epoch, index) only."""
    return ((seed * 1_000_003 + epoch) * 10_000_019 + index) % (2 ** 62)


@contextlib.contextmanager
def seeded_draws(seed: int):
    """Run transforms with torch's, Python's and numpy's global RNGs set from ``seed``, then restore them
    (torchvision draws crops from torch, timm's RandAugment and random erasing from Python and numpy)."""
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
