"""Config files (mmengine's Python configs) and ``--cfg-options key=value`` overrides; errors raise
:class:`ConfigError` naming the file or key, the entry points print them."""
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


def load_config(path, options=()) -> Config:
    """Read ``path`` and apply ``options`` (``key=value``; a key the config lacks is an error)."""
    if not Path(path).is_file():
        raise ConfigError(f'{path}: config file not found')
    try:
        cfg = Config.fromfile(str(path))
    except Exception as e:  # a syntax error or a bad _base_ in the user's file
        raise ConfigError(f'{path}: unreadable config ({type(e).__name__}: {e})') from None
    for opt in options:
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
        cfg.merge_from_dict({key: parse_value(value)})
    return cfg
