"""Prepare PhenoBench semantic segmentation (soil / crop / weed) for digseg.

--src: the PhenoBench/ folder (or a folder holding it) with <split>/images/*.png and
<split>/semantics/*.png (test labels are not public).

Convention (PhenoBench semantic-segmentation benchmark): semantics 0 soil, 1 crop, 2 weed,
3 partial crop, 4 partial weed; --partial merge (default) maps 3 -> crop and 4 -> weed, as the
benchmark scores them; --partial ignore maps them to 255. Classes: soil, crop, weed (DiGSeg Table 8a
reports mIoU, IoU crop, IoU weed). 255 in the input stays ignored.
"""
import numpy as np
from _common import PrepareError, Writer, check_values, cli, find_root, lookup, parser, progress, read_label, require

LAYOUT = "PhenoBench/<split>/images/*.png and PhenoBench/<split>/semantics/*.png"


def main(argv=None):
    p = parser("phenobench", __doc__, ("train", "val"))
    p.add_argument("--partial", choices=("merge", "ignore"), default="merge", help="partial crops/weeds: merge into crop/weed, or ignore")
    args = p.parse_args(argv)
    root = find_root(args.src, "train" if "train" in args.split else args.split[0], LAYOUT)
    part = {3: 1, 4: 2} if args.partial == "merge" else {3: 255, 4: 255}
    lut = lookup({0: 0, 1: 1, 2: 2, 255: 255, **part}, 256, 255)
    allowed = np.zeros(256, bool); allowed[:5] = True; allowed[255] = True
    w = Writer(args.dst, "phenobench", args.overwrite)
    for split in args.split:
        imgs = sorted(require(root/split/"images", LAYOUT).glob("*.png"))
        if not imgs: raise PrepareError(f"{root/split/'images'}: holds no *.png; expected {LAYOUT}")
        for ip in progress(imgs, f"phenobench {split}"):
            if w.done(split, ip.stem, ip): continue
            lp = root/split/"semantics"/ip.name
            lab = read_label(lp, "a PhenoBench semantics PNG (0 soil, 1 crop, 2 weed, 3/4 partial crop/weed)")
            check_values(lab, allowed, lp, "PhenoBench semantic ids 0..4")
            w.write(split, ip.stem, ip, lut[lab])
    return w.finish()


if __name__ == "__main__": cli(main)
