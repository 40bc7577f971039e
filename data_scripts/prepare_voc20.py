"""Prepare PAS-20 (Pascal VOC 2012, 20 classes, background ignored) for digseg.

--src: VOCdevkit/VOC2012 (or a folder holding it) from VOCtrainval_11-May-2012.tar, with
JPEGImages/, SegmentationClass/ (or SegmentationClassAug/) and ImageSets/Segmentation/<split>.txt.

Convention (CAT-Seg's prepare_voc.py, used by DEDOS Table 1): class ids 1..20 -> 0..19, background 0
and the boundary label 255 -> 255 (ignored), images with no object pixel are left out (counted in
dataset.json "skipped"). Evaluated on the 1,449 val images.
"""
from _common import cli, parser
from _pascal import prepare_voc


def main(argv=None):
    args = parser("voc20", __doc__, ("train", "val"), ("val",)).parse_args(argv)
    return prepare_voc(args, background=False)


if __name__ == "__main__": cli(main)
