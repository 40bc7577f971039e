"""`digseg evaluate` end to end: on the mini world and on every benchmark's raw-format fixture.

Each fixture (tests/raw_fixtures.py) is prepared with its data_scripts/ script, then scored in-process
through `digseg.cli.main` with a tiny random pipeline under the benchmark's own protocol (resize,
whole or sliding-window inference), scaled down to a few dozen pixels so that each test takes
seconds. The checks are about the protocol, not the (random) scores: one IoU per class, named;
ignored pixels left out of every count; predictions at the label resolution; overlays written.
"""
import contextlib, io, json
import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from digseg.benchmarks import BENCHMARKS, class_names, load_benchmark
from digseg.cli import main
from digseg.evaluate import evaluate
from digseg.benchmarks import EVAL_PROTOCOLS, eval_protocol
from digseg.predict import predict_labels, slide_windows
from digseg.pipeline import build_tiny_pipeline
from digseg.pipeline import DiGSegPipeline
from raw_fixtures import FIXTURES, prepare


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    "A saved tiny pipeline (random weights), shared by the tests of this file."
    d = tmp_path_factory.mktemp("model")/"tiny"
    build_tiny_pipeline(seed=0).save_pretrained(d)
    return d


def cli(*argv):
    "Run `digseg ...` in-process; (exit code, stdout)."
    with contextlib.redirect_stdout(io.StringIO()) as out:
        rc = main([str(a) for a in argv])
    return rc, out.getvalue()


def cli_error(*argv):
    "Run `digseg ...` expecting a usage error; its message."
    with contextlib.redirect_stderr(io.StringIO()) as err, pytest.raises(SystemExit) as e:
        main([str(a) for a in argv])
    assert e.value.code == 2
    return err.getvalue()


def test_every_benchmark_has_a_fixture_and_a_protocol():
    assert set(FIXTURES) == set(BENCHMARKS) and set(BENCHMARKS) <= set(EVAL_PROTOCOLS)


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_cli_evaluates_each_benchmark_fixture(name, tmp_path, model):
    dst, _ = prepare(name, tmp_path)
    b, ds, proto = BENCHMARKS[name], load_benchmark(name, dst), eval_protocol(name)
    out = tmp_path/"eval"
    # the benchmark's protocol at a toy scale: the 8 x 10 fixtures resized to a short side of 16 (not 512 or
    # 1024), then windows of 12 (not 512): 2 x 2 windows, each prediction resized back to 8 x 10 for scoring
    argv = ["evaluate", "--model", model, "--dataset", b.title, "--data", dst, "--out", out, "--resize-short", 16, "--overlays", 1]
    if proto.get("mode") == "slide": argv += ["--crop-size", 12]
    rc, stdout = cli(*argv)
    assert rc == 0 and f'"dataset": "{name}"' in stdout
    m = json.loads((out/"metrics.json").read_text())
    # one entry per class, keyed by the class names the prompts use
    assert m["num_classes"] == b.num_classes and list(m["per_class"]) == class_names(name)
    assert m["images"] == len(ds) and m["protocol"]["mode"] == proto.get("mode", "whole") and m["protocol"]["resize_short"] == 16
    # ignore handling: exactly the non-ignored ground-truth pixels are scored, each counted once
    labels = [it["label"] for it in ds]
    assert m["num_pixels"] == sum(int((l != b.ignore_index).sum()) for l in labels) > 0
    assert sum(v["pixels"] for v in m["per_class"].values()) == m["num_pixels"]
    absent = {c for c, v in m["per_class"].items() if v["pixels"] == 0}
    assert all(m["per_class"][c]["IoU"] is None for c in absent) and 0.0 <= m["mIoU"] <= 1.0
    # predictions at the label resolution, holding dataset ids (+1; 0 = no class)
    for it, lab in zip(ds, labels):
        pred = np.asarray(Image.open(out/"preds"/f"{it['id']}.png")).astype(np.int64) - 1
        assert pred.shape == tuple(lab.shape) and pred.min() >= -1 and pred.max() < b.num_classes
        if proto.get("background", "background") in ds.class_names: assert pred.min() >= 0   # no-class pixels are background
    assert len(list((out/"overlays").glob("*.png"))) == 1
    if "binary" in proto: assert set(m["binary"]) == set(proto["binary"])


