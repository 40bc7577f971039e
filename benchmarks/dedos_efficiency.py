"""DEDOS Table 7: learnable parameters, GFLOPs and time per image at 640 x 640 with CLIP ViT-L/14.

    python benchmarks/dedos_efficiency.py [--quick]      # SD2.1-size U-Net/VAE + ViT-L/14 (random weights), CPU
    python benchmarks/dedos_efficiency.py --device cuda  # also the GPU time (the paper: one RTX 4090)
    python benchmarks/dedos_efficiency.py --no-time      # counts only (seconds: the meta device), earlier time kept

Random weights: parameter counts and FLOPs depend only on the architecture. Counted with
torch.utils.flop_counter (one multiply-add = 2 FLOPs; fvcore, which CAT-Seg and most segmentation papers
use, counts one multiply-add as 1 FLOP, so 'GFLOPs_fvcore' = FLOPs / 2e9 is the column to set beside the
paper's). Three passes are counted: the text tower on the vocabulary (cached per vocabulary, so not part
of the per-image cost), inference on one image (queries from the memory: the U-Net does not run at test
time, `inference_queries='memory'`), and the training forward (VAE encode + the U-Net at the 3 timesteps).
The inference and text counts run on a copy of the architecture on the meta device (shapes only, so SD2 + ViT-L/14 at 640 x 640
count in seconds; equal to a real-tensor count, which the tiny size checks in every run) with the fused
nn.MultiheadAttention fast path off (`digseg.config.count_flops`): before that switch, the CLIP blocks'
attention counted as zero and this benchmark reported 521 fvcore GFLOPs per image.
"""
from __future__ import annotations
import json, sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bench as C
import torch
from digseg.config import count_flops
from digseg.dedos_train import dedos_efficiency, frozen

NAME = "dedos_efficiency"


def build(size: str, seed: int, clip_trainable: str):
    "A random-weight DEDOSModel of `size` ('tiny', or 'sd2': SD 2.1 U-Net/VAE, CLIP ViT-L/14, the paper's DEDOS sizes)."
    from digseg.dedos import DEDOSModel, DEDOSConfig, build_tiny_dedos
    from digseg.models import build_unet, build_vae, _seeded
    from digseg.text import ClipBackbone
    if size == "tiny": return build_tiny_dedos(seed=seed, clip_trainable=clip_trainable)
    unet, vae = build_unet("sd2", seed=seed), build_vae("sd2", seed=seed)
    clip = _seeded(seed, lambda: ClipBackbone("ViT-L-14"))
    return _seeded(seed, lambda: DEDOSModel(vae, unet, clip, DEDOSConfig(clip_trainable=clip_trainable)))


def meta_build(size: str, seed: int, clip_trainable: str):
    "`build` on the meta device (no memory, no values), its proxy memory marked as filled (inference reads it)."
    with torch.device("meta"): model = build(size, seed, clip_trainable)
    model.proxy.memory_updates = torch.tensor(1)   # a meta buffer has no value to branch on
    return model.eval()


def counts(model, res: int, names: list, seed: int, train: bool = True):
    "(dedos_efficiency record, training-forward FLOPs or None) of `model` at `res`."
    eff = dedos_efficiency(model, res, names, seed=seed)            # parameters, per-image and per-vocabulary FLOPs
    if not train: return eff, None
    dev = model.null_text.device
    g = torch.Generator().manual_seed(seed)
    img = torch.rand(1, 3, res, res, generator=g).to(dev)
    labels = torch.randint(0, len(names), (1, res, res), generator=g).to(dev)
    # the training forward (losses, no backward), counted frozen and without autograd: the same forward FLOPs
    with frozen(model): train_flops = count_flops(lambda: model.train()(img, labels, names))
    model.eval()
    return eff, train_flops


def check_meta_counts(seed: int):
    "Counts of the tiny DEDOS on real tensors and on the meta device; they must agree."
    names = C.class_names(10)
    real = build("tiny", seed, "qv").eval(); real.proxy.memory_updates.fill_(1)
    (a, _), (b, _) = counts(real, 64, names, seed, train=False), counts(meta_build("tiny", seed, "qv"), 64, names, seed, train=False)
    pairs = {"per_image": (a["GFLOPs_per_image"], b["GFLOPs_per_image"]), "text": (a["GFLOPs_text_per_vocabulary"], b["GFLOPs_text_per_vocabulary"])}
    if any(x != y for x, y in pairs.values()): raise SystemExit(f"meta-device counts differ from real ones: {pairs}")
    return {k: x for k, (x, _) in pairs.items()}


