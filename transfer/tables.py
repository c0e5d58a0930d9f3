"""``reproduce-tables``: the paper's tables from ``results/paper/`` with a row for each of the user's records.

Paper rows are printed as published, each table citing where in the paper (arXiv 2111.06377 v3) it comes from.
A user's cell comes only from a run record: a number on a subset other than the full benchmark carries its
subset, e.g. ``97.5 (smoke)``, so it is never read as comparable; a cell the user has not measured stays empty;
a user's row names the encoder's arch and pre-training epochs. One HTML page holds every table, the figures
(Fig. 5, 7, 9, on the paper's axes) and any other PNG under ``OUT/figures`` (the demo's reconstructions)."""
import argparse
import html
import statistics
import sys
import textwrap
import unicodedata
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import matplotlib.pyplot as plt
import pandas as pd

from mae_core import record as rec_lib
from mae_core.config import HelpFormatter
from mae_core.errors import UsageError, entry_point
from mae_core.mae import target_name

from . import intervals
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


def cell(runs, metric: str) -> str:
    """A user's number as shown: one run with its 95 % interval, ``83.6 [83.3, 83.9]``; runs that differ only in
    seed as ``83.5 ± 0.1 (n=3)`` (mean ± sample std); marked with the subset unless it is the full benchmark."""
    runs = [runs] if isinstance(runs, dict) else runs
    values = [r['metrics'][metric] for r in runs if r['metrics'].get(metric) is not None]
    if not values:
        return ''
    if len(values) > 1:
        text = f'{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f} (n={len(values)})'
    else:
        bounds = (runs[0].get('ci95') or {}).get(metric)
        text = f'{values[0]:.1f}' + (f' [{bounds[0]:.1f}, {bounds[1]:.1f}]' if bounds else '')
    subset = runs[0]['data']['subset']
    return text if subset == rec_lib.FULL else f'{text} ({subset})'


def cell_numbers(text: str):
    """(value, low, high, the rest) of a user's cell; low/high None without an interval or a spread."""
    value, _, rest = text.partition(' ')
    low = high = None
    if rest.startswith('['):
        bounds, _, rest = rest[1:].partition(']')
        low, high = (float(b) for b in bounds.split(','))
    elif rest.startswith('± '):
        spread, _, rest = rest[2:].partition(' ')
        low, high = float(value) - float(spread), float(value) + float(spread)
    return float(value), low, high, rest.strip()


def user_label(rec) -> str:
    """'yours: ViT-B, 800 ep, final.pth [1a2b3c4d]': the arch and pre-training epochs, so that a row that is not
    comparable with the paper's (ViT-L, 800 epochs in Table 1) does not look comparable; 'tensor decode' where
    pre-training used ``data.decode='tensor'`` (pixels that are not fb/mae's)."""
    m = (rec[0] if isinstance(rec, list) else rec)['model']
    pretrain = m.get('pretrain') or {}
    epochs = pretrain.get('epochs')
    schedule = f'{epochs} ep' if epochs is not None else 'pre-training epochs unknown'
    decode = ', tensor decode' if pretrain.get('decode') == 'tensor' else ''
    return (f'yours: {ARCH_COLUMN.get(m["arch"], m["arch"])}, {schedule}{decode}, {Path(m["checkpoint"]).name} '
            f'[{m["sha256"][:8]}]')


def arch_column(rec) -> str:
    rec = rec[0] if isinstance(rec, list) else rec
    arch = rec['model']['arch']
    col = ARCH_COLUMN.get(arch, arch)
    return col + '448' if col == 'ViT-H' and rec['settings'].get('img_size') == 448 else col


def latest(records, benchmark):
    """The runs of ``benchmark`` per (checkpoint, settings that change a number's meaning), each a list: the
    newest run, with the newest run of every other seed of the same config (a seed group). A later run with
    another config replaces the earlier ones."""
    groups = defaultdict(list)
    for r in records:
        if r['benchmark'] == benchmark and r['status'] == 'finished':
            key = (r['model']['sha256'], tuple(sorted((k, str(v)) for k, v in r['settings'].items()
                                                      if k in ('k', 'img_size', 'protocol'))))
            groups[key].append(r)
    out = []
    for runs in groups.values():
        newest, by_seed = _config_without_seed(runs[-1]), {}
        for r in runs:
            if _config_without_seed(r) == newest:
                by_seed[r['config'].get('seed')] = r
        out.append(sorted(by_seed.values(), key=lambda r: str(r['config'].get('seed'))))
    return out


