"""``reproduce-tables``: the paper's tables from ``results/paper/`` with a row for each of the user's records.

Paper rows are printed as published. A user's cell comes only from a run record: a number on a subset other
than the full benchmark carries its subset, e.g. ``97.5 (smoke)``, so it is never read as comparable; a cell
the user has not measured stays empty. One HTML page holds every table and the figures (Fig. 5, 7, 9)."""
import argparse
import html
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd

from mae_core import record as rec_lib
from mae_core.errors import UsageError, entry_point

from .registry import BENCHMARKS

PAPER_DIR = Path(__file__).resolve().parent.parent / 'results' / 'paper'
FORMATS = ('md', 'tex', 'csv', 'html')
ARCH_COLUMN = {'vit_base_patch16': 'ViT-B', 'vit_large_patch16': 'ViT-L', 'vit_huge_patch14': 'ViT-H',
               'vit_small_patch16': 'ViT-S', 'vit_tiny_patch16': 'ViT-Ti', 'vit_toy_patch16': 'ViT-toy'}


# ==================================================================== reading
def read_paper(stem: str):
    """-> (title, source lines, DataFrame of strings) for ``results/paper/<stem>.csv``."""
    path = PAPER_DIR / f'{stem}.csv'
    comments = [line[1:].strip() for line in path.read_text(encoding='utf-8').splitlines() if line.startswith('#')]
    df = pd.read_csv(path, comment='#', dtype=str, keep_default_na=False)
    return comments[0], comments[1:], df


def cell(rec: dict, metric: str) -> str:
    """A user's number as shown: marked with its subset unless it is the full benchmark."""
    value = rec['metrics'].get(metric)
    if value is None:
        return ''
    subset = rec['data']['subset']
    return f'{value:.1f}' if subset == rec_lib.FULL else f'{value:.1f} ({subset})'


def user_label(rec: dict) -> str:
    m = rec['model']
    return f'yours: {Path(m["checkpoint"]).name} [{m["sha256"][:8]}]'


def arch_column(rec: dict) -> str:
    arch = rec['model']['arch']
    col = ARCH_COLUMN.get(arch, arch)
    return col + '448' if col == 'ViT-H' and rec['settings'].get('img_size') == 448 else col


def latest(records, benchmark):
    """The newest record of ``benchmark`` per (checkpoint, settings): later runs replace earlier ones."""
    out = {}
    for r in records:
        if r['benchmark'] == benchmark and r['status'] == 'finished':
            key = (r['model']['sha256'], tuple(sorted((k, str(v)) for k, v in r['settings'].items()
                                                      if k in ('k', 'img_size', 'protocol'))))
            out[key] = r
    return list(out.values())


def by_checkpoint(records, *benchmarks):
    """{pre-trained checkpoint sha: {benchmark: newest record}}."""
    out = defaultdict(dict)
    for b in benchmarks:
        for r in latest(records, b):
            out[r['model']['sha256']][b] = r
    return out


def pretrain_meta(recs: dict) -> dict:
    return next(iter(recs.values()))['model'].get('pretrain') or {}


# ==================================================================== user rows, one builder per table kind
def ablation_rows(key: Callable):
    """Table 1x, Fig. 5/7: one row per pre-trained checkpoint with ft and lin, placed by its pre-training
    settings (``key(meta)``; None when the checkpoint carries no such setting, e.g. a foreign file)."""
    def build(records, columns):
        rows = []
        for sha, recs in by_checkpoint(records, 'in1k_finetune', 'in1k_linprobe').items():
            placed = key(pretrain_meta(recs))
            if placed is None:
                continue
            any_rec = next(iter(recs.values()))
            row = {'source': user_label(any_rec), **placed}
            if 'in1k_finetune' in recs:
                row['ft'] = cell(recs['in1k_finetune'], 'top1')
            if 'in1k_linprobe' in recs:
                row['lin'] = cell(recs['in1k_linprobe'], 'top1')
            rows.append(row)
        return rows
    return build


