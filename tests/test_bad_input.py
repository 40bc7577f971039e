"""Bad input, as a table: every case is either handled correctly (the output is checked) or refused with a
ValueError / TypeError / FileNotFoundError whose message names the argument (or the file) at fault.

Images, prompts and parameters go through the tiny random pipeline's front door; models and checkpoints
through `DiGSegPipeline.from_pretrained`, `load_sd2` and the trainer's resume; datasets through `SegFolder`."""
import json, shutil, socket, time, warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from digseg.models import build_unet, build_vae, load_sd2
from digseg.components import SD2_SCHEDULER_CONFIG
from digseg.pipeline import build_tiny_pipeline
from digseg.pipeline import DiGSegPipeline
from digseg.latents import image_to_tensor
from digseg.noise import sample_noise
from digseg.finetune import DiGSegObjective
from digseg.sampler import make_sampler, denoise
from digseg.train import TrainConfig
from digseg.data import MiniWorld

CLASSES = ["red circle", "blue star"]
RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (37, 53, 3), dtype=np.uint8)
GREY = RNG.integers(0, 256, (37, 53), dtype=np.uint8)
FAST = 20.0          # seconds of wall time: "a clear error within seconds" (generous: CI machines are shared)


@pytest.fixture(scope="module")
def pipe():
    return build_tiny_pipeline(seed=0)


def seeded(seed=0): return torch.Generator().manual_seed(seed)


def check_output(out, B, H, W, K=len(CLASSES), threshold=0.7):
    "What every successful call must return: input-sized maps, probabilities in [0, 1], labels consistent with them."
    assert out.labels.shape == (B, H, W) and out.labels.dtype == torch.int64
    assert out.probabilities.shape == out.uncertainty.shape == out.masks.shape == (B, K, H, W)
    assert torch.isfinite(out.probabilities).all() and torch.isfinite(out.uncertainty).all()
    assert out.probabilities.min() >= 0 and out.probabilities.max() <= 1 and out.uncertainty.min() >= 0
    assert ((out.labels >= -1) & (out.labels < K)).all()
    assert torch.equal(out.masks, out.probabilities > threshold)
    won = out.labels >= 0       # a labelled pixel's class is the argmax and passes the threshold
    best = out.probabilities.max(1)
    assert torch.equal(out.probabilities.gather(1, out.labels.clamp(min=0)[:, None])[:, 0][won], best.values[won])
    assert (best.values[~won] < threshold).all()


# ---------------------------------------------------------------------------------------------- images
def _save(tmp, name, im): p = tmp/name; im.save(p); return p

