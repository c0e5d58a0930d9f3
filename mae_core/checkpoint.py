"""Checkpoints: atomic saves, reading every format a user brings, and export to the others.

Formats ``load_encoder`` detects from the keys:
  ours             ``{'model': sd, 'meta': {'arch': ..., ...}}`` written by this suite
  fb_mae_pretrain  fb/mae ``mae_pretrain_vit_*.pth``: ``{'model': encoder sd}``
  fb_mae_full      fb/mae ``*_full.pth`` / ``mae_visualize_*.pth``: encoder + decoder
  fb_mae_finetuned fb/mae fine-tuned: ``fc_norm.*`` and ``head.*``, no ``norm.*``
  timm             a bare state dict (``.pth`` or ``.safetensors``) with timm's ViT keys
  hf_vitmae        a Hugging Face ViTMAE folder (``config.json`` + weights) or its weights file
The canonical state dict uses ``mae_core.vit.VisionTransformer``'s keys (the fb/mae and timm layout).
"""
import ctypes
import hashlib
import json
import os
import pickle
import re
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file as load_safetensors
from safetensors.torch import save as safetensors_bytes

from .errors import CheckpointError, UsageError
from .vit import ARCHS, TASK_ADDED_KEYS, VisionTransformer, beit_relative_position_index, resample_pos_table, vit

DECODER_PREFIXES = ('mask_token', 'encoder_mask_token', 'decoder_')
HEAD_PREFIXES = ('fc_norm.', 'head.')


# ==================================================================== atomic save
def _link_unnamed(fd: int, name: Path):
    """Give the O_TMPFILE file ``fd`` a name: linkat(2) with AT_SYMLINK_FOLLOW, which os.link does not pass."""
    libc = ctypes.CDLL(None, use_errno=True)
    AT_FDCWD, AT_SYMLINK_FOLLOW = -100, 0x400
    if libc.linkat(AT_FDCWD, f'/proc/self/fd/{fd}'.encode(), AT_FDCWD, os.fsencode(name), AT_SYMLINK_FOLLOW) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), str(name))


