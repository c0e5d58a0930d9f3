"""``mae-convert --to vitdet`` and ``--to mmseg`` against the reference code's own layouts and computations.

Neither detectron2 nor mmsegmentation installs here, so each reference is written out below from its source:
detectron2 ``modeling/backbone/vit.py`` and ``utils.py`` (commit 0818132a), mmsegmentation 1.2.2
``mmseg/models/backbones/{mae,beit,vit}.py``, ``necks/featurepyramid.py``, ``decode_heads/{uper,psp,fcn}_head.py``
and ``configs/mae/mae-base_upernet_8xb2-amp-160k_ade20k-512x512.py``."""
import math

import pytest
import torch
import torch.nn.functional as F

from mae_core import checkpoint as ck
from mae_core.vit import vit
from transfer.detection import SimpleFeaturePyramid
from transfer.segmentation import UperNetViT

D, L, H = 64, 2, 4  # vit_toy_patch16


def shapes(sd):
    return {k: tuple(v.shape) for k, v in sd.items()}


# ==================================================================== mmsegmentation 1.2.2
def mmseg_mae_layout(grid=32, prefix=''):
    """The state dict of ``MAE(img_size=512, embed_dims=D, num_layers=L, num_heads=H, mlp_ratio=4,
    init_values=1.0)``: cls_token, pos_embed (1 + 32*32), ``PatchEmbed.projection``; per ``BEiTTransformerEncoderLayer``
    ``ln1``/``ln2`` (build_norm_layer postfix 1/2), ``attn.qkv`` with bias (``qv_bias=False`` -> ``bias=True``),
    ``attn.proj``, ``relative_position_bias_table`` ((2W-1)^2 + 3, heads) and its persistent
    ``relative_position_index`` buffer, ``ffn.layers.0.0``/``ffn.layers.1`` (mmcv FFN), ``gamma_1``/``gamma_2``;
    ``final_norm=False``: no top-level norm."""
    out = {'cls_token': (1, 1, D), 'pos_embed': (1, 1 + grid * grid, D), 'patch_embed.projection.weight': (D, 3, 16, 16),
           'patch_embed.projection.bias': (D,)}
    for i in range(L):
        p = f'layers.{i}.'
        out.update({p + 'ln1.weight': (D,), p + 'ln1.bias': (D,), p + 'ln2.weight': (D,), p + 'ln2.bias': (D,),
                    p + 'attn.qkv.weight': (3 * D, D), p + 'attn.qkv.bias': (3 * D,), p + 'attn.proj.weight': (D, D),
                    p + 'attn.proj.bias': (D,),
                    p + 'attn.relative_position_bias_table': ((2 * grid - 1) ** 2 + 3, H),
                    p + 'attn.relative_position_index': (1 + grid * grid, 1 + grid * grid),
                    p + 'ffn.layers.0.0.weight': (4 * D, D), p + 'ffn.layers.0.0.bias': (4 * D,),
                    p + 'ffn.layers.1.weight': (D, 4 * D), p + 'ffn.layers.1.bias': (D,),
                    p + 'gamma_1': (D,), p + 'gamma_2': (D,)})
    return {prefix + k: v for k, v in out.items()}


def beit_relative_position_index(wh, ww):
    """``BEiTAttention._init_rel_pos_embedding``, step by step."""
    num_relative_distance = (2 * wh - 1) * (2 * ww - 1) + 3
    coords = torch.stack(torch.meshgrid([torch.arange(wh), torch.arange(ww)], indexing='ij'))
    coords_flatten = torch.flatten(coords, 1)
    relative_coords = (coords_flatten[:, :, None] - coords_flatten[:, None, :]).permute(1, 2, 0).contiguous()
    relative_coords[:, :, 0] += wh - 1
    relative_coords[:, :, 1] += ww - 1
    relative_coords[:, :, 0] *= 2 * ww - 1
    index = torch.zeros(size=(wh * ww + 1,) * 2, dtype=relative_coords.dtype)
    index[1:, 1:] = relative_coords.sum(-1)
    index[0, 0:] = num_relative_distance - 3
    index[0:, 0] = num_relative_distance - 2
    index[0, 0] = num_relative_distance - 1
    return index


