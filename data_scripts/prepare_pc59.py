"""Prepare PC-59 (Pascal Context, 59 frequent classes) for digseg.

--src: VOCdevkit/VOC2010 (or a folder holding it) from VOCtrainval_03-May-2010.tar, with JPEGImages/,
ImageSets/Main/<split>.txt, and the Pascal Context annotations: trainval/<id>.mat (LabelMap, from
https://cs.stanford.edu/~roozbeh/pascal-context/trainval.tar.gz, extracted into VOC2010/) or the
detail-API trainval_merged.json.

Convention (CAT-Seg/SAN prepare_pascal_context_59.py): the 459-space ids of the 59 classes are
renumbered 0..58 in increasing id order (= the alphabetical PC-59 list); background and the other 400
classes -> 255 (ignored: PC-59 has no background class). Val = ImageSets/Main/val.txt, or
--val-list (CAT-Seg evaluates the 5,104 ids of its datasets/pascalcontext_val.txt); an id without an
annotation is left out and counted in dataset.json "skipped", as CAT-Seg does.
"""
from pathlib import Path
from _common import cli, parser
from _pascal import prepare_context


def main(argv=None):
    p = parser("pc59", __doc__, ("train", "val"), ("val",))
    p.add_argument("--val-list", type=Path, help="val ids instead of ImageSets/Main/val.txt (e.g. CAT-Seg's pascalcontext_val.txt)")
    args = p.parse_args(argv)
    return prepare_context(args, full=False)


if __name__ == "__main__": cli(main)
