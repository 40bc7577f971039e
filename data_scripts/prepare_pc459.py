"""Prepare PC-459 (Pascal Context, all 459 classes) for digseg.

--src: VOCdevkit/VOC2010 (or a folder holding it) from VOCtrainval_03-May-2010.tar, with JPEGImages/,
ImageSets/Main/<split>.txt, and trainval/<id>.mat from
https://cs.stanford.edu/~roozbeh/pascal-context/trainval.tar.gz (extracted into VOC2010/).

Convention (CAT-Seg prepare_pascal_context_459.py): LabelMap ids 1..459 -> 0..458, 0 (unlabelled)
-> 65535 (ignored); labels are 16-bit PNGs. Val = ImageSets/Main/val.txt, or --val-list
(CAT-Seg evaluates the 5,104 ids of its datasets/pascalcontext_val.txt); ids without a .mat are left
out and counted in dataset.json "skipped".
"""
from pathlib import Path
from _common import cli, parser
from _pascal import prepare_context


def main(argv=None):
    p = parser("pc459", __doc__, ("train", "val"), ("val",))
    p.add_argument("--val-list", type=Path, help="val ids instead of ImageSets/Main/val.txt (e.g. CAT-Seg's pascalcontext_val.txt)")
    args = p.parse_args(argv)
    return prepare_context(args, full=True)


if __name__ == "__main__": cli(main)