def test_cli_reads_benchmarks_from_digseg_data_by_default(tmp_path, model, monkeypatch):
    "Without --data, `digseg evaluate --dataset` reads $DIGSEG_DATA/<name>, where data_scripts/ write by default."
    dst, _ = prepare("refuge2", tmp_path)
    (tmp_path/"data").mkdir(); dst.rename(tmp_path/"data"/"refuge2")
    monkeypatch.setenv("DIGSEG_DATA", str(tmp_path/"data"))
    rc, stdout = cli("evaluate", "--model", model, "--dataset", "REFUGE-2", "--out", tmp_path/"ev", "--resize-short", 16,
                     "--crop-size", 12, "--overlays", 0)
    assert rc == 0 and json.loads((tmp_path/"ev"/"metrics.json").read_text())["images"] == len(load_benchmark("refuge2", tmp_path/"data"))


def test_mini_world_and_resume(tmp_path, model):
    out = tmp_path/"mini"
    rc, stdout = cli("evaluate", "--model", model, "--limit", 2, "--out", out, "--overlays", 0)
    m = json.loads((out/"metrics.json").read_text())
    assert rc == 0 and m["images"] == 2 and "mIoU_seen" in m and "mIoU_unseen" in m and not (out/"overlays").exists()
    stamps = {p.name: p.stat().st_mtime_ns for p in (out/"preds").iterdir()}
    assert cli("evaluate", "--model", model, "--limit", 2, "--out", out, "--overlays", 0)[0] == 0
    assert {p.name: p.stat().st_mtime_ns for p in (out/"preds").iterdir()} == stamps        # resumed: nothing recomputed
    assert json.loads((out/"metrics.json").read_text())["mIoU"] == m["mIoU"]
    # another protocol into the same folder is refused instead of mixing two protocols in one number
    err = cli_error("evaluate", "--model", model, "--limit", 2, "--out", out, "--mode", "slide", "--crop-size", 32)
    assert "digseg evaluate: error: `out_dir`" in err and "another protocol" in err and "--on-error" not in err


def test_config_eval_section(tmp_path, model):
    dst, _ = prepare("cityscapes", tmp_path)
    cfg = tmp_path/"eval.yaml"
    cfg.write_text(yaml.safe_dump({"name": "eval", "train": {"output_dir": str(tmp_path/"run")},
                                   "eval": {"model": str(model), "dataset": "cityscapes", "data": str(dst),
                                            "resize_short": 16, "crop_size": 12, "overlays": 0}}))
    assert cli("evaluate", "--config", cfg, "--stride", 6)[0] == 0                           # a flag adds to the config
    p = json.loads((tmp_path/"run/eval/cityscapes/protocol.json").read_text())
    assert (p["mode"], p["crop_size"], p["stride"], p["resize_short"]) == ("slide", [12, 12], [6, 6], 16)


def test_cli_refuses_bad_protocol_values(tmp_path, model):
    base = ["evaluate", "--model", model, "--out", tmp_path/"x"]
    assert "`stride` (40, 40) must not exceed `crop_size` (32, 32)" in cli_error(*base, "--mode", "slide", "--crop-size", 32, "--stride", 40)
    assert "`resize_short` must be >= 1" in cli_error(*base, "--resize-short", -3)
    assert "only used with mode='slide'" in cli_error(*base, "--mode", "whole", "--crop-size", 32)
    assert "invalid choice: 'tiles'" in cli_error(*base, "--mode", "tiles")
    assert "--overlays must be >= 0" in cli_error(*base, "--overlays", -1)
    assert "`name` must be one of" in cli_error(*base, "--dataset", "A-1000")


@pytest.mark.parametrize("H,W,crop,stride", [(20, 28, 12, 8), (512, 1024, 512, 341), (1024, 1024, 512, 341), (7, 300, 5, 5)])
def test_windows_cover_every_pixel(H, W, crop, stride):
    seen = np.zeros((H, W), int)
    for t, l, h, w in slide_windows(H, W, crop, stride):
        assert (h, w) == (min(crop, H), min(crop, W))
        seen[t:t+h, l:l+w] += 1
    assert seen.min() >= 1


