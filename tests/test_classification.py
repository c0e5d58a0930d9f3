"""Classification transfer: the recipes' mechanics (layer decay, LARS, frozen parts) on the real run path,
the dataset readers on generated data in each real format, eval-only and resume."""
import hashlib
import random
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from conftest import REPO, kill_when, run
from mae_core.data import imagenet_class_index, smoke_wnids
from mae_core.vit import vit
from transfer.datasets import smoke
from transfer.datasets.readers import read_split
from transfer.optim import LARS, layer_decay_groups
from mae_core.record import read_record

RUN = [sys.executable, str(REPO / 'run_transfer.py')]


def test_layer_decay_scales_equal_the_formula_for_every_parameter_of_vit_base():
    model = vit('vit_base_patch16', num_classes=1000, global_pool=True, learnable_pos=True)
    groups = layer_decay_groups(model, weight_decay=0.05, layer_decay=0.75)
    scale, decay = {}, {}
    for g in groups:
        for p in g['params']:
            scale[id(p)], decay[id(p)] = g['lr_scale'], g['weight_decay']
    n = len(model.blocks) + 1
    for name, p in model.named_parameters():
        layer = 0 if name.startswith(('cls_token', 'pos_embed', 'patch_embed')) else \
            int(name.split('.')[1]) + 1 if name.startswith('blocks.') else n
        assert scale[id(p)] == pytest.approx(0.75 ** (n - layer)), name
        no_wd = p.ndim == 1 or name in ('pos_embed', 'cls_token')
        assert decay[id(p)] == (0.0 if no_wd else 0.05), name


def test_lars_adapts_matrices_and_steps_vectors_plainly():
    w, b = torch.nn.Parameter(torch.ones(2, 2)), torch.nn.Parameter(torch.ones(2))
    opt = LARS([w, b], lr=0.1, weight_decay=0.0, momentum=0.0)
    w.grad, b.grad = torch.full((2, 2), 4.0), torch.full((2,), 4.0)
    opt.step()
    trust = 0.001 * torch.norm(torch.ones(2, 2)) / torch.norm(torch.full((2, 2), 4.0))
    assert torch.allclose(w, 1 - 0.1 * 4.0 * trust) and torch.allclose(b, torch.full((2,), 1 - 0.4))


def test_rand_augment_at_full_magnitude_runs_on_the_pinned_pillow():
    """timm posterizes to 0 bits at magnitude 10, which Pillow 13 rejects (why pyproject pins pillow<13)."""
    from timm.data.auto_augment import rand_augment_transform
    tf = rand_augment_transform('rand-m10-n4-inc1', dict(translate_const=20, img_mean=(124, 116, 104)))
    random.seed(0)
    for _ in range(50):
        tf(Image.new('RGB', (32, 32), (200, 100, 50)))


def test_imagenet_reader_maps_wnids_to_the_standard_index_not_folder_order():
    split = read_split(dict(format='imagenet', root=str(smoke.imagenet())), 'val')
    index = imagenet_class_index()
    assert split.num_classes == 1000 and len(split.samples) == smoke.NUM_CLASSES * smoke.VAL_PER_CLASS
    assert {y for _, y in split.samples} == {index[w] for w in smoke_wnids()}
    assert all(index[p.parent.name] == y for p, y in split.samples)


@pytest.mark.parametrize('spec', [dict(format='inat', year=2017), dict(format='inat', year=2018),
                                  dict(format='inat', year=2019), dict(format='places205'), dict(format='places365')])
def test_readers_on_generated_data_in_each_real_format(spec):
    root = smoke.for_dataset(spec)
    train, val = read_split(dict(spec, root=str(root)), 'train'), read_split(dict(spec, root=str(root)), 'val')
    assert len(train.samples) == smoke.NUM_CLASSES * smoke.TRAIN_PER_CLASS
    assert len(val.samples) == smoke.NUM_CLASSES * smoke.VAL_PER_CLASS
    assert {y for _, y in val.samples} == set(range(smoke.NUM_CLASSES))
    assert all(p.exists() for p, _ in val.samples)
    assert val.num_classes == {'inat': 10, 'places205': 205, 'places365': 365}[spec['format']]


def test_each_generated_inat_and_places_set_has_its_own_images():
    """A reader that took 2018's files for 2017's (or Places205's for Places365's) must show: no two sets share
    an image."""
    sets = [dict(format='inat', year=y) for y in (2017, 2018, 2019)] + [dict(format='places205'),
                                                                        dict(format='places365')]
    seen = {}
    for spec in sets:
        root = smoke.for_dataset(spec)
        for split in ('train', 'val'):
            for path, _ in read_split(dict(spec, root=str(root)), split).samples:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                assert digest not in seen, f'{path} is the same image as {seen.get(digest)}'
                seen[digest] = path


def test_reader_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match='val2018.json: not found'):
        read_split(dict(format='inat', year=2018, root=str(tmp_path)), 'val')
    (tmp_path / 'trainvalsplit_places205').mkdir()
    (tmp_path / 'trainvalsplit_places205' / 'val_places205.csv').write_text('a/x.jpg 3\nb/y.jpg 999\n')
    with pytest.raises(ValueError, match=r'val_places205.csv: label 999 of .*y.jpg is outside 0..204'):
        read_split(dict(format='places205', root=str(tmp_path)), 'val')
    bad = tmp_path / 'in' / 'val' / 'not_a_wnid'
    bad.mkdir(parents=True)
    with pytest.raises(ValueError, match="not_a_wnid: folder name 'not_a_wnid' is not an ImageNet-1K wnid"):
        read_split(dict(format='imagenet', root=str(tmp_path / 'in')), 'val')


