"""DEDOS Table 7: learnable parameters, GFLOPs and time per image at 640 x 640 with CLIP ViT-L/14.

    python benchmarks/dedos_efficiency.py [--quick]      # SD2.1-size U-Net/VAE + ViT-L/14 (random weights), CPU
    python benchmarks/dedos_efficiency.py --device cuda  # also the GPU time (the paper: one RTX 4090)

Random weights: parameter counts and FLOPs depend only on the architecture. Counted with
torch.utils.flop_counter (one multiply-add = 2 FLOPs; fvcore, which CAT-Seg and most segmentation papers
use, counts one multiply-add as 1 FLOP, so 'GFLOPs_fvcore' = FLOPs / 2e9 is the column to set beside the
paper's). Three passes are counted: the text tower on the vocabulary (cached per vocabulary, so not part
of the per-image cost), inference on one image (queries from the memory: the U-Net does not run at test
time, `inference_queries='memory'`), and the training forward (VAE encode + the U-Net at the 3 timesteps).
"""
from __future__ import annotations
import sys
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


def main(argv=None):
    p = C.base_parser(__doc__.splitlines()[0], "tiny DEDOS at 64 x 64 (a smoke run)")
    p.add_argument("--resolution", type=int, default=None, help="image side (default 640, the paper's; 64 with --quick)")
    p.add_argument("--classes", type=int, default=150, help="vocabulary size (A-150's by default; the paper does not say)")
    p.add_argument("--clip-trainable", default="qv", choices=["none", "qv", "attention", "all"],
                   help="CLIP image-tower parameters trained (ours: qv, CAT-Seg's Q and V, at §4.2's 2e-6 backbone rate)")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats (default 3; 1 with --quick)")
    args = p.parse_args(argv)
    dev = C.setup(args)
    size, res = ("tiny", args.resolution or 64) if args.quick else ("sd2", args.resolution or 640)
    repeats = args.repeats or (1 if args.quick else 3)
    env = C.machine(dev)
    model = build(size, args.seed, args.clip_trainable).to(dev).eval()
    names = C.class_names(args.classes)
    g = torch.Generator().manual_seed(args.seed)
    img = torch.rand(1, 3, res, res, generator=g).to(dev)
    labels = torch.randint(0, len(names), (1, res, res), generator=g).to(dev)
    eff = dedos_efficiency(model, res, names, seed=args.seed)            # parameters, per-image and per-vocabulary FLOPs
    params = eff["learnable_params_M"]
    # the training forward (losses, no backward), counted frozen and without autograd: the same forward FLOPs, and
    # SD2's activations kept for a backward would not fit a 24 GB machine at 640 x 640
    with frozen(model): train_flops = count_flops(lambda: model.train()(img, labels, names))
    model.eval()
    with torch.no_grad(): t = C.timeit(lambda: model.segment(img, names), dev, repeats=repeats, warmup=1)
    rows = [{"what": "inference, per image", "GFLOPs_fvcore": eff["GFLOPs_per_image"]},
            {"what": "text tower, per vocabulary (cached)", "GFLOPs_fvcore": eff["GFLOPs_text_per_vocabulary"]},
            {"what": "training forward, per image", "GFLOPs_fvcore": train_flops/2e9}]
    for r in rows: r["GFLOPs"] = 2*r["GFLOPs_fvcore"]
    from digseg.experiments import paper_value
    paper = paper_value("dedos.table7_efficiency", {})
    record = {"machine": env,
              "config": {"size": size, "resolution": res, "classes": len(names), "clip_trainable": args.clip_trainable,
                         "repeats": repeats, "quick": args.quick},
              "learnable_params_M": params, "flops": rows,
              "time_per_image": {"device": env["device"], "median_s": t["median_s"], "cpu_median_s": t["cpu_median_s"]},
              "paper": paper,
              "note": "random weights (counts do not depend on them); FLOPs from torch.utils.flop_counter, 2 per multiply-add; "
                      "GFLOPs_fvcore = half, fvcore's convention; the paper's time is on an RTX 4090"}
    if dev.type != "cuda":
        record["not_measured"] = [{"what": "GPU time per image (the paper's 0.12 s on an RTX 4090)", "value": C.NOT_MEASURED,
                                   "reason": C.NO_GPU + "python benchmarks/dedos_efficiency.py --device cuda"}]
    key = f"{dev.type}-{size}-{res}" + ("-quick" if args.quick else "")
    path = C.write_results(NAME, key, record, args.out)
    C.table([{"part": k, "learnable_M": v} for k, v in params.items()], ["part", "learnable_M"], f"{NAME} [{key}]: learnable parameters")
    C.table(rows, ["what", "GFLOPs", "GFLOPs_fvcore"], f"FLOPs at {res} x {res}, {len(names)} classes")
    print(f"\ntime per image on {env['device']}: {t['median_s']:.3f} s (CPU time {t['cpu_median_s']:.3f} s)")
    if paper: print(f"paper (RTX 4090): DEDOS {paper.get('DEDOS')}, CAT-Seg {paper.get('CAT-Seg')}")
    print(C.load_caveat(env))
    print(f"-> {path}")
    return record


if __name__ == "__main__":
    main()
