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


def unshipped(name):
    "Skip a released model's test while it is not shipped (a release is committed only once it meets its targets)."
    if not (PRE/name).is_dir(): pytest.skip(f"pretrained/{name} is not released yet (benchmarks/results/prior_quality.json has its measures)")


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
    from digseg.models import load_sd2
    unet, vae, sched = load_sd2(PRE/"mini-sd")
    assert unet.config.in_channels == 4 and unet.config.cross_attention_dim == 64 and sched["prediction_type"] == "v_prediction"
    out = unet(torch.randn(1, 4, 16, 16), 500, encoder_hidden_states=torch.randn(1, 32, 64)).sample
    assert out.shape == (1, 4, 16, 16) and torch.isfinite(out).all()


def test_mini_sd_keeps_the_earlier_unets():
    "The U-Net at the steps prior.yaml names is kept as diffusers variants (DEDOS Table 4's SD 1.4 / 1.5 analogues)."
    from diffusers import UNet2DConditionModel
    from digseg.prior import PriorConfig, unet_variant_name, load_prior
    final = UNet2DConditionModel.from_pretrained(PRE/"mini-sd", subfolder="unet")
    for step in PriorConfig.from_yaml(ROOT/"configs"/"mini"/"prior.yaml").unet_variants:
        early, _, _ = load_prior(PRE, unet_variant=unet_variant_name(step))
        assert early.config == final.config and early.dtype == torch.float32
        assert not torch.equal(early.conv_in.weight, final.conv_in.weight)


def test_released_digseg_mini_segments():
    "pretrained/digseg-mini is a DiGSegPipeline folder: it loads with from_pretrained and segments a mini-world image."
    unshipped("digseg-mini")
    from digseg.pipeline import DiGSegPipeline
    from digseg.data import MiniWorld
    pipe = DiGSegPipeline.from_pretrained(PRE/"digseg-mini")
    assert pipe.unet.config.in_channels == 8 and pipe.unet.dtype == torch.float32
    item = MiniWorld("val", size=1, seed=7)[0]
    names = MiniWorld("val", size=1, seed=7).class_names
    present = [names[c] for c in item["label"].unique().tolist() if c > 0]
    out = pipe(item["image"][None], classes=present, num_inference_steps=1, generator=torch.Generator().manual_seed(0))
    assert out.labels.shape == (1, 64, 64) and set(out.labels.unique().tolist()) <= set(range(-1, len(present)))


def test_released_dedos_mini_segments():
    "pretrained/dedos-mini loads with load_dedos onto the shipped mini SD and CLIP and segments a mini-world image."
    unshipped("dedos-mini")
    from digseg.dedos_train import load_dedos, CONFIG_NAME
    from digseg.data import MiniWorld
    model = load_dedos(PRE/"dedos-mini")
    rec = json.loads((PRE/"dedos-mini"/CONFIG_NAME).read_text())
    assert rec["model"]["spec"] == "mini" and not rec["model"].get("prior_dir")   # built on the shipped mini SD and CLIP
    out = model.segment(MiniWorld("val", size=1, seed=7)[0]["image"][None], rec["class_names"])
    assert out.labels.shape == (1, 64, 64) and out.probabilities.shape == (1, len(rec["class_names"]), 64, 64)


def test_pretrained_fits_the_budget():
    "Everything under pretrained/ is safetensors and JSON/Markdown text, at most 100 MB in all."
    files = [f for f in PRE.rglob("*") if f.is_file() and "_runs" not in f.parts]
    assert sum(f.stat().st_size for f in files) <= 100 * 2**20
    assert {f.suffix for f in files} <= {".safetensors", ".json", ".jsonl", ".md", ".txt"}, {f.suffix for f in files}


@pytest.mark.parametrize("name", ["digseg-mini", "dedos-mini"])
def test_release_card_states_the_measured_numbers(name):
    unshipped(name)
    import prior_quality as pq
    rec = json.loads((ROOT/"benchmarks"/"results"/"prior_quality.json").read_text())["runs"]["cpu"]
    card = (PRE/name/"MODEL_CARD.md").read_text()
    assert card == pq.release_card(name, rec)
    measure = {v: k for k, v in pq.RELEASES.items()}[name]
    assert f"| {measure}.seen | {rec[measure]['seen']:.4f} |" in card


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


