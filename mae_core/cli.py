"""Command-line entry points of mae_core: ``mae-pretrain``, ``mae-convert`` and ``mae-figures``.

Input errors are one ``error:`` line on standard error and exit code 2 (:func:`mae_core.errors.entry_point`).
mmengine, the MAE and matplotlib are imported inside the commands so that ``--help`` answers at once."""
import argparse
import sys
from pathlib import Path

from . import progress
from .checkpoint import EXPORT_FORMATS, export
from .config import HelpFormatter
from .errors import MissingFile, UsageError, UserError, entry_point
from .record import DEFAULT_DIR


@entry_point
def pretrain_main(argv=None):
    p = argparse.ArgumentParser('mae-pretrain', formatter_class=HelpFormatter, description=(
        'MAE pre-training (the paper\'s Table 8 recipe) on mmengine; ends with WORK_DIR/final.pth and a run record.'))
    p.add_argument('--config', required=True, help='the pre-training config, e.g. eval_configs/pretrain/mae_tiny_cpu.py')
    p.add_argument('--data-root', help='a folder of images (ImageNet layout or flat); default: the config\'s')
    p.add_argument('--work-dir', help='checkpoints, logs and final.pth; default: work_dirs/<config name>')
    p.add_argument('--records-dir', default=DEFAULT_DIR, help='where the pre-training record goes')
    p.add_argument('--resume', action='store_true', help='continue from the last checkpoint in --work-dir')
    p.add_argument('--launcher', default='none', choices=['none', 'pytorch', 'slurm'],
                   help='pytorch under torchrun, slurm under srun')
    p.add_argument('--cfg-options', nargs='+', default=[], metavar='KEY=VALUE',
                   help='override config values, e.g. model.mask_ratio=0.9 (a key the config lacks is an error)')
    p.add_argument('--allow-pickle', action='store_true',
                   help='read a pickled model.dvae_weights (DALL-E\'s encoder.pkl): only files you trust')
    p.add_argument('-v', '--verbose', action='store_true', help='print mmengine\'s log and warnings as they come')
    args = p.parse_args(argv)
    progress.set_verbose(args.verbose)
    from .config import load_config
    from .pretrain import pretrain
    cfg = load_config(args.config, args.cfg_options)
    if args.data_root and not Path(args.data_root).is_dir():
        raise MissingFile(f'--data-root {args.data_root}: no such folder (expected a folder of images)')
    work_dir = args.work_dir or f'work_dirs/{Path(args.config).stem}'
    with progress.task(f'mae-pretrain {Path(args.config).stem}') as line:
        final, record = pretrain(cfg, work_dir, args.data_root, args.resume, args.launcher, args.records_dir,
                                 args.allow_pickle)
        if final is not None:
            line.finish(f'saved {final}')
    if final is not None:
        print(f'final checkpoint: {final}')
        print(record)


@entry_point
def convert_main(argv=None):
    p = argparse.ArgumentParser('mae-convert', formatter_class=HelpFormatter, description=(
        'Convert an MAE/ViT checkpoint between layouts (ours, fb/mae, timm, Hugging Face, ViTDet, mmsegmentation).'))
    p.add_argument('src', help='a checkpoint file or Hugging Face folder')
    p.add_argument('dst', help='the file (or, for hf_vitmae, folder) to write')
    p.add_argument('--to', required=True, choices=EXPORT_FORMATS, help='the layout to write')
    p.add_argument('--arch', help='the encoder arch, for checkpoints of non-standard size')
    p.add_argument('--allow-pickle', action='store_true',
                   help='allow pickled objects (fb/mae args): only for files you trust')
    p.add_argument('--overwrite', action='store_true',
                   help='replace an existing DST (of a Hugging Face folder only config.json and model.safetensors)')
    args = p.parse_args(argv)
    try:
        print(export(args.src, args.dst, args.to, args.arch, args.allow_pickle, args.overwrite))
    except UserError:
        raise
    except OSError as e:  # a read-only, full or missing location: nothing was written (atomic writes)
        raise UsageError(f'{args.dst}: cannot write there ({e.strerror or e})') from None


@entry_point
def figures_main(argv=None):
    p = argparse.ArgumentParser('mae-figures', formatter_class=HelpFormatter, description=(
        'Reconstruction grids like the paper\'s Fig. 4/6: original, masked, reconstruction, and reconstruction '
        'with the visible patches pasted back, per mask ratio.'))
    p.add_argument('--checkpoint', required=True, help='an MAE checkpoint with its decoder')
    p.add_argument('--images', required=True, help='a folder of images; --num of them are used, spread evenly '
                                                     'over the sorted file list')
    p.add_argument('--out', required=True, help='the PNG to write')
    p.add_argument('--mask-ratios', default='0.75', help='comma-separated, each in (0, 1), e.g. 0.75,0.85,0.95')
    p.add_argument('--masking', default=None, help='random|block|grid (default: the checkpoint\'s)')
    p.add_argument('--num', type=int, default=4, help='how many images (rows)')
    p.add_argument('--img-size', type=int, default=None, help='default: the checkpoint\'s')
    p.add_argument('--seed', type=int, default=0, help='seed of the masks')
    p.add_argument('--allow-pickle', action='store_true',
                   help='allow pickled objects (fb/mae args): only for files you trust')
    args = p.parse_args(argv)
    from .figures import reconstruction_figure
    try:
        ratios = [float(r) for r in args.mask_ratios.split(',')]
    except ValueError:
        raise UsageError(f'--mask-ratios {args.mask_ratios}: expected comma-separated numbers, e.g. 0.75,0.85') from None
    print(reconstruction_figure(args.checkpoint, args.images, args.out, ratios, args.masking, args.num,
                                args.img_size, args.seed, args.allow_pickle))


if __name__ == '__main__':
    commands = {'pretrain': pretrain_main, 'convert': convert_main, 'figures': figures_main}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        print(f'error: usage: python -m mae_core.cli {{{",".join(commands)}}} ...', file=sys.stderr)
        sys.exit(2)
    sys.exit(commands[sys.argv[1]](sys.argv[2:]))