def _get(meta, name, fmt=lambda v: v):
    return None if meta.get(name) is None else fmt(meta[name])


def method_rows(benchmark, columns_for: Callable):
    """Tables 3-5: one row per checkpoint, the metrics under the column of its arch."""
    def build(records, columns):
        rows = []
        for r in latest(records, benchmark):
            rows.append({'source': user_label(r), 'method': 'MAE (yours)', 'pre-train data': (r['model'].get('pretrain') or {}).get('pretrain_data', ''),
                         **{col: cell(r, metric) for col, metric in columns_for(r)}})
        return rows
    return build


def dataset_rows(stem):
    """Table 6 and the robustness table: one row per (dataset, checkpoint), the headline under its arch; the
    benchmarks and their rows are those the registry places in table ``stem``."""
    def build(records, columns):
        placed = [b for b in BENCHMARKS.values() if b.table_row and b.table_row[0] == stem]
        return [{'source': user_label(r), 'dataset': b.table_row[1], arch_column(r): cell(r, b.headline)}
                for b in placed for r in latest(records, b.name)]
    return build


def table2_rows(records, columns):
    """Table 2: pre-training runs, their ft accuracy (a fine-tuning record of their checkpoint) and hours."""
    pre = [r for r in records if r['family'] == 'pretrain']
    ft = {sha: rs['in1k_finetune'] for sha, rs in by_checkpoint(records, 'in1k_finetune').items()}
    rows = []
    for r in pre:
        meta = r['model'].get('pretrain') or {}
        base = [p for p in pre if (p['model'].get('pretrain') or {}).get('encoder_mask_tokens') and
                p['model']['arch'] == r['model']['arch'] and (p['model'].get('pretrain') or {}).get('decoder_depth') == 8]
        hours = r['time']['device_hours']
        speed = (f'{base[-1]["time"]["device_hours"] / hours:.1f}×' if base and hours and
                 not meta.get('encoder_mask_tokens') else '')
        rows.append({'source': user_label(r),
                     'encoder': ARCH_COLUMN.get(r['model']['arch'], r['model']['arch']) +
                     (', w/ [M]' if meta.get('encoder_mask_tokens') else ''),
                     'dec. depth': str(meta.get('decoder_depth', '')),
                     'ft acc': cell(ft[r['model']['sha256']], 'top1') if r['model']['sha256'] in ft else '',
                     'hours': f'{hours:.3f} device-h ({r["data"]["subset"]}, {r["env"]["device"]})', 'speedup': speed})
    return rows


def table7_rows(records, columns):
    rows = []
    for sha, recs in by_checkpoint(records, 'in1k_finetune', 'coco_maskrcnn', 'ade20k_upernet').items():
        npl = pretrain_meta(recs).get('norm_pix_loss')
        if npl is None:
            continue
        row = {'source': user_label(next(iter(recs.values()))), 'target': 'pixel (w/ norm)' if npl else 'pixel (w/o norm)'}
        for b, prefix, metric in (('in1k_finetune', 'IN1K', 'top1'), ('coco_maskrcnn', 'COCO', 'APbox'),
                                  ('ade20k_upernet', 'ADE20K', 'mIoU')):
            if b in recs:
                row[f'{prefix} {arch_column(recs[b])}'] = cell(recs[b], metric)
        rows.append(row)
    return rows


def fig9_rows(records, columns):
    return [{'source': user_label(r), 'blocks': str(r['settings'].get('k')), 'MAE': cell(r, 'top1')}
            for r in latest(records, 'in1k_partial_ft')]


@dataclass
class TableSpec:
    stem: str
    user_rows: Callable = None  # (records, paper columns) -> [dict]


