"""Your own data, as a user brings it: a VOC-style palette-PNG dataset, a DeepGlobe-style RGB-coded road dataset
and a grayscale-id dataset each go through `digseg data check` -> `digseg train --data` (a few steps, from a tiny
Stable Diffusion folder saved in the real layout) -> `digseg evaluate --data`; and each bad input is refused
with one line naming the file."""
import json
from pathlib import Path
import numpy as np
import pytest
import torch
from PIL import Image
from diffusers import DDIMScheduler
from digseg.cli import main
from digseg.components import SD2_SCHEDULER_CONFIG
from digseg.models import build_unet, build_vae
from digseg.own_data import make_example_dataset
from digseg.text import build_tiny_clip


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory):
    "A tiny text-to-image generator in the layout of pretrained/: mini-sd/{unet,vae,scheduler} and mini-clip/ beside it."
    d = tmp_path_factory.mktemp("pretrained")
    build_unet("tiny").save_pretrained(d/"mini-sd"/"unet"); build_vae("tiny").save_pretrained(d/"mini-sd"/"vae")
    DDIMScheduler(**SD2_SCHEDULER_CONFIG).save_config(d/"mini-sd"/"scheduler"); build_tiny_clip().save_open_clip(d/"mini-clip")
    return d/"mini-sd"


@pytest.mark.parametrize("kind", ["palette", "rgb", "gray"])
def test_check_train_evaluate(kind, tiny_sd, tmp_path, capsys):
    data = make_example_dataset(tmp_path/kind, kind, n=8)
    assert main(["data", "check", str(data)]) == 0
    assert "no problem found" in capsys.readouterr().out
    run = tmp_path/"run"
    assert main(["train", "--data", str(data), "--base", str(tiny_sd), "--steps", "2", "--out", str(run)]) == 0
    assert (run/"model"/"model_index.json").exists() and (run/"log.jsonl").exists()
    out = tmp_path/"eval"
    assert main(["evaluate", "--model", str(run/"model"), "--data", str(data), "--split", "val", "--out", str(out), "--device", "cpu"]) == 0
    m = json.loads((out/"metrics.json").read_text())
    assert 0 <= m["mIoU"] <= 1 and m["images"] == 2 and set(m["per_class"]) <= set(json.loads((Path(f"{data}_digseg")/"dataset.json").read_text())["class_names"])
    if kind == "rgb":   # two classes, one of them the background: a binary task
        assert set(m["binary"]["road"]) >= {"IoU", "precision", "recall", "F1", "Dice"}


@pytest.mark.parametrize("kind", ["palette", "rgb", "gray"])
def test_dedos_check_train_evaluate(kind, tiny_sd, tmp_path, capsys):
    "The same path with --method dedos: a new DEDOS on the mini SD, then fine-tuned again from that DEDOS folder."
    data = make_example_dataset(tmp_path/kind, kind, n=8)
    first, second = tmp_path/"first", tmp_path/"second"
    assert main(["train", "--data", str(data), "--method", "dedos", "--base", str(tiny_sd), "--steps", "2", "--image-size", "32", "--out", str(first)]) == 0
    assert (first/"model"/"dedos_model.json").exists()
    assert main(["train", "--data", str(data), "--method", "dedos", "--base", str(first/"model"), "--steps", "2", "--out", str(second)]) == 0
    rec = json.loads((second/"model"/"dedos_model.json").read_text())
    assert rec["model"]["spec"] == "mini" and rec["train_config"]["model"]["base"] == str(first/"model")
    names = json.loads((Path(f"{data}_digseg")/"dataset.json").read_text())["class_names"]
    assert rec["class_names"] == names                                          # DEDOS prompts the background too
    out = tmp_path/"eval"
    assert main(["evaluate", "--model", str(second/"model"), "--data", str(data), "--split", "val", "--out", str(out), "--device", "cpu"]) == 0
    m = json.loads((out/"metrics.json").read_text())
    assert 0 <= m["mIoU"] <= 1 and m["images"] == 2 and set(m["per_class"]) == set(names)
    if kind == "rgb": assert set(m["binary"]["road"]) >= {"IoU", "precision", "recall", "F1", "Dice"}


def test_dedos_refuses_a_base_it_cannot_use(tiny_sd, tmp_path, capsys):
    data = make_example_dataset(tmp_path/"gray", "gray", n=4)
    with pytest.raises(SystemExit):
        main(["train", "--data", str(data), "--method", "dedos", "--base", str(tmp_path), "--steps", "2"])
    assert "neither a DEDOS folder" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--data", str(data), "--method", "dedos", "--base", str(tiny_sd), "--clip", "x", "--steps", "2"])
    assert "--clip goes with --method digseg" in capsys.readouterr().err


def bad(tmp_path, kind="gray"):
    return make_example_dataset(tmp_path/"bad", kind, n=4)


def check_fails(folder, capsys, *needles):
    code = main(["data", "check", str(folder)]) if (Path(folder)/"images").exists() else None
    out = capsys.readouterr()
    text = out.out + out.err
    assert code == 2 and all(n in text for n in needles), text


def test_missing_mask(tmp_path, capsys):
    d = bad(tmp_path); (d/"masks"/"train"/"img_000.png").unlink()
    check_fails(d, capsys, "img_000", "has no mask")


def test_size_mismatch(tmp_path, capsys):
    d = bad(tmp_path); Image.fromarray(np.zeros((10, 12), np.uint8)).save(d/"masks"/"train"/"img_001.png")
    check_fails(d, capsys, "img_001.png is 12x10", "is 56x40")


def test_ids_out_of_range(tmp_path, capsys):
    d = bad(tmp_path); lab = np.zeros((40, 56), np.uint8); lab[0, 0] = 7; Image.fromarray(lab).save(d/"masks"/"val"/"img_002.png")
    check_fails(d, capsys, "img_002.png holds id(s) [7] outside [0, 2)")


def test_unknown_colour(tmp_path, capsys):
    d = bad(tmp_path, "rgb"); rgb = np.zeros((40, 56, 3), np.uint8); rgb[5, 5] = (0, 200, 0)
    Image.fromarray(rgb).save(d/"masks"/"img_003.png")
    check_fails(d, capsys, "img_003.png holds 1 colour(s) that no class has, e.g. [(0, 200, 0)]")


def test_empty_class_list(tmp_path, capsys):
    d = bad(tmp_path); (d/"classes.txt").write_text("\n")
    with pytest.raises(SystemExit) as e: main(["data", "check", str(d)])
    assert e.value.code == 2 and "the class list is empty" in capsys.readouterr().err


def test_no_class_list_and_no_folder(tmp_path, capsys):
    d = bad(tmp_path); (d/"classes.txt").unlink()
    with pytest.raises(SystemExit): main(["data", "check", str(d)])
    assert "has no class list: add classes.txt" in capsys.readouterr().err
    with pytest.raises(SystemExit): main(["data", "convert", str(tmp_path/"nowhere")])
    assert "nowhere" in capsys.readouterr().err


def test_convert_refuses_a_broken_folder_and_resumes(tmp_path, capsys):
    d = bad(tmp_path); (d/"masks"/"train"/"img_000.png").unlink()
    with pytest.raises(SystemExit): main(["data", "convert", str(d)])
    assert "1 problem(s) found" in capsys.readouterr().err and not (tmp_path/"bad_digseg"/"dataset.json").exists()
    make_example_dataset(d, "gray", n=4)                                       # fixed: the mask is back
    assert main(["data", "convert", str(d)]) == 0 and (tmp_path/"bad_digseg"/"dataset.json").exists()
