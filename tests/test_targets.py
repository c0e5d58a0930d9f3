"""The rest of Table 1 and Table 7: the PCA and dVAE reconstruction targets (Table 1d, Table 7) and the four
augmentations (Table 1e). Each runs in ``mae-pretrain`` on the tiny config and learns; its record carries the
setting; ``reproduce-tables`` places the rows made by real runs."""
import sys
from collections import Counter

import pandas as pd
import pytest
import torch
from dall_e.encoder import Encoder
from dall_e.utils import map_pixels
from torchvision.transforms import functional as TF

from conftest import REPO, run
from mae_core import cli as core_cli
from mae_core.data import COLOR_JITTER, pretrain_transform
from mae_core.mae import mae
from mae_core.record import read_record, read_records
from mae_core.seeding import seeded_draws
from transfer import cli

CONFIG = str(REPO / 'eval_configs/pretrain/mae_tiny_cpu.py')
SHORT = ['schedule.epochs=4', 'schedule.warmup_epochs=1', 'data.generated.per_class=8', 'data.batch_size=16']


def test_the_pca_target_reconstructs_a_patch_to_the_variance_its_components_keep():
    """On correlated patches, projecting on the fitted components and back leaves exactly the variance the
    discarded components hold (the fit reports the kept fraction)."""
    torch.manual_seed(0)
    model = mae('vit_toy_patch16', img_size=64, target='pca', pca_components=96)
    mixing = torch.randn(768, 768) * torch.logspace(0, -3, 768)  # a spectrum that decays
    patches = torch.randn(5000, 768) @ mixing.T + 3.0
    kept = model.fit_pca(patches)
    coeffs = (patches - model.decoder_pca_mean) @ model.decoder_pca_basis
    back = coeffs @ model.decoder_pca_basis.T + model.decoder_pca_mean
    centred = patches - patches.mean(0)
    residual = ((patches - back) ** 2).sum() / (centred ** 2).sum()
    assert 0.5 < kept < 1 and float(residual) == pytest.approx(1 - kept, abs=1e-3)
    assert torch.allclose(model.decoder_pca_basis.T @ model.decoder_pca_basis, torch.eye(96), atol=1e-4)
    imgs = torch.randn(2, 3, 64, 64)
    loss, pred, mask = model(imgs, 0.75)
    assert pred.shape == (2, 16, 96) and torch.isfinite(loss)


def test_dvae_tokens_are_dall_es_on_the_crop_at_eight_pixels_per_patch():
    """The tokenizer (DALL-E's encoder, random weights) sees the image at 8 px per patch mapped by DALL-E's own
    ``map_pixels``; the decoder predicts 8192-way logits and the loss is cross-entropy on removed patches."""
    torch.manual_seed(0)
    tokenizer = Encoder(n_hid=64, requires_grad=False)
    model = mae('vit_toy_patch16', img_size=64, target='dvae', tokenizer=tokenizer)
    imgs = torch.randn(2, 3, 64, 64)
    tokens = model.dvae_tokens(imgs)
    mean, std = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    pixels = TF.resize((imgs * std + mean).clamp(0, 1), [32, 32], interpolation=TF.InterpolationMode.BICUBIC,
                       antialias=True).clamp(0, 1)
    assert torch.equal(tokens, tokenizer(map_pixels(pixels)).argmax(1).flatten(1))
    loss, pred, mask = model(imgs, 0.75)
    assert pred.shape == (2, 16, 8192) and tokens.shape == (2, 16)
    expected = torch.nn.functional.cross_entropy(pred[mask.bool()], tokens[mask.bool()])
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert not any(p.requires_grad for p in model.tokenizer.parameters())


def test_pixel_targets_are_unchanged_by_the_target_option():
    torch.manual_seed(0)
    a = mae('vit_toy_patch16', img_size=64, norm_pix_loss=True)
    torch.manual_seed(0)
    b = mae('vit_toy_patch16', img_size=64, target='norm_pix')
    imgs = torch.randn(2, 3, 64, 64)
    assert torch.equal(a(imgs, 0.75, seeds=[1, 2])[0], b(imgs, 0.75, seeds=[1, 2])[0])
    with pytest.raises(Exception, match='contradicts'):
        mae('vit_toy_patch16', img_size=64, norm_pix_loss=True, target='pca')


@pytest.mark.parametrize('augmentation', ['none', 'crop_fixed', 'crop_rand', 'crop_color'])
def test_each_augmentation_is_what_table_1e_names_and_seeded(augmentation):
    img = TF.to_pil_image(torch.rand(3, 120, 90))
    tf = pretrain_transform(64, (0.2, 1.0), augmentation)
    with seeded_draws(5):
        a = tf(img)
    with seeded_draws(5):
        b = tf(img)
    assert torch.equal(a, b) and a.shape == (3, 64, 64)
    names = Counter(type(t).__name__ for t in tf.transforms)
    assert names['RandomHorizontalFlip'] == 1
    expected = {'none': 'CenterCrop', 'crop_fixed': 'RandomCrop', 'crop_rand': 'RandomResizedCrop',
                'crop_color': 'RandomApply'}[augmentation]
    assert names[expected] == 1
    if augmentation == 'crop_color':
        jitter = next(t for t in tf.transforms if type(t).__name__ == 'RandomApply')
        assert jitter.p == COLOR_JITTER['p'] and names['RandomGrayscale'] == 1


