"""How sure each number is: the samples kept beside every record give back the recorded metrics, the bootstrap
intervals cover the truth as often as they say, agree with the Wilson interval where that is exact enough, a
run compared with itself differs by exactly nothing, and AP with image weights of one is pycocotools' own."""
import contextlib
import copy
import io
import json
import math
import shutil
import sys

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from conftest import REPO, run
from mae_core.record import read_record, read_records, read_samples
from transfer import intervals, tables
from transfer.detection import coco_matches
from transfer.registry import BENCHMARKS


def topk_samples(correct: np.ndarray, rng=None) -> dict:
    """Samples of a classifier that is right exactly where ``correct`` says (top-5 right where top-1 is)."""
    n = len(correct)
    label = np.zeros(n, np.int32)
    top5 = np.tile(np.arange(1, 6, dtype=np.int32), (n, 1))
    top5[correct, 0] = 0
    return dict(kind=np.array('topk'), names=np.array([f'img{i}' for i in range(n)]),
                image=np.arange(n, dtype=np.int32), label=label, top5=top5)


def test_the_interval_covers_the_true_accuracy_as_often_as_it_says():
    """A classifier of true accuracy 0.8 on 1,000 seeded val sets of 1,000 images: the 95 % interval holds 0.8
    in 93-97 % of them."""
    rng = np.random.default_rng(0)
    covered = 0
    for i in range(1000):
        lo, hi = intervals.interval(topk_samples(rng.random(1000) < 0.8), seed=i)['top1']
        covered += lo <= 80.0 <= hi
    assert 930 <= covered <= 970, covered


def test_at_fifty_thousand_images_the_interval_is_wilsons_to_five_hundredths():
    n, k = 50_000, 41_800  # 83.6 %
    lo, hi = intervals.interval(topk_samples(np.arange(n) < k))['top1']
    p, z = k / n, 1.959964
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    assert abs(lo - 100 * (centre - half)) <= 0.05 and abs(hi - 100 * (centre + half)) <= 0.05


def test_mcnemar_is_the_exact_binomial_test():
    assert intervals.mcnemar_exact(1, 9) == pytest.approx(2 * (1 + 10) / 2 ** 10)
    assert intervals.mcnemar_exact(0, 0) == 1.0 and intervals.mcnemar_exact(5, 5) == 1.0
    from scipy.stats import binomtest
    assert intervals.mcnemar_exact(120, 160) == pytest.approx(binomtest(120, 280, 0.5).pvalue, rel=1e-9)


# ==================================================================== COCO AP, re-accumulated
def random_coco(rng, images=30, cats=4):
    """A ground-truth set (crowd objects and an empty category among them) and noisy detections of it."""
    gt = dict(images=[dict(id=i + 1, width=200, height=200, file_name=f'{i}.jpg') for i in range(images)],
              categories=[dict(id=c + 1, name=f'c{c}') for c in range(cats)], annotations=[])
    dets = []
    for img in range(1, images + 1):
        for _ in range(rng.integers(0, 6)):
            x, y, w, h = (float(v) for v in rng.uniform([0, 0, 5, 5], [150, 150, 50, 50]))
            cat = int(rng.integers(1, cats))  # category `cats` never has ground truth
            gt['annotations'].append(dict(id=len(gt['annotations']) + 1, image_id=img, category_id=cat,
                                          bbox=[x, y, w, h], area=w * h, iscrowd=int(rng.random() < 0.1)))
            if rng.random() < 0.8:
                dets.append(dict(image_id=img, category_id=cat, score=float(rng.random()),
                                 bbox=[x + rng.normal(0, 4), y + rng.normal(0, 4), w, h]))
        for _ in range(rng.integers(0, 4)):  # false positives, some in the category without ground truth
            dets.append(dict(image_id=img, category_id=int(rng.integers(1, cats + 1)), score=float(rng.random()),
                             bbox=[float(v) for v in rng.uniform([0, 0, 5, 5], [150, 150, 50, 50])]))
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = gt
        coco.createIndex()
    return coco, dets


