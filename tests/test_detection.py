"""COCO / Mask R-CNN: the evaluation path against pycocotools, the pyramid's shapes and strides, aligned RoIAlign,
the label mapping, and the smoke run through run_transfer.py: learning, eval-only, torchrun evaluation, resume."""
import copy
import json
import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import ConfigDict
from pycocotools import mask as mask_util

from mae_core.vit import vit
from transfer import detection as det
from transfer.datasets import coco
from transfer.datasets import smoke
from mae_core.record import read_record

from conftest import REPO, kill_when, run

RUN = [sys.executable, str(REPO / 'run_transfer.py')]

CFG = ConfigDict(image_size=128, channels=64, jitter=(0.1, 2.0), pyramid='vitdet', anchor_sizes=(8, 16, 32, 64, 128),
                 rpn_batch_per_image=64, box_batch_per_image=64, rpn_post_nms_test=100)


@pytest.fixture(scope='module')
def coco_val():
    root = smoke.coco()
    return coco.COCODetection(root, 'val', CFG, train=False)


def gt_as_detections(ds, shift=0.0):
    """Every non-crowd ground-truth instance as a detection (score 1), boxes shifted by ``shift`` pixels."""
    out = []
    for image_id in ds.ids:
        anns = [a for a in ds.coco.loadAnns(ds.coco.getAnnIds(image_id)) if not a['iscrowd']]
        masks = torch.from_numpy(np.stack([ds.coco.annToMask(a) for a in anns])).float()[:, None]
        boxes = torch.tensor([[a['bbox'][0] + shift, a['bbox'][1], a['bbox'][0] + a['bbox'][2] + shift,
                               a['bbox'][1] + a['bbox'][3]] for a in anns])
        labels = torch.tensor([ds.cats.label[a['category_id']] for a in anns])
        out.append((dict(boxes=boxes, labels=labels, scores=torch.ones(len(anns)), masks=masks), image_id))
    return out


def test_ground_truth_fed_back_as_detections_scores_ap_100(coco_val):
    metric = det.COCOMetric(coco_val.coco, coco_val.cats)
    metric.process(None, gt_as_detections(coco_val))
    out = metric.compute_metrics(metric.results)
    assert out['APbox'] == pytest.approx(100.0) and out['APmask'] == pytest.approx(100.0)


def test_a_perturbed_copy_scores_what_pycocotools_says(coco_val):
    from pycocotools.cocoeval import COCOeval
    dets = gt_as_detections(coco_val, shift=3.0)
    results = [r for d, i in dets for r in det.to_coco_results(d, i, coco_val.cats)]
    ours = det.coco_ap(coco_val.coco, results, kinds=('bbox',))
    ev = COCOeval(coco_val.coco, coco_val.coco.loadRes(copy.deepcopy(results)), 'bbox')
    ev.evaluate(), ev.accumulate(), ev.summarize()
    assert ours['APbox'] == pytest.approx(100 * ev.stats[0]) and 0 < ours['APbox'] < 100


