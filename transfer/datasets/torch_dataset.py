"""The Dataset that turns a :class:`Split` into model inputs."""
import torch

from mae_core.data import load_rgb
from mae_core.seeding import seeded_draws


class ClassificationDataset(torch.utils.data.Dataset):
    """``dataset[(index, seed)]`` -> ``dict(inputs, labels, seeds)``; random transforms draw from ``seed``.

    An unreadable image is one error naming the file.
    """

    def __init__(self, samples, transform):
        self.samples, self.transform = samples, transform

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, key):
        index, seed = key if isinstance(key, tuple) else (key, key)
        path, label = self.samples[index]
        img = load_rgb(path)
        with seeded_draws(seed):
            x = self.transform(img)
        return dict(inputs=x, labels=label, seeds=seed)
