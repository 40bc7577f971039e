"""Where the time of one segmentation goes, per mask: image encode, text, U-Net steps, mask decode, aggregation.

    python benchmarks/cost_breakdown.py [--quick]                     # mini size, CPU, 8 classes, E x S = 1x1 and 8x2
    python benchmarks/cost_breakdown.py --device cuda --size sd2      # SD2 size, 512x512, bf16

Each stage is timed on its own, with the shapes the pipeline uses for one image and K classes (the U-Net
on all K x E rows in one call, one decode per class, batched), and the whole pipeline call is timed too;
'other' is the pipeline's time not in the stages (noise, scheduler, resizing, Python). The cheap
`MaskDecoder` (digseg.mask_decoder) is timed beside the VAE decode, and the whole call is timed again with
it as the pipeline's `mask_decoder` (alternated with the plain call: `speedup_vs_vae` comes from one run).
At SD2 size the FLOPs of the same stages are counted on meta-device models as well (a count, not a time).
"""
from __future__ import annotations
import sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bench as C
import torch

NAME = "cost_breakdown"
# the stages a pipeline call runs (text from the cache, the VAE decode); the others are alternatives shown beside them
PIPELINE_STAGES = ("image encode (once per image)", "text, cached (projection only)", "U-Net steps", "mask decode (VAE, batched)", "aggregation")


def stage_timings(pipe, K, E, S, device, repeats, decoder=None, seed=0):
    "Per-call timings of each stage for one image and K classes at E members x S steps."
    from digseg.latents import encode_pixels, decode_mask, vae_scale_factor
    from digseg.text import TextConditioner
    from digseg.unet import unet_input
    from digseg.pipeline import aggregate
    from digseg.sampler import ddim_timesteps
    g = torch.Generator().manual_seed(seed)
    size = C.image_size(pipe); f = vae_scale_factor(pipe.vae)
    dev, dt = pipe.unet.device, pipe.unet.dtype
    x = (torch.rand(1, 3, size, size, generator=g)*2 - 1).to(dev, dt)
    names = C.class_names(K)
    z_x = encode_pixels(pipe.vae, x)
    rows = K*E
    zr = torch.randn(rows, *z_x.shape[1:], generator=g).to(dev, dt)
    cond = pipe.conditioner(names).to(dev, dt).repeat(E, 1, 1)
    t = torch.tensor(ddim_timesteps(1, "trailing", pipe.scheduler)[0], device=dev)
    lat = torch.randn(K, *z_x.shape[1:], generator=g).to(dev, dt)
    probs, cand = torch.rand(1, K, size, size, generator=g), torch.ones(1, K, dtype=torch.bool)
    cold = TextConditioner(pipe.clip, pipe.text_projection, cache=None, template=pipe.config.prompt_template)
    with torch.no_grad():
        stages = {
            "image encode (once per image)": (C.timeit(lambda: encode_pixels(pipe.vae, x), device, repeats), 1),
            "text, cold (CLIP + projection)": (C.timeit(lambda: cold(names), device, repeats), 1),
            "text, cached (projection only)": (C.timeit(lambda: pipe.conditioner(names), device, repeats), 1),
            "U-Net steps": (C.timeit(lambda: pipe.unet(unet_input(z_x.expand(rows, -1, -1, -1), zr), t, encoder_hidden_states=cond).sample,
                                     device, repeats), S),
            "mask decode (VAE, batched)": (C.timeit(lambda: decode_mask(pipe.vae, lat, size=(size, size)), device, repeats), 1),
            "aggregation": (C.timeit(lambda: aggregate(probs, cand, 0.7), device, repeats), 1)}
        if decoder is not None:
            stages["mask decode (MaskDecoder)"] = (C.timeit(lambda: decoder.decode(lat, size=(size, size)), device, repeats), 1)
    return stages


def breakdown(pipe, K, E, S, device, repeats, decoder=None, seed=0):
    "Rows of ms per mask and share of the pipeline's time, for one image, K classes, E x S."
    stages = stage_timings(pipe, K, E, S, device, repeats, decoder, seed)
    size = C.image_size(pipe)
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(seed))
    names = C.class_names(K)
    call = lambda: pipe(x, classes=names, num_inference_steps=S, ensemble_size=E, generator=torch.Generator().manual_seed(seed))
    def call_with_decoder():
        with C.use_mask_decoder(pipe, decoder): call()
    # with a decoder, the pipeline is timed with and without it alternately: their ratio comes from one run
    totals = C.alternate({"VAE": call, **({"MaskDecoder": call_with_decoder} if decoder is not None else {})}, device, repeats)
    total = totals["VAE"]
    rows, used, used_cpu = [], 0.0, 0.0
    T, Tc = total["median_s"], total["cpu_median_s"]
    for name, (t, mult) in stages.items():
        per_call, per_call_cpu = t["median_s"]*mult, t["cpu_median_s"]*mult
        if name in PIPELINE_STAGES: used += per_call; used_cpu += per_call_cpu
        rows.append({"E x S": f"{E}x{S}", "stage": name + (f" x {S}" if mult > 1 else ""), "ms_per_mask": 1e3*per_call/K,
                     "ms_per_mask_cpu": 1e3*per_call_cpu/K, "share_of_pipeline": per_call/T, "share_of_pipeline_cpu": per_call_cpu/Tc})
    rows.append({"E x S": f"{E}x{S}", "stage": "other (noise, scheduler, resize, Python)",
                 "ms_per_mask": 1e3*max(0.0, T - used)/K, "ms_per_mask_cpu": 1e3*max(0.0, Tc - used_cpu)/K,
                 "share_of_pipeline": max(0.0, T - used)/T, "share_of_pipeline_cpu": max(0.0, Tc - used_cpu)/Tc})
    rows.append({"E x S": f"{E}x{S}", "stage": "pipeline call (total)", "ms_per_mask": 1e3*T/K, "ms_per_mask_cpu": 1e3*Tc/K,
                 "share_of_pipeline": 1.0, "share_of_pipeline_cpu": 1.0})
    if decoder is not None:
        vae_dec = next(r for r in rows if r["stage"] == "mask decode (VAE, batched)")
        small = next(r for r in rows if r["stage"] == "mask decode (MaskDecoder)")
        small["speedup_vs_vae"] = vae_dec["ms_per_mask"]/small["ms_per_mask"]
        small["speedup_vs_vae_cpu"] = vae_dec["ms_per_mask_cpu"]/small["ms_per_mask_cpu"]
        t = totals["MaskDecoder"]
        rows.append({"E x S": f"{E}x{S}", "stage": "pipeline call with mask_decoder (total)", "ms_per_mask": 1e3*t["median_s"]/K,
                     "ms_per_mask_cpu": 1e3*t["cpu_median_s"]/K, "share_of_pipeline": t["median_s"]/T,
                     "share_of_pipeline_cpu": t["cpu_median_s"]/Tc, "speedup_vs_vae": T/t["median_s"], "speedup_vs_vae_cpu": Tc/t["cpu_median_s"]})
    return rows


