"""Prepare PAS-20b (Pascal VOC 2012, 20 classes + background) for digseg.

--src: VOCdevkit/VOC2012 (or a folder holding it) from VOCtrainval_11-May-2012.tar, with
JPEGImages/, SegmentationClass/ (or SegmentationClassAug/) and ImageSets/Segmentation/<split>.txt.

Convention (CAT-Seg's prepare_voc.py, "annotations_detectron2_bg"): class ids 1..20 -> 0..19,
background 0 -> 20 ("background"), the boundary label 255 stays ignored; every val image is kept.
At evaluation CAT-Seg prompts background with the 39 Pascal Context classes that are not VOC
classes (digseg class list `voc20b_background_prompts`) and counts their predictions as class 20.
"""
from _common import cli, parser
from _pascal import prepare_voc


def main(argv=None):
    args = parser("voc20b", __doc__, ("train", "val"), ("val",)).parse_args(argv)
    return prepare_voc(args, background=True)


if __name__ == "__main__": cli(main)