def atomic_write(path, write_fn):
    """Write ``path`` through ``write_fn(tmp_path)``, fsync, then move it into place in one rename.

    On Linux the data goes to an unnamed file (``O_TMPFILE``) in the target folder that only gets a name once
    complete, so even ``kill -9`` mid-write leaves neither a partial file nor a temp file behind. Elsewhere a
    named temp file is used and removed on any exception.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_name = path.parent / f'.{path.name}.{os.getpid()}.tmp'
    try:
        fd = os.open(path.parent, os.O_TMPFILE | os.O_WRONLY, 0o644)
    except (AttributeError, OSError):  # no O_TMPFILE here (not Linux, or a filesystem without it)
        fd = None
    try:
        if fd is not None:
            write_fn(f'/proc/self/fd/{fd}')
            os.fsync(fd)
            _link_unnamed(fd, tmp_name)
        else:
            write_fn(str(tmp_name))
            with open(tmp_name, 'rb+') as f:
                os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        if tmp_name.exists():
            tmp_name.unlink()
        raise
    finally:
        if fd is not None:
            os.close(fd)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path


def check_writable(folder, option: str):
    """Check, before any work starts, that files can be written in ``folder`` (so a read-only, full or impossible
    place fails in a second, not after the training). Folders made for the check are removed again."""
    folder = Path(folder).absolute()
    made = [p for p in [folder, *folder.parents] if not p.exists()]
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise UsageError(f'{option} {folder}: cannot write there ({e.strerror or e})') from None
    finally:
        for p in made:  # innermost first
            if p.is_dir() and not any(p.iterdir()):
                p.rmdir()


def save_checkpoint(obj, path):
    """``torch.save`` made atomic. Keep ``obj`` to tensors and plain types so ``weights_only=True`` reads it."""
    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


def save_ours(path, state_dict, meta: dict, **extra):
    """Our format: ``{'model': state_dict, 'meta': {...plain types...}, **extra}``."""
    return save_checkpoint({'model': {k: v.detach().cpu() for k, v in state_dict.items()}, 'meta': meta, **extra},
                           path)


def file_sha256(path, chunk=1 << 20) -> str:
    """sha256 of a file (of every file of a folder, in name order), in one streaming pass."""
    h = hashlib.sha256()
    paths = sorted(p for p in Path(path).rglob('*') if p.is_file()) if Path(path).is_dir() else [Path(path)]
    for p in paths:
        with open(p, 'rb') as f:
            while block := f.read(chunk):
                h.update(block)
    return h.hexdigest()


# ==================================================================== reading raw files
def _read_raw(path: Path, allow_pickle: bool):
    """The object stored in ``path`` (a dict), read safely unless the user opted in to pickles."""
    if path.suffix == '.safetensors':
        try:
            return load_safetensors(str(path))
        except Exception as e:
            raise CheckpointError(f'{path}: not a readable safetensors file ({e})') from None
    try:
        with warnings.catch_warnings():  # junk bytes make torch warn about odd pickle protocols first
            warnings.simplefilter('ignore', UserWarning)
            return torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r'Unsupported global: GLOBAL (\S+)', str(e))
        if not found:
            raise CheckpointError(f'{path}: not a readable PyTorch checkpoint (truncated or not a checkpoint)') from None
        if not allow_pickle:
            raise CheckpointError(
                f'{path}: holds pickled Python objects beyond tensors (e.g. {found.group(1)}); fb/mae '
                'files pickle their argparse args. Unpickling runs code from the file, so it is off by default: '
                'pass --allow-pickle (allow_pickle=True) only for a file you trust') from None
        try:
            return torch.load(path, map_location='cpu', weights_only=False)
        except Exception as e2:
            raise CheckpointError(f'{path}: not a readable checkpoint ({e2})') from None
    except Exception as e:  # the weights-only unpickler runs no code, so any failure here means a bad file
        raise CheckpointError(f'{path}: not a readable PyTorch checkpoint (truncated or not a checkpoint: '
                              f'{(str(e).splitlines() or [type(e).__name__])[0][:160]})') from None


def _hf_files(folder: Path):
    for name in ('model.safetensors', 'pytorch_model.bin'):
        if (folder / name).exists():
            return folder / name
    raise CheckpointError(f'{folder}: a Hugging Face folder needs model.safetensors or pytorch_model.bin '
                          'beside config.json; found neither')


# ==================================================================== Hugging Face ViTMAE <-> ours
_HF_BLOCK = {  # ours (timm block) -> HF on-disk names (transformers 4.x layout, still what 5.x writes)
    'norm1': 'layernorm_before', 'norm2': 'layernorm_after', 'attn.proj': 'attention.output.dense',
    'mlp.fc1': 'intermediate.dense', 'mlp.fc2': 'output.dense'}


def _hf_block_to_ours(get, prefix):
    """One HF layer at ``prefix`` -> our block tensors (query/key/value rows stacked into qkv)."""
    out = {}
    for ours, theirs in _HF_BLOCK.items():
        for p in ('weight', 'bias'):
            out[f'{ours}.{p}'] = get(f'{prefix}.{theirs}.{p}')
    for p in ('weight', 'bias'):
        out[f'attn.qkv.{p}'] = torch.cat([get(f'{prefix}.attention.attention.{n}.{p}')
                                          for n in ('query', 'key', 'value')], dim=0)
    return out


def _ours_block_to_hf(sd, src, dst):
    out = {}
    for ours, theirs in _HF_BLOCK.items():
        for p in ('weight', 'bias'):
            out[f'{dst}.{theirs}.{p}'] = sd[f'{src}.{ours}.{p}']
    for p in ('weight', 'bias'):
        for n, t in zip(('query', 'key', 'value'), sd[f'{src}.attn.qkv.{p}'].chunk(3, dim=0)):
            out[f'{dst}.attention.attention.{n}.{p}'] = t.clone()
    return out


def hf_to_ours(hf: dict, path='<state dict>') -> dict:
    """HF ViTMAE tensors (either decoder naming) -> our full MAE state dict."""
    def get(k):
        if k not in hf:
            raise CheckpointError(f'{path}: Hugging Face ViTMAE weights lack key {k!r}')
        return hf[k]
    e = 'vit.embeddings.'
    sd = {'cls_token': get(e + 'cls_token'), 'pos_embed': get(e + 'position_embeddings'),
          'patch_embed.proj.weight': get(e + 'patch_embeddings.projection.weight'),
          'patch_embed.proj.bias': get(e + 'patch_embeddings.projection.bias'),
          'norm.weight': get('vit.layernorm.weight'), 'norm.bias': get('vit.layernorm.bias')}
    depth = len({k.split('.')[3] for k in hf if k.startswith('vit.encoder.layer.')})
    for i in range(depth):
        sd.update({f'blocks.{i}.{k}': v for k, v in _hf_block_to_ours(get, f'vit.encoder.layer.{i}').items()})
    if 'decoder.mask_token' in hf:
        dec_prefix = 'decoder.decoder_layers.' if any(k.startswith('decoder.decoder_layers.') for k in hf) \
            else 'decoder.decoder_encoder.layer.'
        sd['mask_token'] = get('decoder.mask_token')
        sd['decoder_pos_embed'] = get('decoder.decoder_pos_embed')
        for n in ('decoder_embed', 'decoder_norm', 'decoder_pred'):
            for p in ('weight', 'bias'):
                sd[f'{n}.{p}'] = get(f'decoder.{n}.{p}')
        depth = len({k[len(dec_prefix):].split('.')[0] for k in hf if k.startswith(dec_prefix)})
        for i in range(depth):
            sd.update({f'decoder_blocks.{i}.{k}': v
                       for k, v in _hf_block_to_ours(get, f'{dec_prefix}{i}').items()})
    return sd


def ours_to_hf(sd: dict) -> dict:
    """Our MAE state dict -> HF ViTMAEForPreTraining tensors in the on-disk (4.x) layout."""
    e = 'vit.embeddings.'
    hf = {e + 'cls_token': sd['cls_token'], e + 'position_embeddings': sd['pos_embed'],
          e + 'patch_embeddings.projection.weight': sd['patch_embed.proj.weight'],
          e + 'patch_embeddings.projection.bias': sd['patch_embed.proj.bias'],
          'vit.layernorm.weight': sd['norm.weight'], 'vit.layernorm.bias': sd['norm.bias']}
    for i in range(_depth(sd, 'blocks.')):
        hf.update(_ours_block_to_hf(sd, f'blocks.{i}', f'vit.encoder.layer.{i}'))
    if 'mask_token' in sd:
        hf['decoder.mask_token'] = sd['mask_token']
        hf['decoder.decoder_pos_embed'] = sd['decoder_pos_embed']
        for n in ('decoder_embed', 'decoder_norm', 'decoder_pred'):
            for p in ('weight', 'bias'):
                hf[f'decoder.{n}.{p}'] = sd[f'{n}.{p}']
        for i in range(_depth(sd, 'decoder_blocks.')):
            hf.update(_ours_block_to_hf(sd, f'decoder_blocks.{i}', f'decoder.decoder_layers.{i}'))
    return {k: v.contiguous() for k, v in hf.items()}


def hf_config(sd: dict, meta: dict) -> dict:
    """A ``config.json`` for ``ViTMAEForPreTraining`` describing our MAE state dict."""
    width, patch = sd['patch_embed.proj.weight'].shape[0], sd['patch_embed.proj.weight'].shape[-1]
    grid = int(round((sd['pos_embed'].shape[1] - 1) ** 0.5))
    heads = meta.get('num_heads') or _heads_for(sd)
    cfg = dict(model_type='vit_mae', architectures=['ViTMAEForPreTraining'], hidden_size=width,
               num_hidden_layers=_depth(sd, 'blocks.'), num_attention_heads=heads,
               intermediate_size=sd['blocks.0.mlp.fc1.weight'].shape[0], hidden_act='gelu', layer_norm_eps=1e-6,
               image_size=grid * patch, patch_size=patch, num_channels=sd['patch_embed.proj.weight'].shape[1],
               qkv_bias=True, mask_ratio=meta.get('mask_ratio', 0.75), norm_pix_loss=bool(meta.get('norm_pix_loss')))
    if 'mask_token' in sd:
        cfg.update(decoder_hidden_size=sd['decoder_embed.weight'].shape[0],
                   decoder_num_hidden_layers=_depth(sd, 'decoder_blocks.'),
                   decoder_num_attention_heads=meta.get('decoder_num_heads', 16),
                   decoder_intermediate_size=sd['decoder_blocks.0.mlp.fc1.weight'].shape[0])
    return cfg


# ==================================================================== detection and classification of formats
def _depth(sd, prefix):
    return len({k[len(prefix):].split('.')[0] for k in sd if k.startswith(prefix)})


def _heads_for(sd):
    patch, width, depth = sd['patch_embed.proj.weight'].shape[-1], sd['patch_embed.proj.weight'].shape[0], \
        _depth(sd, 'blocks.')
    for name, (p, w, d, h) in ARCHS.items():
        if (p, w, d) == (patch, width, depth):
            return h
    return max(1, width // 64)


def infer_arch(sd: dict, path='<state dict>'):
    """The standard arch whose patch size, width and depth match ``sd``, or None."""
    w = sd.get('patch_embed.proj.weight')
    if w is None:
        return None
    key = (w.shape[-1], w.shape[0], _depth(sd, 'blocks.'))
    return next((name for name, (p, width, d, h) in ARCHS.items() if (p, width, d) == key), None)


def _unwrap(obj, path):
    """The state dict inside a loaded object, the format's name, the meta it carries and, for a detector or
    segmenter this suite trained, its whole state dict (else None)."""
    if not isinstance(obj, dict):
        raise CheckpointError(f'{path}: expected a dict of tensors, found {type(obj).__name__}')
    if isinstance(obj.get('model'), dict) and isinstance(obj.get('meta'), dict) and 'arch' in obj['meta']:
        prefix = obj['meta'].get('encoder_prefix')  # a trained detector / segmenter: its encoder part
        sd = {k[len(prefix):]: v for k, v in obj['model'].items() if k.startswith(prefix)} if prefix else obj['model']
        return sd, 'ours', dict(obj['meta']), obj['model'] if prefix else None
    if isinstance(obj.get('model'), dict) and any(k.startswith('backbone.net.') for k in obj['model']):
        return vitdet_to_ours(obj['model']), 'vitdet', {}, None
    if isinstance(obj.get('model'), dict):
        sd = obj['model']
        fmt = 'fb_mae_full' if 'mask_token' in sd else \
            'fb_mae_finetuned' if 'head.weight' in sd and 'norm.weight' not in sd else 'fb_mae_pretrain'
        return sd, fmt, {}, None
    if isinstance(obj.get('state_dict'), dict):  # an mmengine/other trainer's checkpoint
        return _unwrap(obj['state_dict'], path)
    if any(k.endswith('layers.0.ln1.weight') for k in obj):
        return mmseg_to_ours(obj), 'mmseg', {}, None
    if any(k.startswith('vit.embeddings.') for k in obj):
        return hf_to_ours(obj, path), 'hf_vitmae', {}, None
    return obj, 'timm', {}, None


# key -> the number of dimensions an encoder's tensor has there
ENCODER_DIMS = {'patch_embed.proj.weight': 4, 'cls_token': 3, 'pos_embed': 3, 'blocks.0.attn.qkv.weight': 2}


def _first_unexpected(sd, path):
    """The keys every ViT encoder has, with the right number of dimensions and a square position table."""
    for k, dims in ENCODER_DIMS.items():
        if k not in sd:
            first = next(iter(sd), None)
            raise CheckpointError(f'{path}: not a ViT/MAE checkpoint: key {k!r} is missing'
                                  + (f' (first key found: {first!r})' if first else ' (no keys)'))
        if sd[k].dim() != dims or 0 in sd[k].shape:
            raise CheckpointError(f'{path}: key {k!r} has shape {tuple(sd[k].shape)}; a ViT has {dims} non-empty '
                                  'dimensions there')
    n = sd['pos_embed'].shape[1] - 1
    width = sd['patch_embed.proj.weight'].shape[0]
    if n < 1 or round(n ** 0.5) ** 2 != n or sd['pos_embed'].shape[2] != width or sd['cls_token'].shape[2] != width:
        raise CheckpointError(f'{path}: key \'pos_embed\' has shape {tuple(sd["pos_embed"].shape)}; expected '
                              f'[1, 1 + a square number of patches, {width}]')
    head = sd.get('head.weight')
    if head is not None and (head.dim() != 2 or head.shape[1] != width):
        raise CheckpointError(f'{path}: key \'head.weight\' has shape {tuple(head.shape)}; expected '
                              f'[classes, {width}]')


def read_checkpoint(path, allow_pickle=False):
    """Any supported file or folder, read once -> (full state dict in our layout, format name, meta, the whole
    state dict of a detector or segmenter this suite trained or None)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f'{path}: no such checkpoint file or folder')
    if path.is_dir():
        if not (path / 'config.json').exists():
            raise CheckpointError(f'{path}: a checkpoint folder must be a Hugging Face ViTMAE folder with '
                                  'config.json and model.safetensors')
        try:
            cfg = json.loads((path / 'config.json').read_text(encoding='utf-8'))
        except (ValueError, OSError) as e:
            raise CheckpointError(f'{path}/config.json: not readable JSON ({e})') from None
        if not isinstance(cfg, dict):
            raise CheckpointError(f'{path}/config.json: expected a JSON object, found {type(cfg).__name__}')
        if cfg.get('model_type') != 'vit_mae':
            raise CheckpointError(f'{path}/config.json: model_type is {cfg.get("model_type")!r}, expected "vit_mae"')
        sd = _structured(path, lambda: hf_to_ours(_read_raw(_hf_files(path), allow_pickle), path))
        _first_unexpected(sd, path)
        meta = dict(norm_pix_loss=cfg.get('norm_pix_loss'), mask_ratio=cfg.get('mask_ratio'),
                    num_heads=cfg.get('num_attention_heads'), decoder_num_heads=cfg.get('decoder_num_attention_heads'))
        return sd, 'hf_vitmae', meta, None
    obj = _read_raw(path, allow_pickle)
    sd, fmt, meta, task_sd = _structured(path, lambda: _unwrap(obj, path))
    bad = next((k for k, v in sd.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)), None)
    if bad is not None:
        raise CheckpointError(f'{path}: key {bad!r} holds a {type(sd[bad]).__name__}, not a named tensor')
    if not isinstance(meta.get('arch', ''), str):
        raise CheckpointError(f'{path}: meta.arch is {meta["arch"]!r}, not an arch name')
    sd = {k[len('module.'):] if k.startswith('module.') else k: v for k, v in sd.items()}
    _first_unexpected(sd, path)
    return sd, fmt, meta, task_sd


