"""The paper's tables as data, and reproduce-tables: paper rows as published and citing the paper, user rows
only from records (naming arch and epochs), smoke numbers marked, unmeasured cells empty, LaTeX that compiles,
figures on the paper's axes, one HTML page with every figure."""
import json
import os
import shutil
import subprocess
import sys

import matplotlib.pyplot as plt
import pandas as pd
import pytest

from conftest import REPO, run
from transfer import tables

PAPER = REPO / 'results' / 'paper'
EXPECTED = {  # every table with its columns and the rows' first column
    'table1a_decoder_depth': (['blocks', 'ft', 'lin'], ['1', '2', '4', '8', '12']),
    'table1b_decoder_width': (['dim', 'ft', 'lin'], ['128', '256', '512', '768', '1024']),
    'table1c_mask_token': (['case', 'ft', 'lin', 'FLOPs'], ['encoder w/ [M]', 'encoder w/o [M]']),
    'table1d_target': (['case', 'ft', 'lin'], ['pixel (w/o norm)', 'pixel (w/ norm)', 'PCA', 'dVAE token']),
    'table1e_augmentation': (['case', 'ft', 'lin'], ['none', 'crop, fixed size', 'crop, rand size', 'crop + color jit']),
    'table1f_mask_sampling': (['case', 'ratio', 'ft', 'lin'], ['random', 'block', 'block', 'grid']),
    'table2_wallclock': (['encoder', 'dec. depth', 'ft acc', 'hours', 'speedup'],
                         ['ViT-L, w/ [M]', 'ViT-L', 'ViT-L', 'ViT-H, w/ [M]', 'ViT-H', 'ViT-H']),
    'table3_imagenet': (['method', 'pre-train data', 'ViT-B', 'ViT-L', 'ViT-H', 'ViT-H448'],
                        ['scratch, our impl.', 'DINO', 'MoCo v3', 'BEiT', 'MAE']),
    'table4_coco': (['method', 'pre-train data', 'APbox ViT-B', 'APbox ViT-L', 'APmask ViT-B', 'APmask ViT-L'],
                    ['supervised', 'MoCo v3', 'BEiT', 'MAE']),
    'table5_ade20k': (['method', 'pre-train data', 'ViT-B', 'ViT-L'], ['supervised', 'MoCo v3', 'BEiT', 'MAE']),
    'table6_classification': (['dataset', 'ViT-B', 'ViT-L', 'ViT-H', 'ViT-H448', 'prev best', 'prev best source'],
                              ['iNat 2017', 'iNat 2018', 'iNat 2019', 'Places205', 'Places365']),
    'robustness': (['dataset', 'ViT-B', 'ViT-L', 'ViT-H', 'ViT-H448', 'prev best', 'prev best source'],
                   ['IN-Corruption ↓', 'IN-Adversarial', 'IN-Rendition', 'IN-Sketch']),
    'table7_pixels_vs_tokens': (['target', 'IN1K ViT-B', 'IN1K ViT-L', 'IN1K ViT-H', 'COCO ViT-B', 'COCO ViT-L',
                                 'ADE20K ViT-B', 'ADE20K ViT-L'], ['pixel (w/o norm)', 'pixel (w/ norm)', 'dVAE token']),
    'section4_scratch': (['model', 'scratch original', 'scratch our impl.', 'baseline MAE'], ['ViT-L']),
    'fig5_masking_ratio': (['ratio', 'ft', 'lin'], ['10', '20', '30', '40', '50', '60', '70', '75', '80', '90']),
    'fig7_schedule': (['epochs', 'ft', 'lin'], ['100', '200', '400', '800', '1600']),
    'fig9_partial_ft': (['blocks', 'MAE', 'MoCo v3'], ['0', '1', '2', '4', '6', '12', '18', '24']),
}


def test_every_table_every_baseline_row_and_every_column_with_its_source():
    assert {p.stem for p in PAPER.glob('*.csv')} == set(EXPECTED) == {t.stem for t in tables.TABLES}
    for stem, (columns, first) in EXPECTED.items():
        title, notes, df = tables.read_paper(stem)
        assert list(df.columns) == columns and list(df.iloc[:, 0]) == first, stem
        source = next(n for n in notes if n.startswith('source:'))
        assert 'arXiv 2111.06377 v3' in source, stem  # a reader can check every number in the paper itself
        if stem.startswith('fig'):
            assert 'read off the figure' in source, stem
        text = (PAPER / f'{stem}.csv').read_text(encoding='utf-8')
        assert 'shared/' not in text and 'FACTS' not in text and 'seeds/' not in text, stem