def test_mask_ap_takes_mask_areas_for_its_size_ranges_as_detectron2(coco_val):
    """detectron2 ``evaluation/coco_evaluation.py`` (commit 9bd60d3), ``_evaluate_predictions_on_coco``: for
    'segm' the results are deep-copied and each one's 'bbox' popped before ``loadRes``, so that pycocotools takes
    the mask's area, not the box's, for APs/APm/APl. The reference below follows those steps; false positives with
    a small mask inside a whole-image box make the two area conventions disagree."""
    from pycocotools.cocoeval import COCOeval
    dets = []
    for d, image_id in gt_as_detections(coco_val):
        square = torch.zeros(1, 1, *d['masks'].shape[2:])
        square[..., :20, :20] = 1.0  # area 400: small; its box below, the whole image: large
        dets.append((dict(boxes=torch.cat([d['boxes'], torch.tensor([[0.0, 0.0, 127.0, 127.0]])]),
                          labels=torch.cat([d['labels'], d['labels'][:1]]),
                          scores=torch.cat([d['scores'] * 0.9, torch.ones(1)]),
                          masks=torch.cat([d['masks'], square])), image_id))
    results = [r for d, i in dets for r in det.to_coco_results(d, i, coco_val.cats)]
    ours = det.coco_ap(coco_val.coco, results, kinds=('segm',))

    def pycocotools_stats(res):
        ev = COCOeval(coco_val.coco, coco_val.coco.loadRes(res), 'segm')
        ev.evaluate(), ev.accumulate(), ev.summarize()
        return [100 * max(float(v), 0.0) for v in ev.stats[:6]]
    reference = copy.deepcopy(results)
    for r in reference:
        r.pop('bbox', None)
    expected = pycocotools_stats(reference)
    assert [ours[f'APmask{s}'] for s in ('', '50', '75', '_s', '_m', '_l')] == pytest.approx(expected)
    with_boxes = pycocotools_stats(copy.deepcopy(results))
    assert ours['APmask_s'] != pytest.approx(with_boxes[3])  # what the results' boxes would have given
    assert all('bbox' in r and 'area' not in r for r in results)  # ours left untouched


def test_results_are_coco_json_with_xywh_boxes_and_string_rles(coco_val):
    d, image_id = gt_as_detections(coco_val)[0]
    r = det.to_coco_results(d, image_id, coco_val.cats)[0]
    json.dumps(r)
    assert isinstance(r['segmentation']['counts'], str)
    assert mask_util.decode(dict(r['segmentation'], counts=r['segmentation']['counts'].encode())).sum() > 0
    x, y, w, h = r['bbox']
    assert w > 0 and h > 0 and r['category_id'] in (1, 3, 7)


def test_labels_map_to_coco_category_ids_and_back(coco_val):
    cats = coco_val.cats
    assert cats.ids == [1, 3, 7] and [cats.label[c] for c in cats.ids] == [1, 2, 3]
    assert [cats.to_id(cats.label[c]) for c in cats.ids] == cats.ids


def test_crowd_regions_are_ignored_in_training():
    ds = coco.COCODetection(smoke.coco(), 'train', CFG, train=True)
    item = ds[(0, 123)]
    anns = ds.coco.loadAnns(ds.coco.getAnnIds(ds.ids[0]))
    assert len(item['targets']['labels']) <= sum(not a['iscrowd'] for a in anns)
    assert item['inputs'].shape == (3, 128, 128)
    m, b = item['targets']['masks'], item['targets']['boxes']
    assert len(m) == len(b) and (len(b) == 0 or ((b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])).all())


def test_the_pyramid_has_strides_4_to_64_with_256_channels_at_1024():
    pyramid = det.SimpleFeaturePyramid(vit('vit_toy_patch16', img_size=1024, window_size=14, global_blocks=(1,)))
    with torch.no_grad():
        feats = pyramid(torch.randn(1, 3, 1024, 1024))
    assert list(feats) == ['0', '1', '2', '3', 'pool']
    assert [tuple(f.shape[1:]) for f in feats.values()] == [(256, 256, 256), (256, 128, 128), (256, 64, 64),
                                                            (256, 32, 32), (256, 16, 16)]
    mae_variant = det.SimpleFeaturePyramid(vit('vit_tiny_patch16', img_size=64), variant='mae')
    assert mae_variant.out_blocks == (2, 5, 8, 11)  # four equal subsets of the 12 blocks
    with torch.no_grad():
        assert [tuple(f.shape[2:]) for f in mae_variant(torch.randn(1, 3, 64, 64)).values()] == [
            (16, 16), (8, 8), (4, 4), (2, 2), (1, 1)]


