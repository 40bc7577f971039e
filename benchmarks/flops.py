"""The limit: FLOPs of one U-Net step, one VAE encode and one VAE decode (and the cheap MaskDecoder), counted
with torch.utils.flop_counter on meta-device models, turned into floor times at a device's matmul rate;
achieved / floor where the work is timed.

    python benchmarks/flops.py [--quick]          # counts at SD2 size (512x512) and mini size; CPU rate measured, mini timed
    python benchmarks/flops.py --device cuda      # also the GPU's measured bf16 rate and SD2-size timings

The floor of a piece of work is FLOPs / rate, where the rate is what a large dense matmul reaches on the
device (measured here), or a datasheet peak (stated, never presented as measured). efficiency = floor /
achieved time.
"""
from __future__ import annotations
import functools, sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bench as C
import torch
from digseg.config import count_flops as _count   # 2 FLOPs per multiply-add; attention counted from shapes where torch misses it

NAME = "flops"
# NVIDIA H100 SXM5 datasheet, dense BF16 tensor-core peak (the 1979 figure is with 2:4 sparsity)
STATED_RATES = {"H100 SXM bf16 dense (datasheet)": 989.4e12}
def count_models(unet, vae, decoder, resolution: int, text_len: int):
    "FLOPs of one U-Net step (batch 1), one VAE encode and decode, one MaskDecoder decode at `resolution`."
    from digseg.latents import vae_scale_factor
    p = next(unet.parameters()); kw = dict(device=p.device, dtype=p.dtype)
    h = resolution // vae_scale_factor(vae); c = vae.config.latent_channels
    x = torch.zeros(1, unet.config.in_channels, h, h, **kw)
    cond = torch.zeros(1, text_len, unet.config.cross_attention_dim, **kw)
    t = torch.tensor([999], device=p.device)
    return {"unet_step": _count(lambda: unet(x, t, encoder_hidden_states=cond)),
            "vae_encode": _count(lambda: vae.encode(torch.zeros(1, 3, resolution, resolution, **kw))),
            "vae_decode": _count(lambda: vae.decode(torch.zeros(1, c, h, h, **kw))),
            "mask_decoder": _count(lambda: decoder(torch.zeros(1, c, h, h, **kw)))}


def meta_models(size: str):
    "(unet widened to 8 channels, vae, mask decoder) of an architecture on the meta device."
    from digseg.models import build_unet, build_vae
    from digseg.unet import widen_conv_in
    from digseg.mask_decoder import MaskDecoder
    with torch.device("meta"):
        unet, vae = widen_conv_in(build_unet(size, seed=None), 8), build_vae(size, seed=None)
        dec = MaskDecoder.for_vae(vae, **({} if size == "sd2" else dict(width=32, min_width=8)))
    return unet, vae, dec


@functools.lru_cache(maxsize=None)
def count_sd2(resolution: int = 512):
    "Counted FLOPs of the SD2-size pieces at `resolution` (77 text tokens)."
    return count_models(*meta_models("sd2"), resolution, 77)


def matmul_rate(device, dtype, n: int, repeats: int = 3):
    "Measured FLOP/s of an n x n x n matmul (2 n^3 FLOPs), wall and per CPU second."
    a = torch.randn(n, n, device=device, dtype=dtype); b = torch.randn(n, n, device=device, dtype=dtype)
    t = C.timeit(lambda: a @ b, device, repeats=repeats, warmup=1)
    return {"n": n, "dtype": str(dtype), "flops_per_s": 2*n**3/t["min_s"], "flops_per_s_cpu": 2*n**3/max(t["cpu_median_s"], 1e-12), **t}


def achieved(device, size, dtype, counts, rate, rate_cpu, rows, classes, repeats, seed=0):
    "Timed U-Net step (at `rows` rows), VAE encode (1 image), VAE decode (`classes` masks), MaskDecoder: achieved / floor."
    from digseg.latents import vae_scale_factor
    from digseg.unet import unet_input
    pipe = C.build_pipeline(size, device, dtype, seed)
    dec = C.build_mask_decoder("random", pipe)
    g = torch.Generator().manual_seed(seed)
    res = C.image_size(pipe); h = res // vae_scale_factor(pipe.vae); c = pipe.vae.config.latent_channels
    kw = dict(device=pipe.unet.device, dtype=pipe.unet.dtype)
    L = pipe.clip.context_length
    x = torch.randn(rows, 2*c, h, h, generator=g).to(**kw); cond = torch.randn(rows, L, pipe.unet.config.cross_attention_dim, generator=g).to(**kw)
    t = torch.full((rows,), 999, device=kw["device"])
    img = torch.randn(1, 3, res, res, generator=g).to(**kw); lat = torch.randn(classes, c, h, h, generator=g).to(**kw)
    work = {"unet_step": (rows, lambda: pipe.unet(x, t, encoder_hidden_states=cond)),
            "vae_encode": (1, lambda: pipe.vae.encode(img)),
            "vae_decode": (classes, lambda: pipe.vae.decode(lat)),
            "mask_decoder": (classes, lambda: dec(lat))}
    out = []
    with torch.no_grad():
        for name, (n, fn) in work.items():
            tm = C.timeit(fn, device, repeats)
            fl = counts[name]*n
            floor = fl/rate
            out.append({"size": size, "piece": name, "batch": n, "gflop": fl/1e9, "achieved_s": tm["median_s"],
                        "achieved_cpu_s": tm["cpu_median_s"], "floor_s": floor, "efficiency": floor/tm["median_s"],
                        "efficiency_cpu": fl/rate_cpu/max(tm["cpu_median_s"], 1e-12),
                        "achieved_gflop_per_s": fl/tm["median_s"]/1e9})
    return out


