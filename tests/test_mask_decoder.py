"The cheap mask decoder (issue 7): decode_mask's contract, sizing for a VAE, FLOPs, distillation, agreement, bad inputs."
import pytest
import torch

from digseg.models import build_vae
from digseg.latents import decode_mask, encode_mask
from digseg.mask_decoder import (MaskDecoder, MaskDecoderDistillation, decoder_flops, mask_decoder_agreement,
                                 mini_world_masks, train_mask_decoder)


@pytest.fixture(scope="module")
def vae(): return build_vae("tiny")


@pytest.mark.parametrize("h,w,size", [(4, 4, None), (5, 7, (17, 26)), (16, 16, (64, 64))])
def test_decode_has_decode_mask_contract(vae, h, w, size):
    dec = MaskDecoder.for_vae(vae, width=8, min_width=4)
    z = torch.randn(3, 4, h, w)
    m, ref = dec.decode(z, size=size), decode_mask(vae, z, size=size)
    assert m.shape == ref.shape and m.dtype == ref.dtype == torch.float32
    assert 0 <= m.min() and m.max() <= 1


def test_for_vae_matches_each_architecture():
    with torch.device("meta"):
        for arch, f in (("tiny", 4), ("mini", 4), ("sd2", 8)):
            d = MaskDecoder.for_vae(build_vae(arch, seed=None))
            assert d.config.scale_factor == f and d.config.latent_channels == 4
            assert d(torch.zeros(1, 4, 8, 8, device="meta")).shape == (1, 1, 8*f, 8*f)


def test_flops_far_below_the_vae_decoder_at_512():
    with torch.device("meta"):
        small, vae = MaskDecoder(), build_vae("sd2", seed=None)
    f_small, f_vae = decoder_flops(small, (1, 4, 64, 64)), decoder_flops(vae, (1, 4, 64, 64))
    assert 2e12 < f_vae < 3e12                     # SD2 VAE decode at 512², FlopCounterMode: 2.52 TFLOP
    assert f_vae / f_small > 500


def test_bf16_decoder_returns_float32(vae):
    dec = MaskDecoder.for_vae(vae, width=8).to(torch.bfloat16)
    assert dec.decode(torch.randn(1, 4, 4, 4)).dtype == torch.float32


def test_distillation_targets_and_gradients(vae):
    dec = MaskDecoder.for_vae(vae, width=8, min_width=4)
    masks = mini_world_masks(4)
    for target in ("vae", "mask"):
        loss = MaskDecoderDistillation(dec, vae, target=target, latent_jitter=0.2)({"mask": masks}, torch.Generator().manual_seed(0))["loss"]
        loss.backward()
        assert all(p.grad is not None for p in dec.parameters())
        assert not any(p.requires_grad for p in vae.parameters())
        dec.zero_grad()


def test_jitter_is_seeded(vae):
    dec = MaskDecoder.for_vae(vae, width=8, min_width=4)
    obj, masks = MaskDecoderDistillation(dec, vae, latent_jitter=0.5), mini_world_masks(2)
    a = obj({"mask": masks}, torch.Generator().manual_seed(3))["loss"]
    b = obj({"mask": masks}, torch.Generator().manual_seed(3))["loss"]
    c = obj({"mask": masks}, torch.Generator().manual_seed(4))["loss"]
    assert a == b and a != c


def test_train_then_agreement(vae, tmp_path):
    dec = train_mask_decoder(vae, tmp_path, steps=8, batch_size=4, width=8, min_width=4, world_size=16, target="mask")
    assert (tmp_path/"mask_decoder"/"config.json").is_file()
    back = MaskDecoder.from_pretrained(tmp_path/"mask_decoder")
    z = encode_mask(vae, mini_world_masks(2))
    assert torch.equal(back.decode(z), dec.decode(z))
    r = mask_decoder_agreement(dec, vae, mini_world_masks(6), threshold=0.5, latent_jitter=0.1, batch_size=4)
    assert r["n"] == 6 and 0 <= r["iou_vs_vae"] <= 1 and 0 <= r["pixel_agreement"] <= 1
    assert r["iou_loss"] == pytest.approx(r["iou_vae_vs_gt"] - r["iou_small_vs_gt"])


def test_agreement_of_a_decoder_with_itself_is_perfect(vae):
    "A 'small' decoder that is the VAE decoder agrees with it exactly."
    class Same(MaskDecoder):
        @torch.no_grad()
        def decode(self, latent, size=None): return decode_mask(vae, latent, size)
    r = mask_decoder_agreement(Same.for_vae(vae, width=4), vae, mini_world_masks(3))
    assert r["iou_vs_vae"] == 1.0 and r["pixel_agreement"] == 1.0 and r["iou_loss"] == 0.0


@pytest.mark.parametrize("kw,msg", [(dict(latent_channels=0), "latent_channels"), (dict(scale_factor=3), "power of 2"),
                                    (dict(width=0), "width"), (dict(min_width=-1), "min_width"), (dict(scale_factor=1.5), "scale_factor")])
def test_bad_config(kw, msg):
    with pytest.raises((ValueError, TypeError), match=msg): MaskDecoder(**kw)


def test_bad_inputs(vae):
    dec = MaskDecoder.for_vae(vae, width=8)
    with pytest.raises(ValueError, match="4 channels"): dec.decode(torch.randn(1, 8, 4, 4))
    with pytest.raises(ValueError, match="latent"): dec.decode(torch.randn(4, 4, 4))
    with pytest.raises(ValueError, match="size"): dec.decode(torch.randn(1, 4, 4, 4), size=(16,))
    with pytest.raises(TypeError, match="MaskDecoder"): MaskDecoderDistillation(torch.nn.Conv2d(4, 1, 1), vae)
    with pytest.raises(ValueError, match="for_vae"): MaskDecoderDistillation(MaskDecoder(latent_channels=8, scale_factor=4), vae)
    with pytest.raises(ValueError, match="latent_jitter"): MaskDecoderDistillation(dec, vae, latent_jitter=-1)
    with pytest.raises(ValueError, match="masks"): mask_decoder_agreement(dec, vae, torch.zeros(2, 1, 8, 8))
    with pytest.raises(ValueError, match="n"): mini_world_masks(0)
