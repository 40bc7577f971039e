"""Shared helpers of the `prepare_<dataset>.py` scripts.

Every script converts an official download layout into the one layout `digseg` reads
(`digseg.data.SegFolder`):

    <dst>/dataset.json
    <dst>/images/<split>/<stem>.{jpg,png}
    <dst>/annotations/<split>/<stem>.png      (uint8, or uint16 when ids exceed 255)

Writes are atomic (temporary file + rename), so a killed run never leaves a half-written file, and
an item whose image and label both exist is skipped: a second run is a no-op unless `--overwrite`.
Missing or malformed inputs raise `PrepareError` naming the file and what was expected.
"""
from __future__ import annotations
import argparse, json, os, shutil, sys
from pathlib import Path
import numpy as np
from PIL import Image
from tqdm.auto import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
from digseg.data import _atomic_save, label_to_png, write_dataset_info  # noqa: E402
from digseg.benchmarks import BENCHMARKS, class_names  # noqa: E402
from digseg.config import data_root  # noqa: E402


class PrepareError(Exception):
    "A missing or malformed input file, named in the message."


def parser(name: str, doc: str, splits: tuple, default: tuple | None = None):
    "The argument parser every script shares: --src, --dst (default `data_root()/name`), --split, --overwrite."
    p = argparse.ArgumentParser(prog=f"prepare_{name}.py", description=doc.split("\n\n")[0],
                                epilog=doc.split("\n\n", 1)[-1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--src", required=True, type=Path, help="the official download (see the description)")
    p.add_argument("--dst", type=Path, default=data_root()/name,
                   help=f"output folder in the digseg layout (default $DIGSEG_DATA/{name}, DIGSEG_DATA defaulting to "
                        f"datasets/digseg in the project: where the configs and `digseg evaluate` look)")
    p.add_argument("--split", nargs="+", choices=splits, default=list(default or splits), help="splits to prepare")
    p.add_argument("--overwrite", action="store_true", help="rewrite items that already exist")
    return p


def find_root(src: Path, marker: str, layout: str) -> Path:
    "`src` or the folder up to two levels below it that holds `marker` (e.g. --src datasets/ finds VOCdevkit/VOC2012)."
    src = Path(src)
    if not src.is_dir(): raise PrepareError(f"{src}: folder not found; expected {layout}")
    level = [src]
    for _ in range(3):
        for cand in level:
            if (cand / marker).exists(): return cand
        level = [c for p in level for c in sorted(p.iterdir()) if c.is_dir()]
    raise PrepareError(f"{src / marker}: not found; expected {layout}")


def require(path: Path, what: str) -> Path:
    "`path` if it exists, else a PrepareError naming it and what was expected there."
    if not Path(path).exists(): raise PrepareError(f"{path}: not found; expected {what}")
    return Path(path)


def read_ids(path: Path, what: str) -> list:
    "Image ids of a split list (one per line)."
    ids = [l.split()[0] for l in require(path, what).read_text().splitlines() if l.strip()]
    if not ids: raise PrepareError(f"{path}: empty; expected {what}")
    return ids


def read_label(path: Path, expected: str, channels: int = 1) -> np.ndarray:
    "A label image as an int64 array, checked to have `channels` channels (1: HxW id map, 3: HxWx3 RGB)."
    require(path, expected)
    try:
        with Image.open(path) as im: arr = np.asarray(im)
    except Exception as e:
        raise PrepareError(f"{path}: cannot be read as an image ({e}); expected {expected}") from None
    ok = arr.ndim == 2 if channels == 1 else (arr.ndim == 3 and arr.shape[2] >= channels)
    if not ok: raise PrepareError(f"{path}: has shape {arr.shape}; expected {expected}")
    return arr[..., :channels].astype(np.int64) if channels > 1 else arr.astype(np.int64)


def check_values(label: np.ndarray, allowed: np.ndarray, path: Path, expected: str):
    "Raise if `label` holds a value outside `allowed` (a boolean table indexed by value)."
    bad = [int(v) for v in np.unique(label) if not (0 <= v < len(allowed) and allowed[v])]
    if bad: raise PrepareError(f"{path}: holds values {bad[:8]}; expected {expected}")


def lookup(table: dict, size: int, fill: int) -> np.ndarray:
    "A lookup table of `size` entries: table[k] = v, everything else `fill`."
    lut = np.full(size, fill, np.int64)
    for k, v in table.items(): lut[k] = v
    return lut


def image_size(path: Path) -> tuple:
    "(H, W) of an image file, with a PrepareError naming an unreadable file."
    try:
        with Image.open(require(path, "an image")) as im: return im.size[::-1]
    except PrepareError: raise
    except Exception as e: raise PrepareError(f"{path}: cannot be read as an image ({e})") from None


class Writer:
    "Writes items of one dataset into the digseg layout, skipping finished items (idempotent)."
    def __init__(self, dst: Path, name: str, overwrite: bool = False):
        self.dst, self.name, self.overwrite = Path(dst), name, overwrite
        self.spec = BENCHMARKS[name]
        self.counts, self.written, self.skipped = {}, 0, {}

    @staticmethod
    def suffix(image) -> str:
        "Suffix of the written image: .jpg and .png files are copied, anything else is re-encoded as PNG."
        if image is None or isinstance(image, np.ndarray): return ".png"  # arrays are written as PNG
        s = Path(image).suffix.lower()
        return ".jpg" if s in (".jpg", ".jpeg") else ".png"

    def paths(self, split: str, stem: str, image_suffix: str):
        return (self.dst / "images" / split / f"{stem}{image_suffix}", self.dst / "annotations" / split / f"{stem}.png")

    def done(self, split: str, stem: str, image) -> bool:
        "True (and counted) when the item exists and will not be rewritten: the script skips reading its inputs."
        ip, lp = self.paths(split, stem, self.suffix(image))
        if self.overwrite or not (ip.exists() and lp.exists()): return False
        self.counts[split] = self.counts.get(split, 0) + 1
        return True

    def write(self, split: str, stem: str, image, label: np.ndarray):
        "Write one item; `image` is a source file (.jpg/.png copied byte for byte) or an HxWx3 uint8 array."
        ip, lp = self.paths(split, stem, self.suffix(image))
        self.counts[split] = self.counts.get(split, 0) + 1
        if not self.overwrite and ip.exists() and lp.exists(): return False
        ip.parent.mkdir(parents=True, exist_ok=True); lp.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(image, np.ndarray):
            if image.shape[:2] != label.shape: raise PrepareError(f"{stem}: image {image.shape[:2]} and label {label.shape} differ in size")
            _atomic_save(Image.fromarray(image), ip)
        else:
            hw = image_size(Path(image))
            if hw != label.shape: raise PrepareError(f"{image}: size {hw} differs from its label's {label.shape}")
            if Path(image).suffix.lower() in (".jpg", ".jpeg", ".png"):
                tmp = ip.with_name(ip.name + ".tmp"); shutil.copyfile(image, tmp); os.replace(tmp, ip)
            else:  # e.g. .bmp / .tif images are re-encoded losslessly
                with Image.open(image) as im: _atomic_save(im.convert("RGB"), ip)
        _atomic_save(label_to_png(label), lp)  # the label last: its presence marks a finished item
        self.written += 1
        return True

    def skip(self, split: str, reason: str):
        "Count an item left out on purpose (e.g. PAS-20 images with no object pixel)."
        self.skipped.setdefault(split, {}).setdefault(reason, 0); self.skipped[split][reason] += 1

    def finish(self):
        "Write dataset.json (class names, ignore index, split sizes, items left out) when it changed; print a summary."
        path = self.dst / "dataset.json"
        old = json.loads(path.read_text()) if path.exists() else {}
        info = {**old, "name": self.name, "class_names": class_names(self.name), "ignore_index": self.spec.ignore_index,
                "splits": {**old.get("splits", {}), **self.counts}}
        if self.skipped: info["skipped"] = {**old.get("skipped", {}), **self.skipped}
        if info != old:  # a second run leaves the file untouched
            write_dataset_info(self.dst, self.name, info["class_names"], info["ignore_index"], info["splits"])
            tmp = self.dst / "dataset.json.tmp"; tmp.write_text(json.dumps(info, indent=1)); os.replace(tmp, path)
        print(f"{self.name}: {self.written} items written, {sum(self.counts.values()) - self.written} already present"
              + (f", left out: {self.skipped}" if self.skipped else "") + f" -> {self.dst}")
        return info


def progress(items, desc: str):
    "tqdm progress over a list."
    return tqdm(items, desc=desc, unit="img", leave=False)


def cli(main):
    "Run `main(argv)`; a PrepareError becomes a one-line message and exit status 2."
    try: main(sys.argv[1:])
    except PrepareError as e:
        print(f"error: {e}", file=sys.stderr); sys.exit(2)
