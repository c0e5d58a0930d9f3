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
        assert torch.allclose(ours.forward_head(ours.forward_features(x), pre_logits=True),
                              theirs.forward_head(theirs.forward_features(x), pre_logits=True), atol=1e-5)


def test_any_input_size_that_is_a_multiple_of_the_patch():
    model = vit('vit_toy_patch16', img_size=224).eval()
    maps = model.forward_intermediates(torch.randn(1, 3, 96, 160), (0, 1))
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
        maps = windowed.forward_intermediates(x)[0]
    assert torch.allclose(maps, out.transpose(1, 2).reshape(2, 64, 4, 4), atol=1e-6)


def _logits_with_rel_pos(attn, x, grid, term):
    """Attention by hand: softmax(q·k / sqrt(d) + term(i, j, q_i)) v, then the output projection."""
    B, N, _ = x.shape
    q, k, v = attn.qkv(x).reshape(B, N, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
    logits = (q @ k.transpose(-1, -2)) * attn.head_dim ** -0.5
    for i in range(N):
        for j in range(N):
            logits[:, :, i, j] += term(i, j, q[:, :, i])
    out = (logits.softmax(-1) @ v).transpose(1, 2).reshape(B, N, -1)
    return attn.proj(out)


def test_decomposed_relative_position_is_vitdet_formula():
    torch.manual_seed(0)
    model = vit('vit_toy_patch16', img_size=48, rel_pos='decomposed').eval()
    attn = model.blocks[0].attn
    attn.rel_pos_h.data.normal_(), attn.rel_pos_w.data.normal_()
    h = w = 3
    x = torch.randn(2, 1 + h * w, 64)  # with a cls token, which gets no term

    def term(i, j, qi):
        if i == 0 or j == 0:
            return 0.0
        (yi, xi), (yj, xj) = divmod(i - 1, w), divmod(j - 1, w)
        return qi @ attn.rel_pos_h[yi - yj + h - 1] + qi @ attn.rel_pos_w[xi - xj + w - 1]

    with torch.no_grad():
        assert torch.allclose(attn(x, (h, w)), _logits_with_rel_pos(attn, x, (h, w), term), atol=1e-5)


def test_relative_position_bias_is_beit_formula_with_cls_entries():
    torch.manual_seed(0)
    model = vit('vit_toy_patch16', img_size=48, rel_pos='bias').eval()
    attn = model.blocks[1].attn
    table = attn.relative_position_bias_table
    table.data.normal_()
    h = w = 3
    n = (2 * h - 1) * (2 * w - 1)
    x = torch.randn(2, 1 + h * w, 64)

    def term(i, j, qi):
        if i == 0 and j == 0:
            return table[n + 2]
        if i == 0:
            return table[n]
        if j == 0:
            return table[n + 1]
        (yi, xi), (yj, xj) = divmod(i - 1, w), divmod(j - 1, w)
        return table[(yi - yj + h - 1) * (2 * w - 1) + xi - xj + w - 1]

    with torch.no_grad():
        assert torch.allclose(attn(x, (h, w)), _logits_with_rel_pos(attn, x, (h, w), term), atol=1e-5)


@pytest.mark.parametrize('rel_pos, window', [('decomposed', 2), ('bias', 0)])
def test_added_relative_position_and_layer_scale_start_neutral(rel_pos, window):
    """A pre-trained encoder loaded into one with relative position (zeros) and layer scale 1.0 computes the
    same features, at the table's grid and at another input size."""
    from mae_core.checkpoint import load_into
    torch.manual_seed(0)
    plain = vit('vit_toy_patch16', img_size=64, window_size=window, global_blocks=[1]).eval()
    added = vit('vit_toy_patch16', img_size=64, window_size=window, global_blocks=[1], rel_pos=rel_pos,
                layer_scale_init=1.0).eval()
    load_into(added, plain.state_dict())  # the task's extra keys are missing from the checkpoint: allowed
    assert {k for k in added.state_dict() if k not in plain.state_dict()} >= {'blocks.0.ls1.gamma', 'blocks.1.ls2.gamma'}
    with torch.no_grad():
        for size in (64, 96):
            x = torch.randn(1, 3, size, size)
            assert torch.allclose(plain.forward_intermediates(x, (0, 1))[1], added.forward_intermediates(x, (0, 1))[1], atol=1e-5)
        for name in ('rel_pos_h', 'rel_pos_w', 'relative_position_bias_table'):
            if hasattr(added.blocks[1].attn, name):
                getattr(added.blocks[1].attn, name).data.normal_()
        x = torch.randn(1, 3, 96, 96)  # a table made for 4x4 patches, resampled for 6x6
        assert not torch.allclose(plain.forward_intermediates(x)[0], added.forward_intermediates(x)[0], atol=1e-3)


def test_a_window_block_with_padding_is_detectron2s_vitdet_block():
    """detectron2 ``modeling/backbone/vit.py`` (commit 0818132a) ``Block.forward`` on a 64 x 64 patch map with
    window 14 (1024 px, as ViTDet on COCO), written out here step by step: shortcut; ``norm1``; zero-pad the
    [B, H, W, C] map to a multiple of the window (``utils.window_partition``); attention per window; un-pad
    (``window_unpartition``); ``shortcut + drop_path(x)``; ``x + drop_path(mlp(norm2(x)))``."""
    import torch.nn.functional as F
    torch.manual_seed(0)
    blk = vit('vit_toy_patch16', img_size=1024, window_size=14, global_blocks=(1,)).blocks[0].eval()
    blk.norm1.bias.data.normal_()  # so that padding before norm1 (the old order) would show
    B, H, W, C, ws, heads = 2, 64, 64, 64, 14, 4
    x = torch.randn(B, H, W, C)
    with torch.no_grad():
        y = F.layer_norm(x, (C,), blk.norm1.weight, blk.norm1.bias, 1e-6)
        Hp, Wp = -(-H // ws) * ws, -(-W // ws) * ws
        y = F.pad(y, (0, 0, 0, Wp - W, 0, Hp - H))
        win = y.view(B, Hp // ws, ws, Wp // ws, ws, C).permute(0, 1, 3, 2, 4, 5).reshape(-1, ws * ws, C)
        q, k, v = F.linear(win, blk.attn.qkv.weight, blk.attn.qkv.bias).view(-1, ws * ws, 3, heads, C // heads) \
            .permute(2, 0, 3, 1, 4)
        attn = ((q * (C // heads) ** -0.5) @ k.transpose(-2, -1)).softmax(-1)
        out = F.linear((attn @ v).transpose(1, 2).reshape(-1, ws * ws, C), blk.attn.proj.weight, blk.attn.proj.bias)
        out = out.view(B, Hp // ws, Wp // ws, ws, ws, C).permute(0, 1, 3, 2, 4, 5).reshape(B, Hp, Wp, C)[:, :H, :W]
        x1 = x + out
        hidden = F.gelu(F.linear(F.layer_norm(x1, (C,), blk.norm2.weight, blk.norm2.bias, 1e-6),
                                 blk.mlp.fc1.weight, blk.mlp.fc1.bias))
        reference = x1 + F.linear(hidden, blk.mlp.fc2.weight, blk.mlp.fc2.bias)
        ours = blk(x.view(B, H * W, C), (H, W)).view(B, H, W, C)
    assert (ours - reference).abs().max() <= 1e-5 * reference.abs().max()


@pytest.mark.parametrize('old, new', [(14, 28), (14, 64), (14, 32), (16, 7)])
def test_position_table_resampling_is_fb_maes_interpolate_pos_embed(old, new):
    """fb/mae ``util/pos_embed.py`` ``interpolate_pos_embed`` (commit a9f5c70), step by step: the extra (cls) token
    kept, the grid reshaped to [1, D, n, n], ``F.interpolate(mode='bicubic', align_corners=False)``, flattened
    back. detectron2's ``get_abs_pos`` takes the same steps. timm's default (antialiased bicubic, another kernel
    even when enlarging) differs by ~4 % of the table's range."""
    import torch.nn.functional as F
    from timm.layers import resample_abs_pos_embed

    from mae_core.vit import resample_pos_table
    torch.manual_seed(0)
    table = torch.randn(1, 1 + old * old, 32)
    extra, pos = table[:, :1], table[:, 1:]
    pos = pos.reshape(-1, old, old, 32).permute(0, 3, 1, 2)
    pos = F.interpolate(pos, size=(new, new), mode='bicubic', align_corners=False)
    reference = torch.cat((extra, pos.permute(0, 2, 3, 1).flatten(1, 2)), dim=1)
    assert torch.equal(resample_pos_table(table, (new, new)), reference)
    timm_default = resample_abs_pos_embed(table, [new, new], [old, old], num_prefix_tokens=1)
    assert (timm_default - reference).abs().max() > 0.02 * (reference.max() - reference.min())
