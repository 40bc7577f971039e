"The pipeline's optional `mask_decoder` component (issue 7): used for the mask decode, saved and loaded, checked against the VAE."
import json
import pytest
import torch

from digseg.latents import decode_mask
from digseg.mask_decoder import MaskDecoder
from digseg.pipeline import build_tiny_pipeline
from digseg.pipeline import DiGSegPipeline

CLASSES = ["red circle", "blue star"]


@pytest.fixture(scope="module")
def pipe(): return build_tiny_pipeline()


@pytest.fixture(scope="module")
def img(): return torch.rand(1, 3, 37, 53, generator=torch.Generator().manual_seed(0))


def run(pipe, img, **kw):
    return pipe(img, classes=CLASSES, ensemble_size=2, generator=torch.Generator().manual_seed(0), **kw)


class ConstantDecoder(MaskDecoder):
    "Decodes every latent to a mask of 0.25: shows which decoder the pipeline used."
    @torch.no_grad()
    def decode(self, latent, size=None):
        f = self.config.scale_factor
        H, W = size or (latent.shape[-2]*f, latent.shape[-1]*f)
        return torch.full((len(latent), H, W), 0.25)


def vae_as_mask_decoder(vae):
    "A MaskDecoder that reproduces the VAE decode exactly (the VAE is kept out of its modules)."
    class VAEDecoder(MaskDecoder):
        @torch.no_grad()
        def decode(self, latent, size=None): return decode_mask(vae, latent, size)
    return VAEDecoder.for_vae(vae, width=4, min_width=4)


def test_default_has_no_mask_decoder_and_uses_the_vae(pipe):
    assert pipe.mask_decoder is None and pipe.config.mask_decoder == (None, None)


def test_probabilities_come_from_the_mask_decoder(pipe, img):
    ref = run(pipe, img)
    pipe.mask_decoder = ConstantDecoder.for_vae(pipe.vae, width=4, min_width=4)
    try: out = run(pipe, img)
    finally: pipe.mask_decoder = None
    torch.testing.assert_close(out.probabilities, torch.full_like(out.probabilities, 0.25))
    assert not out.masks.any() and (out.labels == -1).all()         # 0.25 < tau = 0.7 everywhere
    torch.testing.assert_close(out.uncertainty, ref.uncertainty)     # the latent spread does not depend on the decoder
    assert torch.equal(run(pipe, img).probabilities, ref.probabilities)   # detached: back to the VAE


def test_a_decoder_reproducing_the_vae_gives_the_vae_maps(pipe, img):
    ref = run(pipe, img)
    pipe.register_modules(mask_decoder=vae_as_mask_decoder(pipe.vae))                           # diffusers' way of attaching works too
    try: out = run(pipe, img)
    finally: pipe.register_modules(mask_decoder=None)
    torch.testing.assert_close(out.probabilities, ref.probabilities, atol=1e-6, rtol=0)
    assert pipe.mask_decoder is None and pipe.config.mask_decoder == (None, None)


def test_constructor_argument(pipe, img):
    dec = MaskDecoder.for_vae(pipe.vae, width=8, min_width=4)
    p2 = DiGSegPipeline(**{k: getattr(pipe, k) for k in ("vae", "unet", "clip", "text_projection", "scheduler")}, mask_decoder=dec)
    assert p2.mask_decoder is dec and not dec.training
    assert p2.config.mask_decoder == ("digseg.mask_decoder", "MaskDecoder")
    zero = p2(img, classes=CLASSES, generator=torch.Generator().manual_seed(0))
    assert zero.probabilities.shape == (1, 2, 37, 53)


def test_save_and_load_keep_the_mask_decoder(pipe, img, tmp_path):
    pipe.mask_decoder = MaskDecoder.for_vae(pipe.vae, width=8, min_width=4)   # attached after construction
    try:
        ref = run(pipe, img)
        pipe.save_pretrained(tmp_path)
    finally: pipe.mask_decoder = None
    assert json.loads((tmp_path/"model_index.json").read_text())["mask_decoder"] == ["digseg.mask_decoder", "MaskDecoder"]
    assert (tmp_path/"mask_decoder"/"diffusion_pytorch_model.safetensors").is_file()
    loaded = DiGSegPipeline.from_pretrained(tmp_path)
    assert isinstance(loaded.mask_decoder, MaskDecoder) and loaded.mask_decoder.config.width == 8
    assert torch.equal(run(loaded, img).probabilities, ref.probabilities)
    # detached and saved again: the folder loads without one
    loaded.mask_decoder = None
    loaded.save_pretrained(tmp_path/"plain")
    assert not (tmp_path/"plain"/"mask_decoder").exists()
    assert DiGSegPipeline.from_pretrained(tmp_path/"plain").mask_decoder is None


def test_a_pipeline_saved_without_the_component_loads(pipe, tmp_path):
    "A folder written before the component existed has no 'mask_decoder' entry at all."
    pipe.save_pretrained(tmp_path)
    index = json.loads((tmp_path/"model_index.json").read_text()); index.pop("mask_decoder", None)
    (tmp_path/"model_index.json").write_text(json.dumps(index))
    loaded = DiGSegPipeline.from_pretrained(tmp_path)
    assert loaded.mask_decoder is None
    loaded.mask_decoder = MaskDecoder.for_vae(loaded.vae, width=4, min_width=4)     # and one can be attached to it
    assert loaded.config.mask_decoder == ("digseg.mask_decoder", "MaskDecoder")


def test_a_mismatched_decoder_is_refused(pipe):
    wrong_factor = MaskDecoder(latent_channels=4, scale_factor=8)   # the tiny VAE's factor is 4
    with pytest.raises(ValueError, match=r"`mask_decoder` \(latent_channels=4, scale_factor=8\) does not fit the VAE"):
        pipe.mask_decoder = wrong_factor
    with pytest.raises(ValueError, match="`mask_decoder`.*MaskDecoder.for_vae"):
        pipe.register_modules(mask_decoder=MaskDecoder(latent_channels=3, scale_factor=4))
    parts = {k: getattr(pipe, k) for k in ("vae", "unet", "clip", "text_projection", "scheduler")}
    with pytest.raises(ValueError, match="`mask_decoder`"):
        DiGSegPipeline(**parts, mask_decoder=wrong_factor)
    with pytest.raises(TypeError, match="`mask_decoder` must be a digseg.mask_decoder.MaskDecoder"):
        pipe.mask_decoder = torch.nn.Conv2d(4, 1, 1)
    assert pipe.mask_decoder is None and pipe.config.mask_decoder == (None, None)    # a refusal changes nothing


def test_attached_decoder_follows_the_vae_dtype(pipe):
    dec = MaskDecoder.for_vae(pipe.vae, width=4, min_width=4).to(torch.bfloat16)
    pipe.mask_decoder = dec
    try: assert next(pipe.mask_decoder.parameters()).dtype == pipe.vae.dtype and not pipe.mask_decoder.training
    finally: pipe.mask_decoder = None