def _config_without_seed(rec) -> str:
    return rec_lib.config_hash({k: v for k, v in rec['config'].items() if k != 'seed'})


def by_checkpoint(records, *benchmarks):
    """{pre-trained checkpoint sha: {benchmark: its runs (:func:`latest`)}}."""
    out = defaultdict(dict)
    for b in benchmarks:
        for runs in latest(records, b):
            out[runs[0]['model']['sha256']][b] = runs
    return out


def pretrain_meta(recs: dict) -> dict:
    return next(iter(recs.values()))[0]['model'].get('pretrain') or {}


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
            row = {'source': user_label(next(iter(recs.values()))), **placed}
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
            rows.append({'source': user_label(r), 'method': 'MAE (yours)',
                         'pre-train data': (r[0]['model'].get('pretrain') or {}).get('pretrain_data', ''),
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
    ft = {sha: runs['in1k_finetune'] for sha, runs in by_checkpoint(records, 'in1k_finetune').items()}
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


TARGET_ROWS = {'pixel': 'pixel (w/o norm)', 'norm_pix': 'pixel (w/ norm)', 'pca': 'PCA', 'dvae': 'dVAE token'}
AUGMENTATION_ROWS = {'none': 'none', 'crop_fixed': 'crop, fixed size', 'crop_rand': 'crop, rand size',
                     'crop_color': 'crop + color jit'}


def target_row(meta):
    """Table 1d's / Table 7's row of a checkpoint's reconstruction target (older ones say only norm_pix_loss)."""
    return TARGET_ROWS.get(target_name(meta, default=None))


def augmentation_row(meta):
    """Table 1e's row (checkpoints from before ``data.augmentation`` used the paper's random-size crop)."""
    if meta.get('augmentation'):
        return AUGMENTATION_ROWS.get(meta['augmentation'])
    return AUGMENTATION_ROWS['crop_rand'] if meta.get('crop_scale') is not None else None


def table7_rows(records, columns):
    rows = []
    for sha, recs in by_checkpoint(records, 'in1k_finetune', 'coco_maskrcnn', 'ade20k_upernet').items():
        target = target_row(pretrain_meta(recs))
        if target not in ('pixel (w/o norm)', 'pixel (w/ norm)', 'dVAE token'):  # Table 7 has no PCA row
            continue
        row = {'source': user_label(next(iter(recs.values()))), 'target': target}
        for b, prefix, metric in (('in1k_finetune', 'IN1K', 'top1'), ('coco_maskrcnn', 'COCO', 'APbox'),
                                  ('ade20k_upernet', 'ADE20K', 'mIoU')):
            if b in recs:
                row[f'{prefix} {arch_column(recs[b])}'] = cell(recs[b], metric)
        rows.append(row)
    return rows


def fig9_rows(records, columns):
    return [{'source': user_label(r), 'blocks': str(r[0]['settings'].get('k')), 'MAE': cell(r, 'top1')}
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
    TableSpec('table1d_target', ablation_rows(lambda m: None if target_row(m) is None else {'case': target_row(m)})),
    TableSpec('table1e_augmentation', ablation_rows(
        lambda m: None if augmentation_row(m) is None else {'case': augmentation_row(m)})),
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
    """(x, y, low, high, label, what the bar means) of the user's rows with a number in column y (low/high: its
    interval or spread, None without)."""
    out = []
    for _, r in df[df['source'] != 'paper'].iterrows():
        if r.get(y):
            value, low, high, rest = cell_numbers(r[y])
            bar = ', bar: ± std over seeds' if '±' in r[y] else ', bar: 95 % interval' if low is not None else ''
            out.append((float(r[x]), value, low, high, r['source'] + (f' {rest}' if rest else ''), bar))
    return out


def _paper_range(values, log=False):
    """The paper's data range with a margin: the figure keeps the paper's axis whatever the user's points."""
    lo, hi = min(values), max(values)
    if log:
        return lo / 1.4, hi * 1.4
    pad = 0.08 * (hi - lo) + 0.5
    return lo - pad, hi + pad


def curves_figure(df, x, panels, title, logx=False):
    """One axis per panel on the paper's range, with the paper's curves and the user's points (stars, labelled
    with arch, epochs and subset). A point outside the paper's range is drawn at the edge as a hollow triangle
    pointing its way, with its true value written beside it."""
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 5.0), squeeze=False)
    paper = df[df['source'] == 'paper']
    for ax, ys in zip(axes[0], panels):
        xlim = _paper_range(paper[x].astype(float), logx)
        ylim = _paper_range([v for y in ys for v in paper[y].astype(float)])
        for y in ys:
            line, = ax.plot(paper[x].astype(float), paper[y].astype(float), 'o-', label=f'paper: {y}')
            for px, py, low, high, label, bar in _points(df, x, y):
                cx, cy = min(max(px, xlim[0]), xlim[1]), min(max(py, ylim[0]), ylim[1])
                if (cx, cy) == (px, py):
                    err = None if low is None else [[py - low], [high - py]]
                    ax.errorbar([px], [py], yerr=err, marker='*', markersize=13, linestyle='none', capsize=4,
                                label=f'{label} ({y}){bar}')
                    continue
                marker = 'v' if py < ylim[0] else '^' if py > ylim[1] else '<' if px < xlim[0] else '>'
                ax.plot([cx], [cy], marker=marker, markersize=11, linestyle='none', markerfacecolor='none',
                        markeredgewidth=1.5, color=line.get_color(), clip_on=False,
                        label=f'{label} ({y}): off the paper\'s scale')
                ax.annotate(f'{x} {px:g}, {py:.1f}', (cx, cy), textcoords='offset points', fontsize=7,
                            xytext=(8, 8 if py < ylim[0] else -12), color=line.get_color(), annotation_clip=False)
        ax.set_xlim(*xlim)
        ax.set_ylim(*ylim)
        ax.set_xlabel(x)
        ax.set_ylabel(f'{" / ".join(ys)}: top-1 (%)')
        if logx:
            ax.set_xscale('log', base=2)
        ax.set_xticks(sorted(set(paper[x].astype(float))), [f'{v:g}' for v in sorted(set(paper[x].astype(float)))])
        ax.minorticks_off()
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc='upper center', bbox_to_anchor=(0.5, -0.16))
    fig.suptitle('\n'.join(textwrap.wrap(title, 60 * len(panels))), fontsize=8)
    fig.tight_layout()
    return fig


