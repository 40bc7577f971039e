"""data_scripts/prepare_<name>.py on tiny fixtures written in each dataset's OFFICIAL raw format.

Each fixture is prepared, read back with `digseg.benchmarks.load_benchmark` and checked id by id,
including the ignore label; a second run must be a no-op; missing or malformed inputs must give an
error that names the file.
"""
import importlib, json, os, subprocess, sys
from pathlib import Path
import numpy as np
import pytest
import scipy.io
from PIL import Image
from digseg.benchmarks import class_names, load_benchmark

SCRIPTS = Path(__file__).resolve().parents[1]/"data_scripts"
sys.path.insert(0, str(SCRIPTS))
from _common import PrepareError  # noqa: E402

H, W = 8, 10


def script(name):
    return importlib.import_module(f"prepare_{name}")


def rgb(path, seed=0, fmt=None):
    "A random H x W RGB image at `path`."
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (H, W, 3), dtype=np.uint8)).save(path, format=fmt)
    return path


def gray(path, values, mode="L", palette=False):
    "An H x W single-channel label image whose first row starts with `values` (rest = values[0])."
    path.parent.mkdir(parents=True, exist_ok=True)
    a = np.full((H, W), values[0], np.uint16 if mode == "I;16" else np.uint8); a[0, :len(values)] = values
    im = Image.fromarray(a)
    if palette: im = im.convert("P"); im.putpalette([c for i in range(256) for c in (i, 255 - i, i // 2)])
    im.save(path)
    return path


def row(name, root, split=None, i=0):
    ds = load_benchmark(name, root, split)
    return ds, ds[i]["label"][0].tolist()


# ---- fixtures in the official layouts -------------------------------------------------------------

def ade150(src):
    r = src/"ADEChallengeData2016"
    for i, vals in enumerate([[0, 1, 150, 75], [3, 3, 0]]):
        rgb(r/"images/validation"/f"ADE_val_{i+1:08d}.jpg", i)
        gray(r/"annotations/validation"/f"ADE_val_{i+1:08d}.png", vals)
    return ["--split", "val"], [255, 0, 149, 74]


def ade_seg(class_ids):
    "RGB _seg.png pixels for ADE20K full class indices: R/10 = id // 256, G = id % 256."
    return [((c // 256) * 10 + 3, c % 256, 7) for c in class_ids]


def ade847(src):
    r = src/"ADE20K_2021_17_01/images/ADE/validation/abbey"
    rgb(r/"ADE_val_00000001.jpg")
    seg = np.zeros((H, W, 3), np.uint8)
    seg[0, :5] = ade_seg([2978, 312, 3148, 1, 0])  # wall, building, adding machine, unlisted, unlabelled
    Image.fromarray(seg).save(r/"ADE_val_00000001_seg.png")
    return ["--split", "val"], [0, 1, 846, 65535, 65535]


def pascal_context(src, ids=("2008_000001", "2008_000002", "2008_000003")):
    r = src/"VOCdevkit/VOC2010"
    (r/"ImageSets/Main").mkdir(parents=True); (r/"ImageSets/Main/val.txt").write_text("\n".join(ids) + "\n")
    (r/"trainval").mkdir()
    for k, i in enumerate(ids):
        rgb(r/"JPEGImages"/f"{i}.jpg", k)
        if k == 2: continue  # no annotation for the last id: left out, as CAT-Seg does
        lab = np.zeros((H, W), np.uint16); lab[0, :5] = [0, 2, 397, 1, 459]  # -, aeroplane, table, accordion, wool
        scipy.io.savemat(r/"trainval"/f"{i}.mat", {"LabelMap": lab})
    return r


def pc59(src):
    pascal_context(src); return [], [255, 0, 49, 255, 255]


def pc459(src):
    pascal_context(src); return [], [65535, 1, 396, 0, 458]


def voc(src):
    r = src/"VOCdevkit/VOC2012"
    (r/"ImageSets/Segmentation").mkdir(parents=True)
    (r/"ImageSets/Segmentation/val.txt").write_text("2007_000001\n2007_000002\n")
    for k, i in enumerate(["2007_000001", "2007_000002"]):
        rgb(r/"JPEGImages"/f"{i}.jpg", k)
    gray(r/"SegmentationClass/2007_000001.png", [0, 1, 20, 255], palette=True)
    gray(r/"SegmentationClass/2007_000002.png", [0, 255], palette=True)  # background only
    return r


def voc20(src):
    voc(src); return [], [255, 0, 19, 255]


def voc20b(src):
    voc(src); return [], [20, 0, 19, 255]


def cocostuff171(src):
    rgb(src/"val2017/000000000139.jpg")
    gray(src/"stuffthingmaps_trainval2017/val2017/000000000139.png", [0, 12, 91, 181, 255, 11])
    return ["--split", "val"], [0, 11, 80, 170, 255, 255]


def cityscapes(src):
    stem = "frankfurt_000000_000294"
    rgb(src/f"leftImg8bit/val/frankfurt/{stem}_leftImg8bit.png")
    gray(src/f"gtFine/val/frankfurt/{stem}_gtFine_labelIds.png", [7, 33, 0, 26, 4])
    return ["--split", "val"], [0, 18, 255, 13, 255]


def bdd100k(src):
    rgb(src/"bdd100k/images/10k/val/7d2f7975-e0c1c5a7.jpg")
    gray(src/"bdd100k/labels/sem_seg/masks/val/7d2f7975-e0c1c5a7.png", [0, 18, 255, 5])
    return ["--split", "val"], [0, 18, 255, 5]


def deepglobe(src):
    for k, i in enumerate(["100034", "100081"]):
        rgb(src/f"train/{i}_sat.jpg", k)
        m = np.zeros((H, W, 3), np.uint8); m[0, 1:3] = 255; m[0, 3] = 200  # resampled edge still road
        Image.fromarray(m).save(src/f"train/{i}_mask.png")
    (src/"val.txt").write_text("100081\n")
    return ["--val-list", str(src/"val.txt")], [0, 1, 1, 1, 0]


def phenobench(src):
    rgb(src/"PhenoBench/val/images/05-15_00028_P0030852.png", fmt="PNG")
    gray(src/"PhenoBench/val/semantics/05-15_00028_P0030852.png", [0, 1, 2, 3, 4])
    return ["--split", "val"], [0, 1, 2, 1, 2]


def refuge2(src):
    rgb(src/"REFUGE2/test/images/T0001.jpg")
    gray(src/"REFUGE2/test/mask/T0001.png", [255, 128, 0, 130, 250]).rename(src/"REFUGE2/test/mask/T0001.bmp")
    return ["--split", "test"], [0, 1, 2, 1, 0]


FIXTURES = dict(ade150=ade150, ade847=ade847, pc59=pc59, pc459=pc459, voc20=voc20, voc20b=voc20b,
                cocostuff171=cocostuff171, cityscapes=cityscapes, bdd100k=bdd100k, deepglobe=deepglobe,
                phenobench=phenobench, refuge2=refuge2)


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
