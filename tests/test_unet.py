"U-Net adaptation (§3.3, §3.6, A.2): exact conv_in widening, save/load round trip, trainable groups counted independently, bad inputs."
import copy
import pytest
import torch
from torch import nn
from diffusers import UNet2DConditionModel

from digseg.models import build_unet
from digseg.unet import (widen_conv_in, unet_input, UNET_INPUT_ORDER, TRAINABLE_GROUPS, PAPER_A2_RESOLUTIONS,
                         trainable_parameter_names, set_trainable, block_downsampling)


def call(unet, x, seed=0):
    g = torch.Generator().manual_seed(seed)
    c = torch.randn(x.shape[0], 7, unet.config.cross_attention_dim, generator=g)
    with torch.no_grad():
        return unet(x, torch.tensor([3, 500, 999][:x.shape[0]]), encoder_hidden_states=c).sample


@pytest.mark.parametrize("k", [2, 3])
def test_widened_equals_original_on_repeated_input(k):
    orig = build_unet("tiny", seed=3)
    wide = widen_conv_in(copy.deepcopy(orig), 4*k)
    z = torch.randn(3, 4, 16, 16, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(call(wide, torch.cat([z]*k, 1)), call(orig, z), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(wide.conv_in.weight.sum(1), orig.conv_in.weight.sum(1), atol=1e-6, rtol=0)
    if k == 2: assert torch.equal(wide.conv_in.weight[:, :4] * 2, orig.conv_in.weight)   # halving is exact in floating point
    else: torch.testing.assert_close(wide.conv_in.weight[:, :4] * k, orig.conv_in.weight)
    assert wide.config.in_channels == 4*k and wide.conv_in.in_channels == 4*k


def test_widen_keeps_dtype_device_and_grad_flag():
    u = build_unet("tiny").to(torch.bfloat16)
    u.conv_in.requires_grad_(False)
    widen_conv_in(u)
    assert u.conv_in.weight.dtype == torch.bfloat16 and not u.conv_in.weight.requires_grad
    with torch.device("meta"):
        sd2 = widen_conv_in(build_unet("sd2", seed=None))
    assert sd2.conv_in.weight.shape == (320, 8, 3, 3) and sd2.conv_in.weight.is_meta


def test_save_and_reload_widened(tmp_path):
    wide = widen_conv_in(build_unet("tiny"))
    wide.save_pretrained(tmp_path)
    back = UNet2DConditionModel.from_pretrained(tmp_path)
    assert back.config.in_channels == 8 and back.conv_in.in_channels == 8
    x = torch.randn(2, 8, 16, 16)
    assert torch.equal(call(back, x), call(wide, x))
    with pytest.raises(ValueError, match="already widened"): widen_conv_in(back)


def _swapped_conv_in():
    u = build_unet("tiny"); u.conv_in = nn.Conv2d(8, u.conv_in.out_channels, 3, padding=1)
    return u


@pytest.mark.parametrize("make, kw, exc, msg", [
    (lambda: widen_conv_in(build_unet("tiny")), {}, ValueError, "already widened"),
    (lambda: build_unet("tiny"), dict(in_channels=6), ValueError, "`in_channels` must be a multiple of the current 4"),
    (lambda: build_unet("tiny"), dict(in_channels=4), ValueError, "`in_channels` must be >= 5"),
    (lambda: build_unet("tiny"), dict(in_channels=8.0), TypeError, "`in_channels` must be an integer"),
    (lambda: nn.Conv2d(4, 4, 3), {}, TypeError, "`unet` must have a `conv_in`"),
    (lambda: build_unet("tiny"), dict(in_channels=0), ValueError, "`in_channels` must be >= 5"),
    (lambda: build_unet("tiny"), dict(in_channels=-8), ValueError, "`in_channels` must be >= 5"),
    (lambda: _swapped_conv_in(), {}, ValueError, "config says in_channels=4"),
])
def test_widen_bad_inputs(make, kw, exc, msg):
    with pytest.raises(exc) as e: widen_conv_in(make(), **kw)
    assert msg in str(e.value)


def test_unet_input_order_and_checks():
    zx, zy = torch.randn(2, 4, 6, 6), torch.randn(2, 4, 6, 6)
    assert UNET_INPUT_ORDER == ("image_latent", "noisy_mask_latent")
    x = unet_input(zx, zy)
    assert torch.equal(x, torch.cat([zx, zy], 1))
    for args, exc, msg in [((zx, zy[:, :3]), ValueError, "must have the same shape"),
                           ((zx[0], zy), ValueError, "`image_latent` must have rank 4"),
                           ((zx, zy.int()), TypeError, "`noisy_mask_latent` must be a floating-point"),
                           ((zx.numpy(), zy), TypeError, "`image_latent` must be a torch.Tensor")]:
        with pytest.raises(exc) as e: unet_input(*args)
        assert msg in str(e.value)


def _hand_count_a2(unet):
    "Independent count by walking modules: conv_in, the mid block's transformers, attn2+norm2 of transformers in down_blocks[2] and up_blocks[1]."
    mods = [unet.conv_in, unet.mid_block.attentions]
    for blk in (unet.down_blocks[2], unet.up_blocks[1]):
        for tr in blk.attentions:
            for tb in tr.transformer_blocks: mods += [tb.attn2, tb.norm2]
    return sum(p.numel() for m in mods for p in m.parameters())


def test_block_downsampling_same_layout_tiny_and_sd2():
    with torch.device("meta"):
        sd2 = build_unet("sd2", seed=None)
    assert block_downsampling(build_unet("tiny")) == block_downsampling(sd2) == {
        "down_blocks.0": 1, "down_blocks.1": 2, "down_blocks.2": 4, "down_blocks.3": 8, "mid_block": 8,
        "up_blocks.0": 8, "up_blocks.1": 4, "up_blocks.2": 2, "up_blocks.3": 1}


def test_group_counts_tiny():
    u = widen_conv_in(build_unet("tiny"))
    by_name = dict(u.named_parameters())
    a2 = trainable_parameter_names(u, "paper_a2")
    assert sum(by_name[n].numel() for n in a2) == _hand_count_a2(u)
    # by name pattern, written out independently of the module's regex
    pat = [n for n in by_name if n.startswith("conv_in.") or n.startswith("mid_block.attentions.")
           or (n.split(".")[0:2] in (["down_blocks", "2"], ["up_blocks", "1"]) and n.split(".")[2] == "attentions" and n.split(".")[4] == "transformer_blocks"
               and n.split(".")[6] in ("attn2", "norm2"))]
    assert sorted(a2) == sorted(pat)
    assert trainable_parameter_names(u, "full") == list(by_name)
    assert PAPER_A2_RESOLUTIONS == (4, 8) and TRAINABLE_GROUPS == ("full", "paper_a2")


def test_resolutions_parameter_selects_other_scales():
    u = build_unet("tiny")
    names = trainable_parameter_names(u, "paper_a2", resolutions=(1,))
    rest = [n for n in names if not n.startswith(("conv_in.", "mid_block.attentions."))]
    assert rest and all(n.startswith(("down_blocks.0.", "up_blocks.3.")) for n in rest)
    assert all(".attn2." in n or ".norm2." in n for n in rest)


@pytest.mark.parametrize("group", TRAINABLE_GROUPS)
def test_backward_only_reaches_trainable(group):
    u = widen_conv_in(build_unet("tiny"))
    proj = nn.Sequential(nn.Linear(16, 32), nn.GELU(), nn.Linear(32, 32))
    proj.requires_grad_(False)
    params = set_trainable(u, group, extra_modules=[proj])
    assert len({id(p) for p in params}) == len(params)
    names = set(trainable_parameter_names(u, group))
    assert {n for n, p in u.named_parameters() if p.requires_grad} == names
    x = unet_input(torch.randn(2, 4, 16, 16), torch.randn(2, 4, 16, 16))
    out = u(x, torch.tensor([1, 900]), encoder_hidden_states=proj(torch.randn(2, 5, 16))).sample
    out.square().mean().backward()
    for n, p in u.named_parameters():
        assert (p.grad is not None) == (n in names), n
    assert all(p.grad is not None for p in proj.parameters())
    assert sum(p.numel() for p in params) == sum(p.numel() for n, p in u.named_parameters() if n in names) + sum(p.numel() for p in proj.parameters())


def test_set_trainable_refreezes():
    u = build_unet("tiny")
    set_trainable(u, "full")
    set_trainable(u, "paper_a2")
    assert {n for n, p in u.named_parameters() if p.requires_grad} == set(trainable_parameter_names(u, "paper_a2"))


def test_sd2_size_counts():
    with torch.device("meta"):
        u = widen_conv_in(build_unet("sd2", seed=None))
    n_all = sum(p.numel() for p in u.parameters())
    n_a2 = sum(p.numel() for p in set_trainable(u, "paper_a2"))
    print(f"SD2 paper_a2: {n_a2/1e6:.1f} M of {n_all/1e6:.1f} M ({n_a2/n_all:.1%})")
    assert 860e6 < n_all < 870e6
    assert n_a2 == _hand_count_a2(u)
    assert 0.03 < n_a2/n_all < 0.15


@pytest.mark.parametrize("kw, exc, msg", [
    (dict(group="lora"), ValueError, "`group` must be one of ('full', 'paper_a2')"),
    (dict(group="paper_a2", resolutions=(0,)), ValueError, "`resolutions` must be >= 1"),
    (dict(group="paper_a2", resolutions=(4.0,)), TypeError, "`resolutions` must be an integer"),
    (dict(group="paper_a2", extra_modules=[torch.zeros(2)]), TypeError, "`extra_modules` must hold torch.nn.Modules"),
])
def test_set_trainable_bad_inputs(kw, exc, msg):
    with pytest.raises(exc) as e: set_trainable(build_unet("tiny"), **kw)
    assert msg in str(e.value)
