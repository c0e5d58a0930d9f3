"""The encoder: same numbers as timm's ViT with the same weights, any input size, feature maps, windows."""
import math

import pytest
import timm
import torch

from mae_core.vit import sincos_pos_embed, vit, window_partition, window_unpartition


@pytest.mark.parametrize('global_pool', [False, True])
def test_features_equal_timm_vit_base_given_the_same_weights(global_pool):
    torch.manual_seed(0)
    ours = vit('vit_base_patch16', num_classes=10, global_pool=global_pool, learnable_pos=True).eval()
    theirs = timm.create_model('vit_base_patch16_224', pretrained=False, num_classes=10,
                               global_pool='avg' if global_pool else 'token').eval()
    theirs.load_state_dict(ours.state_dict(), strict=True)  # same key layout, nothing renamed
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(ours(x), theirs(x), atol=1e-5)
        assert torch.allclose(ours.forward_head(ours.forward_tokens(x), pre_logits=True),
                              theirs.forward_head(theirs.forward_features(x), pre_logits=True), atol=1e-5)


def test_any_input_size_that_is_a_multiple_of_the_patch():
    model = vit('vit_toy_patch16', img_size=224).eval()
    maps = model.forward_features(torch.randn(1, 3, 96, 160), out_blocks=(0, 1))
    assert [m.shape for m in maps] == [torch.Size([1, 64, 6, 10])] * 2
    with pytest.raises(ValueError, match='multiple of the patch size'):
        model(torch.randn(1, 3, 100, 96))


def test_position_table_at_the_native_size_is_not_resampled():
    model = vit('vit_toy_patch16', img_size=64)
    assert model.pos_embed_for((4, 4)) is model.pos_embed
    resampled = model.pos_embed_for((8, 8))
    assert resampled.shape == (1, 65, 64)
    assert torch.equal(resampled[:, :1], model.pos_embed[:, :1])  # the cls slot is kept


def test_sincos_table_matches_the_formula():
    dim, h, w = 16, 3, 5
    table = sincos_pos_embed(dim, h, w)[0]
    assert torch.all(table[0] == 0)  # cls slot
    omega = [1 / 10000 ** (i / (dim / 4)) for i in range(dim // 4)]
    for r in range(h):
        for c in range(w):
            row = table[1 + r * w + c]
            expect = ([math.sin(c * o) for o in omega] + [math.cos(c * o) for o in omega] +
                      [math.sin(r * o) for o in omega] + [math.cos(r * o) for o in omega])
            assert torch.allclose(row, torch.tensor(expect), atol=1e-6)


def test_window_partition_round_trip_with_padding():
    x = torch.randn(2, 5, 7, 3)
    win, padded = window_partition(x, 4)
    assert win.shape == (2 * 2 * 2, 16, 3) and padded == (8, 8)
    assert torch.equal(window_unpartition(win, 4, padded, (5, 7)), x)


def test_a_window_covering_the_whole_grid_is_global_attention_without_cls():
    torch.manual_seed(0)
    windowed = vit('vit_toy_patch16', img_size=64, window_size=4).eval()
    plain = vit('vit_toy_patch16', img_size=64).eval()
    plain.load_state_dict(windowed.state_dict())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        tokens, _, grid = plain.embed(x)
        out, _ = plain.run_blocks(tokens, grid)  # patch tokens only, every block global
        maps = windowed.forward_features(x)[0]
    assert torch.allclose(maps, out.transpose(1, 2).reshape(2, 64, 4, 4), atol=1e-6)