IMAGES = [  # id, make(tmp_path), expectation: ("ok", B, H, W, reference or None) or (exception, message part)
    ("pil-L",        lambda t: Image.fromarray(GREY, "L"),                          ("ok", 1, 37, 53, lambda: np.dstack([GREY]*3))),
    ("pil-LA",       lambda t: Image.fromarray(np.dstack([GREY, GREY]), "LA"),      ("ok", 1, 37, 53, lambda: np.dstack([GREY]*3))),
    ("pil-P",        lambda t: Image.fromarray(RGB).quantize(16),                   ("ok", 1, 37, 53, None)),
    ("pil-RGBA",     lambda t: Image.fromarray(np.dstack([RGB, GREY]), "RGBA"),     ("ok", 1, 37, 53, lambda: RGB)),   # alpha dropped
    ("pil-I;16",     lambda t: Image.fromarray(GREY.astype(np.uint16)*257),         ("ok", 1, 37, 53, lambda: np.dstack([GREY]*3))),
    ("pil-CMYK",     lambda t: Image.fromarray(RGB).convert("CMYK"),                ("ok", 1, 37, 53, lambda: RGB)),
    ("np-HxW",       lambda t: GREY,                                                ("ok", 1, 37, 53, lambda: np.dstack([GREY]*3))),
    ("np-HxWx1",     lambda t: GREY[..., None],                                     ("ok", 1, 37, 53, lambda: np.dstack([GREY]*3))),
    ("np-HxWx4",     lambda t: np.dstack([RGB, GREY]),                              ("ok", 1, 37, 53, lambda: RGB)),
    ("np-uint16",    lambda t: RGB.astype(np.uint16)*257,                           ("ok", 1, 37, 53, lambda: RGB)),
    ("np-float-01",  lambda t: RGB.astype(np.float32)/255,                          ("ok", 1, 37, 53, lambda: RGB)),
    ("np-float-255", lambda t: RGB.astype(np.float32),                              (ValueError, "`image` values must be in [0, 1]")),
    ("np-float-neg", lambda t: RGB.astype(np.float32)/127.5 - 1,                    (ValueError, "`image` values must be in [0, 1]")),
    ("np-nan",       lambda t: np.where(GREY > 128, np.nan, 0.5),                   (ValueError, "`image` contains NaN")),
    ("np-inf",       lambda t: np.full((8, 8, 3), np.inf, np.float32),              (ValueError, "`image` contains NaN or infinite")),
    ("np-int64",     lambda t: GREY.astype(np.int64),                               (TypeError, "`image` numpy dtype")),
    ("np-HxWx2",     lambda t: np.zeros((8, 8, 2), np.uint8),                       (ValueError, "`image` as a numpy array must be")),
    ("np-empty",     lambda t: np.zeros((0, 8, 3), np.uint8),                       (ValueError, "`image` is empty")),
    ("torch-CHW",    lambda t: torch.from_numpy(RGB).permute(2, 0, 1).float()/255,  ("ok", 1, 37, 53, lambda: RGB)),
    ("torch-BCHW",   lambda t: torch.from_numpy(RGB).permute(2, 0, 1)[None].repeat(2, 1, 1, 1).float()/255, ("ok", 2, 37, 53, None)),
    ("torch-uint8",  lambda t: torch.from_numpy(RGB).permute(2, 0, 1),              ("ok", 1, 37, 53, lambda: RGB)),
    ("torch-0-255",  lambda t: torch.from_numpy(RGB).permute(2, 0, 1).float(),      (ValueError, "`image` values must be in [0, 1]")),
    ("torch-4ch",    lambda t: torch.rand(1, 4, 8, 8),                              (ValueError, "C in (1, 3)")),
    ("torch-nan",    lambda t: torch.full((3, 8, 8), float("nan")),                 (ValueError, "`image` contains NaN")),
    ("1x1",          lambda t: np.full((1, 1, 3), 200, np.uint8),                   ("ok", 1, 1, 1, None)),
    ("7x13",         lambda t: RGB[:7, :13],                                        ("ok", 1, 7, 13, None)),
    ("37x53",        lambda t: RGB,                                                 ("ok", 1, 37, 53, None)),
    ("list",         lambda t: [RGB, Image.fromarray(RGB)],                         ("ok", 2, 37, 53, None)),
    ("list-sizes",   lambda t: [RGB, RGB[:7]],                                      (ValueError, "same size")),
    ("empty-list",   lambda t: [],                                                  (ValueError, "`image` is an empty list")),
    ("path",         lambda t: _save(t, "a.png", Image.fromarray(RGB)),             ("ok", 1, 37, 53, lambda: RGB)),
    ("missing-path", lambda t: t/"no_such.png",                                     (FileNotFoundError, "no_such.png")),
    ("not-an-image", lambda t: (t/"notes.png").write_text("hello") and t/"notes.png", (ValueError, "notes.png is not an image")),
    ("truncated-png", lambda t: (t/"cut.png").write_bytes(_png_bytes()[:200]) and t/"cut.png", (ValueError, "cut.png")),
    ("a-string",     lambda t: "a cat on a mat",                                    (FileNotFoundError, "`image`: no such image file")),
    ("wrong-type",   lambda t: 3.5,                                                 (TypeError, "`image` must be a PIL image")),
]

