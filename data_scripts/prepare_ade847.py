"""Prepare A-847 (ADE20K full, 847 classes) for digseg.

--src: ADE20K_2021_17_01 (or a folder holding it) from ADE20K_2021_17_01.zip, with
images/ADE/{training,validation}/<scene>/.../ADE_*.jpg and the full annotation ADE_*_seg.png beside
each image.

Convention (detectron2/MaskFormer prepare_ade20k_full_sem_seg.py, as shipped with MESS and used by
CAT-Seg/SAN): the object class of a pixel is R/10*256 + G of the RGB `_seg.png`; the 847 classes of
the ADE20K-full list (their class indices are in ade847_index_ids.txt, in label order) become 0..846,
every other class and unlabelled pixels -> 65535 (ignored); labels are 16-bit PNGs. Images whose
shorter side exceeds --max-size (default 512) are resized so it is 512 (bilinear image, nearest
label), as that script does. Splits: training -> train, validation -> val (2,000).
"""
from pathlib import Path
import numpy as np
from PIL import Image
from _common import PrepareError, Writer, cli, find_root, lookup, parser, progress, read_label, require

LAYOUT = "ADE20K_2021_17_01/ with images/ADE/{training,validation}/**/ADE_*.jpg and their *_seg.png"
FOLDERS = {"train": "training", "val": "validation"}
INDEX_IDS = [int(l) for l in (Path(__file__).parent/"ade847_index_ids.txt").read_text().split()]


def class_index(seg: np.ndarray) -> np.ndarray:
    "ADE20K full class index of each pixel from the RGB _seg.png (0 = unlabelled)."
    return (seg[..., 0] // 10) * 256 + seg[..., 1]


def resize_short(img: np.ndarray, lab: np.ndarray, max_size: int):
    "Resize so the shorter side is `max_size` when it is longer (0: keep)."
    h, w = lab.shape
    if not max_size or min(h, w) <= max_size: return img, lab
    s = max_size / min(h, w); size = (max_size, round(w*s)) if h <= w else (round(h*s), max_size)
    img = np.asarray(Image.fromarray(img).resize(size[::-1], Image.BILINEAR))
    lab = np.asarray(Image.fromarray(lab.astype(np.int32)).resize(size[::-1], Image.NEAREST)).astype(np.int64)
    return img, lab


def main(argv=None):
    p = parser("ade847", __doc__, ("train", "val"), ("val",))
    p.add_argument("--max-size", type=int, default=512, help="shorter-side limit (0: keep the original size)")
    args = p.parse_args(argv)
    assert len(INDEX_IDS) == 847
    root = find_root(args.src, "images/ADE", LAYOUT)
    lut = lookup({k: v for v, k in enumerate(INDEX_IDS)}, 26*256 + 256, 65535)
    w = Writer(args.dst, "ade847", args.overwrite)
    for split in args.split:
        imgs = sorted(require(root/"images"/"ADE"/FOLDERS[split], LAYOUT).rglob("ADE_*.jpg"))
        if not imgs: raise PrepareError(f"{root/'images'/'ADE'/FOLDERS[split]}: holds no ADE_*.jpg; expected {LAYOUT}")
        for ip in progress(imgs, f"ade847 {split}"):
            if w.done(split, ip.stem, None): continue  # images are re-encoded as PNG (resized)
            sp = ip.with_name(ip.stem + "_seg.png")
            seg = read_label(sp, "the RGB ADE20K full annotation (class = R/10*256 + G)", channels=3)
            try:
                with Image.open(ip) as im: img = np.asarray(im.convert("RGB"))
            except Exception as e: raise PrepareError(f"{ip}: cannot be read as an image ({e})") from None
            if img.shape[:2] != seg.shape[:2]: raise PrepareError(f"{sp}: size {seg.shape[:2]} differs from {ip}'s {img.shape[:2]}")
            img, lab = resize_short(img, class_index(seg), args.max_size)
            w.write(split, ip.stem, img, lut[lab])
    return w.finish()


if __name__ == "__main__": cli(main)
