"Training-entry-point behaviour that needs the main thread (signals): an interrupted run publishes no model and resumes."
import os, signal
from pathlib import Path
from unittest import mock
import pytest
from digseg.finetune import DiGSegTrainingModule, train_digseg
from digseg.train import list_checkpoints


def test_sigterm_checkpoints_raises_and_resumes(tmp_path):
    cfg = {"model": {"spec": "tiny"}, "data": {"size": 16, "image_size": 32},
           "train": {"output_dir": str(tmp_path), "max_steps": 4, "batch_size": 4, "cpu": True, "checkpoint_every": 10}}
    real, calls = DiGSegTrainingModule.forward, []
    def forward_then_stop(self, batch, generator):
        calls.append(1)
        if len(calls) == 2: os.kill(os.getpid(), signal.SIGTERM)   # arrives during step 2
        return real(self, batch, generator)
    with mock.patch.object(DiGSegTrainingModule, "forward", forward_then_stop):
        with pytest.raises(KeyboardInterrupt, match="interrupted at step 2"):
            train_digseg(cfg)
    assert not (tmp_path/"model").exists()
    assert [c.name for c in list_checkpoints(tmp_path)] == ["step_00000002"]
    out = train_digseg(cfg)
    assert (out/"model_index.json").exists() and (out/"train_config.json").exists()
    assert [c.name for c in list_checkpoints(tmp_path)][-1] == "step_00000004"


# ---- paper-profile training inputs, on tiny fixtures in the real on-disk layouts ------------------------------

def _prepared_root(tmp_path, names):
    "Prepare the raw fixtures of `names` into `tmp_path/data/<name>` (the layout $DIGSEG_DATA points at)."
    import shutil, sys
    sys.path.insert(0, str(Path(__file__).parent))
    from raw_fixtures import prepare
    for n in names:
        out, _ = prepare(n, tmp_path/f"work_{n}")
        shutil.move(str(out), str(tmp_path/"data"/n))
    return tmp_path/"data"


def test_training_data_list_of_benchmarks(tmp_path, monkeypatch):
    "Table 5's COCO + ADE20K: a list of benchmark names, read from $DIGSEG_DATA, concatenated with their own class names."
    from digseg.finetune import build_training_data, ConcatSamples
    from digseg.config import data_root
    from digseg.benchmarks import class_names
    monkeypatch.setenv("DIGSEG_DATA", str(_prepared_root(tmp_path, ["cocostuff171", "ade150"])))
    assert data_root() == tmp_path/"data"
    both = build_training_data({"dataset": ["cocostuff171", "ade150"], "split": "val", "image_size": 16, "empty_rate": 0.0})
    assert isinstance(both, ConcatSamples) and len(both) == 1 + 2
    assert both.datasets[0].class_names == class_names("cocostuff171") and both.datasets[1].class_names == class_names("ade150")
    assert both[0]["class_name"] in class_names("cocostuff171") and both[2]["class_name"] in class_names("ade150")
    assert both[2]["image"].shape == (3, 16, 16)
    one = build_training_data({"dataset": "ade150", "split": "val", "image_size": 16})
    assert len(one) == 2 and not isinstance(one, ConcatSamples)
    with pytest.raises(ValueError, match="`data.dataset`"): build_training_data({"dataset": []})
    with pytest.raises(FileNotFoundError): build_training_data({"dataset": ["ade150", "pc59"], "split": "val"})   # pc59 not prepared


def _tiny_sd2_folder(root):
    "A diffusers Stable Diffusion layout with tiny random weights (what build_sd2_pipeline reads)."
    from diffusers import DDIMScheduler
    from digseg.models import build_unet, build_vae
    from digseg.components import SD2_SCHEDULER_CONFIG
    build_unet("tiny", seed=1).save_pretrained(root/"unet"); build_vae("tiny").save_pretrained(root/"vae")
    DDIMScheduler(**SD2_SCHEDULER_CONFIG).save_config(root/"scheduler")
    return root


def test_sd2_from_scratch_is_random_sd2_architecture(tmp_path):
    "model.from_scratch with spec sd2: the checkpoint's U-Net architecture (conv_in 8), random weights; VAE kept."
    import torch
    from diffusers import UNet2DConditionModel
    from digseg.finetune import build_pipeline
    from digseg.text import ClipBackbone, build_tiny_clip
    sd2 = _tiny_sd2_folder(tmp_path/"sd2")
    model = {"spec": "sd2", "sd2_path": str(sd2), "clip_weights": "unused.bin"}
    with mock.patch.object(ClipBackbone, "from_open_clip", lambda *a, **k: build_tiny_clip()):
        pre, scratch = build_pipeline(model), build_pipeline({**model, "from_scratch": True})
        again = build_pipeline({**model, "from_scratch": True})
    ref = UNet2DConditionModel.from_pretrained(sd2/"unet")
    assert scratch.unet.config.in_channels == 8 and pre.unet.config.in_channels == 8
    assert scratch.unet.config.block_out_channels == ref.config.block_out_channels
    key = "down_blocks.0.resnets.0.conv1.weight"
    assert torch.equal(pre.unet.state_dict()[key], ref.state_dict()[key])            # the prior's weights ...
    assert not torch.equal(scratch.unet.state_dict()[key], ref.state_dict()[key])    # ... taken away
    assert torch.equal(scratch.unet.state_dict()[key], again.unet.state_dict()[key])  # seeded
    assert all(torch.equal(a, b) for a, b in zip(scratch.vae.parameters(), pre.vae.parameters()))
    with pytest.raises(TypeError, match="`model.from_scratch`"): build_pipeline({**model, "from_scratch": "yes"})
