"""VAE mask decoding in chunks: time decoding K mask latents in one decoder call against chunks of 32, 16 and 8
(`digseg.latents.decode_mask(..., chunk=)`), outputs checked equal, ratios measured in one run.

    OMP_NUM_THREADS=1 python benchmarks/decode_chunks.py            # mini VAE, 64x64, K = 64 (the pipeline's U-Net batch)
    python benchmarks/decode_chunks.py --device cuda --size sd2     # SD2's VAE at 512x512, bf16
    python benchmarks/decode_chunks.py --quick                      # tiny VAE: a smoke run
"""
from __future__ import annotations
import sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bench as C
import torch

NAME = "decode_chunks"


def main(argv=None):
    p = C.base_parser(__doc__.splitlines()[0])
    p.add_argument("--size", default=None, help="tiny, mini (default) or sd2 (the VAE architecture, random weights)")
    p.add_argument("--masks", type=int, default=64, help="mask latents decoded (K)")
    p.add_argument("--chunks", default="32,16,8", help="chunk sizes compared with one call of K")
    p.add_argument("--dtype", default=None, help="fp32 (CPU default) or bf16 (GPU default)")
    p.add_argument("--repeats", type=int, default=None)
    args = p.parse_args(argv)
    dev = C.setup(args)
    from digseg.models import build_vae
    from digseg.latents import decode_mask, vae_scale_factor
    size = args.size or ("tiny" if args.quick else "mini")
    K = 4 if args.quick else args.masks
    chunks = [K] + sorted({int(c) for c in args.chunks.split(",") if 0 < int(c) < K}, reverse=True)
    dtype = C.dtype_of(args.dtype or ("bf16" if dev.type == "cuda" else "fp32"))
    with dev: vae = build_vae(size, seed=args.seed).to(dtype).eval()
    side = {"tiny": 32, "mini": 64, "sd2": 512}[size] // vae_scale_factor(vae)
    lat = torch.randn(K, vae.config.latent_channels, side, side, generator=torch.Generator().manual_seed(args.seed)).to(dev, dtype)
    env = C.machine(dev)
    ref = decode_mask(vae, lat, chunk=K)
    max_diff = max((decode_mask(vae, lat, chunk=c) - ref).abs().max().item() for c in chunks[1:]) if len(chunks) > 1 else 0.0
    ts = C.alternate({c: (lambda c=c: decode_mask(vae, lat, chunk=c)) for c in chunks}, dev,
                     repeats=args.repeats or (1 if args.quick else 5))
    one = ts[K]
    rows = [{"chunk": c, "ms_per_mask": 1e3*t["median_s"]/K, "ms_per_mask_cpu": 1e3*t["cpu_median_s"]/K,
             "speedup_vs_one_call": one["median_s"]/t["median_s"], "speedup_vs_one_call_cpu": one["cpu_median_s"]/t["cpu_median_s"]}
            for c, t in ts.items()]
    record = {"machine": env, "size": size, "masks": K, "resolution": side*vae_scale_factor(vae), "dtype": str(dtype).split(".")[-1],
              "max_abs_diff_vs_one_call": max_diff, "outputs_equal": max_diff < (1e-2 if dtype != torch.float32 else 1e-4),
              "rows": rows, "times": {str(c): t for c, t in ts.items()}}
    key = f"{dev.type}-{size}-{record['dtype']}" + ("-quick" if args.quick else "")
    path = C.write_results(NAME, key, record, args.out)
    C.table(rows, ["chunk", "ms_per_mask", "ms_per_mask_cpu", "speedup_vs_one_call", "speedup_vs_one_call_cpu"],
            f"decoding {K} mask latents, {size} VAE at {record['resolution']}x{record['resolution']} ({C.load_caveat(env)})")
    print(f"outputs equal to one call: {record['outputs_equal']} (max |diff| {max_diff:.2e}); wrote {path}")
    return record


if __name__ == "__main__":
    main()
