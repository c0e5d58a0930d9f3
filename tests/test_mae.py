"""The MAE model: exact parity with transformers' ViTMAEForPreTraining (which matches the reference bit for
bit), the reference's key layout and sizes, the loss, and the encoder w/ [M] variant."""
import pytest
import torch

from mae_core.checkpoint import export_hf
from mae_core.mae import mae, mae_vit_base_patch16, mae_vit_huge_patch14, mae_vit_large_patch16


@pytest.mark.parametrize('norm_pix_loss', [False, True])
def test_mask_pred_and_loss_equal_hugging_face_given_the_same_weights_and_noise(norm_pix_loss, tmp_path):
    from transformers import ViTMAEForPreTraining
    torch.manual_seed(0)
    ours = mae('vit_tiny_patch16', norm_pix_loss=norm_pix_loss, decoder_depth=2, decoder_embed_dim=128,
               decoder_num_heads=4).eval()
    export_hf(ours.state_dict(), dict(norm_pix_loss=norm_pix_loss, num_heads=3, decoder_num_heads=4), tmp_path / 'hf')
    theirs = ViTMAEForPreTraining.from_pretrained(tmp_path / 'hf').eval()
    x, noise = torch.randn(2, 3, 224, 224), torch.rand(2, 196)
    with torch.no_grad():
        loss, pred, mask = ours(x, 0.75, noise=noise)
        out = theirs(pixel_values=x, noise=noise)
    assert torch.allclose(mask, out.mask, atol=1e-5)
    assert torch.allclose(pred, out.logits, atol=1e-5)
    assert torch.allclose(loss, out.loss, atol=1e-5)


@pytest.mark.parametrize('factory,encoder_m,total_m,pos,dec_pos', [
    (mae_vit_base_patch16, 85.6, 111.9, (1, 197, 768), (1, 197, 512)),
    (mae_vit_large_patch16, 303.1, 329.5, (1, 197, 1024), (1, 197, 512)),
    (mae_vit_huge_patch14, 630.4, 657.1, (1, 257, 1280), (1, 257, 512))])
def test_sizes_and_key_layout_are_the_reference_ones(factory, encoder_m, total_m, pos, dec_pos):
    with torch.device('meta'):
        model = factory()
    sd = model.state_dict()
    assert sd['pos_embed'].shape == pos and sd['decoder_pos_embed'].shape == dec_pos
    for key in ('patch_embed.proj.weight', 'cls_token', 'blocks.0.attn.qkv.weight', 'blocks.0.mlp.fc2.bias',
                'norm.weight', 'mask_token', 'decoder_embed.weight', 'decoder_blocks.7.norm1.weight',
                'decoder_norm.bias', 'decoder_pred.weight'):
        assert key in sd
    encoder = sum(p.numel() for n, p in model.named_parameters() if p.requires_grad and not n.startswith(
        ('decoder', 'mask_token')))
    assert round(encoder / 1e6, 1) == encoder_m
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 1) == total_m


def test_norm_pix_loss_equals_a_hand_computation():
    torch.manual_seed(0)
    model = mae('vit_toy_patch16', img_size=32, norm_pix_loss=True)
    imgs, noise = torch.randn(2, 3, 32, 32), torch.rand(2, 4)
    loss, pred, mask = model(imgs, 0.5, noise=noise)
    total, count = 0.0, 0
    for n in range(2):
        for i in range(2):
            for j in range(2):
                patch = imgs[n, :, 16 * i:16 * i + 16, 16 * j:16 * j + 16].permute(1, 2, 0).reshape(-1)  # row, col, ch
                target = (patch - patch.mean()) / (patch.var() + 1e-6) ** 0.5
                if mask[n, 2 * i + j] == 1:
                    total += ((pred[n, 2 * i + j] - target) ** 2).mean()
                    count += 1
    assert count == 4 and torch.allclose(loss, total / count, atol=1e-6)


def test_the_encoder_with_mask_tokens_sees_every_token_and_without_only_the_visible():
    seen = {}
    for with_m in (False, True):
        model = mae('vit_toy_patch16', img_size=64, encoder_mask_tokens=with_m)
        model.blocks[0].register_forward_hook(lambda m, inp, out, k=with_m: seen.__setitem__(k, inp[0].shape[1]))
        model(torch.randn(1, 3, 64, 64), 0.75)
    assert seen == {False: 1 + 4, True: 1 + 16}
    assert 'encoder_mask_token' in mae('vit_toy_patch16', encoder_mask_tokens=True).state_dict()


@pytest.mark.parametrize('masking', ['random', 'block', 'grid'])
def test_every_masking_trains_any_number_of_channels(masking):
    model = mae('vit_toy_patch16', img_size=64, in_chans=5, masking=masking)
    loss, pred, mask = model(torch.randn(2, 5, 64, 64), 0.75, seeds=[0, 1])
    loss.backward()
    assert pred.shape == (2, 16, 16 * 16 * 5) and mask.sum() == 2 * 12


def test_an_mae_initialises_its_weights_once_when_complete(monkeypatch):
    """As fb/mae's ``MaskedAutoencoderViT``: one ``initialize_weights`` after encoder and decoder exist (the encoder
    alone would otherwise initialise first and draw from the generator twice)."""
    from mae_core.mae import MaskedAutoencoder
    calls = []
    real = MaskedAutoencoder.initialize_weights
    monkeypatch.setattr(MaskedAutoencoder, 'initialize_weights',
                        lambda self: calls.append(hasattr(self, 'decoder_pred')) or real(self))
    mae('vit_toy_patch16', img_size=32)
    assert calls == [True]
