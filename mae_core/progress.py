"""What long work prints. By default one line per task (name, phase, step/total, ETA, then its headline),
rewritten in place on a terminal and at most once a minute in a log file; mmengine's full log goes to the work
dir only. ``-v`` (:func:`set_verbose`) prints mmengine's log and Python's warnings as they come."""
import logging
import sys
import time
from contextlib import contextmanager

import torch.distributed as dist

_state = dict(verbose=False)
_stack = []


def set_verbose(on: bool):
    """Verbose: everything on the console. Quiet (default): Python's warnings go to the log file of the run
    (:func:`log_warnings_to`), not the console."""
    _state['verbose'] = bool(on)
    logging.captureWarnings(not on)
    quiet = logging.getLogger('py.warnings')
    quiet.propagate = bool(on)
    if not on and not quiet.handlers:
        quiet.addHandler(logging.NullHandler())


def verbose() -> bool:
    return _state['verbose']


def log_warnings_to(handlers):
    """Send captured Python warnings to these (the run's log-file) handlers while quiet."""
    quiet = logging.getLogger('py.warnings')
    for h in list(quiet.handlers):
        quiet.removeHandler(h)
    for h in handlers or [logging.NullHandler()]:
        quiet.addHandler(h)


class Line:
    """One task's progress line (on standard error, rank 0 only: the caller decides)."""

    def __init__(self, label: str, stream=None, every_s: float = 60.0):
        self.label, self.stream, self.every_s = label, stream or sys.stderr, every_s
        self.tty = hasattr(self.stream, 'isatty') and self.stream.isatty()
        self.t0, self.last, self.phase, self.phase_start = time.time(), 0.0, None, (0.0, 0)

    def show(self, phase: str, done: int, total: int):
        now = time.time()
        if phase != self.phase:
            self.phase, self.phase_start = phase, (now, done)
        if verbose() or (self.last and now - self.last < (self.every_s if not self.tty else 0.2)):
            return
        t0, done0 = self.phase_start
        eta = f', ETA {_duration((total - done) * (now - t0) / (done - done0))}' if done0 < done < total else ''
        self._write(f'{self.label}: {phase} {done}/{total}{eta}', final=False)
        self.last = now

    def finish(self, text: str):
        self._write(f'{self.label}: {text} ({_duration(time.time() - self.t0)})', final=True)

    def _write(self, text, final):
        if self.tty:
            self.stream.write('\r\033[K' + text + ('\n' if final else ''))
        else:
            self.stream.write(text + '\n')
        self.stream.flush()


def _duration(s: float) -> str:
    return f'{s:.0f} s' if s < 120 else f'{s / 60:.0f} min' if s < 7200 else f'{s / 3600:.1f} h'


@contextmanager
def task(label: str, stream=None):
    """The line the work inside reports to (:func:`current`); nested tasks (a prerequisite) get their own."""
    line = Line(label, stream)
    _stack.append(line)
    try:
        yield line
    finally:
        _stack.remove(line)


def current():
    """The innermost task's line, or None outside any task."""
    return _stack[-1] if _stack else None


def show(phase: str, done: int, total: int):
    line = current()
    if line is not None and (not dist.is_initialized() or dist.get_rank() == 0):
        line.show(phase, done, total)
