"""Pascal VOC 2012 (PAS-20, PAS-20b) and Pascal Context (PC-59, PC-459) conversions, shared by their scripts.

Conventions are those of the open-vocabulary works the DEDOS and DiGSeg tables compare with
(CAT-Seg's `datasets/prepare_voc.py`, `prepare_pascal_context_{59,459}.py`):

* VOC class ids 1..20 become 0..19; the boundary label 255 stays ignored. PAS-20 ignores background
  (0 -> 255) and leaves out images with no object pixel; PAS-20b makes background class 20.
* Pascal Context `LabelMap` / detail-API `category_id` values are 1-based ids into the 459-class list
  (0 = unlabelled). PC-459 subtracts 1 (0 -> 65535, ignored; uint16). PC-59 keeps the 59 frequent
  classes, renumbered 0..58 in the order of their 459 ids; background and the other 400 classes -> 255.
"""
from __future__ import annotations
import json
from pathlib import Path
import numpy as np
from _common import PrepareError, Writer, check_values, find_root, lookup, progress, read_ids, read_label, require

# 1-based Pascal Context (459) ids of the PC-59 classes, in PC-59 order (sorted ids = alphabetical
# names, with PC-59's "diningtable" being PC-459's "table", id 397).
PC59_IDS = (2, 9, 18, 19, 22, 23, 25, 31, 33, 34, 44, 45, 46, 59, 65, 68, 72, 80, 85, 98, 104, 105, 113, 115,
            144, 158, 159, 162, 187, 189, 207, 220, 232, 258, 259, 260, 284, 295, 296, 308, 324, 326, 347, 349,
            354, 355, 360, 366, 368, 397, 415, 416, 420, 424, 427, 440, 445, 454, 458)

VOC_LAYOUT = "the VOCdevkit/VOC2012 folder of VOCtrainval_11-May-2012.tar (JPEGImages/, SegmentationClass/, ImageSets/Segmentation/)"
PC_LAYOUT = ("the VOCdevkit/VOC2010 folder of VOCtrainval_03-May-2010.tar (JPEGImages/, ImageSets/Main/) with the "
             "Pascal Context annotations: trainval/*.mat from trainval.tar.gz, or trainval_merged.json")


def prepare_voc(args, background: bool):
    "Write PAS-20 (background ignored) or PAS-20b (background = class 20)."
    name = "voc20b" if background else "voc20"
    root = find_root(args.src, "JPEGImages", VOC_LAYOUT)
    label_dir = next((root/d for d in ("SegmentationClass", "SegmentationClassAug") if (root/d).is_dir()), None)
    if label_dir is None: raise PrepareError(f"{root/'SegmentationClass'}: not found; expected {VOC_LAYOUT}")
    lut = lookup({0: 20 if background else 255, 255: 255, **{c: c - 1 for c in range(1, 21)}}, 256, 255)
    allowed = np.zeros(256, bool); allowed[:21] = True; allowed[255] = True
    w = Writer(args.dst, name, args.overwrite)
    for split in args.split:
        ids = read_ids(root/"ImageSets"/"Segmentation"/f"{split}.txt", "one VOC image id per line")
        for i in progress(ids, f"{name} {split}"):
            img = require(root/"JPEGImages"/f"{i}.jpg", "the VOC image of a listed id")
            if w.done(split, i, img): continue
            lp = label_dir/f"{i}.png"
            lab = read_label(lp, "a VOC class-index PNG (palette or grayscale) with ids 0..20 and 255")
            check_values(lab, allowed, lp, "VOC class ids 0..20 and 255 (boundary)")
            out = lut[lab]
            if not background and (out == 255).all(): w.skip(split, "no object pixel"); continue
            w.write(split, i, img, out)
    return w.finish()


