"Visual latent pathway: the input-conversion table, padding round trips, and an exact identity-VAE round trip."
from types import SimpleNamespace
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from digseg.latents import (image_to_tensor, mask_to_tensor, label_to_tensor, tensor_to_label, encode_image,
                            encode_mask, encode_pixels, decode_mask, decode_pixels, mask_roundtrip_stats,
                            pad_to_multiple, unpad, vae_scale_factor, roundtrip_stats)
from digseg.models import build_vae

RNG = np.random.default_rng(0)
RGB8 = RNG.integers(0, 256, (6, 5, 3), dtype=np.uint8)
GREY8 = RNG.integers(0, 256, (6, 5), dtype=np.uint8)
EXPECT_RGB = torch.from_numpy(RGB8).permute(2, 0, 1)[None].double()/255*2 - 1
EXPECT_GREY = (torch.from_numpy(GREY8)[None, None].double()/255*2 - 1).expand(1, 3, 6, 5)


@pytest.mark.parametrize("mode, make, expect", [
    ("RGB", lambda: Image.fromarray(RGB8, "RGB"), EXPECT_RGB),
    ("RGBA", lambda: Image.fromarray(np.dstack([RGB8, GREY8]), "RGBA"), EXPECT_RGB),           # alpha dropped
    ("L", lambda: Image.fromarray(GREY8, "L"), EXPECT_GREY),
    ("LA", lambda: Image.fromarray(np.dstack([GREY8, GREY8])), EXPECT_GREY),
    ("P", lambda: Image.fromarray(GREY8, "L").convert("P"), EXPECT_GREY),                  # palette -> RGB
    ("I;16", lambda: Image.fromarray(GREY8.astype(np.uint16)*257), EXPECT_GREY),     # 16-bit: /65535
    ("CMYK", lambda: Image.fromarray(RGB8, "RGB").convert("CMYK"), EXPECT_RGB),
    (None, lambda: RGB8, EXPECT_RGB),
    (None, lambda: np.dstack([RGB8, GREY8]), EXPECT_RGB),
    (None, lambda: GREY8, EXPECT_GREY),
    (None, lambda: GREY8[..., None], EXPECT_GREY),
    (None, lambda: GREY8.astype(np.uint16)*257, EXPECT_GREY),
    (None, lambda: RGB8.astype(np.float32)/255, EXPECT_RGB),
    (None, lambda: RGB8.astype(np.float64)/255, EXPECT_RGB),
    (None, lambda: torch.from_numpy(RGB8).permute(2, 0, 1).double()/255, EXPECT_RGB),      # torch CHW in [0, 1]
    (None, lambda: torch.from_numpy(RGB8).permute(2, 0, 1)[None].double()/255, EXPECT_RGB),
    (None, lambda: torch.from_numpy(RGB8).permute(2, 0, 1), EXPECT_RGB),                   # torch uint8 / 255
    (None, lambda: torch.from_numpy(GREY8)[None].double()/255, EXPECT_GREY),               # 1 channel replicated
])
def test_image_conversion_table(mode, make, expect):
    im = make()
    if isinstance(im, Image.Image): assert im.mode == mode       # the table really covers these PIL modes
    x = image_to_tensor(im, dtype=torch.float64)
    assert x.shape == (1, 3, 6, 5) and x.dtype == torch.float64
    torch.testing.assert_close(x, expect, atol=1e-6, rtol=0)    # CMYK round trip through PIL is exact for these values


def test_cmyk_and_palette_are_rgb():
    assert image_to_tensor(Image.new("CMYK", (3, 2), (0, 255, 255, 0))).shape == (1, 3, 2, 3)
    x = image_to_tensor(Image.new("CMYK", (3, 2), (0, 255, 255, 0)))       # pure red in CMYK
    torch.testing.assert_close(x[0, :, 0, 0], torch.tensor([1., -1., -1.]))