def mmseg_mae_forward(sd, x, out_indices):
    """``MAE.forward``: patch embedding, cls token, + pos_embed, then each layer
    ``x + gamma_1 * attn(ln1(x))``, ``x + gamma_2 * ffn(ln2(x))`` with BEiT's attention (scaled q, + the bias table
    gathered by the index), the maps after ``out_indices`` without the cls token as NCHW."""
    x = F.conv2d(x, sd['patch_embed.projection.weight'], sd['patch_embed.projection.bias'], stride=16)
    B, C, h, w = x.shape
    x = torch.cat([sd['cls_token'].expand(B, -1, -1), x.flatten(2).transpose(1, 2)], 1) + sd['pos_embed']
    outs = []
    for i in range(L):
        p = f'layers.{i}.'
        y = F.layer_norm(x, (C,), sd[p + 'ln1.weight'], sd[p + 'ln1.bias'], 1e-6)
        N = y.shape[1]
        q, k, v = F.linear(y, sd[p + 'attn.qkv.weight'], sd[p + 'attn.qkv.bias']).reshape(B, N, 3, H, -1) \
            .permute(2, 0, 3, 1, 4)
        attn = (q * (C // H) ** -0.5) @ k.transpose(-2, -1)
        table, index = sd[p + 'attn.relative_position_bias_table'], sd[p + 'attn.relative_position_index']
        attn = attn + table[index.view(-1)].view(N, N, -1).permute(2, 0, 1).unsqueeze(0)
        y = (attn.softmax(-1) @ v).transpose(1, 2).reshape(B, N, C)
        x = x + sd[p + 'gamma_1'] * F.linear(y, sd[p + 'attn.proj.weight'], sd[p + 'attn.proj.bias'])
        y = F.layer_norm(x, (C,), sd[p + 'ln2.weight'], sd[p + 'ln2.bias'], 1e-6)
        y = F.linear(F.gelu(F.linear(y, sd[p + 'ffn.layers.0.0.weight'], sd[p + 'ffn.layers.0.0.bias'])),
                     sd[p + 'ffn.layers.1.weight'], sd[p + 'ffn.layers.1.bias'])
        x = x + sd[p + 'gamma_2'] * y
        if i in out_indices:
            outs.append(x[:, 1:].reshape(B, h, w, C).permute(0, 3, 1, 2))
    return outs


def mmseg_heads_layout(num_classes, channels, aux_channels):
    """``Feature2Pyramid(rescales=[4, 2, 1, 0.5])`` (upsample_4x: ConvT, BN, GELU, ConvT; upsample_2x: ConvT),
    ``UPerHead`` (psp_modules = PPM of (pool, ConvModule), bottleneck, lateral_convs, fpn_convs, fpn_bottleneck,
    conv_seg) and ``FCNHead(num_convs=1, concat_input=False)``; ConvModule = conv (no bias) + bn."""
    bn = lambda p, c: {p + 'weight': (c,), p + 'bias': (c,), p + 'running_mean': (c,), p + 'running_var': (c,),
                       p + 'num_batches_tracked': ()}
    conv_module = lambda p, cin, cout, k: {p + 'conv.weight': (cout, cin, k, k), **bn(p + 'bn.', cout)}
    out = {'neck.upsample_4x.0.weight': (D, D, 2, 2), 'neck.upsample_4x.0.bias': (D,), **bn('neck.upsample_4x.1.', D),
           'neck.upsample_4x.3.weight': (D, D, 2, 2), 'neck.upsample_4x.3.bias': (D,),
           'neck.upsample_2x.0.weight': (D, D, 2, 2), 'neck.upsample_2x.0.bias': (D,)}
    for i in range(4):  # pool scales (1, 2, 3, 6)
        out.update(conv_module(f'decode_head.psp_modules.{i}.1.', D, channels, 1))
    out.update(conv_module('decode_head.bottleneck.', D + 4 * channels, channels, 3))
    for i in range(3):
        out.update(conv_module(f'decode_head.lateral_convs.{i}.', D, channels, 1))
        out.update(conv_module(f'decode_head.fpn_convs.{i}.', channels, channels, 3))
    out.update(conv_module('decode_head.fpn_bottleneck.', 4 * channels, channels, 3))
    out.update({'decode_head.conv_seg.weight': (num_classes, channels, 1, 1), 'decode_head.conv_seg.bias': (num_classes,)})
    out.update(conv_module('auxiliary_head.convs.0.', D, aux_channels, 3))
    out.update({'auxiliary_head.conv_seg.weight': (num_classes, aux_channels, 1, 1),
                'auxiliary_head.conv_seg.bias': (num_classes,)})
    return out


def test_beit_index_is_mmsegs():
    from mae_core.vit import beit_relative_position_index as ours
    for wh, ww in ((3, 3), (4, 6), (32, 32)):
        assert torch.equal(ours(wh, ww), beit_relative_position_index(wh, ww))


def test_a_pretrained_encoder_exported_to_mmseg_loads_strictly_and_computes_what_it_did(tmp_path):
    torch.manual_seed(0)
    pretrained = vit('vit_toy_patch16', img_size=224)
    src = ck.save_ours(tmp_path / 'ours.pth', pretrained.state_dict(), dict(arch='vit_toy_patch16', num_heads=H))
    sd = torch.load(ck.export(src, tmp_path / 'mmseg.pth', 'mmseg'), weights_only=True)['state_dict']
    assert shapes(sd) == mmseg_mae_layout()
    ours = vit('vit_toy_patch16', img_size=512, rel_pos='bias', layer_scale_init=1.0).eval()
    ck.load_into(ours, pretrained.state_dict())
    x = torch.randn(1, 3, 512, 512)
    with torch.no_grad():
        for a, b in zip(ours.forward_intermediates(x, (0, 1)), mmseg_mae_forward(sd, x, (0, 1))):
            assert (a - b).abs().max() <= 1e-5 * b.abs().max()


def test_a_trained_segmenter_exported_to_mmseg_loads_strictly_into_backbone_neck_and_heads(tmp_path):
    torch.manual_seed(0)
    backbone = vit('vit_toy_patch16', img_size=512, rel_pos='bias', layer_scale_init=1.0)
    model = UperNetViT(backbone, (0, 0, 1, 1), 150, channels=32, aux_channels=16).eval()
    for name, p in model.named_parameters():  # trained values everywhere, bias tables and layer scale included
        p.data.normal_(0, 0.02 if p.ndim > 1 else 0.5)
    src = ck.save_ours(tmp_path / 'segmenter.pth', model.state_dict(),
                       dict(arch='vit_toy_patch16', task='ade20k_upernet', encoder_prefix='backbone.'))
    sd = torch.load(ck.export(src, tmp_path / 'mmseg.pth', 'mmseg'), weights_only=True)['state_dict']
    assert shapes(sd) == {**mmseg_mae_layout(prefix='backbone.'), **mmseg_heads_layout(150, 32, 16)}
    backbone_sd = {k[len('backbone.'):]: v for k, v in sd.items() if k.startswith('backbone.')}
    x = torch.randn(1, 3, 512, 512)
    with torch.no_grad():
        for a, b in zip(model.backbone.forward_intermediates(x, (0, 1)), mmseg_mae_forward(backbone_sd, x, (0, 1))):
            assert (a - b).abs().max() <= 1e-5 * b.abs().max()


# ==================================================================== detectron2 ViTDet
def vitdet_layout(img=1024, window=14, global_blocks=(1,), pretrain_grid=14):
    """``ViT(img_size, patch_size=16, embed_dim=D, depth=L, num_heads=H, use_rel_pos=True, window_size,
    window_block_indexes=the others, pretrain_img_size=224, pretrain_use_cls_token=True)`` under
    ``backbone.net.``: PatchEmbed.proj, pos_embed with the cls slot, per Block norm1, attn.qkv, attn.proj,
    attn.rel_pos_h/w (2 * input_size - 1, head_dim; input_size the window, or the image grid in global blocks),
    norm2, mlp.fc1/fc2 (timm's Mlp)."""
    out = {'patch_embed.proj.weight': (D, 3, 16, 16), 'patch_embed.proj.bias': (D,),
           'pos_embed': (1, 1 + pretrain_grid ** 2, D)}
    for i in range(L):
        p, size = f'blocks.{i}.', (img // 16 if i in global_blocks else window)
        out.update({p + 'norm1.weight': (D,), p + 'norm1.bias': (D,), p + 'attn.qkv.weight': (3 * D, D),
                    p + 'attn.qkv.bias': (3 * D,), p + 'attn.proj.weight': (D, D), p + 'attn.proj.bias': (D,),
                    p + 'attn.rel_pos_h': (2 * size - 1, D // H), p + 'attn.rel_pos_w': (2 * size - 1, D // H),
                    p + 'norm2.weight': (D,), p + 'norm2.bias': (D,), p + 'mlp.fc1.weight': (4 * D, D),
                    p + 'mlp.fc1.bias': (4 * D,), p + 'mlp.fc2.weight': (D, 4 * D), p + 'mlp.fc2.bias': (D,)})
    return {f'backbone.net.{k}': v for k, v in out.items()}


def simple_feature_pyramid_layout(out=256):
    """``SimpleFeaturePyramid(scale_factors=(4.0, 2.0, 1.0, 0.5), norm='LN')``: simfp_2 = ConvT, LN, GELU, ConvT,
    Conv2d(norm), Conv2d(norm); simfp_3 = ConvT, Conv, Conv; simfp_4 = Conv, Conv; simfp_5 = MaxPool, Conv, Conv
    (detectron2's Conv2d with a norm has ``weight`` and ``norm.weight/bias``, no bias)."""
    conv = lambda p, cin, cout, k: {p + 'weight': (cout, cin, k, k), p + 'norm.weight': (cout,), p + 'norm.bias': (cout,)}
    convt = lambda p, cin, cout: {p + 'weight': (cin, cout, 2, 2), p + 'bias': (cout,)}
    s = 'backbone.simfp_'
    return {**convt(s + '2.0.', D, D // 2), s + '2.1.weight': (D // 2,), s + '2.1.bias': (D // 2,),
            **convt(s + '2.3.', D // 2, D // 4), **conv(s + '2.4.', D // 4, out, 1), **conv(s + '2.5.', out, out, 3),
            **convt(s + '3.0.', D, D // 2), **conv(s + '3.1.', D // 2, out, 1), **conv(s + '3.2.', out, out, 3),
            **conv(s + '4.0.', D, out, 1), **conv(s + '4.1.', out, out, 3),
            **conv(s + '5.1.', D, out, 1), **conv(s + '5.2.', out, out, 3)}


def vitdet_forward(sd, x, window, global_blocks):
    """``ViT.forward``: PatchEmbed (NHWC), + ``get_abs_pos`` (the cls slot dropped, bicubic, align_corners=False),
    then each ``Block.forward`` (norm1, pad to the window, attention with ``add_decomposed_rel_pos``, unpad,
    residual; mlp), the last map as NCHW."""
    x = F.conv2d(x, sd['patch_embed.proj.weight'], sd['patch_embed.proj.bias'], stride=16).permute(0, 2, 3, 1)
    B, h, w, C = x.shape
    pos = sd['pos_embed'][:, 1:]
    size = int(math.sqrt(pos.shape[1]))
    x = x + F.interpolate(pos.reshape(1, size, size, -1).permute(0, 3, 1, 2), size=(h, w), mode='bicubic',
                          align_corners=False).permute(0, 2, 3, 1)
    for i in range(L):
        p = f'blocks.{i}.'
        shortcut = x
        y = F.layer_norm(x, (C,), sd[p + 'norm1.weight'], sd[p + 'norm1.bias'], 1e-6)
        ws = 0 if i in global_blocks else window
        if ws:
            pad_h, pad_w = (ws - h % ws) % ws, (ws - w % ws) % ws
            y = F.pad(y, (0, 0, 0, pad_w, 0, pad_h))
            Hp, Wp = h + pad_h, w + pad_w
            y = y.view(B, Hp // ws, ws, Wp // ws, ws, C).permute(0, 1, 3, 2, 4, 5).contiguous().view(-1, ws, ws, C)
        b, qh, qw, _ = y.shape
        qkv = F.linear(y, sd[p + 'attn.qkv.weight'], sd[p + 'attn.qkv.bias']).reshape(b, qh * qw, 3, H, -1) \
            .permute(2, 0, 3, 1, 4)
        q, k, v = qkv.reshape(3, b * H, qh * qw, -1).unbind(0)
        attn = (q * (C // H) ** -0.5) @ k.transpose(-2, -1)
        rel = lambda n, table: table[(torch.arange(n)[:, None] - torch.arange(n)[None, :]) + (n - 1)]  # get_rel_pos
        r_q = q.reshape(b * H, qh, qw, -1)
        rel_h = torch.einsum('bhwc,hkc->bhwk', r_q, rel(qh, sd[p + 'attn.rel_pos_h']))
        rel_w = torch.einsum('bhwc,wkc->bhwk', r_q, rel(qw, sd[p + 'attn.rel_pos_w']))
        attn = (attn.view(b * H, qh, qw, qh, qw) + rel_h[:, :, :, :, None] + rel_w[:, :, :, None, :]) \
            .view(b * H, qh * qw, qh * qw)
        y = (attn.softmax(-1) @ v).view(b, H, qh, qw, -1).permute(0, 2, 3, 1, 4).reshape(b, qh, qw, -1)
        y = F.linear(y, sd[p + 'attn.proj.weight'], sd[p + 'attn.proj.bias'])
        if ws:
            y = y.view(B, Hp // ws, Wp // ws, ws, ws, -1).permute(0, 1, 3, 2, 4, 5).contiguous().view(B, Hp, Wp, -1)
            y = y[:, :h, :w].contiguous()
        x = shortcut + y
        z = F.layer_norm(x, (C,), sd[p + 'norm2.weight'], sd[p + 'norm2.bias'], 1e-6)
        x = x + F.linear(F.gelu(F.linear(z, sd[p + 'mlp.fc1.weight'], sd[p + 'mlp.fc1.bias'])),
                         sd[p + 'mlp.fc2.weight'], sd[p + 'mlp.fc2.bias'])
    return x.permute(0, 3, 1, 2)


def test_a_pretrained_encoder_exported_to_vitdet_lacks_only_the_relative_position_tables(tmp_path):
    """As ViTDet loads MAE weights (``pretrain_img_size=224``): every key and shape of its ViT but rel_pos_h/w."""
    torch.manual_seed(0)
    src = ck.save_ours(tmp_path / 'ours.pth', vit('vit_toy_patch16', img_size=224).state_dict(),
                       dict(arch='vit_toy_patch16'))
    sd = torch.load(ck.export(src, tmp_path / 'vitdet.pth', 'vitdet'), weights_only=True)['model']
    assert shapes(sd) == {k: v for k, v in vitdet_layout().items() if 'rel_pos' not in k}


def test_our_detection_backbone_is_detectrons_vit_and_a_trained_one_exports_strictly(tmp_path):
    """320 px (a 20 x 20 grid: windows of 14 pad it), block 1 global, random relative position tables; the
    encoder keeps the 14 x 14 pre-training position table and resamples it every forward, as ViTDet does."""
    torch.manual_seed(0)
    encoder = vit('vit_toy_patch16', img_size=320, window_size=14, global_blocks=(1,), rel_pos='decomposed',
                  pos_grid=(14, 14), learnable_pos=True).eval()
    for blk in encoder.blocks:
        blk.attn.rel_pos_h.data.normal_(), blk.attn.rel_pos_w.data.normal_()
        blk.norm1.bias.data.normal_()
    pyramid = SimpleFeaturePyramid(encoder, out_channels=32)
    src = ck.save_ours(tmp_path / 'detector.pth', {f'detector.backbone.{k}': v for k, v in pyramid.state_dict().items()},
                       dict(arch='vit_toy_patch16', task='coco_maskrcnn', encoder_prefix='detector.backbone.vit.'))
    sd = torch.load(ck.export(src, tmp_path / 'vitdet.pth', 'vitdet'), weights_only=True)['model']
    assert shapes(sd) == {**vitdet_layout(img=320), **simple_feature_pyramid_layout(32)}
    net = {k[len('backbone.net.'):]: v for k, v in sd.items() if k.startswith('backbone.net.')}
    x = torch.randn(1, 3, 320, 320)
    with torch.no_grad():
        ours, = encoder.forward_intermediates(x)
        reference = vitdet_forward(net, x, 14, (1,))
    assert (ours - reference).abs().max() <= 1e-5 * reference.abs().max()


def simple_feature_pyramid_forward(sd, feature, out=32):
    """``SimpleFeaturePyramid.forward`` with scale factors (4, 2, 1, 0.5), ``norm='LN'`` and ``LastLevelMaxPool``
    (detectron2 ``modeling/backbone/vit.py``, ``fpn.py``): each stage's layers in order on the last map; detectron2's
    channels-first LayerNorm (eps 1e-6); p6 = max_pool2d(p5, kernel 1, stride 2)."""
    def ln(x, p):
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) / torch.sqrt(s + 1e-6)
        return sd[p + 'weight'][:, None, None] * x + sd[p + 'bias'][:, None, None]

    conv = lambda x, p, k: ln(F.conv2d(x, sd[p + 'weight'], padding=k // 2), p + 'norm.')
    convt = lambda x, p: F.conv_transpose2d(x, sd[p + 'weight'], sd[p + 'bias'], stride=2)
    s = 'backbone.simfp_'
    p2 = convt(F.gelu(ln(convt(feature, s + '2.0.'), s + '2.1.')), s + '2.3.')
    p2 = conv(conv(p2, s + '2.4.', 1), s + '2.5.', 3)
    p3 = conv(conv(convt(feature, s + '3.0.'), s + '3.1.', 1), s + '3.2.', 3)
    p4 = conv(conv(feature, s + '4.0.', 1), s + '4.1.', 3)
    p5 = conv(conv(F.max_pool2d(feature, 2, 2), s + '5.1.', 1), s + '5.2.', 3)
    return [p2, p3, p4, p5, F.max_pool2d(p5, kernel_size=1, stride=2, padding=0)]


def test_our_pyramid_is_detectrons_simple_feature_pyramid(tmp_path):
    torch.manual_seed(0)
    encoder = vit('vit_toy_patch16', img_size=128, window_size=4, global_blocks=(1,), rel_pos='decomposed')
    pyramid = SimpleFeaturePyramid(encoder, out_channels=32).eval()
    for name, p in pyramid.named_parameters():
        if not name.startswith('vit.'):
            p.data.normal_(0, 0.2)
    sd = {f'backbone.{k}': v for k, v in pyramid.state_dict().items()}
    x = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        ours = list(pyramid(x).values())
        reference = simple_feature_pyramid_forward(sd, encoder.forward_intermediates(x)[0])
    for a, b in zip(ours, reference):
        assert a.shape == b.shape and (a - b).abs().max() <= 1e-5 * b.abs().max()


# ==================================================================== round trips: exports read back
def test_vitdet_and_mmseg_exports_of_a_pretrained_encoder_read_back_through_load_encoder(tmp_path):
    """A user who fine-tuned in detectron2 or mmsegmentation brings the backbone back: every block weight comes
    back exactly; ViTDet has no cls token (read back as zeros) and mmsegmentation's table is its 32 x 32 one
    (resampled again to the benchmark's grid when a model is built)."""
    torch.manual_seed(0)
    pretrained = vit('vit_toy_patch16', img_size=224)
    for p in pretrained.parameters():
        p.data.normal_()
    original = pretrained.state_dict()
    src = ck.save_ours(tmp_path / 'ours.pth', original, dict(arch='vit_toy_patch16', num_heads=H))
    blocks = {k: v for k, v in original.items() if k.startswith(('blocks.', 'patch_embed.'))}
    for to in ('vitdet', 'mmseg'):
        sd, info = ck.load_encoder(ck.export(src, tmp_path / f'{to}.pth', to))
        assert info['format'] == to and info['arch'] == 'vit_toy_patch16'
        assert set(sd) == set(blocks) | {'cls_token', 'pos_embed'}, to  # no norm.*: neither layout has one
        assert all(torch.equal(sd[k], v) for k, v in blocks.items()), to
        handle = ck.open_checkpoint(tmp_path / f'{to}.pth')
        model = handle.build(img_size=224)  # a classification benchmark's encoder builds from it
        assert torch.equal(model.blocks[1].mlp.fc2.weight, original['blocks.1.mlp.fc2.weight'])
    vitdet_sd, _ = ck.load_encoder(tmp_path / 'vitdet.pth')
    assert torch.equal(vitdet_sd['pos_embed'], original['pos_embed'])
    assert not vitdet_sd['cls_token'].any()
    mmseg_sd, _ = ck.load_encoder(tmp_path / 'mmseg.pth')
    assert torch.equal(mmseg_sd['cls_token'], original['cls_token'])
    assert mmseg_sd['pos_embed'].shape == (1, 1 + 32 * 32, D)


def test_trained_task_weights_read_back_and_go_only_where_they_have_a_place(tmp_path):
    """A segmenter's trained bias tables and layer scales come back from the mmseg file and load into the
    segmentation encoder; a classification encoder has no place for them, which is one error naming the key."""
    torch.manual_seed(0)
    backbone = vit('vit_toy_patch16', img_size=512, rel_pos='bias', layer_scale_init=1.0)
    model = UperNetViT(backbone, (0, 0, 1, 1), 150, channels=32, aux_channels=16)
    for p in model.parameters():
        p.data.normal_(0, 0.5)
    src = ck.save_ours(tmp_path / 'segmenter.pth', model.state_dict(),
                       dict(arch='vit_toy_patch16', task='ade20k_upernet', encoder_prefix='backbone.'))
    handle = ck.open_checkpoint(ck.export(src, tmp_path / 'mmseg.pth', 'mmseg'))
    again = handle.build(img_size=512, rel_pos='bias', layer_scale_init=1.0)
    trained = {k: v for k, v in backbone.state_dict().items() if not k.startswith('norm.')}
    assert all(torch.equal(again.state_dict()[k], v) for k, v in trained.items())
    with pytest.raises(ck.CheckpointError, match=r"key 'blocks\.0\.attn\.relative_position_bias_table' holds "
                                                 'weights a task added'):
        handle.build(img_size=224)
