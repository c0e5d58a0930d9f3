"""``mae-suite-demo``: the whole suite on a CPU in minutes, with no dataset."""
import argparse
import sys
import time
from pathlib import Path

from mae_core import progress
from mae_core.config import HelpFormatter, load_config
from mae_core.errors import entry_point
from mae_core.figures import reconstruction_figure
from mae_core.pretrain import generated_images, pretrain
from mae_core.record import DEFAULT_DIR

from . import cli, tables

CONFIG = Path(__file__).resolve().parent.parent / 'eval_configs' / 'pretrain' / 'mae_tiny_cpu.py'
DESCRIPTION = """The whole suite on a CPU in minutes, with no dataset and no GPU.

It generates images, pre-trains a tiny MAE (eval_configs/pretrain/mae_tiny_cpu.py), draws its reconstructions,
runs every registered benchmark in smoke mode on generated data in each benchmark's real format, and writes the
paper's tables with the demo's rows (each marked "smoke") to an HTML report. Work dirs and the report go under
--out; the run records go to --records-dir, the default of run-transfer and reproduce-tables too, so a later
"run-transfer all --checkpoint OUT/pretrain/final.pth --smoke" finds them and skips what the demo finished."""


@entry_point
def main(argv=None):
    p = argparse.ArgumentParser('mae-suite-demo', description=DESCRIPTION, formatter_class=HelpFormatter)
    p.add_argument('--out', default='work_dirs/demo', help='the pre-training, every work dir and the report')
    p.add_argument('--records-dir', default=DEFAULT_DIR, help='where the run records go')
    p.add_argument('--force', action='store_true', help='pre-train and run every benchmark again')
    p.add_argument('-v', '--verbose', action='store_true', help='print mmengine\'s log and warnings as they come')
    args = p.parse_args(argv)
    progress.set_verbose(args.verbose)
    out, records, t0 = Path(args.out), Path(args.records_dir), time.time()
    final = out / 'pretrain' / 'final.pth'
    cfg = load_config(CONFIG)
    print(f'[demo 1/4] pre-training a tiny MAE on generated images ({CONFIG.name})', flush=True)
    if final.exists() and not args.force:
        print(f'           reusing {final} (--force to pre-train again)')
    else:
        with progress.task('           mae_pretrain') as line:
            pretrain(cfg, out / 'pretrain', records_dir=records)
            line.finish(f'saved {final}')
    print('[demo 2/4] reconstructions of the pre-trained MAE (Fig. 4/6 style)', flush=True)
    recon = reconstruction_figure(final, generated_images(cfg.data.generated),
                                  out / 'report' / 'figures' / 'reconstructions.png', [0.75, 0.85], None, 4,
                                  img_size=64)
    print('[demo 3/4] every registered benchmark in smoke mode', flush=True)
    status = cli.main(['all', '--checkpoint', str(final), '--smoke', '--records-dir', str(records),
                       '--work-dir', str(out / 'work_dirs')] + ['--force'] * args.force + ['-v'] * args.verbose)
    print('[demo 4/4] the paper\'s tables with the demo\'s rows', flush=True)
    _, page, n = tables.reproduce(records, out / 'report')
    print(f'{n} run records in {records}; reconstructions: {recon}')
    print(f'demo finished in {time.time() - t0:.0f} s' + ('' if status == 0 else ' (some benchmarks FAILED, see above)'))
    print(f'HTML report: {Path(page).resolve()}')
    return status


if __name__ == '__main__':
    sys.exit(main())