def plot_curves(df, x, panels, title, path, logx=False):
    fig = curves_figure(df, x, panels, title, logx)
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
            (out / f'{stem}.tex').write_text(latex_table(title, notes, df), encoding='utf-8')
    if 'html' in formats:
        return write_html(tables, out)
    return None


LATEX = {'\\': r'\textbackslash{}', '&': r'\&', '%': r'\%', '$': r'\$', '#': r'\#', '_': r'\_', '{': r'\{',
         '}': r'\}', '~': r'\textasciitilde{}', '^': r'\textasciicircum{}', '<': r'\textless{}', '>': r'\textgreater{}',
         '|': r'\textbar{}', '×': r'$\times$', '↓': r'$\downarrow$', '↑': r'$\uparrow$', '±': r'$\pm$', '≈': r'$\approx$',
         '†': r'\textdagger{}', '‡': r'\textdaggerdbl{}', '–': '--', '—': '---', '§': r'\S{}', '·': r'$\cdot$',
         '“': '``', '”': "''", '‘': '`', '’': "'", '°': r'$^\circ$', '…': r'\ldots{}'}


def latex_escape(text: str) -> str:
    """Text as LaTeX typesets it literally: the special characters escaped, the non-ASCII ones of the tables
    as LaTeX commands, any other reduced to ASCII (so that pdflatex never stops on a caption or a file name)."""
    out = []
    for ch in str(text):
        if ch in LATEX:
            out.append(LATEX[ch])
        elif ord(ch) < 128:
            out.append(ch)
        else:
            out.append(unicodedata.normalize('NFKD', ch).encode('ascii', 'ignore').decode() or '?')
    return ''.join(out)


def latex_table(title, notes, df) -> str:
    """A ``table`` float for ``\\input``: tabular with rules, the caption and the notes (source) under it; it
    needs no package."""
    row = lambda cells: ' & '.join(latex_escape(c) for c in cells) + r' \\'
    lines = [f'% {latex_escape(title)}', '% written by reproduce-tables (MAE transfer suite); needs no LaTeX package',
             r'\begin{table}[ht]', r'\centering', r'\small', f'\\caption{{{latex_escape(title)}}}',
             r'\begin{tabular}{' + 'l' * len(df.columns) + '}', r'\hline', row(df.columns), r'\hline']
    lines += [row(r) for r in df.astype(str).itertuples(index=False)]
    lines += [r'\hline', r'\end{tabular}']
    lines += [f'\\par\\smallskip\\footnotesize {latex_escape(n)}' for n in notes]
    return '\n'.join(lines + [r'\end{table}', ''])