def _png_bytes():
    import io
    b = io.BytesIO(); Image.fromarray(RGB).save(b, format="PNG"); return b.getvalue()


@pytest.mark.parametrize("name, make, expect", IMAGES, ids=[c[0] for c in IMAGES])
def test_image(pipe, tmp_path, name, make, expect):
    image = make(tmp_path)
    if expect[0] != "ok":
        with pytest.raises(expect[0], match=None) as e: pipe(image, classes=CLASSES, generator=seeded())
        assert expect[1] in str(e.value), str(e.value)
        return
    _, B, H, W, reference = expect
    out = pipe(image, classes=CLASSES, generator=seeded())
    check_output(out, B, H, W)
    if reference is not None:     # the same pixels given another way: the same input, the same masks
        torch.testing.assert_close(image_to_tensor(image), image_to_tensor(reference()), atol=1e-6, rtol=0)
        ref = pipe(reference(), classes=CLASSES, generator=seeded())
        torch.testing.assert_close(out.probabilities, ref.probabilities, atol=1e-4, rtol=0)


def test_truncated_png_is_valueerror(pipe, tmp_path):
    "A PNG cut short is refused as a ValueError naming the file (PIL itself raises OSError)."
    p = tmp_path/"cut.png"; p.write_bytes(_png_bytes()[:-40])
    with pytest.raises(ValueError, match="cut.png"): pipe(p, classes=CLASSES)


def test_huge_image_is_processed_at_working_resolution(pipe):
    "A 4000x3000 photo is resized to the working resolution for the model, and the maps come back at 4000x3000."
    img = np.random.default_rng(1).integers(0, 256, (3000, 4000, 3), dtype=np.uint8)
    seen, encode = [], pipe.vae.encode
    pipe.vae.encode = lambda x, *a, **k: (seen.append(tuple(x.shape[-2:])), encode(x, *a, **k))[1]
    try:
        t0 = time.process_time(); out = pipe(img, classes=["red circle"], generator=seeded())
        cpu = time.process_time() - t0          # CPU seconds (about 3 here): wall time depends on the machine's load
    finally: del pipe.vae.encode
    assert cpu < 30, cpu
    assert seen == [(48, 64)], seen                         # 3000x4000 -> long side 64 (tiny U-Net: 16 latents x 4)
    assert out.labels.shape == (1, 3000, 4000) and out.probabilities.shape == (1, 1, 3000, 4000)
    assert out.probabilities.min() >= 0 and out.probabilities.max() <= 1


def test_processing_resolution(pipe):
    "Working at another resolution, or at the input's own (0), still returns input-sized maps."
    for res in (0, 32, 96):
        check_output(pipe(RGB, classes=CLASSES, generator=seeded(), processing_resolution=res), 1, 37, 53)
    # the working size is the only thing that matters: a pre-resized image gives the same maps at that size
    small = torch.nn.functional.interpolate(image_to_tensor(RGB[:32, :48]), size=(32, 48))
    a = pipe((small + 1)/2, classes=CLASSES, generator=seeded(), processing_resolution=0)
    b = pipe((small + 1)/2, classes=CLASSES, generator=seeded(), processing_resolution=48)
    assert torch.equal(a.probabilities, b.probabilities)


# ---------------------------------------------------------------------------------------------- prompts
def test_prompt_empty_list(pipe):
    with pytest.raises(ValueError, match="`classes` is an empty list"): pipe(RGB, classes=[])

def test_prompt_empty_string(pipe):
    with pytest.raises(ValueError, match=r"`classes`\[1\] is empty"): pipe(RGB, classes=["cat", "  "])

def test_prompt_not_a_string(pipe):
    with pytest.raises(TypeError, match=r"`classes`\[0\] must be a string"): pipe(RGB, classes=[3])

