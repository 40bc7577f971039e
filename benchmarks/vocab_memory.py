"""Peak memory of one pipeline call over a whole vocabulary: per-class maps kept, or the running argmax (issue 20).

    python benchmarks/vocab_memory.py                  # K = 847 classes (A-847) on one 512 x 512 image, tiny weights
    python benchmarks/vocab_memory.py --quick          # K = 40 at 128 x 128 (what the test runs)

Each mode runs in a fresh process (peak RSS is a per-process high-water mark): the pipeline is built and warmed
up on two classes, the baseline RSS is read, then one call segments the image against all K classes with
`return_maps=True` (the (K, H, W) probabilities, masks and uncertainty of every class) or `return_maps=False`
(labels from a running argmax; what a vocabulary run does by default). The labels of the two modes are compared.
Tiny weights: the maps' memory depends on K, H and W only, not on the model."""
from __future__ import annotations
import json, resource, subprocess, sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bench as C
import torch

NAME = "vocab_memory"


def _rss_mb():
    "Peak resident set size of this process so far, in MB (Linux reports KB)."
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/1024


def one_mode(return_maps: bool, classes: int, size: int, seed: int = 0):
    "Run in a fresh process: {'peak_mb': peak RSS above the warmed-up baseline, 'labels': label hash}."
    from digseg.pipeline import build_tiny_pipeline
    torch.manual_seed(seed)
    names = [f"class {i}" for i in range(classes)]
    pipe = build_tiny_pipeline(seed=seed)
    image = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(seed))
    pipe(image, classes=names[:2], generator=torch.Generator().manual_seed(0), return_maps=False)   # warm-up
    base = _rss_mb()
    out = pipe(image, classes=names, generator=torch.Generator().manual_seed(0), return_maps=return_maps)
    return {"peak_mb": round(_rss_mb() - base, 1), "baseline_mb": round(base, 1),
            "labels_sum": int(out.labels.long().sum()), "labels_hist": torch.bincount(out.labels.flatten() + 1).tolist()[:5]}


def main(argv=None):
    p = C.base_parser(__doc__.splitlines()[0])
    p.add_argument("--classes", type=int, default=None, help="vocabulary size K (default 847; quick: 40)")
    p.add_argument("--size", type=int, default=None, help="image side (default 512; quick: 128)")
    p.add_argument("--mode", choices=["maps", "running"], default=None, help="internal: run one mode and print JSON")
    args = p.parse_args(argv)
    C.setup(args)
    K = args.classes or (40 if args.quick else 847); S = args.size or (128 if args.quick else 512)
    if args.mode:   # the child process
        print(json.dumps(one_mode(args.mode == "maps", K, S, args.seed))); return None
    rec = {"machine": C.machine(args.device), "classes": K, "size": S}
    for mode in ("maps", "running"):
        cmd = [sys.executable, __file__, "--mode", mode, "--classes", str(K), "--size", str(S), "--threads", str(torch.get_num_threads())]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        rec[mode] = json.loads(out)
    rec["same_labels"] = rec["maps"]["labels_sum"] == rec["running"]["labels_sum"] and rec["maps"]["labels_hist"] == rec["running"]["labels_hist"]
    rec["maps_floor_mb"] = round(K*S*S*(4 + 4 + 1)/2**20, 1)   # probabilities + uncertainty (float32) + masks (bool)
    rec["ratio"] = round(rec["maps"]["peak_mb"]/max(rec["running"]["peak_mb"], 1.0), 1)
    C.table([{"mode": m, "peak MB above baseline": rec[m]["peak_mb"]} for m in ("maps", "running")], ["mode", "peak MB above baseline"],
            f"one call, K = {K} classes, {S} x {S} image, tiny weights (maps alone: {rec['maps_floor_mb']} MB)")
    C.write_results(NAME, f"cpu-tiny-K{K}-{S}" + ("-quick" if args.quick else ""), rec, args.out)
    return rec


if __name__ == "__main__":
    main()