def evaluated(coco, dets):
    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(coco, coco.loadRes(copy.deepcopy(dets)), 'bbox')
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def test_ap_from_the_kept_matches_is_pycocotools_and_weights_count_images_again():
    rng = np.random.default_rng(0)
    coco, dets = random_coco(rng)
    ev = evaluated(coco, dets)
    samples = dict(kind=np.array('detection'), names=np.array([str(i) for i in ev.params.imgIds]),
                   image=np.arange(len(ev.params.imgIds), dtype=np.int32), **coco_matches(ev, 'bbox'))
    assert intervals.metrics(samples)['APbox'] == pytest.approx(100 * ev.stats[0], abs=1e-9)
    # image 3 twice and image 5 not at all == pycocotools on a set where image 3 is duplicated, 5 removed
    weights = np.ones((1, len(ev.params.imgIds)))
    weights[0, 2], weights[0, 4] = 2, 0
    dup = copy.deepcopy(coco.dataset)
    dup['images'] = [im for im in dup['images'] if im['id'] != 5] + [dict(id=1000, width=200, height=200,
                                                                         file_name='copy.jpg')]
    extra = [dict(a, id=10_000 + a['id'], image_id=1000) for a in dup['annotations'] if a['image_id'] == 3]
    dup['annotations'] = [a for a in dup['annotations'] if a['image_id'] != 5] + extra
    with contextlib.redirect_stdout(io.StringIO()):
        coco_dup = COCO()
        coco_dup.dataset = dup
        coco_dup.createIndex()
    dets_dup = [d for d in dets if d['image_id'] != 5] + [dict(d, image_id=1000) for d in dets if d['image_id'] == 3]
    reference = evaluated(coco_dup, dets_dup).stats[0]
    assert intervals.weighted_ap(samples, 'bbox', weights)[0] == pytest.approx(100 * reference, abs=0.5)


# ==================================================================== paired comparison
def test_a_run_compared_with_itself_differs_by_exactly_nothing():
    rng = np.random.default_rng(1)
    topk = topk_samples(rng.random(500) < 0.7)
    result = intervals.compare(topk, topk, resamples=200)
    assert result['top1'][2:] == (0.0, [0.0, 0.0]) and result['mcnemar'] == (0, 0, 1.0)
    seg = dict(kind=np.array('segmentation'), names=np.array(['a', 'b', 'c']), image=np.arange(3, dtype=np.int32),
               areas=rng.integers(1, 100, (3, 4, 5)))
    assert intervals.compare(seg, seg, resamples=100)['mIoU'][2:] == (0.0, [0.0, 0.0])


def test_a_better_classifier_on_the_same_images_is_told_apart():
    rng = np.random.default_rng(2)
    a_right = rng.random(5000) < 0.80
    b_right = a_right & (rng.random(5000) < 0.97)  # B loses 3 % of A's correct images
    result = intervals.compare(topk_samples(a_right), topk_samples(b_right))
    a, b, diff, (lo, hi) = result['top1']
    assert diff == pytest.approx(100 * (a_right.mean() - b_right.mean())) and 0 < lo < diff < hi
    assert result['mcnemar'][1] == 0 and result['mcnemar'][2] < 1e-6
    with pytest.raises(ValueError, match='same images'):
        intervals.compare(topk_samples(a_right), topk_samples(a_right[:-1]))


# ==================================================================== every family's records
def test_every_record_of_the_smoke_run_has_samples_that_give_its_metrics_and_intervals(smoke_all):
    records, records_dir, _ = smoke_all
    assert set(records) == set(BENCHMARKS)
    for path in sorted(records_dir.glob('*/*.json')):
        rec = read_record(path)
        samples = read_samples(path, rec)
        assert samples is not None, path
        again = intervals.metrics(samples)
        for metric in intervals.HEADLINES[rec['samples']['kind']]:
            assert again[metric] == pytest.approx(rec['metrics'][metric], abs=1e-9), (path, metric)
        lo, hi = rec['ci95'][rec['headline']]
        assert lo <= rec['metrics'][rec['headline']] <= hi, path
        assert rec['ci'] == dict(method=intervals.METHOD, level=0.95, resamples=1000, seed=0)
        assert len(intervals.image_ids(samples)) == rec['data']['num_images'] + rec['data'].get('extra_images', 0)