def _structured(path, parse):
    """``parse()`` of a loaded object whose layout is the file's to decide: any failure to find the structure of a
    supported format (a missing key, a non-string key, mismatched query/key/value shapes ...) is a CheckpointError."""
    try:
        return parse()
    except (KeyError, IndexError, TypeError, AttributeError, RuntimeError, ValueError) as e:
        if isinstance(e, CheckpointError):
            raise
        raise CheckpointError(f'{path}: not laid out as any supported checkpoint ({type(e).__name__}: '
                              f'{(str(e).splitlines() or [""])[0][:120]})') from None


def _encoder_part(sd, fmt, meta, path, arch=None):
    """-> (encoder state dict with fc_norm/head if present, info); checks ``arch`` against the file."""
    found = meta.get('arch') or infer_arch(sd, path)
    if arch is not None and found is not None and arch != found:
        w = sd['patch_embed.proj.weight']
        raise CheckpointError(f'{path}: --arch {arch} does not match the file (key patch_embed.proj.weight has '
                              f'shape {tuple(w.shape)} and {_depth(sd, "blocks.")} blocks, i.e. {found})')
    arch = arch or found
    if arch is None:
        w = sd['patch_embed.proj.weight']
        raise CheckpointError(f'{path}: no standard arch has patch {w.shape[-1]}, width {w.shape[0]} and '
                              f'{_depth(sd, "blocks.")} blocks (key patch_embed.proj.weight); pass --arch')
    if arch not in ARCHS:
        raise CheckpointError(f'{path}: unknown arch {arch!r}; expected one of {", ".join(ARCHS)}')
    enc = {k: v for k, v in sd.items() if not k.startswith(DECODER_PREFIXES)}
    has_head = 'head.weight' in enc
    grid = int(round((sd['pos_embed'].shape[1] - 1) ** 0.5))
    info = dict(format=fmt, arch=arch, path=str(path), has_head=has_head,
                global_pool='fc_norm.weight' in sd and 'norm.weight' not in sd,
                num_classes=int(sd['head.weight'].shape[0]) if has_head else 0,
                img_size=grid * int(sd['patch_embed.proj.weight'].shape[-1]), pos_grid=(grid, grid), meta=meta)
    return enc, info