@pytest.mark.parametrize("bad, exc, msg", [
    (np.full((4, 4, 3), 1.5, np.float32), ValueError, "`image` values must be in [0, 1]"),
    (np.full((4, 4, 3), -0.1), ValueError, "`image` values must be in [0, 1]"),
    (np.full((4, 4), np.inf), ValueError, "NaN or infinite"),
    (torch.full((3, 4, 4), float("nan")), ValueError, "NaN or infinite"),
    (np.zeros((4, 4), np.int32), TypeError, "`image` numpy dtype"),
    (np.zeros((2, 4, 4, 3), np.uint8), ValueError, "pass a list for a batch"),
    (torch.zeros(3, 4, 4, dtype=torch.int64), TypeError, "`image` tensor dtype"),
    ([], ValueError, "empty list"),
    (None, TypeError, "`image` must be"),
    ({"a": 1}, TypeError, "`image` must be"),
])
def test_image_bad_inputs(bad, exc, msg):
    with pytest.raises(exc, match=None) as e: image_to_tensor(bad)
    assert msg in str(e.value)


def test_image_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.png"): image_to_tensor(tmp_path/"nope.png")
    (tmp_path/"x.jpg").write_bytes(b"\x00garbage")
    with pytest.raises(ValueError, match="x.jpg is not an image"): image_to_tensor(str(tmp_path/"x.jpg"))
    Image.fromarray(GREY8.astype(np.uint16)*257).save(tmp_path/"g16.png")
    torch.testing.assert_close(image_to_tensor(tmp_path/"g16.png", dtype=torch.float64), EXPECT_GREY, atol=1e-6, rtol=0)


@pytest.mark.parametrize("bad, exc, msg", [
    (np.full((3, 3), 255, np.uint8), ValueError, "`mask` values must be in [0, 1]"),
    (torch.full((3, 3), -0.5), ValueError, "`mask` values"),
    (torch.zeros(2, 3, 4, 4), ValueError, "`mask` must have shape"),
    (torch.zeros(4), ValueError, "`mask` must have shape"),
    ("mask.png", TypeError, "`mask` must be a torch.Tensor or numpy array"),
])
def test_mask_bad_inputs(bad, exc, msg):
    with pytest.raises(exc) as e: mask_to_tensor(bad)
    assert msg in str(e.value)


def test_mask_and_label_conventions():
    for m in (torch.ones(5, 6), torch.ones(1, 5, 6), torch.ones(1, 1, 5, 6), np.ones((5, 6), bool), torch.ones(5, 6, dtype=torch.int64)):
        torch.testing.assert_close(mask_to_tensor(m), torch.ones(1, 3, 5, 6))
    lab = torch.randint(0, 19, (2, 7, 9))
    t = label_to_tensor(lab, 19)
    assert t.shape == (2, 3, 7, 9) and t.min() >= -1 and t.max() <= 1
    assert torch.equal(tensor_to_label(t, 19), lab)
    with pytest.raises(ValueError, match=r"ids must be in \[0, 19\)"): label_to_tensor(lab + 1, 19)


