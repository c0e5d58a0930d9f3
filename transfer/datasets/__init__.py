"""Readers for the real dataset formats (nothing downloads), and the dataset that feeds them to a model.

Each reader returns a :class:`Split`: ``(path, label)`` samples and the number of classes. A missing root or
file is one clear error naming the path and what was expected there."""
from ..errors import DataError  # noqa: F401
from .readers import READERS, Split, read_split, read_wnid_folders  # noqa: F401
from .torch_dataset import ClassificationDataset  # noqa: F401
