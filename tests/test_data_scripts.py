"""data_scripts/prepare_<name>.py on tiny fixtures written in each dataset's OFFICIAL raw format.

Each fixture is prepared, read back with `digseg.benchmarks.load_benchmark` and checked id by id,
including the ignore label; a second run must be a no-op; missing or malformed inputs must give an
error that names the file.
"""
import json, os, subprocess, sys
import numpy as np
import pytest
import scipy.io
from PIL import Image
from digseg.benchmarks import class_names, load_benchmark
from raw_fixtures import (H, W, SCRIPTS, FIXTURES, script, rgb, gray, ade150, ade847, pascal_context, pc59,  # noqa: F401
                          voc, voc20, cityscapes, cocostuff171, deepglobe, phenobench)
from _common import PrepareError  # noqa: E402  (raw_fixtures puts data_scripts/ on the path)


def row(name, root, split=None, i=0):
    ds = load_benchmark(name, root, split)
    return ds, ds[i]["label"][0].tolist()


def outputs(dst):
    return {p.relative_to(dst): p.stat().st_mtime_ns for p in dst.rglob("*") if p.is_file()}


@pytest.mark.parametrize("name", list(FIXTURES))
def test_prepare_reads_back_exact_ids(name, tmp_path):
    src, dst = tmp_path/"raw", tmp_path/"out"
    extra, expected = FIXTURES[name](src)
    argv = ["--src", str(src), "--dst", str(dst), *extra]
    script(name).main(argv)
    ds, got = row(name, dst)
    assert got[:len(expected)] == expected
    assert ds.class_names == class_names(name) and ds[0]["image"].shape == (3, H, W)
    before, info = outputs(dst), (dst/"dataset.json").read_text()
    script(name).main(argv)                                    # second run: nothing rewritten
    assert outputs(dst) == before and (dst/"dataset.json").read_text() == info


def test_dataset_specific_conventions(tmp_path):
    # PAS-20 leaves out the background-only image, PAS-20b keeps it (all background = class 20)
    src = tmp_path/"voc"; voc(src)
    script("voc20").main(["--src", str(src), "--dst", str(tmp_path/"v20")])
    script("voc20b").main(["--src", str(src/"VOCdevkit"), "--dst", str(tmp_path/"v20b")])  # a parent folder works too
    assert len(load_benchmark("voc20", tmp_path/"v20")) == 1
    assert json.loads((tmp_path/"v20/dataset.json").read_text())["skipped"] == {"val": {"no object pixel": 1}}
    assert load_benchmark("voc20b", tmp_path/"v20b")[1]["label"][0, :2].tolist() == [20, 255]
    # PC: the id without a .mat is left out; PC-459 labels are 16-bit
    src = tmp_path/"pc"; pascal_context(src)
    script("pc459").main(["--src", str(src), "--dst", str(tmp_path/"pc459")])
    assert len(load_benchmark("pc459", tmp_path/"pc459")) == 2
    assert Image.open(tmp_path/"pc459/annotations/val/2008_000001.png").mode.startswith("I;16")
    (tmp_path/"list.txt").write_text("2008_000002\n")                        # e.g. CAT-Seg's pascalcontext_val.txt
    script("pc459").main(["--src", str(src), "--dst", str(tmp_path/"pc459_list"), "--val-list", str(tmp_path/"list.txt")])
    assert [it["id"] for it in load_benchmark("pc459", tmp_path/"pc459_list")] == ["2008_000002"]
    # DeepGlobe: the listed id is val, the other train
    src = tmp_path/"dg"; extra, _ = deepglobe(src)
    script("deepglobe").main(["--src", str(src), "--dst", str(tmp_path/"dg_out"), *extra])
    assert [p.name for p in (tmp_path/"dg_out/images/val").iterdir()] == ["100081.jpg"]
    assert len(load_benchmark("deepglobe", tmp_path/"dg_out", "train")) == 1
    # PhenoBench: partial plants can be ignored instead of merged
    src = tmp_path/"pb"; phenobench(src)
    script("phenobench").main(["--src", str(src), "--dst", str(tmp_path/"pb_out"), "--split", "val", "--partial", "ignore"])
    assert load_benchmark("phenobench", tmp_path/"pb_out")[0]["label"][0, :5].tolist() == [0, 1, 2, 255, 255]
    # ADE-847: images with a shorter side above --max-size are resized with their labels
    src = tmp_path/"a847"; ade847(src)
    script("ade847").main(["--src", str(src), "--dst", str(tmp_path/"a847_out"), "--max-size", "4"])
    it = load_benchmark("ade847", tmp_path/"a847_out")[0]
    assert it["label"].shape == (4, 5) and it["image"].shape == (3, 4, 5)
    assert set(it["label"].unique().tolist()) <= {0, 1, 846, 65535}