@pytest.mark.parametrize('stem,row,column,value', [
    ('table1a_decoder_depth', '8', 'lin', '73.5'), ('table1b_decoder_width', '128', 'lin', '69.1'),
    ('table1c_mask_token', 'encoder w/ [M]', 'FLOPs', '3.3×'), ('table1d_target', 'pixel (w/ norm)', 'ft', '85.4'),
    ('table1e_augmentation', 'none', 'lin', '65.7'), ('table1f_mask_sampling', 'grid', 'lin', '66.0'),
    ('table2_wallclock', 'ViT-H, w/ [M]', 'hours', '119.6†'), ('table3_imagenet', 'MAE', 'ViT-H448', '87.8'),
    ('table3_imagenet', 'scratch, our impl.', 'ViT-L', '82.6'), ('table4_coco', 'MAE', 'APmask ViT-L', '47.2'),
    ('table5_ade20k', 'BEiT', 'ViT-L', '53.3'), ('table6_classification', 'Places365', 'prev best', '58.0‡'),
    ('robustness', 'IN-Corruption ↓', 'ViT-B', '51.7'), ('robustness', 'IN-Sketch', 'prev best', '36.0'),
    ('table7_pixels_vs_tokens', 'dVAE token', 'ADE20K ViT-L', '53.4'), ('section4_scratch', 'ViT-L', 'scratch original', '76.5'),
    ('fig5_masking_ratio', '75', 'lin', '73.5'), ('fig7_schedule', '1600', 'lin', '75.1'),
    ('fig9_partial_ft', '1', 'MAE', '81.0')])
def test_spot_values_are_the_papers(stem, row, column, value):
    df = tables.read_paper(stem)[2]
    assert df.loc[df.iloc[:, 0] == row, column].iloc[-1] == value


def test_an_empty_or_missing_records_folder_prints_the_papers_tables_alone(tmp_path):
    proc = run([sys.executable, '-m', 'transfer.tables', '--records-dir', str(tmp_path / 'none'), '--out',
                str(tmp_path / 'out'), '--formats', 'md,csv'])
    assert 'with 0 run record(s)' in proc.stdout
    df = pd.read_csv(tmp_path / 'out' / 'table3_imagenet.csv', dtype=str, keep_default_na=False)
    assert set(df['source']) == {'paper'} and len(df) == 5
    assert not (tmp_path / 'out' / 'index.html').exists()


def test_user_rows_come_from_records_marked_by_subset_and_the_page_has_the_figures(smoke_all, tmp_path):
    records, records_dir, _ = smoke_all
    proc = run([sys.executable, '-m', 'transfer.tables', '--records-dir', str(records_dir), '--out', str(tmp_path)])
    assert proc.stdout.strip().splitlines()[-1] == f'HTML report: {tmp_path / "index.html"}'
    t3 = pd.read_csv(tmp_path / 'table3_imagenet.csv', dtype=str, keep_default_na=False)
    mine = t3[t3['source'] != 'paper']
    top1 = records['in1k_finetune']['metrics']['top1']
    lo, hi = records['in1k_finetune']['ci95']['top1']
    assert list(mine['ViT-Ti']) == [f'{top1:.1f} [{lo:.1f}, {hi:.1f}] (smoke)']  # with its 95 % interval
    assert all(', 20 ep, final.pth [' in label and label.startswith('yours: ViT-Ti') for label in mine['source'])
    assert (mine[['ViT-B', 'ViT-L', 'ViT-H', 'ViT-H448']] == '').all(axis=None)  # never filled from the paper
    t1 = pd.read_csv(tmp_path / 'table1a_decoder_depth.csv', dtype=str, keep_default_na=False)
    assert t1[t1['source'] != 'paper'][['blocks', 'lin']].values.tolist() == [
        ['2', tables.cell(records['in1k_linprobe'], 'top1')]]
    assert ' [' in tables.cell(records['in1k_linprobe'], 'top1')
    t6 = pd.read_csv(tmp_path / 'table6_classification.csv', dtype=str, keep_default_na=False)
    assert len(t6[t6['source'] != 'paper']) == 5
    page = (tmp_path / 'index.html').read_text()
    for stem in EXPECTED:
        assert f'id="{stem}"' in page
    for fig in ('fig5_masking_ratio', 'fig7_schedule', 'fig9_partial_ft'):
        assert f'figures/{fig}.png' in page and (tmp_path / 'figures' / f'{fig}.png').stat().st_size > 1000
    assert '\\begin{table}' in (tmp_path / 'table3_imagenet.tex').read_text()
    for png in (tmp_path / 'figures').glob('*.png'):  # every figure of the report is on the page
        assert f'src="figures/{png.name}"' in page


def test_a_row_says_tensor_decode_where_pre_training_did_not_use_fb_maes_pixels():
    model = dict(arch='vit_base_patch16', checkpoint='/x/final.pth', sha256='ab' * 32, pretrain=dict(epochs=800))
    assert tables.user_label(dict(model=model)) == 'yours: ViT-B, 800 ep, final.pth [abababab]'
    model['pretrain']['decode'] = 'tensor'
    assert tables.user_label(dict(model=model)) == 'yours: ViT-B, 800 ep, tensor decode, final.pth [abababab]'


