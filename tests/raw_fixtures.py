"""Tiny datasets written in each benchmark's OFFICIAL raw format, for the data_scripts tests and the
`digseg evaluate` tests: each writer puts a fixture under `src` and returns (extra prepare-script
arguments, the first label row expected after preparation)."""
import importlib, sys
from pathlib import Path
import numpy as np
import scipy.io
from PIL import Image

SCRIPTS = Path(__file__).resolve().parents[1]/"data_scripts"
if str(SCRIPTS) not in sys.path: sys.path.insert(0, str(SCRIPTS))

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


def prepare(name, root):
    "Write the raw fixture of `name` under `root/raw`, prepare it into `root/out`; (prepared folder, expected first row)."
    src, dst = Path(root)/"raw", Path(root)/"out"
    extra, expected = FIXTURES[name](src)
    script(name).main(["--src", str(src), "--dst", str(dst), *extra])
    return dst, expected