@pytest.mark.parametrize("H, W", [(7, 13), (37, 53), (16, 16), (1, 1)])
def test_padding_roundtrip_sizes(H, W):
    vae = build_vae("tiny")
    f = vae_scale_factor(vae)
    img = torch.rand(2, 3, H, W)
    z = encode_image(vae, img)
    assert isinstance(z, torch.Tensor) and z.shape == (2, 4, -(-H//f), -(-W//f))   # padded, never cropped
    padded, pad = pad_to_multiple(img*2 - 1, f)
    assert torch.equal(unpad(padded, pad), img*2 - 1)
    ref = vae.encode(padded).latent_dist.mean*vae.config.scaling_factor     # diffusers directly
    torch.testing.assert_close(z, ref)
    assert decode_mask(vae, z, size=(H, W)).shape == (2, H, W)
    assert encode_mask(vae, torch.rand(H, W) > 0.5).shape == (1, 4, -(-H//f), -(-W//f))


class PixelShuffleVAE(torch.nn.Module):
    "A lossless stand-in for a diffusers VAE: space-to-depth encoder, depth-to-space decoder."
    def __init__(self, levels=3, scaling_factor=0.5):
        super().__init__()
        self.config = SimpleNamespace(block_out_channels=(1,)*levels, scaling_factor=scaling_factor)
        self.f = 2 ** (levels - 1)
        self.register_buffer("anchor", torch.zeros(()))
    dtype = property(lambda self: self.anchor.dtype)
    device = property(lambda self: self.anchor.device)
    def encode(self, x): return SimpleNamespace(latent_dist=SimpleNamespace(mean=F.pixel_unshuffle(x, self.f)))
    def decode(self, z): return SimpleNamespace(sample=F.pixel_shuffle(z, self.f))


def test_identity_vae_roundtrip_is_exact():
    vae = PixelShuffleVAE()
    masks = [(torch.rand(7, 13) > 0.5).float(), torch.rand(2, 37, 53)]
    st = mask_roundtrip_stats(vae, masks)
    assert st["n"] == 3
    assert st["mae"] == 0 and st["mae_std"] == 0 and st["channel_std"] == 0 and st["channel_range"] == 0
    assert st["per_mask"]["mae"] == [0.0, 0.0, 0.0]
    z = encode_mask(vae, masks[1])
    torch.testing.assert_close(decode_mask(vae, z, size=(37, 53)), masks[1], atol=1e-6, rtol=0)
    x = torch.rand(3, 3, 5, 6)*2 - 1
    st = roundtrip_stats(x, x.clone())                          # the pure function: decoded == original
    assert st["mae"] == 0 and st["mae_std"] == 0 and st["per_mask"]["mae"] == [0.0]*3
    lab = torch.randint(0, 150, (1, 9, 10))
    assert mask_roundtrip_stats(vae, lab, num_classes=150)["label_error"] == 0


def test_roundtrip_stats_float64_rederivation():
    "A VAE that adds a known per-channel offset: the statistics must equal a numpy float64 re-derivation."
    vae = PixelShuffleVAE()
    offset = torch.tensor([0.0, 0.01, -0.02]).view(1, 3, 1, 1)
    vae.decode = lambda z: SimpleNamespace(sample=F.pixel_shuffle(z, vae.f) + offset)
    m = torch.rand(10, 12, dtype=torch.float64)
    st = mask_roundtrip_stats(vae, [m])
    o = np.repeat((m.numpy()*2 - 1)[None], 3, 0)
    d = (o.astype(np.float32) + offset.numpy()[0]).astype(np.float64)
    assert np.isclose(st["mae"], np.abs(d - o).mean(), atol=1e-6)
    assert np.isclose(st["channel_std"], d.std(0).mean(), atol=1e-6)
    assert np.isclose(st["channel_range"], (d.max(0) - d.min(0)).mean(), atol=1e-6)


def test_decode_checks():
    vae = build_vae("tiny")
    with pytest.raises(TypeError, match="`latent` must be a torch.Tensor"): decode_mask(vae, "z")
    with pytest.raises(ValueError, match="`size` must be"): decode_pixels(vae, torch.zeros(1, 4, 2, 2), size=(4,))
    with pytest.raises(ValueError, match="`pixels`"): encode_pixels(vae, torch.zeros(1, 3, 4, 4) + 3)


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_inputs_are_cast_to_the_vae_dtype(dtype):
    vae = build_vae("tiny").to(dtype)
    img = torch.rand(1, 3, 9, 10)
    z = encode_image(vae, img)
    assert z.dtype == dtype and z.device == vae.device
    ref = vae.encode(pad_to_multiple((img*2 - 1).to(dtype), 4)[0]).latent_dist.mean*vae.config.scaling_factor
    torch.testing.assert_close(z, ref)
    m = decode_mask(vae, z, size=(9, 10))
    assert m.dtype == torch.float32 and m.shape == (1, 9, 10)
