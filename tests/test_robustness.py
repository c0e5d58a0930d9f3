"""Robustness: the mCE arithmetic on hand-made error tables, the 200-class masking, the readers and the
IN-C layout checks, and the smoke runs through run_transfer.py."""
import shutil
import sys

import numpy as np
import pytest
import torch
from mmengine.config import ConfigDict

from conftest import REPO, run
from mae_core.data import imagenet_class_index, smoke_wnids
from transfer import robustness as rb
from transfer.datasets import smoke
from transfer.datasets.readers import (IMAGENET_C_CORRUPTIONS, IMAGENET_C_EXTRAS, SEVERITIES, read_imagenet_c,
                                       read_wnid_folders, timm_class_subset)
from mae_core.record import read_record

RUN = [sys.executable, str(REPO / 'run_transfer.py')]


def alexnet_table(scale=1.0):
    return {c: {s: scale * e for s, e in zip(SEVERITIES, errs)} for c, errs in rb.ALEXNET_ERRORS.items()}


def test_a_model_with_alexnets_errors_scores_mce_100_and_halving_them_scores_50():
    assert rb.corruption_errors(alexnet_table())['mCE'] == pytest.approx(100.0)
    half = rb.corruption_errors(alexnet_table(0.5))
    assert half['mCE'] == pytest.approx(50.0) and half['CE.fog'] == pytest.approx(50.0)
    mean = sum(sum(e) for e in rb.ALEXNET_ERRORS.values()) / 75
    assert half['mean_error'] == pytest.approx(50 * mean)  # the unnormalised mean error


def test_extras_are_reported_apart_and_never_enter_mce():
    table = alexnet_table()
    table['spatter'] = {s: 0.0 for s in SEVERITIES}
    out = rb.corruption_errors(table)
    assert out['mCE'] == pytest.approx(100.0) and out['CE.spatter'] == 0.0 and out['extras_mean_error'] == 0.0


def test_the_mean_normalisers_match_the_per_severity_table():
    means = {'gaussian_noise': 0.886428, 'brightness': 0.564592, 'jpeg_compression': 0.606500}
    for c, m in means.items():
        assert sum(rb.ALEXNET_ERRORS[c]) / 5 == pytest.approx(m, abs=1e-6)


class FixedLogits(torch.nn.Module):
    """Always predicts ``inside`` a little and ``outside`` (not in the 200-class list) more strongly."""

    def __init__(self, inside, outside):
        super().__init__()
        self.inside, self.outside = inside, outside

    def forward(self, x):
        logits = torch.zeros(x.shape[0], 1000)
        logits[:, self.inside], logits[:, self.outside] = 5.0, 10.0
        return logits


def test_the_200_class_masking_scores_the_right_logits(tmp_path):
    subset = timm_class_subset('imagenet_r')
    assert len(subset) == 200 and subset == sorted(subset)
    wnid = smoke_wnids()[0]
    index = imagenet_class_index()[wnid]
    outside = next(i for i in range(1000) if i not in subset)
    images = smoke.robustness_folders('rendition')
    samples = [(p, subset.index(index), 0) for p, y in read_wnid_folders(images).samples if y == index]
    cfg = ConfigDict(img_size=64, crop_pct=0.875, preprocess='resize_crop', batch_size=16, num_workers=0,
                     decode='pil', precision='fp32')
    model = FixedLogits(index, outside)
    kept = rb.robustness_samples('topk', samples, rb.predict(model, samples, cfg, subset), str)
    assert rb.count_correct(kept, ['all'])['all'] == [len(samples), len(samples)]
    full = [(p, index, 0) for p, _, _ in samples]
    kept_full = rb.robustness_samples('topk', full, rb.predict(model, full, cfg), str)
    assert rb.count_correct(kept_full, ['all'])['all'] == [0, len(samples)]  # unmasked: wrong