def test_prompt_single_string_is_one_class(pipe):
    out = pipe(RGB, classes="red circle", generator=seeded())
    assert out.classes == ["red circle"]; check_output(out, 1, 37, 53, K=1)

def test_prompt_duplicates(pipe):
    "A repeated class is run once: identical maps, and labels name its first occurrence."
    out = pipe(RGB, classes=["red circle", "blue star", "red circle"], generator=seeded(), threshold=0.0)
    check_output(out, 1, 37, 53, K=3, threshold=0.0)
    assert torch.equal(out.probabilities[:, 0], out.probabilities[:, 2]) and not (out.labels == 2).any()
    single = pipe(RGB, classes=["red circle", "blue star"], generator=seeded(), threshold=0.0)
    assert torch.equal(out.probabilities[:, :2], single.probabilities)

def test_prompt_non_ascii(pipe):
    out = pipe(RGB, classes=["café", "猫", "Straßenbahn", "🚲 bicycle"], generator=seeded())
    check_output(out, 1, 37, 53, K=4)
    assert out.classes == ["café", "猫", "Straßenbahn", "🚲 bicycle"]

def test_prompt_longer_than_context_is_truncated_with_warning(pipe):
    long = "a very " + "very "*100 + "red circle"
    with pytest.warns(UserWarning, match="exceed CLIP's 77-token context and are truncated"):
        out = pipe(RGB, classes=[long, "blue star"], generator=seeded())
    check_output(out, 1, 37, 53)


# ---------------------------------------------------------------------------------------------- parameters
PARAMS = [  # kwargs of the pipeline call, exception, message part
    (dict(num_inference_steps=0),        ValueError, "`num_inference_steps` must be >= 1"),
    (dict(num_inference_steps=1001),     ValueError, "`num_inference_steps` must be <= 1000"),
    (dict(num_inference_steps=1.0),      TypeError,  "`num_inference_steps` must be an integer"),
    (dict(ensemble_size=0),              ValueError, "`ensemble_size` must be >= 1"),
    (dict(threshold=-0.1),               ValueError, "`threshold` must be in [0.0, 1.0]"),
    (dict(threshold=1.5),                ValueError, "`threshold` must be in [0.0, 1.0]"),
    (dict(threshold=float("nan")),       ValueError, "`threshold` must be finite"),
    (dict(background_threshold=2.0),     ValueError, "`background_threshold` must be in [0.0, 1.0]"),
    (dict(global_threshold=3.0),         ValueError, "`global_threshold` must be in [-1.0, 1.0]"),
    (dict(timestep_spacing="middle"),    ValueError, "`timestep_spacing` must be one of"),
    (dict(batch_size=0),                 ValueError, "`batch_size` must be >= 1"),
    (dict(processing_resolution=-1),     ValueError, "`processing_resolution` must be >= 0"),
    (dict(generator=3),                  TypeError,  "`generator` must be a torch.Generator"),
    (dict(generator=[]),                 TypeError,  "`generator` must be a torch.Generator"),
    (dict(generator=[seeded(), seeded()]), ValueError, "`generator` list must have one generator per image (1), got 2"),
]

@pytest.mark.parametrize("kwargs, exc, message", PARAMS, ids=[next(iter(k)) + "=" + repr(next(iter(k.values())))[:20] for k, _, _ in PARAMS])
def test_parameter(pipe, kwargs, exc, message):
    calls = []
    unet_forward = pipe.unet.forward
    pipe.unet.forward = lambda *a, **k: (calls.append(1), unet_forward(*a, **k))[1]
    try:
        with pytest.raises(exc) as e: pipe(RGB, classes=CLASSES, **kwargs)
    finally: del pipe.unet.forward
    assert message in str(e.value), str(e.value)
    assert not calls                                     # refused before any work