def _without_head(sd: dict) -> dict:
    return {k: v for k, v in sd.items() if not k.startswith(HEAD_PREFIXES)}


def load_encoder(path, arch=None, keep_head=False, allow_pickle=False):
    """Read any supported checkpoint -> ``(encoder_state_dict, info)``.

    The state dict keeps only encoder keys (plus ``fc_norm``/``head`` when ``keep_head``). ``info`` says the
    ``format``, ``arch`` (inferred for standard sizes, else ``arch`` must be given), ``has_head``,
    ``global_pool``, ``num_classes``, ``img_size`` and the pre-training ``meta`` the file carries.
    """
    sd, fmt, meta, _ = read_checkpoint(path, allow_pickle)
    enc, info = _encoder_part(sd, fmt, meta, path, arch)
    return (enc if keep_head else _without_head(enc)), info


@dataclass
class EncoderHandle:
    """A checkpoint read once (:func:`open_checkpoint`): its encoder state dict in our layout (with the classifier
    head if it has one), ``info`` (see :func:`load_encoder`), the file's sha256 and, for a detector or segmenter
    this suite trained, its whole state dict. The benchmarks build their models from a handle, never from a path."""
    path: str
    state_dict: dict
    info: dict
    sha256: str
    task_state_dict: dict = None

    @property
    def arch(self) -> str:
        return self.info['arch']

    @property
    def meta(self) -> dict:
        return self.info['meta']

    def build(self, keep_head=False, **model_kwargs) -> VisionTransformer:
        """The encoder with these weights; ``model_kwargs`` as :func:`mae_core.vit.vit` takes them. With
        ``keep_head`` a file's classifier (head, pooling) is kept and must load exactly."""
        with_head = keep_head and self.info['has_head']
        if with_head:
            model_kwargs.setdefault('num_classes', self.info['num_classes'])
            model_kwargs.setdefault('global_pool', self.info['global_pool'])
        sd = self.state_dict if keep_head else _without_head(self.state_dict)
        return load_into(vit(self.arch, **model_kwargs), sd, self.path, strict_head=with_head)


