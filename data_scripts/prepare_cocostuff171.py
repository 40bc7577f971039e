"""Prepare COCO-Stuff-171 for digseg (training set of DEDOS and DiGSeg, and DiGSeg's COCO evaluation).

--src: a folder with the COCO 2017 images ({train2017,val2017}/*.jpg, or images/{train2017,val2017}/)
and the stuff+thing maps of stuffthingmaps_trainval2017.zip (stuffthingmaps_trainval2017/{train2017,val2017}/*.png).

Convention (detectron2 prepare_cocofied... / CAT-Seg prepare_coco_stuff.py): the map values are
COCO category ids - 1 (0..181, 255 = unlabelled); the 171 ids that occur (80 things, 91 stuff) are
renumbered 0..170 in increasing order, everything else -> 255 (ignored). Splits: train2017 -> train
(118k), val2017 -> val (5k).
"""
import numpy as np
from _common import PrepareError, Writer, check_values, cli, lookup, parser, progress, read_label, require

LAYOUT = "{train2017,val2017}/*.jpg (or images/...) and stuffthingmaps_trainval2017/{train2017,val2017}/*.png"
FOLDERS = {"train": "train2017", "val": "val2017"}
UNUSED_THING_IDS = (11, 25, 28, 29, 44, 65, 67, 68, 70, 82, 90)  # 0-based COCO ids without annotations
USED_IDS = [i for i in range(182) if i not in UNUSED_THING_IDS]


def main(argv=None):
    args = parser("cocostuff171", __doc__, ("train", "val")).parse_args(argv)
    assert len(USED_IDS) == 171
    src = require(args.src, LAYOUT)
    lut = lookup({k: v for v, k in enumerate(USED_IDS)}, 256, 255)
    allowed = np.zeros(256, bool); allowed[:182] = True; allowed[255] = True
    w = Writer(args.dst, "cocostuff171", args.overwrite)
    for split in args.split:
        ann_dir = require(src/"stuffthingmaps_trainval2017"/FOLDERS[split], LAYOUT)
        img_dir = next((p for p in (src/FOLDERS[split], src/"images"/FOLDERS[split]) if p.is_dir()), None)
        if img_dir is None: raise PrepareError(f"{src/FOLDERS[split]}: not found; expected {LAYOUT}")
        for lp in progress(sorted(ann_dir.glob("*.png")), f"cocostuff171 {split}"):
            img = require(img_dir/f"{lp.stem}.jpg", f"the COCO image of {lp}")
            if w.done(split, lp.stem, img): continue
            lab = read_label(lp, "an 8-bit stuffthingmaps PNG with ids 0..181 and 255")
            check_values(lab, allowed, lp, "COCO-Stuff ids 0..181 and 255")
            w.write(split, lp.stem, img, lut[lab])
    return w.finish()


if __name__ == "__main__": cli(main)
