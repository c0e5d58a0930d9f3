"""Config files (mmengine's Python configs) and ``--cfg-options key=value`` overrides; errors raise
:class:`ConfigError` naming the file or key, the entry points print them."""
import argparse
import ast
from pathlib import Path

from mmengine.config import Config

from .errors import ConfigError


def parse_value(text: str):
    """A Python literal (``1e-3``, ``True``, ``(0.5, 1.5)``, ``None``) or else the text itself."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


POSITIVE = ('batch_size', 'eval_batch_size', 'epochs', 'max_iters', 'accum_iter', 'img_size', 'image_size',
            'crop_size', 'stride', 'checkpoint_interval', 'log_interval', 'keep_checkpoints')
NON_NEGATIVE = ('num_workers', 'warmup_epochs', 'warmup_iters', 'seed', 'k', 'drop_path', 'weight_decay', 'min_lr')
FRACTIONS = ('mask_ratio', 're_prob', 'smoothing', 'crop_pct', 'layer_decay')  # in (0, 1] or [0, 1]


def checked_value(key: str, text: str, old):
    """``text`` parsed, of the config value's type (an int where the config has an int, a number for a float,
    a list for a tuple ...) and in range for the keys that have one; else a ConfigError naming the key."""
    new, leaf = parse_value(text), key.rpartition('.')[2]
    if isinstance(old, dict) and not isinstance(new, dict):
        raise ConfigError(f'--cfg-options {key}={text}: {key} is a section of the config; set its keys '
                          f'({key}.{next(iter(old), "name")}=...)')
    if old is not None and not isinstance(old, dict):
        kinds = {bool: ((bool,), 'True or False'), int: ((int,), 'an integer'), float: ((int, float), 'a number'),
                 str: ((str,), 'a string'), tuple: ((list, tuple), 'a list'), list: ((list, tuple), 'a list')}
        allowed, what = kinds.get(type(old), ((type(old),), type(old).__name__))
        if not isinstance(new, allowed) or (isinstance(new, bool) and bool not in allowed):
            raise ConfigError(f'--cfg-options {key}={text}: expected {what} (the config has {old!r})')
    if isinstance(new, (int, float)) and not isinstance(new, bool):
        if leaf in POSITIVE and new <= 0 or leaf in NON_NEGATIVE and new < 0 or leaf in FRACTIONS and not 0 <= new <= 1:
            bound = '> 0' if leaf in POSITIVE else ('>= 0' if leaf in NON_NEGATIVE else 'in [0, 1]')
            raise ConfigError(f'--cfg-options {key}={text}: must be {bound}')
    return new


def load_config(path, options=()) -> Config:
    """Read ``path`` and apply ``options`` (``key=value``; a key the config lacks is an error)."""
    if not Path(path).is_file():
        raise ConfigError(f'{path}: config file not found')
    try:
        cfg = Config.fromfile(str(path))
    except Exception as e:  # a syntax error or a bad _base_ in the user's file
        raise ConfigError(f'{path}: unreadable config ({type(e).__name__}: {e})') from None
    for opt in options:
        if not opt.isprintable():
            raise ConfigError(f'--cfg-options {opt!r}: expected a printable key=value')
        key, sep, value = opt.partition('=')
        if not sep:
            raise ConfigError(f'--cfg-options {opt!r}: expected key=value')
        parent, _, leaf = key.rpartition('.')
        node = cfg
        for part in filter(None, parent.split('.')):
            if not isinstance(node, (dict, Config)) or part not in node:
                raise ConfigError(f'--cfg-options {key}: the config has no key {part!r} (in {path})')
            node = node[part]
        if not isinstance(node, (dict, Config)):
            raise ConfigError(f'--cfg-options {key}: {parent} is not a section of the config (in {path})')
        if leaf not in node:
            raise ConfigError(f'--cfg-options {key}: the config has no key {leaf!r} (in {path}); '
                              f'keys there: {", ".join(sorted(node.keys()))}')
        try:
            cfg.merge_from_dict({key: checked_value(key, value, node[leaf])})
        except (TypeError, ValueError, KeyError) as e:  # mmengine refuses e.g. a dict where the config has None
            if isinstance(e, ConfigError):
                raise
            raise ConfigError(f'--cfg-options {key}={value}: not a value the config takes '
                              f'({(str(e).splitlines() or [type(e).__name__])[0]})') from None
    return cfg


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """``--help`` of every command: the description as written, and each option's default where it has one."""

    def _get_help_string(self, action):
        text = action.help or ''
        if action.option_strings and action.default not in (None, False, [], argparse.SUPPRESS) \
                and '%(default)' not in text:
            text += ' (default: %(default)s)'
        return text