def open_checkpoint(path, arch=None, allow_pickle=False) -> EncoderHandle:
    """Read any supported checkpoint once for its weights, and once (streaming) for its sha256."""
    sd, fmt, meta, task_sd = read_checkpoint(path, allow_pickle)
    enc, info = _encoder_part(sd, fmt, meta, path, arch)
    return EncoderHandle(str(Path(path).resolve()), enc, info, file_sha256(path), task_sd)


def load_into(model: VisionTransformer, sd: dict, path='<state dict>', strict_head=False):
    """Load an encoder state dict into ``model``; the position table is resampled to the model's grid.

    Missing ``head``/``fc_norm``/``norm`` keys are allowed (a new head), unless ``strict_head``, and so are the
    relative position and layer scale parameters a task adds (they keep their neutral initial values); any other
    missing, unexpected or mis-shaped key is one error naming it.
    """
    sd = dict(sd)
    if 'pos_embed' in sd:
        sd['pos_embed'] = resample_pos_table(sd['pos_embed'], model.pos_grid)
    own = model.state_dict()
    optional = HEAD_PREFIXES + ('norm.',) if not strict_head else ()
    # pooling and head belong to the task: a pre-trained norm is dropped under global pooling (as fb/mae does),
    # a head of another task is replaced
    sd = {k: v for k, v in sd.items()
          if not (k.startswith(optional) and (k not in own or own[k].shape != v.shape))}
    for k, v in sd.items():
        if k not in own and k.endswith(TASK_ADDED_KEYS):
            raise CheckpointError(f'{path}: key {k!r} holds weights a task added in training (relative position '
                                  'or layer scale), which this benchmark\'s encoder has no place for; use it '
                                  'with the benchmark of that task')
        if k not in own:
            raise CheckpointError(f'{path}: unexpected key {k!r} for {type(model).__name__}')
        if own[k].shape != v.shape:
            raise CheckpointError(f'{path}: key {k!r} has shape {tuple(v.shape)}, the model expects '
                                  f'{tuple(own[k].shape)}')
    missing = [k for k in own if k not in sd and not k.startswith(optional) and not k.endswith(TASK_ADDED_KEYS)]
    if missing:
        raise CheckpointError(f'{path}: missing key {missing[0]!r} ({len(missing)} missing in all)')
    model.load_state_dict(sd, strict=False)
    return model


