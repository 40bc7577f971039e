"""Prepare DeepGlobe road extraction (binary: background / road) for digseg.

--src: the folder holding train/ of the DeepGlobe Road Extraction release (train/<id>_sat.jpg with
train/<id>_mask.png); only the training set has public masks.

Convention: the RGB masks are white (road) on black; a pixel is road when its mean intensity is at
least 128 (robust to resampled masks) -> 1, else 0. Because no validation masks are public, the
labelled images are split deterministically: an image goes to val when the SHA-256 of its id, read as
a fraction, is below --val-fraction (default 0.2), or exactly the ids listed in --val-list.
"""
import hashlib
from pathlib import Path
import numpy as np
from _common import PrepareError, Writer, cli, find_root, parser, progress, read_ids, read_label, require

LAYOUT = "train/<id>_sat.jpg with train/<id>_mask.png (DeepGlobe Road Extraction)"


def split_of(stem: str, val_fraction: float, val_ids: set | None) -> str:
    "'val' or 'train' for one image id: a fixed list, else a hash of the id."
    if val_ids is not None: return "val" if stem in val_ids else "train"
    h = int.from_bytes(hashlib.sha256(stem.encode()).digest()[:8], "big") / 2**64
    return "val" if h < val_fraction else "train"


def main(argv=None):
    p = parser("deepglobe", __doc__, ("train", "val"))
    p.add_argument("--val-fraction", type=float, default=0.2, help="fraction of labelled images held out as val")
    p.add_argument("--val-list", type=Path, help="file of ids (one per line) forming val instead")
    args = p.parse_args(argv)
    root = find_root(args.src, "train", LAYOUT)
    val_ids = set(read_ids(args.val_list, "one DeepGlobe image id per line")) if args.val_list else None
    imgs = sorted(require(root/"train", LAYOUT).glob("*_sat.jpg"))
    if not imgs: raise PrepareError(f"{root/'train'}: holds no *_sat.jpg; expected {LAYOUT}")
    w = Writer(args.dst, "deepglobe", args.overwrite)
    for ip in progress(imgs, "deepglobe"):
        stem = ip.name[:-len("_sat.jpg")]; split = split_of(stem, args.val_fraction, val_ids)
        if split not in args.split or w.done(split, stem, ip): continue
        lp = ip.with_name(f"{stem}_mask.png")
        rgb = read_label(lp, "an RGB road mask (white road on black)", channels=3)
        w.write(split, stem, ip, (rgb.mean(-1) >= 128).astype(np.int64))
    return w.finish()


if __name__ == "__main__": cli(main)