def test_batched_tensor_decoding_matches_the_pil_path():
    from PIL import Image
    path = read_wnid_folders(smoke.robustness_folders('sketch')).samples[0][0]
    cfg = ConfigDict(img_size=64, crop_pct=0.875, preprocess='resize_crop')
    via_pil = rb.eval_transform(cfg)(Image.open(path).convert('RGB'))
    via_tensor = rb.decode_on_device([(str(path), path.read_bytes())], cfg, torch.device('cpu'))[0]
    assert via_tensor.shape == via_pil.shape and (via_tensor - via_pil).abs().mean() < 0.05


def test_generated_sets_in_the_released_layouts():
    root = smoke.imagenet_c()
    folders, missing = read_imagenet_c(root, extras=True, partial=False)
    assert len(folders) == 19 * 5 and not missing
    split = read_wnid_folders(root / 'frost' / '3')
    assert {y for _, y in split.samples} == {imagenet_class_index()[w] for w in smoke_wnids()}
    for style in ('adversarial', 'rendition', 'sketch'):
        assert len(read_wnid_folders(smoke.robustness_folders(style)).samples) == 80


def test_a_missing_corruption_folder_is_one_clear_error_unless_partial(tmp_path, tiny_checkpoint):
    root = tmp_path / 'imagenet-c'
    shutil.copytree(smoke.imagenet_c(), root)
    shutil.rmtree(root / 'fog' / '4')
    with pytest.raises(FileNotFoundError, match='missing 1 of 75 corruption/severity folders: fog/4'):
        read_imagenet_c(root, extras=False, partial=False)
    base = RUN + ['imagenet_c', '--checkpoint', str(tiny_checkpoint[0]), '--data-root', str(root), '--config',
                  str(REPO / 'eval_configs/imagenet_c_smoke.py'), '--records-dir', str(tmp_path / 'r')]
    proc = run(base, cwd=tmp_path, check=False)
    assert proc.returncode == 2 and 'has no classifier head' in proc.stderr  # a pre-trained model, no record
    assert not (tmp_path / 'r').exists()


def test_smoke_runs_write_records_with_the_full_table(smoke_all):
    records = smoke_all[0]
    c = records['imagenet_c']
    assert len([k for k in c['metrics'] if k.startswith('error.')]) == 19 * 5
    assert 0 < c['metrics']['mCE'] < 100
    assert c['data']['num_images'] == 15 * 5 * 20 and c['data']['extra_images'] == 4 * 5 * 20  # extras apart
    assert c['settings']['preprocess'] == 'resize_crop'
    finetuned = records['in1k_finetune']['model']['finetuned_checkpoint']
    for name in ('imagenet_c', 'imagenet_a', 'imagenet_r', 'imagenet_sketch'):
        assert records[name]['model']['evaluated_checkpoint'] == finetuned  # the model in1k_finetune saved
        assert records[name]['model']['sha256'] == records['in1k_finetune']['model']['sha256']
    assert records['imagenet_a']['data']['num_images'] == 80


def test_partial_run_is_marked_partial(tmp_path, smoke_all):
    root = tmp_path / 'imagenet-c'
    shutil.copytree(smoke.imagenet_c(), root)
    shutil.rmtree(root / 'snow')
    finetuned = smoke_all[0]['in1k_finetune']['model']['finetuned_checkpoint']
    proc = run(RUN + ['imagenet_c', '--checkpoint', finetuned, '--data-root', str(root), '--config',
                      str(REPO / 'eval_configs/imagenet_c_smoke.py'), '--cfg-options', 'partial=True',
                      '--records-dir', str(tmp_path / 'r')], cwd=tmp_path)
    rec = read_record(proc.stdout.strip().splitlines()[-1])
    assert rec['data']['subset'] == 'partial' and 'CE.snow' not in rec['metrics'] and 'mCE' in rec['metrics']


def test_generated_corruptions_are_the_same_for_the_same_draw():
    """Every one of the 19 corruptions, the two with their own generators included, repeats exactly."""
    from transfer.datasets.smoke import corrupted
    img = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    for name in IMAGENET_C_CORRUPTIONS + IMAGENET_C_EXTRAS:
        a, b, other = corrupted(img, name, 3, 7), corrupted(img, name, 3, 7), corrupted(img, name, 3, 8)
        assert np.array_equal(a, b), name
        if 'noise' in name or name == 'glass_blur':
            assert not np.array_equal(a, other), name
