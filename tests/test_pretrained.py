"""The shipped mini foundation models (pretrained/): each folder loads with the ecosystem's own loaders and with
digseg's, has the shapes and dtypes the mini profile expects, runs a forward pass, and its model card states
exactly the numbers of benchmarks/results/prior_quality.json."""
import json, sys
from pathlib import Path
import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
PRE = ROOT/"pretrained"
sys.path.insert(0, str(ROOT/"benchmarks"))


def test_mini_vae_round_trips_a_mask():
    from diffusers import AutoencoderKL
    from digseg.latents import encode_mask, decode_mask
    vae = AutoencoderKL.from_pretrained(PRE/"mini-sd", subfolder="vae").eval()
    assert vae.dtype == torch.float32 and vae.config.latent_channels == 4
    mask = torch.zeros(1, 64, 64); mask[:, 16:48, 20:44] = 1
    with torch.no_grad():
        z = encode_mask(vae, mask)
        assert z.shape == (1, 4, 16, 16)
        back = decode_mask(vae, z) > 0.5
    assert (back == (mask > 0.5)).float().mean() > 0.98


def test_mini_clip_loads_with_open_clip_and_digseg():
    import open_clip
    from digseg.text import ClipBackbone
    from digseg.components import MINI_CLIP_CONFIG
    clip = ClipBackbone.from_open_clip("custom", PRE/"mini-clip")
    assert clip.config.vision_cfg == MINI_CLIP_CONFIG["vision_cfg"] and clip.config.text_cfg == MINI_CLIP_CONFIG["text_cfg"]
    assert all(p.dtype == torch.float32 for p in clip.parameters())
    ref = open_clip.create_model(f"local-dir:{PRE/'mini-clip'}")
    tok = clip.tokenize(["A photo of a red circle", "A photo of a blue star"])
    states, pooled = clip.encode_text(tok)
    assert states.shape == (2, 32, 64) and pooled.shape == (2, 64)
    assert torch.allclose(ref.encode_text(tok, normalize=True), torch.nn.functional.normalize(pooled, dim=-1), atol=1e-5)
    glob, patches = clip.encode_image(clip.preprocess(torch.rand(1, 3, 64, 64)))
    assert glob.shape == (1, 64) and patches.shape == (1, 64, 64)


def test_mini_sd_unet_generates():
    "The text-to-image U-Net loads through load_sd2 (the SD2 loader) and predicts from CLIP token states."
    if not (PRE/"mini-sd"/"unet").is_dir(): pytest.skip("the mini-SD U-Net is still pretraining (pretrained/_runs/unet)")
    from digseg.models import load_sd2
    unet, vae, sched = load_sd2(PRE/"mini-sd")
    assert unet.config.in_channels == 4 and unet.config.cross_attention_dim == 64 and sched["prediction_type"] == "v_prediction"
    out = unet(torch.randn(1, 4, 16, 16), 500, encoder_hidden_states=torch.randn(1, 32, 64)).sample
    assert out.shape == (1, 4, 16, 16) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", ["mini-sd", "mini-clip"])
def test_model_card_states_the_measured_numbers(name):
    "Each card is exactly what prior_quality.py writes from the committed JSON: no number retyped by hand."
    import prior_quality as pq
    rec = json.loads((ROOT/"benchmarks"/"results"/"prior_quality.json").read_text())["runs"]["cpu"]
    card = (PRE/name/"MODEL_CARD.md").read_text()
    assert card == pq.model_card(name, rec, PRE, yaml.safe_load((ROOT/"configs"/"mini"/"prior.yaml").read_text()))
    for m in pq.CARD_MEASURES[name]:
        for k, v in rec.get(m, {}).items():
            if isinstance(v, float): assert f"| {m}.{k} | {v:.4f} |" in card