def _decode_rle(seg: dict, path: Path) -> np.ndarray:
    "A COCO RLE mask (uncompressed counts; compressed strings need pycocotools)."
    h, w = seg["size"]; counts = seg["counts"]
    if isinstance(counts, str):
        try: from pycocotools import mask as m
        except ImportError: raise PrepareError(f"{path}: holds compressed RLE masks; install pycocotools to read them") from None
        return m.decode(seg).astype(bool)
    flat = np.zeros(h*w, bool); pos = 0
    for k, c in enumerate(counts):
        if k % 2: flat[pos:pos + c] = True
        pos += c
    return flat.reshape(w, h).T  # COCO RLE runs in column-major order


def _context_json(path: Path) -> dict:
    "{image id: (H, W, [(category_id, mask rle)])} from the detail-API trainval_merged.json."
    try: data = json.loads(path.read_text())
    except Exception as e: raise PrepareError(f"{path}: not valid JSON ({e}); expected the detail-API trainval_merged.json") from None
    if not {"images", "annos_segmentation"} <= set(data): raise PrepareError(f"{path}: lacks 'images'/'annos_segmentation'; expected the detail-API trainval_merged.json")
    imgs = {d["image_id"]: (Path(d["file_name"]).stem, d["height"], d["width"], []) for d in data["images"]}
    for a in data["annos_segmentation"]:
        if a["image_id"] in imgs: imgs[a["image_id"]][3].append((a["category_id"], a["segmentation"]))
    return {stem: (h, w, anns) for stem, h, w, anns in imgs.values()}


def _context_label(stem: str, mat_dir: Path | None, anns: dict | None, json_path: Path | None):
    "The 1-based 459-id label map of one image, or None when it has no annotation."
    if mat_dir is not None:
        mp = mat_dir/f"{stem}.mat"
        if not mp.exists(): return None
        import scipy.io
        try: lab = scipy.io.loadmat(mp)["LabelMap"]
        except Exception as e: raise PrepareError(f"{mp}: cannot read a 'LabelMap' array ({e}); expected a Pascal Context .mat") from None
        if lab.ndim != 2: raise PrepareError(f"{mp}: LabelMap has shape {lab.shape}; expected an HxW array of ids 0..459")
        lab = lab.astype(np.int64)
    else:
        if stem not in anns: return None
        h, w, items = anns[stem]; lab = np.zeros((h, w), np.int64)
        for cat, seg in items: lab[_decode_rle(seg, json_path)] = cat
    if lab.min() < 0 or lab.max() > 459: raise PrepareError(f"{mp if mat_dir else json_path}: {stem} holds ids outside 0..459")
    return lab


def prepare_context(args, full: bool):
    "Write PC-459 (`full`) or PC-59 from the .mat label maps or the detail-API JSON."
    name = "pc459" if full else "pc59"
    root = find_root(args.src, "JPEGImages", PC_LAYOUT)
    mat_dir = root/"trainval" if (root/"trainval").is_dir() else None
    json_path = root/"trainval_merged.json" if (root/"trainval_merged.json").exists() else None
    if mat_dir is None and (full or json_path is None):
        raise PrepareError(f"{root/'trainval'}: not found; expected {PC_LAYOUT}" + ("" if full else " (PC-59 also reads trainval_merged.json)"))
    anns = _context_json(json_path) if mat_dir is None else None
    lut = lookup({i: i - 1 for i in range(1, 460)}, 460, 65535) if full else lookup({k: v for v, k in enumerate(PC59_IDS)}, 460, 255)
    w = Writer(args.dst, name, args.overwrite)
    for split in args.split:
        lst = args.val_list if split == "val" and args.val_list else root/"ImageSets"/"Main"/f"{split}.txt"
        ids = read_ids(lst, "one VOC2010 image id per line (ImageSets/Main or --val-list)")
        for i in progress(ids, f"{name} {split}"):
            img = require(root/"JPEGImages"/f"{i}.jpg", "the VOC2010 image of a listed id")
            if w.done(split, i, img): continue
            lab = _context_label(i, mat_dir, anns, json_path)
            if lab is None: w.skip(split, "no Pascal Context annotation"); continue  # as CAT-Seg does
            w.write(split, i, img, lut[lab])
    if not sum(w.counts.values()): raise PrepareError(f"{mat_dir or json_path}: no annotation for any listed image; expected {PC_LAYOUT}")
    return w.finish()