def test_pc59_from_detail_json(tmp_path):
    "PC-59 also reads the detail-API trainval_merged.json (uncompressed COCO RLE)."
    r = tmp_path/"VOC2010"; rgb(r/"JPEGImages/2008_000001.jpg")
    (r/"ImageSets/Main").mkdir(parents=True); (r/"ImageSets/Main/val.txt").write_text("2008_000001\n")
    def rle(mask): # column-major runs, starting with a run of zeros
        flat, counts, cur, n = mask.T.ravel(), [], False, 0
        for v in flat:
            if v != cur: counts.append(n); cur, n = v, 0
            n += 1
        return {"size": [H, W], "counts": counts + [n]}
    m1 = np.zeros((H, W), bool); m1[0, 1] = True; m2 = np.zeros((H, W), bool); m2[0, 2:4] = True
    data = {"images": [{"image_id": 7, "file_name": "2008_000001.jpg", "height": H, "width": W, "phase": "val"}],
            "annos_segmentation": [{"image_id": 7, "category_id": 2, "segmentation": rle(m1)},
                                   {"image_id": 7, "category_id": 397, "segmentation": rle(m2)}]}
    (r/"trainval_merged.json").write_text(json.dumps(data))
    script("pc59").main(["--src", str(r), "--dst", str(tmp_path/"out")])
    assert row("pc59", tmp_path/"out")[1][:5] == [255, 0, 49, 49, 255]


@pytest.mark.parametrize("name", list(FIXTURES))
def test_missing_input_names_the_folder(name, tmp_path):
    with pytest.raises(PrepareError, match="nowhere.*expected"):
        script(name).main(["--src", str(tmp_path/"nowhere"), "--dst", str(tmp_path/"out")])


def test_malformed_inputs_name_the_file(tmp_path):
    def fails(name, fixture, corrupt, match):
        src = tmp_path/f"{name}_{corrupt.__name__}"; extra, _ = fixture(src); corrupt(src)
        with pytest.raises(PrepareError, match=match):
            script(name).main(["--src", str(src), "--dst", str(tmp_path/f"out_{name}_{corrupt.__name__}"), *extra])
    def ade_rgb(src): rgb(src/"ADEChallengeData2016/annotations/validation/ADE_val_00000001.png", fmt="PNG")
    def ade_151(src): gray(src/"ADEChallengeData2016/annotations/validation/ADE_val_00000002.png", [151])
    def ade_gone(src): os.remove(src/"ADEChallengeData2016/annotations/validation/ADE_val_00000002.png")
    def ade_garbage(src): (src/"ADEChallengeData2016/annotations/validation/ADE_val_00000001.png").write_bytes(b"not a png")
    def city_train_ids(src): gray(next(src.rglob("*_labelIds.png")), [0, 255])
    def pc_no_labelmap(src): scipy.io.savemat(next(src.rglob("2008_000001.mat")), {"Other": np.zeros((2, 2))})
    def voc_21(src): gray(src/"VOCdevkit/VOC2012/SegmentationClass/2007_000001.png", [21])
    def seg_missing(src): os.remove(next(src.rglob("*_seg.png")))
    def coco_size(src): Image.fromarray(np.zeros((3, 3), np.uint8)).save(next(src.rglob("stuffthingmaps*/val2017/*.png")))
    fails("ade150", ade150, ade_rgb, r"ADE_val_00000001\.png: has shape \(8, 10, 3\); expected an 8-bit")
    fails("ade150", ade150, ade_151, r"ADE_val_00000002\.png: holds values \[151\]; expected ADE20K")
    fails("ade150", ade150, ade_gone, r"ADE_val_00000002\.png: not found")
    fails("ade150", ade150, ade_garbage, r"ADE_val_00000001\.png: cannot be read")
    fails("cityscapes", cityscapes, city_train_ids, r"_gtFine_labelIds\.png: holds values \[255\]; expected Cityscapes labelIds")
    fails("pc59", pc59, pc_no_labelmap, r"2008_000001\.mat: cannot read a 'LabelMap'")
    fails("voc20", voc20, voc_21, r"2007_000001\.png: holds values \[21\]")
    fails("ade847", ade847, seg_missing, r"ADE_val_00000001_seg\.png: not found; expected the RGB")
    fails("cocostuff171", cocostuff171, coco_size, r"000000000139\.jpg: size \(8, 10\) differs")


