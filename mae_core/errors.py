"""The errors a user's input causes, all derived from :class:`UserError`.

Entry points (:func:`entry_point`) print a ``UserError`` as one line on standard error and exit with 2; any
other exception is a bug and keeps its traceback. Library code raises, it never exits."""
import functools
import sys


class UserError(Exception):
    """Bad input: a file, key or option that is not as expected; the message is one line that names it.

    Raised inside a DataLoader worker, torch re-raises it in the main process as the same type with the worker's
    traceback as its message; the constructor takes the original line back out of that text (its last line is
    ``<module>.<class>: <message>``), so the user sees the same line either way."""

    def __init__(self, *args):
        if len(args) == 1 and isinstance(args[0], str) and args[0].startswith('Caught '):
            last = args[0].rstrip().splitlines()[-1]
            name = f'{type(self).__module__}.{type(self).__qualname__}: '
            args = (last[len(name):] if last.startswith(name) else last,)
        super().__init__(*args)


class ConfigError(UserError, ValueError):
    """A config file or ``--cfg-options`` value that cannot be used."""


class UsageError(UserError):
    """A bad command-line option or combination of options."""


class CheckpointError(UserError, ValueError):
    """A checkpoint that cannot be used as asked; the message names the file and the offending key."""


class DataError(UserError, ValueError):
    """A dataset file that does not hold what its format says; the message names the file."""


class MissingFile(UserError, FileNotFoundError):
    """A file or folder the input needs is not there; the message names the path and what was expected."""


class UnreadableImage(UserError, OSError):
    """An image file that cannot be decoded; the message names the file."""


def entry_point(main):
    """Wrap a command's ``main(argv)``: a :class:`UserError` becomes one ``error:`` line and exit code 2."""
    @functools.wraps(main)
    def run(argv=None):
        try:
            return main(argv) or 0
        except UserError as e:
            print(f'error: {e}', file=sys.stderr)
            return 2
    return run