def test_generator_list_one_per_image(pipe):
    "A list of generators seeds each image as if it were segmented alone."
    imgs = [RGB, np.ascontiguousarray(RGB[::-1])]
    both = pipe(imgs, classes=CLASSES, generator=[seeded(1), seeded(2)])
    for i, s in enumerate((1, 2)):
        alone = pipe(imgs[i], classes=CLASSES, generator=seeded(s))
        torch.testing.assert_close(both.probabilities[i], alone.probabilities[0], atol=1e-5, rtol=0)


OTHER_PARAMS = [  # callables outside the pipeline that take the same kinds of parameter
    ("noise_type", lambda: sample_noise("pink", (1, 4, 8, 8), None), ValueError, "`noise_type` must be one of"),
    ("noise.anneal_rule", lambda: sample_noise("annealed", (1, 4, 8, 8), torch.tensor([5]), anneal_rule="x"), ValueError, "`anneal_rule` must be one of"),
    ("objective.noise_type", lambda: DiGSegObjective(noise_type="pink"), ValueError, "`noise_type` must be one of"),
    ("objective.timestep_range", lambda: DiGSegObjective(timestep_range=(10, 5)), ValueError, "`timestep_range`"),
    ("sampler.timestep_spacing", lambda: make_sampler("middle"), ValueError, "`timestep_spacing` must be one of"),
    ("denoise.steps", lambda: _denoise(num_inference_steps=0), ValueError, "`num_inference_steps` must be >= 1"),
    ("denoise.ensemble", lambda: _denoise(ensemble_size=0), ValueError, "`ensemble_size` must be >= 1"),
    ("denoise.generators", lambda: _denoise(ensemble_size=2, generator=[seeded()]), ValueError, "`generator` list must have ensemble_size*batch = 2"),
    ("train.batch_size", lambda: TrainConfig(batch_size=0), ValueError, "`batch_size` must be >= 1"),
    ("train.max_steps", lambda: TrainConfig(max_steps=0), ValueError, "`max_steps` must be >= 1"),
    ("train.unknown", lambda: TrainConfig.from_dict({"lr": 1}), ValueError, "unknown training option(s) ['lr']"),
    ("data.size", lambda: MiniWorld("train", size=0), ValueError, "`size` must be >= 1"),
]

def _denoise(**kw):
    return denoise(lambda x, t, c: torch.zeros_like(x), torch.zeros(1, 4, 2, 2), None, **kw)

@pytest.mark.parametrize("name, call, exc, message", OTHER_PARAMS, ids=[c[0] for c in OTHER_PARAMS])
def test_other_parameter(name, call, exc, message):
    with pytest.raises(exc) as e: call()
    assert message in str(e.value), str(e.value)


# ---------------------------------------------------------------------------------------------- models and checkpoints
@pytest.fixture(scope="module")
def saved(tmp_path_factory, pipe):
    d = tmp_path_factory.mktemp("saved")/"model"; pipe.save_pretrained(d); return d

def _copy(saved, tmp_path): d = tmp_path/"model"; shutil.copytree(saved, d); return d

def _truncate(f, keep): b = f.read_bytes(); f.write_bytes(b[:keep(len(b))])

def _unet_of(spec, tmp):
    from digseg.unet import widen_conv_in
    d = tmp/"other_unet"; widen_conv_in(build_unet(spec), 8).save_pretrained(d); return d