def test_command_line_error_is_one_line(tmp_path):
    r = subprocess.run([sys.executable, str(SCRIPTS/"prepare_cityscapes.py"), "--src", str(tmp_path/"nowhere"), "--dst", str(tmp_path/"o")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.startswith("error: ") and "nowhere" in r.stderr and "Traceback" not in r.stderr


def test_id_tables_match_class_names():
    "The remap tables of the scripts agree with the shipped class-name lists."
    from _pascal import PC59_IDS
    pc459, pc59 = class_names("pc459"), class_names("pc59")
    assert [pc459[i - 1] for i in PC59_IDS] == [("table" if n == "diningtable" else n) for n in pc59]
    coco = script("cocostuff171")
    assert len(coco.USED_IDS) == 171 and class_names("cocostuff171")[coco.USED_IDS.index(12)] == "stop sign"
    ade = script("ade847")
    assert len(set(ade.INDEX_IDS)) == 847 and ade.INDEX_IDS[:3] == [2978, 312, 2420]   # wall, building, sky
    city = script("cityscapes").LABEL_TO_TRAIN
    assert sorted(city.values()) == list(range(19)) and class_names("cityscapes")[city[26]] == "car"


@pytest.mark.parametrize("name", ["ade150", "cocostuff171"])
def test_training_loader_on_prepared_benchmark(name, tmp_path):
    "The DiGSeg training loader reads a prepared COCO-Stuff / ADE20K folder with the §4.1 augmentations and Fig. 6 subsampling."
    import torch
    from digseg.finetune import build_training_data
    from raw_fixtures import prepare
    dst, _ = prepare(name, tmp_path)
    base = load_benchmark(name, dst)
    cfg = {"dataset": str(dst), "split": "val", "image_size": 16, "empty_rate": 0.0}
    data = build_training_data(cfg, seed=0)
    assert len(data) == len(base) and data.ignore_index == 255
    for i in range(len(data)):
        s = data[i]
        assert s["image"].shape == (3, 16, 16) and s["mask"].shape == s["valid"].shape == (16, 16)   # resized + cropped to 16
        assert s["class_name"] == class_names(name)[s["class_id"]] and s["mask"].sum() > 0               # empty_rate 0: a present class
        assert s["valid"].min() == 0 and bool((s["mask"] <= s["valid"]).all())   # padding / ignored pixels carry no target
    again = build_training_data(cfg, seed=0)
    assert torch.equal(again[0]["image"], data[0]["image"])                     # deterministic per (seed, epoch, index)
    data.set_epoch(1)
    assert not torch.equal(data[0]["image"], again[0]["image"])                 # a new epoch: new scale jitter / flip
    sub = build_training_data(cfg | {"ratio": 0.5}, seed=0)
    assert len(sub) == max(1, round(0.5*len(base)))