TABLES = [
    TableSpec('table1a_decoder_depth', ablation_rows(lambda m: _get(m, 'decoder_depth', lambda v: {'blocks': str(v)}))),
    TableSpec('table1b_decoder_width', ablation_rows(lambda m: _get(m, 'decoder_embed_dim', lambda v: {'dim': str(v)}))),
    TableSpec('table1c_mask_token', ablation_rows(lambda m: _get(
        m, 'encoder_mask_tokens', lambda v: {'case': 'encoder w/ [M]' if v else 'encoder w/o [M]'}))),
    TableSpec('table1d_target', ablation_rows(lambda m: _get(
        m, 'norm_pix_loss', lambda v: {'case': 'pixel (w/ norm)' if v else 'pixel (w/o norm)'}))),
    TableSpec('table1e_augmentation', ablation_rows(lambda m: _get(m, 'crop_scale', lambda v: {'case': 'crop, rand size'}))),
    TableSpec('table1f_mask_sampling', ablation_rows(lambda m: None if m.get('masking') is None else
                                                     {'case': m['masking'], 'ratio': f'{100 * m["mask_ratio"]:g}'})),
    TableSpec('table2_wallclock', table2_rows),
    TableSpec('table3_imagenet', method_rows('in1k_finetune', lambda r: [(arch_column(r), 'top1')])),
    TableSpec('table4_coco', method_rows('coco_maskrcnn', lambda r: [(f'APbox {arch_column(r)}', 'APbox'),
                                                                     (f'APmask {arch_column(r)}', 'APmask')])),
    TableSpec('table5_ade20k', method_rows('ade20k_upernet', lambda r: [(arch_column(r), 'mIoU')])),
    TableSpec('table6_classification', dataset_rows('table6_classification')),
    TableSpec('robustness', dataset_rows('robustness')),
    TableSpec('table7_pixels_vs_tokens', table7_rows),
    TableSpec('section4_scratch'),
    TableSpec('fig5_masking_ratio', ablation_rows(lambda m: _get(m, 'mask_ratio', lambda v: {'ratio': f'{100 * v:g}'}))),
    TableSpec('fig7_schedule', ablation_rows(lambda m: _get(m, 'epochs', lambda v: {'epochs': str(v)}))),
    TableSpec('fig9_partial_ft', fig9_rows),
]


def build_table(spec: TableSpec, records):
    """-> (title, notes, DataFrame): the paper's rows (source 'paper'), then the user's."""
    title, notes, paper = read_paper(spec.stem)
    paper.insert(0, 'source', 'paper')
    rows = spec.user_rows(records, list(paper.columns)) if spec.user_rows else []
    table = pd.concat([paper, pd.DataFrame(rows, dtype=str)], ignore_index=True) if rows else paper
    return title, notes, table.fillna('')


# ==================================================================== figures
def _points(df, x, y):
    """(x, y, label) of the user's rows with a number in column y."""
    out = []
    for _, r in df[df['source'] != 'paper'].iterrows():
        if r.get(y):
            out.append((float(r[x]), float(r[y].split()[0]), r['source'] + (' ' + r[y].split(' ', 1)[1] if ' ' in r[y] else '')))
    return out


