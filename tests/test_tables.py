"""The paper's tables as data, and reproduce-tables: paper rows as published, user rows only from records,
smoke numbers marked, unmeasured cells empty, one HTML page with the figures."""
import sys

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
        assert any(n.startswith('source:') for n in notes), stem
        if stem.startswith('fig'):
            assert 'read off figure' in ' '.join(notes), stem


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
    assert list(mine['ViT-Ti']) == [f'{top1:.1f} (smoke)']
    assert (mine[['ViT-B', 'ViT-L', 'ViT-H', 'ViT-H448']] == '').all(axis=None)  # never filled from the paper
    t1 = pd.read_csv(tmp_path / 'table1a_decoder_depth.csv', dtype=str, keep_default_na=False)
    assert t1[t1['source'] != 'paper'][['blocks', 'lin']].values.tolist() == [
        ['2', f'{records["in1k_linprobe"]["metrics"]["top1"]:.1f} (smoke)']]
    t6 = pd.read_csv(tmp_path / 'table6_classification.csv', dtype=str, keep_default_na=False)
    assert len(t6[t6['source'] != 'paper']) == 5
    page = (tmp_path / 'index.html').read_text()
    for stem in EXPECTED:
        assert f'id="{stem}"' in page
    for fig in ('fig5_masking_ratio', 'fig7_schedule', 'fig9_partial_ft'):
        assert f'figures/{fig}.png' in page and (tmp_path / 'figures' / f'{fig}.png').stat().st_size > 1000
    assert (tmp_path / 'table3_imagenet.tex').read_text().startswith('\\begin{table}')