def build_encoder(path, arch=None, allow_pickle=False, keep_head=False, **model_kwargs):
    """Read a checkpoint and return ``(VisionTransformer with its weights, info)``."""
    handle = open_checkpoint(path, arch, allow_pickle)
    return handle.build(keep_head, **model_kwargs), handle.info


# ==================================================================== export
def _vitdet(sd, task_sd=None):
    """detectron2 ViTDet's layout (``modeling/backbone/vit.py``): the encoder as ``backbone.net.*`` with the same
    block names, no cls token and no final norm (its ``pos_embed`` keeps the cls slot); for a detector this suite
    trained, also its pyramid (``backbone.simfp_*``). torchvision's RPN and RoI heads have no detectron2
    counterpart and are left out."""
    out = {f'backbone.net.{k}': v for k, v in sd.items()
           if not k.startswith(DECODER_PREFIXES + HEAD_PREFIXES + ('norm.', 'cls_token'))}
    out.update({k[len('detector.'):]: v for k, v in (task_sd or {}).items() if k.startswith('detector.backbone.simfp_')})
    return out


def vitdet_to_ours(model: dict) -> dict:
    """The encoder of a ViTDet file (``backbone.net.*``, ours or detectron2's): same block names, but no cls
    token and no final norm, which detectron2's ViT does not have: the cls token is set to zeros and the norm
    is left to the task (a new one, as for global pooling). Trained relative-position tables stay."""
    sd = {k[len('backbone.net.'):]: v for k, v in model.items() if k.startswith('backbone.net.')}
    if 'cls_token' not in sd and 'pos_embed' in sd:
        sd['cls_token'] = torch.zeros(1, 1, sd['pos_embed'].shape[-1], dtype=sd['pos_embed'].dtype)
    return sd