def main(argv=None):
    p = C.base_parser(__doc__.splitlines()[0])
    p.add_argument("--size", choices=C.SIZES, default=None, help="architecture timed for achieved/floor (default mini on CPU, sd2 on GPU; tiny with --quick)")
    p.add_argument("--resolution", type=int, default=512, help="SD2 resolution for the counts")
    p.add_argument("--rows", type=int, default=32, help="U-Net rows per timed call (8 classes x E=4)")
    p.add_argument("--classes", type=int, default=8)
    p.add_argument("--repeats", type=int, default=None, help="timed repeats (default 5; 1 with --quick)")
    p.add_argument("--matmul-n", type=int, default=None, help="matmul size for the rate (default 1024 CPU, 8192 GPU; 512 with --quick)")
    args = p.parse_args(argv)
    dev = C.setup(args)
    repeats = args.repeats or (1 if args.quick else 5)
    env = C.machine(dev)
    sd2 = count_sd2(args.resolution)
    counts = [{"size": "sd2", "resolution": args.resolution, "piece": k, "gflop": v/1e9} for k, v in sd2.items()]
    mini_counts = count_models(*meta_models("mini"), 64, 32)
    counts += [{"size": "mini", "resolution": 64, "piece": k, "gflop": v/1e9} for k, v in mini_counts.items()]
    size = args.size or ("tiny" if args.quick else ("sd2" if dev.type == "cuda" else "mini"))
    cnt = {"sd2": sd2, "mini": mini_counts}.get(size) or count_models(*meta_models(size), 64, 77)
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    n = args.matmul_n or (512 if args.quick else (8192 if dev.type == "cuda" else 1024))
    mm = matmul_rate(dev, dtype, n, repeats=max(3, repeats))
    rows = achieved(dev, size, dtype, cnt, mm["flops_per_s"], mm["flops_per_s_cpu"], args.rows, args.classes, repeats, args.seed)
    # floors of one mask at SD2 size: per-mask share of the image encode for `classes` classes
    def per_mask(E, S, c=sd2, dec="vae_decode"): return c["vae_encode"]/args.classes + c["unet_step"]*E*S + c[dec]
    floors = []
    for label, r in list(STATED_RATES.items()) + ([(f"{env['device']} bf16 matmul (measured)", mm["flops_per_s"])] if dev.type == "cuda" else []):
        for E, S in ((1, 1), (8, 2)):
            for dec in ("vae_decode", "mask_decoder"):
                fl = per_mask(E, S, dec=dec)
                floors.append({"rate": label, "flops_per_s": r, "E x S": f"{E}x{S}", "decoder": dec, "tflop_per_mask": fl/1e12,
                               "floor_ms_per_mask": 1e3*fl/r, "ceiling_masks_per_s": r/fl})
    record = {"machine": env, "config": {"size_timed": size, "resolution": args.resolution, "rows": args.rows, "classes": args.classes,
                                         "repeats": repeats, "quick": args.quick, "dtype_timed": str(dtype)},
              "counts": counts, "matmul_rate": mm, "achieved_vs_floor": rows, "sd2_floors": floors,
              "note": "floor = FLOPs / rate; a stated rate is a datasheet peak, not a measurement; efficiency = floor / achieved"}
    if dev.type != "cuda":
        record["not_measured"] = [{"what": "GPU bf16 matmul rate and SD2-size achieved/floor", "value": C.NOT_MEASURED,
                                   "reason": C.NO_GPU + "python benchmarks/flops.py --device cuda"}]
    key = f"{dev.type}-{size}" + ("-quick" if args.quick else "")
    path = C.write_results(NAME, key, record, args.out)
    C.table(counts, ["size", "resolution", "piece", "gflop"], f"{NAME} [{key}]: counted FLOPs (batch 1)")
    print(f"\nmatmul rate {env['device']} ({mm['dtype']}, n={n}, threads={env['torch_threads']}): {mm['flops_per_s']/1e9:.1f} GFLOP/s"
          + (" (shared machine)" if env["shared_machine"] else ""))
    C.table(rows, ["size", "piece", "batch", "gflop", "achieved_s", "floor_s", "efficiency", "efficiency_cpu"], "achieved vs floor")
    C.table(floors, ["rate", "E x S", "decoder", "tflop_per_mask", "floor_ms_per_mask", "ceiling_masks_per_s"], "SD2 512x512: floor per mask")
    print(C.load_caveat(env))
    print(f"-> {path}")
    return record


if __name__ == "__main__":
    main()
