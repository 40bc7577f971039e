"""Inference throughput of DiGSegPipeline (masks/s, images/s) over the E x S grid of the paper's Table 6.

    python benchmarks/inference_throughput.py [--quick]                       # mini size, CPU
    python benchmarks/inference_throughput.py --device cuda --size sd2        # SD2 size, 512x512, bf16
    python benchmarks/inference_throughput.py --mask-decoder DIR|random        # also with the mask decoder, alternated: ratio

Random weights: speed does not depend on them. One call segments `--images` images with `--classes`
prompted classes each (no CLIP candidate step), so masks/s = images x classes / time. With `--mask-decoder`,
every row is also run with the pipeline's optional `mask_decoder` component attached, the two timed
alternately in one run; `speedup_vs_vae` is their ratio.
"""
from __future__ import annotations
import sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bench as C
import torch

NAME = "inference_throughput"


def parse_grid(s: str):
    "'1x1,8x2,20x50L' -> [(E, S, spacing, paper_fps)]; a trailing L means leading spacing."
    paper = {(e, st, sp): fps for e, st, sp, fps in C.TABLE6}
    out = []
    for item in s.split(","):
        item = item.strip(); lead = item.upper().endswith("L")
        e, st = (int(v) for v in item.rstrip("Ll").lower().split("x"))
        sp = "leading" if lead else "trailing"
        out.append((e, st, sp, paper.get((e, st, sp))))
    return out


def grid_arg(rows):
    return ",".join(f"{e}x{s}{'L' if sp == 'leading' else ''}" for e, s, sp, _ in rows)


def measure(pipe, images, names, rows, device, repeats, batch_size, seed, decoder=None):
    "One timed row per (E, S, spacing); with `decoder`, also the row with the mask decoder, timed alternately, and the ratio."
    call = lambda e, s, sp: pipe(images, classes=names, num_inference_steps=s, timestep_spacing=sp, ensemble_size=e,
                                 batch_size=batch_size, generator=torch.Generator().manual_seed(seed))
    variants = {"VAE": None, **({"MaskDecoder": decoder} if decoder is not None else {})}
    def with_decoder(d, e, s, sp):
        def fn():
            with C.use_mask_decoder(pipe, d): call(e, s, sp)
        return fn
    for d in variants.values(): with_decoder(d, 1, 1, "trailing")()      # warm-up: allocations, text cache
    out = []
    for e, s, sp, fps in rows:
        big = e*s >= 100
        ts = C.alternate({k: with_decoder(d, e, s, sp) for k, d in variants.items()}, device,
                         repeats=1 if big else repeats, warmup=0 if big else 1)
        n_img, n_mask = len(images), len(images)*len(names)
        for k, t in ts.items():
            (mps, mps_cpu), (ips, ips_cpu) = C.rate(n_mask, t), C.rate(n_img, t)
            row = {"E": e, "S": s, "spacing": sp, "E x S": f"{e}x{s}", "decoder": k, "masks_per_s": mps, "images_per_s": ips,
                   "masks_per_s_cpu": mps_cpu, "images_per_s_cpu": ips_cpu, "s_per_image": t["median_s"]/n_img,
                   "unet_rows": n_mask*e*s, "paper_fps": fps, **t}
            if k != "VAE":
                row["speedup_vs_vae"] = ts["VAE"]["median_s"]/t["median_s"]
                row["speedup_vs_vae_cpu"] = ts["VAE"]["cpu_median_s"]/t["cpu_median_s"]
            out.append(row)
    return out


def main(argv=None):
    p = C.base_parser(__doc__.splitlines()[0])
    p.add_argument("--size", choices=C.SIZES, default=None, help="architecture (default mini; tiny with --quick; sd2 = 512x512)")
    p.add_argument("--classes", type=int, default=None, help="prompted classes per image (default 8; 2 with --quick)")
    p.add_argument("--images", type=int, default=1, help="images per pipeline call")
    p.add_argument("--grid", default=None, help="E x S rows, e.g. '1x1,8x2,20x50L' (L: leading spacing; default Table 6)")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats per row (default 3; rows with E*S >= 100 run once)")
    p.add_argument("--batch-size", type=int, default=64, help="(class x member) rows per U-Net call")
    p.add_argument("--dtype", choices=("fp32", "bf16", "fp16"), default=None, help="default fp32 on CPU, bf16 on GPU")
    p.add_argument("--mask-decoder", default=None, help="'random' or a saved MaskDecoder folder: also time each row with it as the pipeline's mask_decoder")
    args = p.parse_args(argv)
    dev = C.setup(args)
    size = args.size or ("tiny" if args.quick else "mini")
    K = args.classes or (2 if args.quick else 8)
    repeats = args.repeats or (1 if args.quick else 3)
    rows = parse_grid(args.grid or grid_arg(C.TABLE6))
    dtype = C.dtype_of(args.dtype or ("bf16" if dev.type == "cuda" else "fp32"))
    env = C.machine(dev)
    pipe = C.build_pipeline(size, dev, dtype, args.seed)
    dec = C.build_mask_decoder(args.mask_decoder, pipe)
    S = C.image_size(pipe)
    images = torch.rand(args.images, 3, S, S, generator=torch.Generator().manual_seed(args.seed))
    names = C.class_names(K)
    measured = measure(pipe, images, names, rows, dev, repeats, args.batch_size, args.seed, dec)
    record = {"machine": env, "config": {"size": size, "image_size": S, "classes": K, "images": args.images, "dtype": str(dtype),
                                         "batch_size": args.batch_size, "repeats": repeats, "mask_decoder": args.mask_decoder,
                                         "quick": args.quick, "weights": "random"},
              "rows": measured,
              "note": "paper_fps is Table 6's FPS (unit not stated by the paper: per image at an unstated class count)"}
    if not (dev.type == "cuda" and size == "sd2"):
        record["not_measured"] = [{"size": "sd2", "image_size": 512, "E x S": f"{e}x{s}", "spacing": sp, "paper_fps": fps,
                                   "masks_per_s": C.NOT_MEASURED, "reason": C.NO_GPU + "python benchmarks/inference_throughput.py --device cuda --size sd2"}
                                  for e, s, sp, fps in rows]
    key = f"{dev.type}-{size}-{args.dtype or ('bf16' if dev.type == 'cuda' else 'fp32')}" + ("-maskdecoder" if dec is not None else "") + ("-quick" if args.quick else "")
    path = C.write_results(NAME, key, record, args.out)
    C.table(measured, ["E x S", "spacing", "decoder", "masks_per_s", "images_per_s", "masks_per_s_cpu", "median_s", "cpu_median_s", "unet_rows",
                       "paper_fps"] + (["speedup_vs_vae", "speedup_vs_vae_cpu"] if dec is not None else []),
            f"{NAME} [{key}] {env['device']}, {S}x{S}, {K} classes x {args.images} image(s), threads={env['torch_threads']}"
            + (" (shared machine)" if env["shared_machine"] else ""))
    print(C.load_caveat(env))
    if "not_measured" in record: print(f"sd2 size (512x512, GPU): {C.NOT_MEASURED} in this run")
    print(f"-> {path}")
    return record


if __name__ == "__main__":
    main()