def test_background_prompts_count_as_background():
    "PAS-20b: pixels won by one of the extra background prompts are scored as class 20."
    class Fake:  # a pipeline whose every pixel goes to the last prompt
        def __call__(self, image, classes, generator=None, **kw):
            from types import SimpleNamespace
            K, (H, W) = len(classes), image.shape[-2:]
            p = torch.zeros(1, K, H, W); p[:, -1] = 1.0
            return SimpleNamespace(probabilities=p, candidates=torch.ones(1, K, dtype=torch.bool))
    class DS:
        class_names, ignore_index = class_names("voc20b"), 255
        def __len__(self): return 1
        def __getitem__(self, i): return {"image": torch.rand(3, 4, 4), "label": torch.full((4, 4), 20), "id": "x"}
    r = evaluate(Fake(), DS(), progress=False, **(eval_protocol("voc20b") | {"resize_short": None}))
    assert r["IoU"][20] == 1.0 and r["mIoU"] == 1.0


@pytest.fixture()
def damaged_folder(tmp_path):
    "A written mini-world split of 3 images whose second image is not an image."
    from digseg.data import MiniWorld, write_split
    d = tmp_path/"data"; write_split(MiniWorld("val", size=3), d)
    bad = d/"images"/"val"/"000001.png"; bad.write_bytes(b"not a png")
    return d, bad


def test_cli_unreadable_item_skipped_and_counted(tmp_path, model, damaged_folder):
    d, bad = damaged_folder
    rc, stdout = cli("evaluate", "--model", model, "--data", d, "--out", tmp_path/"ev", "--overlays", 0, "--on-error", "skip")
    m = json.loads((tmp_path/"ev"/"metrics.json").read_text())
    assert rc == 0 and (m["images"], m["skipped"]) == (2, 1) and "cannot read image" in m["skipped_items"][str(bad)]
    assert '"skipped": 1' in stdout and f"skipped 1 unreadable item(s)" in stdout and str(bad) in stdout
    assert sorted(p.name for p in (tmp_path/"ev"/"preds").iterdir()) == ["000000.png", "000002.png"]


def test_cli_unreadable_item_stops_with_its_name(tmp_path, model, damaged_folder, capsys):
    d, bad = damaged_folder
    with pytest.raises(SystemExit) as e: main([str(a) for a in ("evaluate", "--model", model, "--data", d, "--out", tmp_path/"ev", "--overlays", 0)])
    err = capsys.readouterr().err
    line = [l for l in err.splitlines() if "error" in l]   # (the rest is the progress bar)
    assert e.value.code == 2 and "Traceback" not in err and len(line) == 1, err
    assert line[0].startswith("digseg evaluate: error: ") and str(bad) in line[0] and "--on-error skip" in line[0], err
    assert [p.name for p in (tmp_path/"ev"/"preds").glob("*.png")] == ["000000.png"]   # the finished prediction is kept


def test_evaluate_counts_what_a_dataset_skips(damaged_folder):
    "In-process too: `images` is the number scored, `skipped` / `skipped_items` the rest; all unreadable is an error."
    from digseg.data import SegFolder
    d, bad = damaged_folder
    pipe = build_tiny_pipeline(seed=0)
    r = evaluate(pipe, SegFolder(d, "val", on_error="skip"), progress=False)
    assert (r["images"], r["skipped"], list(r["skipped_items"])) == (2, 1, [str(bad)])
    assert evaluate(pipe, SegFolder(d, "val", on_error="skip"), progress=False, limit=1)["skipped"] == 0   # only items read count
    with pytest.raises(ValueError, match="000001.png"): evaluate(pipe, SegFolder(d, "val"), progress=False)
    for i in (0, 2): (d/"images"/"val"/f"00000{i}.png").write_bytes(b"")
    with pytest.raises(ValueError, match="none of the 3 items read could be scored"):
        evaluate(pipe, SegFolder(d, "val", on_error="skip"), progress=False)