def test_every_png_under_figures_is_on_the_page_the_reconstructions_too(tmp_path):
    (tmp_path / 'figures').mkdir()
    plt.imsave(tmp_path / 'figures' / 'reconstructions.png', [[0.0, 1.0], [1.0, 0.0]])
    _, page, _ = tables.reproduce(tmp_path / 'no-records', tmp_path, ['html'])
    text = page.read_text()
    assert 'src="figures/reconstructions.png"' in text and 'src="figures/fig5_masking_ratio.png"' in text


def test_user_points_outside_the_papers_range_leave_its_axes_alone_and_are_marked():
    """A smoke point (48 % at 20 epochs) must not flatten Fig. 7's curves: the axis keeps the paper's range,
    the point sits at the edge, marked off-scale; every line of Fig. 9 (MoCo v3 too) has its legend entry."""
    title, _, paper = tables.read_paper('fig7_schedule')
    paper.insert(0, 'source', 'paper')
    user = pd.DataFrame([{'source': 'yours: ViT-Ti, 20 ep, final.pth [abcd]', 'epochs': '20', 'ft': '48.1 (smoke)',
                          'lin': '80.0 (smoke)'}])
    fig = tables.curves_figure(pd.concat([paper, user], ignore_index=True), 'epochs', [['ft'], ['lin']], title, True)
    ft, lin = fig.axes
    assert 80 < ft.get_ylim()[0] < 82.3 and 85.1 < ft.get_ylim()[1] < 87
    assert 50 < lin.get_ylim()[0] < 57.3 and 75.1 < lin.get_ylim()[1] < 80
    assert ft.get_xlim()[0] > 20  # the paper's epochs axis, 100 to 1600
    labels = [t.get_text() for ax in fig.axes for t in ax.get_legend().get_texts()]
    assert sum("off the paper's scale" in t for t in labels) == 2
    assert any('epochs 20, 48.1' in t.get_text() for t in ft.texts)
    title9, _, paper9 = tables.read_paper('fig9_partial_ft')
    paper9.insert(0, 'source', 'paper')
    fig9 = tables.curves_figure(paper9, 'blocks', [['MAE', 'MoCo v3']], title9)
    assert [t.get_text() for t in fig9.axes[0].get_legend().get_texts()] == ['paper: MAE', 'paper: MoCo v3']


def test_latex_escaping_keeps_every_character_a_reader_sees():
    assert tables.latex_escape('top-1 (%) x86_64 #1 & $5 {a} ~ ^ \\') == (
        'top-1 (\\%) x86\\_64 \\#1 \\& \\$5 \\{a\\} \\textasciitilde{} \\textasciicircum{} \\textbackslash{}')
    assert tables.latex_escape('3.3× ↓ 119.6† 58.0‡') == '3.3$\\times$ $\\downarrow$ 119.6\\textdagger{} 58.0\\textdaggerdbl{}'


def pdflatex():
    """pdflatex, or a skip when it is absent (CI installs it and sets MAE_SUITE_REQUIRE_TEX=1: there it must run)."""
    exe = shutil.which('pdflatex')
    if exe is None and os.environ.get('MAE_SUITE_REQUIRE_TEX'):
        pytest.fail('pdflatex is not installed but MAE_SUITE_REQUIRE_TEX is set')
    if exe is None:
        pytest.skip('pdflatex is not installed (apt-get install texlive-latex-base)')
    return exe


def test_every_generated_tex_file_compiles_with_pdflatex(smoke_all, tiny_checkpoint, tmp_path):
    """Every table, with user rows whose names carry LaTeX's special characters (a checkpoint named
    ``run_1 50%#&$.pth``, Table 2's ``x86_64`` device), in one document: pdflatex must finish without error."""
    _, records_dir, _ = smoke_all
    mine = tmp_path / 'records'
    shutil.copytree(records_dir, mine)
    pre = json.loads(tiny_checkpoint[1].read_text())
    pre['model']['checkpoint'] = str(tmp_path / 'run_1 50%#&$~^{x}.pth')
    pre['env']['device'] = 'cpu (x86_64, 2 threads) ~ 100%'
    (mine / 'mae_pretrain').mkdir()
    (mine / 'mae_pretrain' / 'weird.json').write_text(json.dumps(pre))
    out = tmp_path / 'report'
    run([sys.executable, '-m', 'transfer.tables', '--records-dir', str(mine), '--out', str(out), '--formats', 'tex'])
    texs = sorted(out.glob('*.tex'))
    assert len(texs) == len(EXPECTED)
    assert any('x86\\_64' in t.read_text() for t in texs)
    body = ''.join(f'\\input{{{t.stem}}}\\clearpage\n' for t in texs)
    (out / 'all.tex').write_text('\\documentclass{article}\n\\begin{document}\n' + body + '\\end{document}\n')
    proc = subprocess.run([pdflatex(), '-interaction=nonstopmode', '-halt-on-error', '-no-shell-escape', 'all.tex'],
                          cwd=out, capture_output=True, text=True, timeout=120)
    log = (out / 'all.log').read_text(errors='replace')
    assert proc.returncode == 0, log[-3000:]
    assert '! ' not in log and 'Missing character' not in log
    assert (out / 'all.pdf').stat().st_size > 10_000