def plot_curves(df, x, panels, title, path, logx=False):
    """One axis per panel, each with the paper's curve(s) and the user's points (stars, labelled with subset)."""
    import textwrap

    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.0), squeeze=False)
    paper = df[df['source'] == 'paper']
    for ax, ys in zip(axes[0], panels):
        for y in ys:
            ax.plot(paper[x].astype(float), paper[y].astype(float), 'o-', label=f'paper: {y}')
            for px, py, label in _points(df, x, y):
                ax.plot([px], [py], marker='*', markersize=13, linestyle='none', label=f'{label} ({y})')
        ax.set_xlabel(x)
        ax.set_ylabel(f'{" / ".join(ys)}: top-1 (%)')
        if logx:
            ax.set_xscale('log', base=2)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle('\n'.join(textwrap.wrap(title, 60 * len(panels))), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


FIGURES = {'fig5_masking_ratio': ('ratio', [['ft'], ['lin']], False),
           'fig7_schedule': ('epochs', [['ft'], ['lin']], True),
           'fig9_partial_ft': ('blocks', [['MAE', 'MoCo v3']], False)}


# ==================================================================== writing
def write_outputs(tables, out: Path, formats):
    out.mkdir(parents=True, exist_ok=True)
    for stem, (title, notes, df) in tables.items():
        if 'md' in formats:
            (out / f'{stem}.md').write_text(f'**{title}**\n\n{df.to_markdown(index=False)}\n\n' +
                                            ''.join(f'{n}\n\n' for n in notes), encoding='utf-8')
        if 'csv' in formats:
            df.to_csv(out / f'{stem}.csv', index=False)
        if 'tex' in formats:
            (out / f'{stem}.tex').write_text(df.style.hide(axis='index').to_latex(caption=title), encoding='utf-8')
    if 'html' in formats:
        return write_html(tables, out)
    return None


def write_html(tables, out: Path) -> Path:
    (out / 'figures').mkdir(exist_ok=True)
    parts = ['<!doctype html><html><head><meta charset="utf-8"><title>MAE transfer suite: tables</title><style>',
             'body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}',
             'table{border-collapse:collapse;margin:.5em 0 0}td,th{border:1px solid #bbb;padding:3px 8px;font-size:13px}',
             'tr.user td{background:#fff6d5}p.note{font-size:12px;color:#555;margin:.2em 0}img{max-width:100%}',
             '</style></head><body><h1>He et al., "Masked Autoencoders Are Scalable Vision Learners": tables</h1>',
             '<p>White rows: the paper\'s numbers. Yellow rows: your run records. A number followed by a subset name '
             '(e.g. "(smoke)") was measured on that subset only and is not comparable with the paper.</p>']
    for stem, (title, notes, df) in tables.items():
        parts.append(f'<h2 id="{stem}">{html.escape(title)}</h2>')
        parts.append('<table><tr>' + ''.join(f'<th>{html.escape(c)}</th>' for c in df.columns) + '</tr>')
        for _, row in df.iterrows():
            cls = '' if row['source'] == 'paper' else ' class="user"'
            parts.append(f'<tr{cls}>' + ''.join(f'<td>{html.escape(str(v))}</td>' for v in row) + '</tr>')
        parts.append('</table>' + ''.join(f'<p class="note">{html.escape(n)}</p>' for n in notes))
        if stem in FIGURES:
            x, panels, logx = FIGURES[stem]
            png = plot_curves(df, x, panels, title, out / 'figures' / f'{stem}.png', logx)
            parts.append(f'<p><img src="figures/{png.name}" alt="{html.escape(title)}"></p>')
    parts.append('</body></html>')
    path = out / 'index.html'
    path.write_text('\n'.join(parts), encoding='utf-8')
    return path


def reproduce(records_dir='results/runs', out='results/report', formats=FORMATS):
    records = rec_lib.read_records(records_dir, benchmarks=BENCHMARKS)
    tables = {spec.stem: build_table(spec, records) for spec in TABLES}
    return tables, write_outputs(tables, Path(out), formats), len(records)


@entry_point
def main(argv=None):
    p = argparse.ArgumentParser('reproduce-tables', description=__doc__.splitlines()[0])
    p.add_argument('--records-dir', default='results/runs')
    p.add_argument('--out', default='results/report')
    p.add_argument('--formats', default=','.join(FORMATS), help=f'comma-separated subset of {",".join(FORMATS)}')
    args = p.parse_args(argv)
    formats = [f.strip() for f in args.formats.split(',') if f.strip()]
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise UsageError(f'--formats {",".join(bad)}: unknown; expected some of {",".join(FORMATS)}')
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise UsageError(f'--out {args.out}: is a file; expected a folder for the tables')
    if not Path(args.records_dir).is_dir():
        print(f'note: --records-dir {args.records_dir} does not exist: the tables hold the paper\'s rows only',
              file=sys.stderr)
    tables, page, n = reproduce(args.records_dir, args.out, formats)
    print(f'{len(tables)} tables from results/paper/ with {n} run record(s) from {args.records_dir} -> {args.out}')
    if page:
        print(f'HTML report: {Path(page).resolve()}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