def test_reproduce_tables_recomputes_every_metric_from_the_samples_and_names_a_mismatch(smoke_all, tmp_path):
    _, records_dir, _ = smoke_all
    proc = run([sys.executable, '-m', 'transfer.tables', '--records-dir', str(records_dir), '--out',
                str(tmp_path / 'out'), '--formats', 'md', '--verify-samples'])
    assert f'{len(BENCHMARKS)} record(s): metrics recomputed from their samples, all equal' in proc.stdout
    mine = tmp_path / 'r'
    shutil.copytree(records_dir, mine)
    path = next(mine.glob('in1k_linprobe/*.json'))
    rec = json.loads(path.read_text())
    rec['metrics']['top1'] += 1.0
    path.write_text(json.dumps(rec))
    bad = run([sys.executable, '-m', 'transfer.tables', '--records-dir', str(mine), '--out', str(tmp_path / 'o2'),
               '--verify-samples'], check=False)
    assert bad.returncode == 2 and f'{path}: metrics.top1' in bad.stderr


def test_compare_runs_pairs_two_checkpoints_on_the_smoke_images(smoke_all, tmp_path):
    _, records_dir, _ = smoke_all
    a = next(records_dir.glob('in1k_finetune/*.json'))
    out = run([sys.executable, '-m', 'transfer.compare', str(a), str(a), '--out', str(tmp_path / 'c.html')]).stdout
    assert 'top1' in out and '[+0.00, +0.00]' in out and 'McNemar' in out
    assert '<table>' in (tmp_path / 'c.html').read_text()
    other = next(records_dir.glob('in1k_linprobe/*.json'))
    proc = run([sys.executable, '-m', 'transfer.compare', str(a), str(other)], check=False)
    assert proc.returncode == 2 and 'compare runs of one benchmark' in proc.stderr
    # two checkpoints on the same images: the linear probe of the pre-trained and of the fine-tuned encoder
    finetuned = read_record(a)['model']['finetuned_checkpoint']
    second = run([sys.executable, str(REPO / 'run_transfer.py'), 'in1k_linprobe', '--checkpoint', finetuned,
                  '--smoke', '--records-dir', str(tmp_path / 'r')], cwd=tmp_path).stdout.strip().splitlines()[-1]
    both = run([sys.executable, '-m', 'transfer.compare', str(other), second, '--out', str(tmp_path / 'c.md')])
    first, then = read_record(other)['metrics']['top1'], read_record(second)['metrics']['top1']
    assert f'{first - then:+.2f}' in both.stdout and 'McNemar (top-1, exact)' in both.stdout
    assert '| top1 |' in (tmp_path / 'c.md').read_text()


def test_a_record_without_samples_still_renders_without_an_interval(smoke_all, tmp_path):
    _, records_dir, _ = smoke_all
    old = json.loads(next(records_dir.glob('in1k_finetune/*.json')).read_text())
    del old['samples'], old['ci95'], old['ci']
    (tmp_path / 'r' / 'in1k_finetune').mkdir(parents=True)
    (tmp_path / 'r' / 'in1k_finetune' / 'old.json').write_text(json.dumps(old))
    tabled = dict((stem, t) for stem, t in [(s.stem, tables.build_table(s, read_records(tmp_path / 'r')))
                                            for s in tables.TABLES])
    mine = tabled['table3_imagenet'][2].iloc[-1]
    assert mine['ViT-Ti'] == f'{old["metrics"]["top1"]:.1f} (smoke)'


def test_seeds_run_in_turn_and_the_report_shows_mean_std_and_n(tiny_checkpoint, tmp_path):
    records = tmp_path / 'records'
    run([sys.executable, str(REPO / 'run_transfer.py'), 'in1k_linprobe', '--checkpoint', str(tiny_checkpoint[0]),
         '--smoke', '--seeds', '0,1', '--records-dir', str(records)], cwd=tmp_path)
    recs = read_records(records)
    assert sorted(r['settings']['seed'] for r in recs) == [0, 1] and len({r['config_hash'] for r in recs}) == 2
    groups = tables.latest(recs, 'in1k_linprobe')
    assert len(groups) == 1 and len(groups[0]) == 2
    values = [r['metrics']['top1'] for r in recs]
    assert tables.cell(groups[0], 'top1') == (f'{np.mean(values):.1f} ± {np.std(values, ddof=1):.1f} (n=2) (smoke)')