def sd2_flop_shares(K: int, E: int, S: int):
    "Counted FLOPs per mask of each stage at SD2 size (512x512), for K classes per image (no timing)."
    from flops import count_sd2
    c = count_sd2()
    per_mask = {"image encode (once per image)": c["vae_encode"]/K, "U-Net steps": c["unet_step"]*E*S,
                "mask decode (VAE)": c["vae_decode"], "mask decode (MaskDecoder)": c["mask_decoder"]}
    vae_total = sum(v for k, v in per_mask.items() if k != "mask decode (MaskDecoder)")
    return [{"E x S": f"{E}x{S}", "stage": k, "gflop_per_mask": v/1e9,
             "share_with_vae_decode": v/vae_total if k != "mask decode (MaskDecoder)" else None} for k, v in per_mask.items()]


def main(argv=None):
    p = C.base_parser(__doc__.splitlines()[0])
    p.add_argument("--size", choices=C.SIZES, default=None, help="architecture (default mini; tiny with --quick)")
    p.add_argument("--classes", type=int, default=8, help="K classes per image")
    p.add_argument("--grid", default="1x1,8x2", help="E x S settings, e.g. '1x1,8x2'")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats (default 5; 1 with --quick)")
    p.add_argument("--dtype", choices=("fp32", "bf16", "fp16"), default=None, help="default fp32 on CPU, bf16 on GPU")
    p.add_argument("--mask-decoder", default="random", help="'random', a saved MaskDecoder folder, or '' for none")
    p.add_argument("--no-flops", action="store_true", help="skip the SD2 FLOP count")
    args = p.parse_args(argv)
    dev = C.setup(args)
    size = args.size or ("tiny" if args.quick else "mini")
    repeats = args.repeats or (1 if args.quick else 5)
    dname = args.dtype or ("bf16" if dev.type == "cuda" else "fp32")
    env = C.machine(dev)
    pipe = C.build_pipeline(size, dev, C.dtype_of(dname), args.seed)
    dec = C.build_mask_decoder(args.mask_decoder, pipe)
    grid = [tuple(int(v) for v in g.lower().split("x")) for g in args.grid.split(",")]
    pipe(torch.rand(1, 3, C.image_size(pipe), C.image_size(pipe)), classes=C.class_names(args.classes))   # warm-up, fills the text cache
    rows = [r for E, S in grid for r in breakdown(pipe, args.classes, E, S, dev, repeats, dec, args.seed)]
    record = {"machine": env, "config": {"size": size, "image_size": C.image_size(pipe), "classes": args.classes,
                                         "grid": args.grid, "dtype": dname, "repeats": repeats, "mask_decoder": args.mask_decoder,
                                         "quick": args.quick, "weights": "random"},
              "rows": rows}
    if not args.no_flops: record["sd2_flops"] = [r for E, S in grid for r in sd2_flop_shares(args.classes, E, S)]
    if not (dev.type == "cuda" and size == "sd2"):
        record["not_measured"] = [{"size": "sd2", "image_size": 512, "E x S": g, "ms_per_mask": C.NOT_MEASURED,
                                   "reason": C.NO_GPU + "python benchmarks/cost_breakdown.py --device cuda --size sd2"} for g in args.grid.split(",")]
    key = f"{dev.type}-{size}-{dname}" + ("-quick" if args.quick else "")
    path = C.write_results(NAME, key, record, args.out)
    C.table(rows, ["E x S", "stage", "ms_per_mask", "ms_per_mask_cpu", "share_of_pipeline", "share_of_pipeline_cpu", "speedup_vs_vae", "speedup_vs_vae_cpu"],
            f"{NAME} [{key}] {env['device']}, {C.image_size(pipe)}x{C.image_size(pipe)}, {args.classes} classes, threads={env['torch_threads']}"
            + (" (shared machine)" if env["shared_machine"] else ""))
    print(C.load_caveat(env))
    if "sd2_flops" in record: C.table(record["sd2_flops"], ["E x S", "stage", "gflop_per_mask", "share_with_vae_decode"], "SD2 size, 512x512: counted FLOPs per mask")
    print(f"-> {path}")
    return record


if __name__ == "__main__":
    main()