def write_html(tables, out: Path) -> Path:
    (out / 'figures').mkdir(exist_ok=True)
    parts = ['<!doctype html><html><head><meta charset="utf-8"><title>MAE transfer suite: tables</title><style>',
             'body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}',
             'table{border-collapse:collapse;margin:.5em 0 0}td,th{border:1px solid #bbb;padding:3px 8px;font-size:13px}',
             'tr.user td{background:#fff6d5}p.note{font-size:12px;color:#555;margin:.2em 0}img{max-width:100%}',
             '</style></head><body><h1>He et al., "Masked Autoencoders Are Scalable Vision Learners": tables</h1>',
             '<p>White rows: the paper\'s numbers. Yellow rows: your run records. A number followed by a subset name '
             '(e.g. "(smoke)") was measured on that subset only and is not comparable with the paper.</p>',
             '<p>After one of your numbers, <b>[low, high]</b> is its 95 % bootstrap interval: the middle 95 % of '
             'the values the metric takes when the evaluated images are drawn again with replacement (1,000 times), '
             'i.e. how much the number depends on which images happened to be evaluated; two runs whose intervals '
             'overlap may still differ (compare them on the same images with <code>compare-runs</code>). '
             '<b>mean ± std (n=…)</b> summarises n runs that differ only in their seed. '
             'The paper\'s numbers are as published, without intervals. The figures draw the intervals as error '
             'bars.</p>']
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
    others = sorted(p for p in (out / 'figures').glob('*.png') if p.stem not in FIGURES)
    if others:
        parts.append('<h2 id="other-figures">Other figures</h2>')
        parts += [f'<h3>{html.escape(p.stem)}</h3><p><img src="figures/{html.escape(p.name)}" '
                  f'alt="{html.escape(p.stem)}"></p>' for p in others]
    parts.append('</body></html>')
    path = out / 'index.html'
    path.write_text('\n'.join(parts), encoding='utf-8')
    return path


def reproduce(records_dir=rec_lib.DEFAULT_DIR, out='results/report', formats=FORMATS):
    records = rec_lib.read_records(records_dir, benchmarks=BENCHMARKS)
    tables = {spec.stem: build_table(spec, records) for spec in TABLES}
    return tables, write_outputs(tables, Path(out), formats), len(records)


def verify_samples(records_dir) -> int:
    """Recompute every record's headline metrics from its samples file -> how many records were checked; a
    mismatch (or a damaged samples file) is one error naming the file."""
    checked = 0
    for path in sorted(Path(records_dir).glob('*/*.json')):
        rec = rec_lib.read_record(path, BENCHMARKS)
        samples = rec_lib.read_samples(path, rec)
        if samples is None:
            continue
        again = intervals.metrics(samples)
        for metric in intervals.HEADLINES.get(rec['samples'].get('kind'), ()):
            if metric in rec['metrics'] and abs(again[metric] - rec['metrics'][metric]) > 1e-6:
                raise UsageError(f'{path}: metrics.{metric} is {rec["metrics"][metric]} but its samples give '
                                 f'{again[metric]}')
        checked += 1
    return checked


DESCRIPTION = """Write the paper's tables with a row for each of your run records.

The paper's rows are printed as published and cite the paper (arXiv 2111.06377 v3); each of your records
becomes a row placed by its checkpoint's pre-training settings, naming its arch and epochs. A number measured
on less than the full benchmark shows its subset, e.g. "97.5 (smoke)"; a cell you have not measured stays
empty. One run's number shows its 95 % bootstrap interval, runs that differ only in seed their mean ± std (n).
Writes Markdown, LaTeX (compiles with pdflatex, no package needed), CSV, and index.html with every table and
figure."""


@entry_point
def main(argv=None):
    p = argparse.ArgumentParser('reproduce-tables', description=DESCRIPTION, formatter_class=HelpFormatter)
    p.add_argument('--records-dir', default=rec_lib.DEFAULT_DIR, help='the run records to place in the tables')
    p.add_argument('--out', default='results/report', help='the tables, figures/ and index.html go here')
    p.add_argument('--formats', default=','.join(FORMATS), help=f'comma-separated subset of {",".join(FORMATS)}')
    p.add_argument('--verify-samples', action='store_true',
                   help='first recompute every record\'s metrics from its samples file and stop at a mismatch')
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
    if args.verify_samples:
        print(f'{verify_samples(args.records_dir)} record(s): metrics recomputed from their samples, all equal')
    tables, page, n = reproduce(args.records_dir, args.out, formats)
    print(f'{len(tables)} tables from results/paper/ with {n} run record(s) from {args.records_dir} -> {args.out}')
    if page:
        print(f'HTML report: {Path(page).resolve()}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
