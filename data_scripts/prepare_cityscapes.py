"""Prepare Cityscapes (19 classes) for digseg.

--src: the folder holding leftImg8bit/ and gtFine/ (leftImg8bit_trainvaltest.zip and
gtFine_trainvaltest.zip extracted together): leftImg8bit/<split>/<city>/<stem>_leftImg8bit.png and
gtFine/<split>/<city>/<stem>_gtFine_labelIds.png.

Convention (cityscapesScripts labels.py, as in every 19-class evaluation): labelIds 0..33 -> the 19
trainIds (road 7 -> 0 ... bicycle 33 -> 18), every other id -> 255 (ignored). Output stems are
<city>_<seq>_<frame>. Val = 500 images.
"""
import numpy as np
from _common import PrepareError, Writer, check_values, cli, find_root, lookup, parser, progress, read_label, require

LAYOUT = "leftImg8bit/<split>/<city>/*_leftImg8bit.png and gtFine/<split>/<city>/*_gtFine_labelIds.png"
LABEL_TO_TRAIN = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10,
                  24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}


def main(argv=None):
    args = parser("cityscapes", __doc__, ("train", "val")).parse_args(argv)
    root = find_root(args.src, "leftImg8bit", LAYOUT)
    lut = lookup(LABEL_TO_TRAIN, 256, 255); allowed = np.arange(256) <= 33
    w = Writer(args.dst, "cityscapes", args.overwrite)
    for split in args.split:
        imgs = sorted(require(root/"leftImg8bit"/split, LAYOUT).glob("*/*_leftImg8bit.png"))
        if not imgs: raise PrepareError(f"{root/'leftImg8bit'/split}: holds no <city>/*_leftImg8bit.png; expected {LAYOUT}")
        for ip in progress(imgs, f"cityscapes {split}"):
            stem = ip.name[:-len("_leftImg8bit.png")]
            if w.done(split, stem, ip): continue
            lp = root/"gtFine"/split/ip.parent.name/f"{stem}_gtFine_labelIds.png"
            lab = read_label(lp, "a *_gtFine_labelIds.png (8-bit label ids 0..33)")
            check_values(lab, allowed, lp, "Cityscapes labelIds 0..33 (not trainIds or colours)")
            w.write(split, stem, ip, lut[lab])
    return w.finish()


if __name__ == "__main__": cli(main)
