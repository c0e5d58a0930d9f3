"""Readers for the real dataset formats (nothing downloads) and the datasets that feed them to a model, plus the
generators of small data in each format (``smoke``). Nothing here knows a model or the training engine.

Each classification reader returns a :class:`Split`: ``(path, label)`` samples and the number of classes. A
missing root or file is one clear error naming the path and what was expected there."""