def main(argv=None):
    p = C.base_parser(__doc__.splitlines()[0], "tiny DEDOS at 64 x 64 (a smoke run)")
    p.add_argument("--resolution", type=int, default=None, help="image side (default 640, the paper's; 64 with --quick)")
    p.add_argument("--classes", type=int, default=150, help="vocabulary size (A-150's by default; the paper does not say)")
    p.add_argument("--clip-trainable", default="qv", choices=["none", "qv", "attention", "all"],
                   help="CLIP image-tower parameters trained (ours: qv, CAT-Seg's Q and V, at §4.2's 2e-6 backbone rate)")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats (default 3; 1 with --quick)")
    p.add_argument("--no-time", action="store_true", help="count only; keep the time per image of the previous record")
    args = p.parse_args(argv)
    dev = C.setup(args)
    size, res = ("tiny", args.resolution or 64) if args.quick else ("sd2", args.resolution or 640)
    repeats = args.repeats or (1 if args.quick else 3)
    env = C.machine(dev)
    names = C.class_names(args.classes)
    meta_check = check_meta_counts(args.seed)   # the meta-device count equals the real one (tiny size)
    eff, _ = counts(meta_build(size, args.seed, args.clip_trainable), res, names, args.seed, train=False)
    params = eff["learnable_params_M"]
    if args.no_time:   # the training forward needs values (Hungarian matching), so it is counted with the timed run
        old = json.loads(Path(args.out or C.RESULTS/f"{NAME}.json").read_text())["runs"].get(f"{dev.type}-{size}-{res}", {})
        when = old.get("machine", {}).get("date")
        t = {**old.get("time_per_image", {"median_s": None, "cpu_median_s": None}), "carried_over_from": when}
        train_flops = next((2e9*r["GFLOPs_fvcore"] for r in old.get("flops", []) if r["what"].startswith("training")), float("nan"))
    else:
        model = build(size, args.seed, args.clip_trainable).to(dev).eval()
        _, train_flops = counts(model, res, names, args.seed)
        img = torch.rand(1, 3, res, res, generator=torch.Generator().manual_seed(args.seed)).to(dev)
        with torch.no_grad(): t = C.timeit(lambda: model.segment(img, names), dev, repeats=repeats, warmup=1)
    rows = [{"what": "inference, per image", "GFLOPs_fvcore": eff["GFLOPs_per_image"]},
            {"what": "text tower, per vocabulary (cached)", "GFLOPs_fvcore": eff["GFLOPs_text_per_vocabulary"]},
            {"what": "training forward, per image", "GFLOPs_fvcore": train_flops/2e9,
             **({"carried_over_from": when} if args.no_time else {})}]
    for r in rows: r["GFLOPs"] = 2*r["GFLOPs_fvcore"]
    from digseg.experiments import paper_value
    paper = paper_value("dedos.table7_efficiency", {})
    record = {"machine": env,
              "config": {"size": size, "resolution": res, "classes": len(names), "clip_trainable": args.clip_trainable,
                         "repeats": repeats, "quick": args.quick,
                         "counted_on": "meta", "tiny_real_vs_meta": meta_check},
              "learnable_params_M": params, "flops": rows,
              "time_per_image": {"device": env["device"], **t},
              "paper": paper,
              "note": "random weights (counts do not depend on them); FLOPs from torch.utils.flop_counter on the meta device with "
                      "nn.MultiheadAttention's fast path off, 2 per multiply-add; "
                      "GFLOPs_fvcore = half, fvcore's convention; the paper's time is on an RTX 4090"}
    if dev.type != "cuda":
        record["not_measured"] = [{"what": "GPU time per image (the paper's 0.12 s on an RTX 4090)", "value": C.NOT_MEASURED,
                                   "reason": C.NO_GPU + "python benchmarks/dedos_efficiency.py --device cuda"}]
    key = f"{dev.type}-{size}-{res}" + ("-quick" if args.quick else "")
    path = C.write_results(NAME, key, record, args.out)
    C.table([{"part": k, "learnable_M": v} for k, v in params.items()], ["part", "learnable_M"], f"{NAME} [{key}]: learnable parameters")
    C.table(rows, ["what", "GFLOPs", "GFLOPs_fvcore"], f"FLOPs at {res} x {res}, {len(names)} classes")
    if t.get("median_s") is not None: print(f"\ntime per image on {env['device']}: {t['median_s']:.3f} s (CPU time {t['cpu_median_s']:.3f} s)"
                                        + (f", measured {t['carried_over_from']}" if "carried_over_from" in t else ""))
    if paper: print(f"paper (RTX 4090): DEDOS {paper.get('DEDOS')}, CAT-Seg {paper.get('CAT-Seg')}")
    print(C.load_caveat(env))
    print(f"-> {path}")
    return record


if __name__ == "__main__":
    main()