def _last_state(work_dir):
    ckpt = Path(work_dir) / Path((Path(work_dir) / 'last_checkpoint').read_text().strip()).name
    return torch.load(ckpt, map_location='cpu', weights_only=False)['state_dict']


def test_smoke_runs_learn_the_task_well_above_chance(smoke_all):
    records, _, _ = smoke_all
    chance = 100.0 / smoke.NUM_CLASSES
    for name in ('in1k_finetune', 'in1k_linprobe', 'in1k_partial_ft'):
        assert records[name]['metrics']['top1'] > 3 * chance, name


def test_linear_probe_leaves_the_encoder_bit_identical(smoke_all, tiny_checkpoint):
    rec = smoke_all[0]['in1k_linprobe']
    pre = torch.load(tiny_checkpoint[0], weights_only=True)['model']
    after = _last_state(rec['model']['work_dir'])
    encoder = [k for k in after if k.startswith('vit.') and not k.startswith('vit.head')]
    assert len(encoder) > 100
    for k in encoder:
        assert torch.equal(after[k], pre[k[len('vit.'):]]), k
    assert 'vit.head.0.running_mean' in after and not torch.equal(after['vit.head.1.weight'],
                                                                  torch.zeros_like(after['vit.head.1.weight']))


def test_partial_fine_tuning_changes_exactly_the_last_k_blocks(smoke_all, tiny_checkpoint):
    rec = smoke_all[0]['in1k_partial_ft']
    k = rec['settings']['k']
    pre = torch.load(tiny_checkpoint[0], weights_only=True)['model']
    tuned = torch.load(rec['model']['finetuned_checkpoint'], weights_only=True)['model']
    depth = 12
    for name, value in tuned.items():
        if name.startswith('blocks.'):
            changed = not torch.equal(value, pre[name])
            assert changed == (int(name.split('.')[1]) >= depth - k), name
        elif name in ('patch_embed.proj.weight', 'cls_token'):
            assert torch.equal(value, pre[name]), name


def test_eval_only_on_the_fine_tuned_checkpoint_reproduces_its_accuracy(smoke_all, tmp_path):
    rec = smoke_all[0]['in1k_finetune']
    out = run(RUN + ['in1k_finetune', '--eval-only', '--smoke', '--checkpoint', rec['model']['finetuned_checkpoint'],
                     '--records-dir', str(tmp_path / 'r')], cwd=tmp_path)
    again = read_record(out.stdout.strip().splitlines()[-1])
    assert again['metrics'] == rec['metrics'] and again['data']['num_images'] == rec['data']['num_images']
    assert again['model']['format'] == 'ours'


def test_resume_after_kill_gives_the_same_final_weights(tiny_checkpoint, smoke_all, tmp_path):
    args = RUN + ['in1k_linprobe', '--smoke', '--checkpoint', str(tiny_checkpoint[0]), '--records-dir',
                  str(tmp_path / 'r'), '--work-dir', str(tmp_path / 'w')]
    kill_when(args, tmp_path / 'w' / 'epoch_3.pth', cwd=tmp_path)
    assert not (tmp_path / 'r').exists(), 'a killed run must leave no record'
    out = run(args + ['--resume'], cwd=tmp_path)
    assert any('Resuming from' in log.read_text() for log in (tmp_path / 'w').glob('*/*.log'))
    rec = read_record(out.stdout.strip().splitlines()[-1])
    straight = smoke_all[0]['in1k_linprobe']
    assert rec['metrics'] == straight['metrics']
    a, b = _last_state(tmp_path / 'w'), _last_state(straight['model']['work_dir'])
    assert all(torch.equal(a[k], b[k]) for k in a if k.startswith('vit.'))


def test_an_unreadable_image_is_one_error_naming_it_or_skipped_and_counted_when_asked(tiny_checkpoint, tmp_path):
    import shutil
    root = tmp_path / 'imagenet'
    shutil.copytree(smoke.imagenet(), root)
    bad = sorted((root / 'val').rglob('*.JPEG'))[0]
    bad.write_bytes(b'not a jpeg')
    args = RUN + ['in1k_linprobe', '--checkpoint', str(tiny_checkpoint[0]), '--data-root', str(root), '--config',
                  str(REPO / 'eval_configs/in1k_linprobe_smoke.py'), '--records-dir', str(tmp_path / 'r')]
    proc = run(args + ['--cfg-options', 'epochs=1'], cwd=tmp_path, check=False)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1].startswith(f'error: {bad}: unreadable image')
    assert not (tmp_path / 'r').exists()
    ok = run(args + ['--cfg-options', 'epochs=1', 'skip_bad_images=True'], cwd=tmp_path)
    rec = read_record(ok.stdout.strip().splitlines()[-1])
    assert rec['data']['skipped_images'] == 1 and rec['data']['num_images'] == 79 and rec['data']['subset'] == 'partial'
