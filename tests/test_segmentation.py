"""ADE20K / UperNet: mIoU on hand-made label maps (and against torchmetrics), sliding-window inference, the
pyramid's shapes, the reader, and the smoke run through run_transfer.py."""
import numpy as np
import pytest
import torch

from mae_core.vit import vit
from transfer import segmentation as seg
from transfer.datasets import ade20k as ade
from transfer.datasets import smoke


def test_a_perfect_prediction_scores_100_and_ignored_pixels_do_not_count():
    label = torch.tensor([[0, 0, 1], [1, 2, 255]])
    pred = torch.tensor([[0, 0, 1], [1, 2, 0]])  # the ignored pixel's prediction is irrelevant
    out = seg.miou_from_areas(seg.intersect_and_union(pred, label, 4))
    assert out['mIoU'] == 100.0 and out['aAcc'] == 100.0 and 'IoU.3' not in out  # class 3 absent: not averaged


def test_known_confusions_give_the_hand_computed_miou():
    label = torch.tensor([0, 0, 0, 0, 1, 1, 255, 255])
    pred = torch.tensor([0, 0, 0, 1, 1, 0, 1, 1])
    # class 0: intersection 3, union 3 + 1 (pred 0 on a 1) + 1 (a 0 predicted 1) = 5 -> 0.6
    # class 1: intersection 1, union 1 + 1 + 1 = 3 -> 1/3 ; accuracy 4 of 6
    out = seg.miou_from_areas(seg.intersect_and_union(pred, label, 2))
    assert out['IoU.0'] == pytest.approx(60.0) and out['IoU.1'] == pytest.approx(100 / 3)
    assert out['mIoU'] == pytest.approx((60.0 + 100 / 3) / 2) and out['aAcc'] == pytest.approx(400 / 6)


def test_images_the_sampler_repeats_to_even_out_ranks_are_not_counted_twice():
    """7 val images on 3 ranks: mmengine's DefaultSampler repeats images 0 and 1 so that every rank gets 3, and
    its result gathering orders them [0..6, 0, 1] before cutting to ``size``; the metric must count each image
    once (a matrix summed on each rank and all-reduced counted 0 and 1 twice)."""
    g = torch.Generator().manual_seed(1)
    images = [(torch.randint(0, 5, (6, 6), generator=g), torch.randint(0, 5, (6, 6), generator=g)) for _ in range(7)]
    once, padded = seg.IoUMetric(5), seg.IoUMetric(5)
    once.process(None, images)
    padded.process(None, images + images[:2])
    assert padded.evaluate(7) == once.evaluate(7) != seg.IoUMetric(5).compute_metrics(padded.results or
                                                                                     [seg.intersect_and_union(p, l, 5) for p, l in images + images[:2]])


def test_miou_summed_over_images_agrees_with_torchmetrics():
    from torchmetrics.classification import MulticlassJaccardIndex
    g = torch.Generator().manual_seed(0)
    labels = [torch.randint(0, 6, (20, 30), generator=g) for _ in range(3)]
    for lab in labels:
        lab[torch.rand(lab.shape, generator=g) < 0.1] = 255
    preds = [torch.where(torch.rand(l.shape, generator=g) < 0.7, l.clamp(max=5), torch.randint(0, 6, l.shape, generator=g))
             for l in labels]
    ours = seg.miou_from_areas(sum(seg.intersect_and_union(p, l, 6) for p, l in zip(preds, labels)))
    metric = MulticlassJaccardIndex(num_classes=6, average='macro', ignore_index=255)
    for p, l in zip(preds, labels):
        metric.update(p, l)
    assert ours['mIoU'] == pytest.approx(100 * float(metric.compute()), abs=1e-4)


@pytest.fixture(scope='module')
def tiny_segmenter():
    torch.manual_seed(0)
    model = seg.UperNetViT(vit('vit_toy_patch16', img_size=64), (0, 0, 1, 1), 5, channels=16, aux_channels=8,
                           crop=64, stride=43)
    return model.eval()


def test_sliding_window_equals_whole_image_when_one_window_covers_it(tiny_segmenter):
    img = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(seg.slide_inference(tiny_segmenter, img, 64, 43), tiny_segmenter.logits(img), atol=1e-5)
        big = seg.slide_inference(tiny_segmenter, torch.randn(1, 3, 80, 150), 64, 43)
    assert big.shape == (1, 5, 80, 150) and torch.isfinite(big).all()


def test_the_pyramid_has_strides_4_to_32_at_512():
    model = seg.UperNetViT(vit('vit_toy_patch16', img_size=512), (0, 0, 1, 1), 150, channels=32, aux_channels=8)
    with torch.no_grad():
        feats = model.pyramid(torch.randn(1, 3, 512, 512))
    assert [tuple(f.shape[2:]) for f in feats] == [(128, 128), (64, 64), (32, 32), (16, 16)]
    names = [n for n, _ in model.named_parameters()]
    for key in ('neck.upsample_4x.0.weight', 'decode_head.psp_modules.0.1.conv.weight', 'decode_head.bottleneck.bn.weight',
                'decode_head.lateral_convs.2.conv.weight', 'decode_head.fpn_bottleneck.conv.weight',
                'decode_head.conv_seg.weight', 'auxiliary_head.convs.0.conv.weight', 'auxiliary_head.conv_seg.bias'):
        assert key in names, key


def test_the_reader_and_reduce_zero_label():
    pairs = ade.read_ade(smoke.ade20k(), 'val')
    assert len(pairs) == 8 and all(i.stem == l.stem for i, l in pairs)
    assert ade.reduce_zero_label(np.array([0, 1, 150, 255], np.uint8)).tolist() == [255, 0, 149, 255]
    with pytest.raises(FileNotFoundError, match='ADEChallengeData2016'):
        ade.read_ade('/nonexistent', 'train')


def test_smoke_run_lowers_its_loss_and_writes_a_record(smoke_all):
    rec = smoke_all[0]['ade20k_upernet']
    assert rec['family'] == 'segmentation' and rec['data']['subset'] == 'smoke'
    assert 0 < rec['metrics']['mIoU'] <= 100 and rec['metrics']['aAcc'] > 50
    import json
    from pathlib import Path
    scalars = [json.loads(l) for l in Path(rec['model']['work_dir']).glob('*/vis_data/scalars.json').__next__()
               .read_text().splitlines()]
    losses = [s['loss'] for s in scalars if 'loss' in s]
    assert len(losses) >= 4 and np.mean(losses[-2:]) < np.mean(losses[:2])


def test_eval_only_on_the_trained_model_reproduces_its_metrics(smoke_all, tmp_path):
    import sys
    from conftest import REPO, run
    from mae_core.record import read_record
    rec = smoke_all[0]['ade20k_upernet']
    out = run([sys.executable, str(REPO / 'run_transfer.py'), 'ade20k_upernet', '--eval-only', '--smoke', '--checkpoint',
               rec['model']['finetuned_checkpoint'], '--records-dir', str(tmp_path / 'r')], cwd=tmp_path)
    again = read_record(out.stdout.strip().splitlines()[-1])
    assert again['metrics'] == rec['metrics'] and again['model']['pretrain'] == rec['model']['pretrain']