def test_aligned_roi_align_pools_where_the_box_lies():
    """On maps whose value is the image x of each cell's centre, a box's pooled mean is the box's centre x;
    torchvision's unaligned pooling reads half a cell to the right."""
    feats = OrderedDict()
    for name, stride in (('0', 4), ('1', 8)):
        n = 64 // stride
        feats[name] = ((torch.arange(n) + 0.5) * stride).expand(1, 1, n, n).clone()
    boxes, shapes = [torch.tensor([[10.0, 12.0, 30.0, 40.0]])], [(64, 64)]  # assigned to the stride-4 level
    aligned = det.AlignedRoIAlign(['0', '1'], 2, sampling_ratio=0)(feats, boxes, shapes)
    unaligned = det.MultiScaleRoIAlign(['0', '1'], 2, sampling_ratio=0)(feats, boxes, shapes)
    assert aligned.mean().item() == pytest.approx(20.0, abs=1e-4)
    assert unaligned.mean().item() == pytest.approx(22.0, abs=1e-4)


def test_box_losses_are_l1_and_mask_targets_aligned_as_vitdet():
    """detectron2's ViTDet: ``smooth_l1_beta = 0`` in the RPN and the box head (L1, summed, over the sampled count)
    and mask targets cropped with ``ROIAlign(aligned=True)``; torchvision's own (beta 1/9, unaligned) outside."""
    from torchvision.models.detection import roi_heads
    from torchvision.ops import roi_align
    g = torch.Generator().manual_seed(0)
    logits, deltas = torch.randn(6, 3, generator=g), torch.randn(6, 12, generator=g)
    labels, targets = [torch.tensor([1, 2, 0, 1, 0, 2])], [torch.randn(6, 4, generator=g) * 0.05]
    pos = labels[0] > 0
    l1 = (deltas.view(6, 3, 4)[pos, labels[0][pos]] - targets[0][pos]).abs().sum() / 6
    with det.vitdet_losses():
        _, box_loss = roi_heads.fastrcnn_loss(logits, deltas, labels, targets)
    assert torch.allclose(box_loss, l1)
    _, torchvision_loss = roi_heads.fastrcnn_loss(logits, deltas, labels, targets)
    assert not torch.allclose(torchvision_loss, l1)  # restored after the step
    model = det.build_detector(vit('vit_toy_patch16', img_size=128), 3, ConfigDict(CFG, test_score_thresh=0.05))
    objectness, rpn_deltas = torch.randn(8, generator=g), torch.randn(8, 4, generator=g)
    rpn_labels, rpn_targets = [torch.tensor([1., 1., 1., 0., 0., 0., 0., 0.])], [torch.randn(8, 4, generator=g) * 0.05]
    with det.vitdet_losses():
        _, rpn_loss = model.rpn.compute_loss(objectness, rpn_deltas, rpn_labels, rpn_targets)
    assert torch.allclose(rpn_loss, (rpn_deltas[:3] - rpn_targets[0][:3]).abs().sum() / 8)
    masks, boxes = (torch.rand(1, 32, 32, generator=g) > 0.5).float(), [torch.tensor([[3.0, 5.0, 20.0, 27.0]])]
    with det.vitdet_losses():
        aligned = roi_heads.project_masks_on_boxes(masks, boxes[0], torch.tensor([0]), 7)
    rois = torch.cat([torch.zeros(1, 1), boxes[0]], 1)
    assert torch.equal(aligned, roi_align(masks[:, None], rois, (7, 7), 1.0, aligned=True)[:, 0])


def test_images_are_padded_to_the_square_as_vitdet():
    model = det.build_detector(vit('vit_toy_patch16', img_size=128), 3, ConfigDict(CFG, test_score_thresh=0.05))
    images, _ = model.transform([torch.rand(3, 60, 128), torch.rand(3, 128, 40)])
    assert images.tensors.shape == (2, 3, 128, 128) and images.image_sizes == [(60, 128), (128, 40)]


def test_the_lr_factor_is_detectrons_warmup_times_steps():
    """detectron2 ``solver/lr_scheduler.py``: ``WarmupParamScheduler`` (linear, factor 0.001) over
    ``MultiStepParamScheduler([1, 0.1, 0.01], milestones)``, evaluated by ``LRMultiplier`` at ``iter / max_iter``."""
    f = lambda it: det.vitdet_lr_factor(it, warmup_iters=250, steps=(163889, 177546))
    assert f(0) == pytest.approx(0.001) and f(125) == pytest.approx(0.001 * 0.5 + 0.5) and f(250) == 1.0
    assert f(163888) == 1.0 and f(163889) == pytest.approx(0.1) and f(177546) == pytest.approx(0.01)


