"""The errors a user's input causes. ``run_transfer.py`` reports each as one line on stderr with exit code 2;
anything else is a bug and keeps its traceback."""


class UsageError(Exception):
    """A bad option, config value or checkpoint choice."""


class DataError(ValueError):
    """A dataset file that does not hold what its format says; the message names the file."""