def test_measures_are_of_the_shipped_prior():
    """The cards' numbers and the released models' scores were measured on the prior shipped now, and the released DiGSeg
    was fine-tuned from it (its frozen VAE is the shipped one): a prior is promoted with its measures and releases."""
    import prior_quality as pq
    from safetensors.torch import load_file
    from digseg.prior import prior_fingerprint
    rec, prior = json.loads((ROOT/"benchmarks"/"results"/"prior_quality.json").read_text())["runs"]["cpu"], prior_fingerprint(PRE)
    released = [m for m, name in pq.RELEASES.items() if (PRE/name).is_dir()]
    for m in [*pq.CARD_MEASURES["mini-sd"], *pq.CARD_MEASURES["mini-clip"], *released, *(m.split("_")[0] + "_released" for m in released)]:
        assert rec["priors"][m] == prior, m
    if (PRE/"digseg-mini").is_dir():
        ours, shipped = (load_file(PRE/d/"vae"/"diffusion_pytorch_model.safetensors") for d in ("digseg-mini", "mini-sd"))
        assert ours.keys() == shipped.keys() and all(torch.equal(ours[k], shipped[k]) for k in ours)


def test_readme_states_the_measured_table():
    "The README's table of the mini models is the one prior_quality.py writes from the committed JSON, for the shipped prior."
    import prior_quality as pq
    from digseg.prior import prior_fingerprint
    rec = json.loads((ROOT/"benchmarks"/"results"/"prior_quality.json").read_text())["runs"]["cpu"]
    table = pq.readme_table(rec, prior_fingerprint(PRE))
    assert (ROOT/"benchmarks"/"results"/"prior_quality.md").read_text() == table
    assert table.strip() in (ROOT/"README.md").read_text()



def test_readme_says_which_prior_the_report_is_of():
    """The committed reproduction report records the prior its experiments fine-tuned from and the released models it
    scored (`reproduce.json`), and the README says so when those are not the ones shipped now, so a report never passes
    for one of the shipped models."""
    from digseg.prior import prior_fingerprint
    from digseg.report import released_models
    rec = json.loads((ROOT/"benchmarks"/"results"/"reproduce_mini"/"reproduce.json").read_text())
    readme = (ROOT/"README.md").read_text()
    stale = rec.get("prior") != prior_fingerprint(PRE)
    assert ("The committed report predates this prior" in readme) == stale, (rec.get("prior"), stale)
    old_release = rec.get("releases") != released_models()
    assert ("The committed report predates the released models" in readme) == old_release, (rec.get("releases"), released_models())


# Golden outputs: the released models on fixed images and noise give the labels stored when they were released,
# so a silent numerical change (a sampler, a loader, a preprocessing step) fails CI. Regenerate them only with a
# new release: `python tests/test_pretrained.py --write-golden`.
GOLDEN = ROOT/"tests"/"fixtures"/"golden"


def golden_labels(name):
    "(4, 64, 64) labels of a released model on the first 4 held-out val images (world seed 7), every class prompted."
    from digseg.data import MiniWorld
    ds = MiniWorld("val", size=4, seed=7)
    images, names = torch.stack([ds[i]["image"] for i in range(4)]), ds.class_names[1:]
    if name == "digseg-mini":
        from digseg.pipeline import DiGSegPipeline
        pipe = DiGSegPipeline.from_pretrained(PRE/name)
        return pipe(images, classes=names, generator=[torch.Generator().manual_seed(i) for i in range(4)]).labels
    from digseg.dedos_train import load_dedos, CONFIG_NAME
    names = json.loads((PRE/name/CONFIG_NAME).read_text())["class_names"]   # DEDOS segments its own vocabulary, background included
    return load_dedos(PRE/name).segment(images, names).labels


def _golden_file(name): return GOLDEN/f"{name}.png"


def _read_golden(name):
    import numpy as np
    from PIL import Image
    return torch.from_numpy(np.array(Image.open(_golden_file(name))).astype("int64")).reshape(4, 64, 64) - 1   # stored +1: BACKGROUND is -1


@pytest.mark.parametrize("name", ["digseg-mini", "dedos-mini"])
def test_released_model_reproduces_its_golden_labels(name):
    unshipped(name)
    want, got = _read_golden(name), golden_labels(name)
    ious = [((got == c) & (want == c)).sum().item() / ((got == c) | (want == c)).sum().item() for c in want.unique().tolist()]
    assert min(ious) >= 0.99, f"per-label IoU against the stored labels: {ious}"


def write_golden():
    import numpy as np
    from PIL import Image
    GOLDEN.mkdir(parents=True, exist_ok=True)
    for name in ("digseg-mini", "dedos-mini"):
        if (PRE/name).is_dir():
            Image.fromarray((golden_labels(name) + 1).reshape(4*64, 64).numpy().astype(np.uint8)).save(_golden_file(name))
            print("wrote", _golden_file(name))


if __name__ == "__main__" and "--write-golden" in sys.argv:
    write_golden()
