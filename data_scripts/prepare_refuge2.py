"""Prepare REFUGE-2 optic disc / cup segmentation for digseg.

--src: the REFUGE2/ folder (or a folder holding it) with <split>/images/*.jpg and the masks in
<split>/mask/ (or masks/) as .bmp or .png, one per image with the same stem.

Convention (REFUGE challenge masks): gray level 0 = optic cup, 128 = optic disc rim, 255 =
background; values are snapped to the nearest of the three (tolerates resampled masks) and written
as 0 background, 1 optic disc (rim), 2 optic cup. The disc of the REFUGE metrics is the rim plus the
cup (ids {1, 2}); DiGSeg Table 8b reports IoU and Dice on the test split.
"""
import numpy as np
from _common import PrepareError, Writer, cli, find_root, parser, progress, read_label, require

LAYOUT = "REFUGE2/<split>/images/*.jpg with REFUGE2/<split>/mask/*.bmp|png (0 cup, 128 disc, 255 background)"


def gray_to_class(gray: np.ndarray) -> np.ndarray:
    "REFUGE gray levels to classes: >= 192 background 0, 64..191 disc rim 1, < 64 cup 2."
    return np.where(gray >= 192, 0, np.where(gray >= 64, 1, 2))


def main(argv=None):
    args = parser("refuge2", __doc__, ("train", "val", "test")).parse_args(argv)
    root = find_root(args.src, args.split[0], LAYOUT)
    w = Writer(args.dst, "refuge2", args.overwrite)
    for split in args.split:
        imgs = sorted(p for p in require(root/split/"images", LAYOUT).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp"))
        if not imgs: raise PrepareError(f"{root/split/'images'}: holds no fundus image; expected {LAYOUT}")
        mask_dir = next((root/split/d for d in ("mask", "masks") if (root/split/d).is_dir()), root/split/"mask")
        for ip in progress(imgs, f"refuge2 {split}"):
            if w.done(split, ip.stem, ip): continue
            lp = next((mask_dir/f"{ip.stem}{e}" for e in (".bmp", ".png") if (mask_dir/f"{ip.stem}{e}").exists()), mask_dir/f"{ip.stem}.bmp")
            gray = read_label(lp, "a single-channel REFUGE mask (0 cup, 128 disc, 255 background)")
            w.write(split, ip.stem, ip, gray_to_class(gray))
    return w.finish()


if __name__ == "__main__": cli(main)