@pytest.fixture(scope='module')
def ablation_runs(tmp_path_factory):
    """One short real pre-training per new option (the dVAE one with a random-weight DALL-E encoder saved as a
    state dict), then a smoke linear probe of each, and a smoke fine-tune of the dVAE one (Table 7); the
    commands' own main functions, in this process."""
    root = tmp_path_factory.mktemp('ablations')
    torch.manual_seed(0)
    dvae_file = root / 'dvae_encoder.pt'
    torch.save(Encoder(n_hid=64, requires_grad=False).state_dict(), dvae_file)
    options = {'pca': ['model.target=pca'], 'dvae': ['model.target=dvae', f'model.dvae_weights={dvae_file}'],
               'none': ['data.augmentation=none'], 'crop_fixed': ['data.augmentation=crop_fixed'],
               'crop_color': ['data.augmentation=crop_color']}
    records, finals = root / 'records', {}
    for name, opts in options.items():
        assert core_cli.pretrain_main(['--config', CONFIG, '--work-dir', str(root / name), '--records-dir',
                                       str(records), '--cfg-options'] + SHORT + opts) == 0
        finals[name] = root / name / 'final.pth'
        assert cli.main(['in1k_linprobe', '--checkpoint', str(finals[name]), '--smoke', '--records-dir',
                         str(records), '--work-dir', str(root / f'{name}_lin')]) == 0
    assert cli.main(['in1k_finetune', '--checkpoint', str(finals['dvae']), '--smoke', '--records-dir', str(records),
                     '--work-dir', str(root / 'dvae_ft')]) == 0
    return records, finals


def test_every_new_option_pretrains_learns_and_is_recorded(ablation_runs):
    records, _ = ablation_runs
    pre = [r for r in read_records(records) if r['family'] == 'pretrain']
    assert len(pre) == 5
    seen = set()
    for rec in pre:
        meta = rec['model']['pretrain']
        seen.add(meta['target'] if meta['target'] in ('pca', 'dvae') else meta['augmentation'])
        assert rec['metrics']['loss'] < rec['metrics']['loss_first_epoch'], meta  # it learns
        if meta['target'] == 'pca':
            assert meta['pca_components'] == 96 and 0 < meta['pca_kept_variance'] <= 1
            assert meta['pca_images'] == 80
    assert seen == {'pca', 'dvae', 'none', 'crop_fixed', 'crop_color'}


def test_reproduce_tables_places_the_rows_in_tables_1d_1e_and_7(ablation_runs, tmp_path):
    records, _ = ablation_runs
    run([sys.executable, '-m', 'transfer.tables', '--records-dir', str(records), '--out', str(tmp_path),
         '--formats', 'csv'])
    read = lambda stem: pd.read_csv(tmp_path / f'{stem}.csv', dtype=str, keep_default_na=False)
    mine = lambda df: df[df['source'] != 'paper']
    t1d, t1e, t7 = read('table1d_target'), read('table1e_augmentation'), read('table7_pixels_vs_tokens')
    assert sorted(mine(t1d)['case']) == ['PCA', 'dVAE token', 'pixel (w/ norm)', 'pixel (w/ norm)',
                                         'pixel (w/ norm)']
    assert sorted(mine(t1e)['case']) == ['crop + color jit', 'crop, fixed size', 'crop, rand size',
                                         'crop, rand size', 'none']
    assert all(v.endswith('(smoke)') for v in mine(t1d)['lin'])
    dvae = mine(t7)[mine(t7)['target'] == 'dVAE token']
    assert len(dvae) == 1 and dvae['IN1K ViT-Ti'].iloc[0].endswith('(smoke)')


def test_a_pca_checkpoint_draws_its_reconstructions_and_a_dvae_one_says_why_it_cannot(ablation_runs, tmp_path):
    _, finals = ablation_runs
    images = tmp_path / 'imgs'
    images.mkdir()
    for i in range(2):
        TF.to_pil_image(torch.rand(3, 64, 64)).save(images / f'{i}.png')
    run([sys.executable, '-m', 'mae_core.cli', 'figures', '--checkpoint', str(finals['pca']), '--images',
         str(images), '--out', str(tmp_path / 'pca.png'), '--num', '2'])
    assert (tmp_path / 'pca.png').stat().st_size > 1000
    proc = run([sys.executable, '-m', 'mae_core.cli', 'figures', '--checkpoint', str(finals['dvae']), '--images',
                str(images), '--out', str(tmp_path / 'dvae.png')], check=False)
    assert proc.returncode == 2 and 'predicts dVAE tokens' in proc.stderr


def test_a_pickled_dall_e_file_needs_allow_pickle(tmp_path):
    torch.save(Encoder(n_hid=64, requires_grad=False), tmp_path / 'encoder.pkl')  # as DALL-E publishes it
    args = [sys.executable, '-m', 'mae_core.cli', 'pretrain', '--config', CONFIG, '--work-dir', str(tmp_path / 'w'),
            '--records-dir', str(tmp_path / 'r'), '--cfg-options', 'model.target=dvae',
            f'model.dvae_weights={tmp_path / "encoder.pkl"}', 'schedule.epochs=1', 'data.generated.per_class=2',
            'data.batch_size=4']
    proc = run(args, check=False)
    assert proc.returncode == 2 and 'encoder.pkl' in proc.stderr and '--allow-pickle' in proc.stderr
    assert not (tmp_path / 'r').exists() or not list((tmp_path / 'r').glob('*/*.json'))
    ok = run(args[:4] + ['--allow-pickle'] + args[4:])
    assert read_record(ok.stdout.strip().splitlines()[-1])['model']['pretrain']['target'] == 'dvae'
