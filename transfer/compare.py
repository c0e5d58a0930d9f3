"""``compare-runs A.json B.json``: two runs of one benchmark compared on the same images."""
import argparse
import html
import sys
from pathlib import Path

from mae_core.config import HelpFormatter
from mae_core.errors import UsageError, entry_point
from mae_core.record import read_record, read_samples

from . import intervals
from .tables import user_label

DESCRIPTION = """Compare two runs of one benchmark on the same evaluation images.

For every headline metric: each run's value, the difference A - B and its 95 % paired-bootstrap interval (the
same image resamples for both runs, 1,000 by default); for top-1 also McNemar's exact test on the images one run
gets right and the other wrong. An interval that excludes 0 says the difference is unlikely to be an accident
of which images were drawn; it says nothing of other seeds (run both with --seeds for that). Both records need
their samples file (written beside every record since this version)."""


def compare_records(path_a, path_b, resamples=intervals.RESAMPLES, seed=intervals.SEED):
    """-> (record A, record B, :func:`transfer.intervals.compare` of their samples). Raises a UsageError naming the
    file when the two cannot be paired."""
    recs = [read_record(p) for p in (path_a, path_b)]
    if recs[0]['benchmark'] != recs[1]['benchmark']:
        raise UsageError(f'{path_b}: benchmark {recs[1]["benchmark"]} is not {path_a}\'s {recs[0]["benchmark"]}; '
                         'compare runs of one benchmark')
    samples = []
    for path, rec in zip((path_a, path_b), recs):
        s = read_samples(path, rec)
        if s is None:
            raise UsageError(f'{path}: the record names no samples file (it predates them): run it again to compare')
        samples.append(s)
    try:  # intervals.compare checks the image ids itself
        return recs[0], recs[1], intervals.compare(samples[0], samples[1], resamples, seed)
    except intervals.NotPaired:
        raise UsageError(f'{path_b}: evaluated on other images than {path_a} ({len(samples[1]["image"])} vs '
                         f'{len(samples[0]["image"])}); a paired comparison needs the same evaluation images') from None


def rows(result) -> list:
    metrics = {m: v for m, v in result.items() if m != 'mcnemar'}
    return [(m, f'{a:.2f}', f'{b:.2f}', f'{d:+.2f}', f'[{lo:+.2f}, {hi:+.2f}]')
            for m, (a, b, d, (lo, hi)) in metrics.items()]


HEAD = ('metric', 'A', 'B', 'A - B', '95 % interval of A - B')


def as_text(rec_a, rec_b, result) -> str:
    body = [HEAD] + rows(result)
    widths = [max(len(r[i]) for r in body) for i in range(len(HEAD))]
    lines = [f'{rec_a["benchmark"]}, {rec_a["data"]["num_images"]} images ({rec_a["data"]["subset"]}), paired',
             f'A: {user_label(rec_a)}, run {rec_a["run_id"]}', f'B: {user_label(rec_b)}, run {rec_b["run_id"]}', '']
    lines += ['  '.join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in body]
    if 'mcnemar' in result:
        only_a, only_b, p = result['mcnemar']
        lines += ['', f'McNemar (top-1, exact): {only_a} images only A gets right, {only_b} only B; p = {p:.3g}']
    return '\n'.join(lines)


def as_markdown(rec_a, rec_b, result) -> str:
    text = as_text(rec_a, rec_b, result).split('\n\n')
    table = ['| ' + ' | '.join(HEAD) + ' |', '|' + '---|' * len(HEAD)]
    table += ['| ' + ' | '.join(r) + ' |' for r in rows(result)]
    return '\n\n'.join([text[0].replace('\n', '  \n'), '\n'.join(table)] + text[2:]) + '\n'


def as_html(rec_a, rec_b, result) -> str:
    text = as_text(rec_a, rec_b, result).split('\n\n')
    table = '<table><tr>' + ''.join(f'<th>{html.escape(h)}</th>' for h in HEAD) + '</tr>' + ''.join(
        '<tr>' + ''.join(f'<td>{html.escape(c)}</td>' for c in r) + '</tr>' for r in rows(result)) + '</table>'
    parts = [f'<p>{html.escape(text[0]).replace(chr(10), "<br>")}</p>', table] + \
        [f'<p>{html.escape(t)}</p>' for t in text[2:]]
    return ('<!doctype html><html><head><meta charset="utf-8"><title>compare-runs</title><style>'
            'body{font-family:sans-serif}td,th{border:1px solid #bbb;padding:3px 8px}table{border-collapse:collapse}'
            '</style></head><body>' + ''.join(parts) + '</body></html>\n')


@entry_point
def main(argv=None):
    p = argparse.ArgumentParser('compare-runs', description=DESCRIPTION, formatter_class=HelpFormatter)
    p.add_argument('a', help='run record A (RECORDS/<benchmark>/<run id>.json)')
    p.add_argument('b', help='run record B, of the same benchmark and evaluation images')
    p.add_argument('--out', help='also write the comparison as Markdown (.md) or HTML (.html)')
    p.add_argument('--resamples', type=int, default=intervals.RESAMPLES, help='bootstrap resamples')
    p.add_argument('--seed', type=int, default=intervals.SEED, help='seed of the resampling')
    args = p.parse_args(argv)
    if args.resamples < 100:
        raise UsageError(f'--resamples {args.resamples}: use at least 100 for a 95 % interval')
    if args.out and Path(args.out).suffix not in ('.md', '.html'):
        raise UsageError(f'--out {args.out}: expected a .md or .html file')
    rec_a, rec_b, result = compare_records(args.a, args.b, args.resamples, args.seed)
    print(as_text(rec_a, rec_b, result))
    if args.out:
        out = Path(args.out)
        out.write_text((as_html if out.suffix == '.html' else as_markdown)(rec_a, rec_b, result), encoding='utf-8')
        print(f'written: {out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