MODELS = [  # id, damage(folder, tmp) -> path to load, exception, message part
    ("missing-dir",     lambda d, t: t/"no_such_dir",                                        FileNotFoundError, "no_such_dir' is neither a local directory"),
    ("hub-id",          lambda d, t: "someone/no-such-digseg-model",                          FileNotFoundError, "digseg never downloads weights"),
    ("a-file",          lambda d, t: d/"model_index.json",                                    ValueError, "is a file; expected a model directory"),
    ("no-index",        lambda d, t: ((d/"model_index.json").unlink(), d)[1],                 FileNotFoundError, "has no model_index.json"),
    ("bad-index",       lambda d, t: ((d/"model_index.json").write_text("{"), d)[1],          ValueError, "model_index.json is damaged"),
    ("truncated-data",  lambda d, t: (_truncate(d/"unet/diffusion_pytorch_model.safetensors", lambda n: n - 100), d)[1], ValueError, "unet/diffusion_pytorch_model.safetensors is truncated"),
    ("truncated-header", lambda d, t: (_truncate(d/"vae/diffusion_pytorch_model.safetensors", lambda n: 50), d)[1], ValueError, "vae/diffusion_pytorch_model.safetensors is"),
    ("empty-weights",   lambda d, t: ((d/"clip/diffusion_pytorch_model.safetensors").write_bytes(b""), d)[1], ValueError, "clip/diffusion_pytorch_model.safetensors is"),
    ("4-channel-unet",  lambda d, t: (shutil.rmtree(d/"unet"), build_unet("tiny").save_pretrained(d/"unet"), d)[2], ValueError, "`unet` must take image and mask latents"),
    ("other-arch-unet", lambda d, t: (shutil.rmtree(d/"unet"), shutil.copytree(_unet_of("mini", t), d/"unet"), d)[2], ValueError, "cross_attention_dim"),
    ("other-arch-weights", lambda d, t: (shutil.copy(_unet_of("mini", t)/"diffusion_pytorch_model.safetensors", d/"unet"), d)[1], ValueError, "expected shape"),
    ("stable-diffusion", lambda d, t: ((d/"model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"})), d)[1], ValueError, "holds a StableDiffusionPipeline, not a DiGSegPipeline"),
]

@pytest.mark.parametrize("name, damage, exc, message", MODELS, ids=[c[0] for c in MODELS])
def test_model(saved, tmp_path, monkeypatch, name, damage, exc, message):
    path = damage(_copy(saved, tmp_path), tmp_path)
    _no_network(monkeypatch)
    t0 = time.time()
    with pytest.raises(exc) as e: DiGSegPipeline.from_pretrained(path)
    assert message in str(e.value), str(e.value)
    assert "pretrained_model_name_or_path" in str(e.value)
    assert time.time() - t0 < FAST


CLI_MODELS = [m for m in MODELS if m[0] in ("missing-dir", "hub-id", "truncated-data", "other-arch-weights", "stable-diffusion")]

@pytest.mark.parametrize("command", ["segment", "evaluate"])
@pytest.mark.parametrize("name, damage, exc, message", CLI_MODELS, ids=[c[0] for c in CLI_MODELS])
def test_cli_model(saved, tmp_path, monkeypatch, capsys, command, name, damage, exc, message):
    "`digseg segment/evaluate --model PATH` with a bad model: the loader's message as one stderr line, exit code 2."
    from digseg.cli import main
    path = damage(_copy(saved, tmp_path), tmp_path)
    _no_network(monkeypatch)
    img = _save(tmp_path, "a.png", Image.fromarray(RGB))
    argv = {"segment": ["segment", img, "--classes", "cat"], "evaluate": ["evaluate", "--limit", "1"]}[command]
    with pytest.raises(SystemExit) as e: main([str(a) for a in argv] + ["--model", str(path), "--out", str(tmp_path/"out")])
    full = capsys.readouterr().err
    err = [l for l in full.splitlines() if "error" in l]            # (the rest: diffusers' loading bar)
    assert e.value.code == 2 and len(err) == 1 and "Traceback" not in full, full
    assert err[0].startswith(f"digseg {command}: error: ") and message in err[0], full
    assert not (tmp_path/"out").exists()                          # refused before any work


