"""``mae-suite-demo``: the whole suite on a CPU in minutes, with no dataset: generate images, pre-train a tiny
MAE, run every registered benchmark in smoke mode on generated data in the real formats, regenerate the
paper's tables with the demo's rows (marked "smoke"), and print where the HTML report is."""
import argparse
import sys
import time
from pathlib import Path

from mae_core.config import load_config
from mae_core.errors import entry_point

from . import cli, tables

CONFIG = Path(__file__).resolve().parent.parent / 'eval_configs' / 'pretrain' / 'mae_tiny_cpu.py'


@entry_point
def main(argv=None):
    p = argparse.ArgumentParser('mae-suite-demo', description=__doc__.splitlines()[0])
    p.add_argument('--out', default='work_dirs/demo', help='work dirs, records and report go here')
    p.add_argument('--force', action='store_true', help='pre-train and run every benchmark again')
    args = p.parse_args(argv)
    out, t0 = Path(args.out), time.time()
    records, final = out / 'records', out / 'pretrain' / 'final.pth'
    print(f'[demo 1/4] pre-training a tiny MAE on generated images ({CONFIG.name})', flush=True)
    if final.exists() and not args.force:
        print(f'           reusing {final} (--force to pre-train again)')
    else:
        from mae_core.pretrain import pretrain
        pretrain(load_config(CONFIG), out / 'pretrain', records_dir=records)
    print('[demo 2/4] reconstructions of the pre-trained MAE (Fig. 4/6 style)', flush=True)
    from mae_core.figures import reconstruction_figure
    from mae_core.pretrain import generated_images
    images = generated_images(load_config(CONFIG).data.generated)
    recon = reconstruction_figure(final, images, out / 'report' / 'figures' / 'reconstructions.png',
                                  [0.75, 0.85], None, 4, img_size=64)
    print('[demo 3/4] every registered benchmark in smoke mode', flush=True)
    status = cli.main(['all', '--checkpoint', str(final), '--smoke', '--records-dir', str(records)] +
                      (['--force'] if args.force else []))
    print('[demo 4/4] the paper\'s tables with the demo\'s rows', flush=True)
    _, page, n = tables.reproduce(records, out / 'report')
    print(f'{n} run records in {records}; reconstructions: {recon}')
    print(f'demo finished in {time.time() - t0:.0f} s' + ('' if status == 0 else ' (some benchmarks FAILED, see above)'))
    print(f'HTML report: {Path(page).resolve()}')
    return status


if __name__ == '__main__':
    sys.exit(main())
