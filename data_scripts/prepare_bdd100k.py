"""Prepare BDD100K semantic segmentation (19 Cityscapes classes) for digseg.

--src: the bdd100k/ folder (or a folder holding it) with images/10k/<split>/*.jpg and the semantic
labels, either labels/sem_seg/masks/<split>/<stem>.png (current release) or
seg/labels/<split>/<stem>_train_id.png (2018 release).

Convention (BDD100K, and MESS register_bdd100k.py): the masks already hold the 19 Cityscapes trainIds
0..18 with 255 ignored, so they are copied after a value check. Val = 1,000 images.
"""
import numpy as np
from _common import PrepareError, Writer, check_values, cli, find_root, parser, progress, read_label, require

LAYOUT = "bdd100k/ with images/10k/<split>/*.jpg and labels/sem_seg/masks/<split>/*.png (or seg/labels/<split>/*_train_id.png)"


def label_path(root, split, stem):
    "The trainId mask of an image in either BDD100K release layout."
    for p in (root/"labels"/"sem_seg"/"masks"/split/f"{stem}.png", root/"seg"/"labels"/split/f"{stem}_train_id.png"):
        if p.exists(): return p
    return root/"labels"/"sem_seg"/"masks"/split/f"{stem}.png"


def main(argv=None):
    args = parser("bdd100k", __doc__, ("train", "val")).parse_args(argv)
    root = find_root(args.src, "images/10k", LAYOUT)
    allowed = np.zeros(256, bool); allowed[:19] = True; allowed[255] = True
    w = Writer(args.dst, "bdd100k", args.overwrite)
    for split in args.split:
        imgs = sorted(require(root/"images"/"10k"/split, LAYOUT).glob("*.jpg"))
        if not imgs: raise PrepareError(f"{root/'images'/'10k'/split}: holds no *.jpg; expected {LAYOUT}")
        for ip in progress(imgs, f"bdd100k {split}"):
            if w.done(split, ip.stem, ip): continue
            lp = label_path(root, split, ip.stem)
            lab = read_label(lp, "an 8-bit BDD100K trainId mask (0..18, 255)")
            check_values(lab, allowed, lp, "trainIds 0..18 and 255 (not colour masks)")
            w.write(split, ip.stem, ip, lab)
    return w.finish()


if __name__ == "__main__": cli(main)