MMSEG_GRID = (32, 32)  # mmsegmentation's MAE config: 512 x 512 crops, patch 16


def _mmseg_backbone(sd, heads):
    """mmsegmentation 1.2.2's ``MAE`` backbone as ``configs/mae/mae-base_upernet_8xb2-amp-160k_ade20k-512x512.py``
    builds it (BEiT layers: ``ln1``/``ln2``, one ``qkv`` with its bias, ``gamma_1``/``gamma_2``, a
    ``relative_position_bias_table`` and ``relative_position_index`` per layer, ``ffn.layers``; no final norm).
    What a pre-trained encoder lacks gets the values under which it computes what it did: zero bias tables,
    layer scale 1, the position table resampled to the 32 x 32 grid."""
    table0 = sd.get('blocks.0.attn.relative_position_bias_table')
    grid = MMSEG_GRID if table0 is None else ((int(round((table0.shape[0] - 3) ** 0.5)) + 1) // 2,) * 2
    rows = (2 * grid[0] - 1) * (2 * grid[1] - 1) + 3
    out = {'cls_token': sd['cls_token'], 'pos_embed': resample_pos_table(sd['pos_embed'], grid),
           'patch_embed.projection.weight': sd['patch_embed.proj.weight'],
           'patch_embed.projection.bias': sd['patch_embed.proj.bias']}
    names = {'norm1': 'ln1', 'norm2': 'ln2', 'attn.qkv': 'attn.qkv', 'attn.proj': 'attn.proj',
             'mlp.fc1': 'ffn.layers.0.0', 'mlp.fc2': 'ffn.layers.1'}
    index = beit_relative_position_index(*grid)
    for i in range(_depth(sd, 'blocks.')):
        b, l = f'blocks.{i}.', f'layers.{i}.'
        dim = sd[b + 'norm1.weight'].shape[0]
        out.update({l + theirs + p: sd[b + ours + p] for ours, theirs in names.items() for p in ('.weight', '.bias')})
        out[l + 'attn.relative_position_bias_table'] = sd.get(b + 'attn.relative_position_bias_table',
                                                            torch.zeros(rows, heads))
        out[l + 'attn.relative_position_index'] = index.clone()
        out[l + 'gamma_1'] = sd.get(b + 'ls1.gamma', torch.ones(dim))
        out[l + 'gamma_2'] = sd.get(b + 'ls2.gamma', torch.ones(dim))
    return out


def _mmseg(sd, meta, task_sd=None):
    """An encoder: ``{'state_dict': backbone}`` for the config's ``pretrained=`` (mmsegmentation loads it into the
    backbone itself). A segmenter this suite trained: its whole model, ``backbone.*``, ``neck.*``,
    ``decode_head.*``, ``auxiliary_head.*``, as mmsegmentation's own checkpoints hold it."""
    backbone = _mmseg_backbone(sd, meta.get('num_heads') or _heads_for(sd))
    if not task_sd or meta.get('encoder_prefix') != 'backbone.':
        return {'state_dict': backbone}
    rest = {k: v for k, v in task_sd.items() if k.startswith(('neck.', 'decode_head.', 'auxiliary_head.'))}
    return {'state_dict': {**{f'backbone.{k}': v for k, v in backbone.items()}, **rest}}


def mmseg_to_ours(state: dict) -> dict:
    """The encoder of an mmsegmentation MAE backbone (``layers.*``, or ``backbone.layers.*`` in a whole model) in
    our names. Zero bias tables and unit layer scales (a pre-trained encoder exported for mmsegmentation) are
    dropped, trained ones kept; ``relative_position_index`` is a constant; there is no final norm."""
    prefix = 'backbone.' if any(k.startswith('backbone.layers.') for k in state) else ''
    sd = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    names = {'ln1': 'norm1', 'ln2': 'norm2', 'attn.qkv': 'attn.qkv', 'attn.proj': 'attn.proj',
             'ffn.layers.0.0': 'mlp.fc1', 'ffn.layers.1': 'mlp.fc2'}
    out = {'cls_token': sd['cls_token'], 'pos_embed': sd['pos_embed'],
           'patch_embed.proj.weight': sd['patch_embed.projection.weight'],
           'patch_embed.proj.bias': sd['patch_embed.projection.bias']}
    for i in range(_depth(sd, 'layers.')):
        l, b = f'layers.{i}.', f'blocks.{i}.'
        out.update({b + ours + p: sd[l + theirs + p] for theirs, ours in names.items() for p in ('.weight', '.bias')})
        table = sd.get(l + 'attn.relative_position_bias_table')
        if table is not None and table.count_nonzero():
            out[b + 'attn.relative_position_bias_table'] = table
        for n in (1, 2):
            gamma = sd.get(f'{l}gamma_{n}')
            if gamma is not None and not bool((gamma == 1).all()):
                out[f'{b}ls{n}.gamma'] = gamma
    return out


EXPORT_FORMATS = ('ours', 'fb_mae', 'timm', 'hf_vitmae', 'vitdet', 'mmseg')


def export(src, dst, to: str, arch=None, allow_pickle=False, overwrite=False):
    """Convert checkpoint ``src`` (any readable format) to ``to`` at ``dst``; written atomically. An existing
    ``dst`` is replaced only with ``overwrite`` (a Hugging Face folder: only its config.json and
    model.safetensors; any other file there is kept)."""
    dst = Path(dst)
    if dst.exists() and not overwrite:
        raise UsageError(f'{dst}: already exists; pass --overwrite to replace it')
    if to != 'hf_vitmae' and dst.is_dir():
        raise UsageError(f'{dst}: is a folder; {to} is written to a file')
    if to == 'hf_vitmae' and dst.exists() and not dst.is_dir():
        raise UsageError(f'{dst}: is a file; a Hugging Face checkpoint is a folder')
    sd, fmt, meta, task_sd = read_checkpoint(src, allow_pickle)
    meta = {**meta, 'arch': meta.get('arch') or arch or infer_arch(sd, src)}
    if meta['arch'] is None:
        raise CheckpointError(f'{src}: cannot infer the arch from its shapes; pass --arch')
    meta = {k: v for k, v in meta.items() if v is not None}
    if to == 'ours':
        return save_ours(dst, sd, meta)
    if to == 'fb_mae':
        return save_checkpoint({'model': sd}, dst)
    if to == 'timm':
        enc = {k: v.contiguous() for k, v in sd.items() if not k.startswith(DECODER_PREFIXES)}
        if str(dst).endswith('.safetensors'):
            return atomic_write(dst, lambda tmp: Path(tmp).write_bytes(safetensors_bytes(enc)))
        return save_checkpoint(enc, dst)
    if to == 'hf_vitmae':
        if meta.get('target') in ('pca', 'dvae'):
            raise UsageError(f'{src}: its decoder predicts {meta["target"]} targets, which Hugging Face\'s ViTMAE '
                             'cannot hold; export the encoder with --to timm or --to ours')
        return export_hf(sd, meta, dst)
    if to == 'vitdet':
        return save_checkpoint({'model': _vitdet(sd, task_sd)}, dst)
    if to == 'mmseg':
        return save_checkpoint({**_mmseg(sd, meta, task_sd), 'meta': {'source': str(src)}}, dst)
    raise CheckpointError(f'unknown export format {to!r}; expected one of {EXPORT_FORMATS}')


HF_FILES = ('config.json', 'model.safetensors')


def export_hf(sd, meta, folder):
    """A folder ``ViTMAEForPreTraining.from_pretrained`` reads. A new folder is built beside ``folder`` and renamed
    into place; into an existing one, each of our two files is written atomically and nothing else is touched."""
    folder = Path(folder)
    files = {'model.safetensors': safetensors_bytes(ours_to_hf(sd), metadata={'format': 'pt'}),
             'config.json': json.dumps(hf_config(sd, meta), indent=2).encode()}
    if folder.is_dir():
        for name, data in files.items():
            atomic_write(folder / name, lambda tmp, data=data: Path(tmp).write_bytes(data))
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f'.{folder.name}.', dir=folder.parent))
    try:
        for name, data in files.items():
            (tmp / name).write_bytes(data)
        tmp.chmod(0o777 & ~_umask())  # mkdtemp makes it 0700: give it the mode a new folder would have
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
