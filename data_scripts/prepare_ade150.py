"""Prepare A-150 (ADE20K SceneParsing, 150 classes) for digseg.

--src: ADEChallengeData2016 (or a folder holding it) from ADEChallengeData2016.zip, with
images/{training,validation}/*.jpg and annotations/{training,validation}/*.png.

Convention (detectron2/MaskFormer prepare_ade20k_sem_seg.py, used by every open-vocabulary work):
annotation 0 ("other") -> 255 (ignored), ids 1..150 -> 0..149. Splits: training -> train (20,210),
validation -> val (2,000).
"""
import numpy as np
from _common import Writer, check_values, cli, find_root, lookup, parser, progress, read_label, require

LAYOUT = "ADEChallengeData2016/ with images/{training,validation}/*.jpg and annotations/{training,validation}/*.png"
FOLDERS = {"train": "training", "val": "validation"}


def main(argv=None):
    args = parser("ade150", __doc__, ("train", "val")).parse_args(argv)
    root = find_root(args.src, "annotations", LAYOUT)
    lut = lookup({0: 255, **{i: i - 1 for i in range(1, 151)}}, 256, 255)
    allowed = np.arange(256) <= 150
    w = Writer(args.dst, "ade150", args.overwrite)
    for split in args.split:
        img_dir = require(root/"images"/FOLDERS[split], LAYOUT)
        ann_dir = require(root/"annotations"/FOLDERS[split], LAYOUT)
        for img in progress(sorted(img_dir.glob("*.jpg")), f"ade150 {split}"):
            if w.done(split, img.stem, img): continue
            lp = ann_dir/f"{img.stem}.png"
            lab = read_label(lp, "an 8-bit ADE20K annotation PNG with ids 0..150")
            check_values(lab, allowed, lp, "ADE20K SceneParsing ids 0..150")
            w.write(split, img.stem, img, lut[lab])
    return w.finish()


if __name__ == "__main__": cli(main)