def test_smoke_run_learns_and_writes_a_record(smoke_all):
    rec = smoke_all[0]['coco_maskrcnn']
    assert rec['family'] == 'detection' and rec['data']['subset'] == 'smoke' and rec['data']['num_images'] == 12
    assert rec['settings']['rel_pos'] == 'decomposed'
    for k in ('APbox', 'APmask', 'APbox50', 'APmask75', 'APbox_s', 'APmask_l'):
        assert 0 <= rec['metrics'][k] <= 100
    # 150 steps on coloured shapes: detections clear the 0.05 score threshold and some of them are right
    assert rec['metrics']['APbox50'] > 10 and rec['metrics']['APmask'] > 3
    scalars = [json.loads(l) for l in next(Path(rec['model']['work_dir']).glob('*/vis_data/scalars.json'))
               .read_text().splitlines()]
    losses = [s['loss'] for s in scalars if 'loss' in s]
    assert len(losses) >= 4 and np.mean(losses[-2:]) < np.mean(losses[:2])


def test_eval_only_on_the_trained_model_reproduces_its_metrics(smoke_all, tmp_path):
    rec = smoke_all[0]['coco_maskrcnn']
    out = run(RUN + ['coco_maskrcnn', '--eval-only', '--smoke', '--checkpoint', rec['model']['finetuned_checkpoint'],
                     '--records-dir', str(tmp_path / 'r')], cwd=tmp_path)
    again = read_record(out.stdout.strip().splitlines()[-1])
    assert again['metrics'] == rec['metrics'] and again['model']['pretrain'] == rec['model']['pretrain']


def test_torchrun_evaluation_scores_every_image_once(smoke_all, tmp_path):
    """Two ranks, 6 val images each: the gathered detections score as one process does over all 12 (a rank's
    shard alone would miss half the objects; batches differ, so bf16 numbers may move slightly)."""
    rec = smoke_all[0]['coco_maskrcnn']
    run([sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2'] + RUN[1:] +
        ['coco_maskrcnn', '--eval-only', '--smoke', '--launcher', 'pytorch', '--checkpoint',
         rec['model']['finetuned_checkpoint'], '--records-dir', str(tmp_path / 'r')], cwd=tmp_path, timeout=300)
    [path] = list((tmp_path / 'r').glob('*/*.json'))
    two = read_record(path)
    assert two['env']['world_size'] == 2 and two['data']['num_images'] == 12
    for k in ('APbox', 'APmask', 'APbox50'):
        assert two['metrics'][k] == pytest.approx(rec['metrics'][k], abs=1.0)


def test_resume_after_kill_gives_the_same_detector(tiny_checkpoint, smoke_all, tmp_path):
    args = RUN + ['coco_maskrcnn', '--smoke', '--checkpoint', str(tiny_checkpoint[0]), '--records-dir',
                  str(tmp_path / 'r'), '--work-dir', str(tmp_path / 'w')]
    kill_when(args, tmp_path / 'w' / 'last_checkpoint', cwd=tmp_path)  # right after the first checkpoint
    assert not (tmp_path / 'r').exists() and not (tmp_path / 'w' / 'detector.pth').exists()
    out = run(args + ['--resume'], cwd=tmp_path)
    assert any('Resuming from' in log.read_text() for log in (tmp_path / 'w').glob('*/*.log'))
    resumed, straight = read_record(out.stdout.strip().splitlines()[-1]), smoke_all[0]['coco_maskrcnn']
    assert resumed['metrics'] == straight['metrics']
    a = torch.load(resumed['model']['finetuned_checkpoint'], weights_only=True)['model']
    b = torch.load(straight['model']['finetuned_checkpoint'], weights_only=True)['model']
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
