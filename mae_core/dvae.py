"""The tokenizer of the dVAE target (Table 1d, Table 7): DALL-E's discrete VAE encoder, as BEiT uses it. Its
architecture is the ``DALL-E`` package's (``pip install -e '.[dvae]'``); the weights are the user's file (DALL-E's
``encoder.pkl``, or a state dict of it), never downloaded."""
from pathlib import Path

import torch

from .errors import CheckpointError, ConfigError


def dalle_encoder(**kwargs):
    """A DALL-E encoder (random weights) of the published architecture, or ``kwargs``' variant of it."""
    try:
        from dall_e.encoder import Encoder  # optional: only the dVAE target needs it
    except ImportError:
        raise ConfigError('model.target=\'dvae\' needs the DALL-E package: pip install -e ".[dvae]"') from None
    return Encoder(**kwargs)


def load_tokenizer(path, allow_pickle=False):
    """DALL-E's encoder with the weights in ``path``: a state dict (read with ``weights_only=True``), or DALL-E's
    own ``encoder.pkl``, a pickled module, which only ``allow_pickle`` reads (it runs code from the file)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f'model.dvae_weights {path}: no such file (DALL-E\'s encoder.pkl or a state dict of it)')
    try:
        obj = torch.load(path, map_location='cpu', weights_only=not allow_pickle)
    except Exception as e:  # noqa: BLE001 - any unreadable or pickled file is one error naming it
        hint = '' if allow_pickle else '; DALL-E\'s encoder.pkl is a pickled module: pass --allow-pickle to read it'
        raise CheckpointError(f'{path}: not a readable state dict ({type(e).__name__}){hint}') from None
    state = obj.state_dict() if isinstance(obj, torch.nn.Module) else obj
    if not isinstance(state, dict) or 'blocks.input.w' not in state:
        raise CheckpointError(f'{path}: not a DALL-E encoder (key blocks.input.w missing)')
    vocab, hidden = state['blocks.output.conv.w'].shape[0], state['blocks.input.w'].shape[0]
    encoder = dalle_encoder(n_hid=hidden, vocab_size=vocab, requires_grad=False)
    try:
        encoder.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f'{path}: does not fit DALL-E\'s encoder ({str(e).splitlines()[0][:150]})') from None
    return encoder