def _no_network(monkeypatch):
    "Any connection attempt fails at once, and offline mode is off: loading must not depend on either."
    import huggingface_hub.constants as c
    monkeypatch.setattr(c, "HF_HUB_OFFLINE", False, raising=False)
    def refuse(*a, **k): raise OSError("network is unreachable (test)")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_model_roundtrip_still_loads(saved):
    "The checks refuse only what is broken: an intact folder loads and gives the same masks."
    loaded = DiGSegPipeline.from_pretrained(saved)
    a = loaded(RGB, classes=CLASSES, generator=seeded())
    b = build_tiny_pipeline(seed=0)(RGB, classes=CLASSES, generator=seeded())
    assert torch.equal(a.probabilities, b.probabilities)


def test_sd2_folder_truncated(tmp_path):
    from diffusers import DDIMScheduler
    build_unet("tiny").save_pretrained(tmp_path/"unet"); build_vae("tiny").save_pretrained(tmp_path/"vae")
    DDIMScheduler(**SD2_SCHEDULER_CONFIG).save_config(tmp_path/"scheduler")
    _truncate(tmp_path/"unet/diffusion_pytorch_model.safetensors", lambda n: n//2)
    with pytest.raises(ValueError, match="unet/diffusion_pytorch_model.safetensors is truncated"): load_sd2(tmp_path)


def test_sd2_hub_id_without_network(monkeypatch):
    _no_network(monkeypatch)
    t0 = time.time()
    with pytest.raises(FileNotFoundError, match="digseg never downloads weights"): load_sd2("stabilityai/stable-diffusion-2")
    assert time.time() - t0 < FAST


def test_clip_weights_missing():
    from digseg.text import ClipBackbone
    t0 = time.time()
    with pytest.raises(FileNotFoundError, match="`pretrained_path`: no open_clip checkpoint file"):
        ClipBackbone.from_open_clip("ViT-L-14", "/no/such/clip.bin")
    assert time.time() - t0 < FAST


def test_training_checkpoint_of_another_architecture(tmp_path):
    "Resuming into a run folder written by another model is refused, naming the tensor; nothing is overwritten."
    from torch import nn
    from digseg.train import Trainer, TrainConfig, list_checkpoints
    data = torch.utils.data.TensorDataset(torch.randn(8, 4), torch.randn(8))
    class Lin(nn.Module):
        def __init__(self, n): super().__init__(); self.lin = nn.Linear(4, n)
        def forward(self, batch, generator): return {"loss": self.lin(batch[0]).pow(2).mean()}
    cfg = dict(output_dir=str(tmp_path), max_steps=2, batch_size=4, checkpoint_every=1, cpu=True)
    Trainer(Lin(1), data, TrainConfig(**cfg)).fit()
    before = [p.name for p in list_checkpoints(tmp_path)]
    with pytest.raises(ValueError, match=r"lin.weight has shape \(1, 4\) there, \(3, 4\) here \(another architecture"):
        Trainer(Lin(3), data, TrainConfig(**cfg)).fit()
    assert [p.name for p in list_checkpoints(tmp_path)] == before


# ---------------------------------------------------------------------------------------------- datasets
@pytest.fixture(scope="module")
def written(tmp_path_factory):
    from digseg.data import MiniWorld, write_split
    d = tmp_path_factory.mktemp("data")/"mini"; write_split(MiniWorld("val", size=4), d); return d

def _img(d, i=1): return d/"images"/"val"/f"{i:06d}.png"
def _lab(d, i=1): return d/"annotations"/"val"/f"{i:06d}.png"

DATASETS = [  # id, damage(folder), exception, message part (a file name)
    ("image-without-label", lambda d: _lab(d).unlink(),                                                  FileNotFoundError, "000001.png not found"),
    ("label-other-size",    lambda d: Image.fromarray(np.zeros((5, 7), np.uint8)).save(_lab(d)),         ValueError, "000001.png has size (5, 7)"),
    ("label-out-of-range",  lambda d: Image.fromarray(np.full((64, 64), 99, np.uint8)).save(_lab(d)),    ValueError, "000001.png holds ids [99] outside [0, 25)"),
    ("label-rgb",           lambda d: Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(_lab(d)),    ValueError, "000001.png must be a single-channel id map"),
    ("corrupt-image",       lambda d: _img(d).write_bytes(b"\x89PNG garbage"),                            ValueError, "cannot read image"),
    ("truncated-image",     lambda d: _img(d).write_bytes(_img(d).read_bytes()[:100]),                   ValueError, "cannot read image"),
    ("corrupt-label",       lambda d: _lab(d).write_bytes(b"garbage"),                                    ValueError, "cannot read label"),
]

@pytest.mark.parametrize("name, damage, exc, message", DATASETS, ids=[c[0] for c in DATASETS])
def test_dataset_item(written, tmp_path, name, damage, exc, message):
    from digseg.data import SegFolder
    d = tmp_path/"mini"; shutil.copytree(written, d); damage(d)
    ds = SegFolder(d, "val")
    for i in (0, 2, 3): assert ds[i]["label"].shape == (64, 64)        # the intact items still read
    with pytest.raises(exc) as e: ds[1]
    assert message in str(e.value) and "000001.png" in str(e.value), str(e.value)
    # on_error='skip': the item is dropped and counted, once, with the reason
    sk = SegFolder(d, "val", on_error="skip")
    assert sk[1] is None and sk[1] is None and sk[0] is not None
    assert list(sk.skipped) == [str(_img(d))] and message in sk.skipped[str(_img(d))]


def test_dataset_skip_in_training_samples(written, tmp_path):
    "Training over a dataset with a skipped item: batches keep their size, the skip is counted in the log."
    from digseg.data import SegFolder, ClassMaskSamples
    from digseg.train import Trainer, TrainConfig, read_log
    d = tmp_path/"mini"; shutil.copytree(written, d); _img(d, 2).write_bytes(b"garbage")
    samples = ClassMaskSamples(SegFolder(d, "val", on_error="skip"), size=32)
    items = [samples[i] for i in range(4)]
    assert all(it["image"].shape == (3, 32, 32) for it in items) and len(samples.skipped) == 1
    from torch import nn
    class Mean(nn.Module):
        def __init__(self): super().__init__(); self.w = nn.Parameter(torch.zeros(()))
        def forward(self, batch, generator): return {"loss": (batch["image"].mean() - self.w)**2}
    Trainer(Mean(), samples, TrainConfig(output_dir=str(tmp_path/"run"), max_steps=2, batch_size=2, log_every=1, cpu=True)).fit()
    assert read_log(tmp_path/"run")[-1]["skipped"] == 1


DATASET_FOLDERS = [  # id, damage(folder), split, exception, message part
    ("no-dataset-json",  lambda d: (d/"dataset.json").unlink(),               "val",   FileNotFoundError, "`root`: no dataset.json"),
    ("bad-dataset-json", lambda d: (d/"dataset.json").write_text("{\"class"), "val",   ValueError, "dataset.json is not valid JSON"),
    ("incomplete-json",  lambda d: (d/"dataset.json").write_text("{}"),       "val",   ValueError, "dataset.json lacks ['class_names', 'ignore_index']"),
    ("missing-split",    lambda d: None,                                      "test",  FileNotFoundError, "`split`: no folder"),
    ("missing-root",     lambda d: shutil.rmtree(d),                          "val",   FileNotFoundError, "`root`: no dataset.json"),
]

@pytest.mark.parametrize("name, damage, split, exc, message", DATASET_FOLDERS, ids=[c[0] for c in DATASET_FOLDERS])
def test_dataset_folder(written, tmp_path, name, damage, split, exc, message):
    from digseg.data import SegFolder
    d = tmp_path/"mini"; shutil.copytree(written, d); damage(d)
    with pytest.raises(exc) as e: SegFolder(d, split)
    assert message in str(e.value), str(e.value)
