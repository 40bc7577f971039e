"""Batched vs naive inference: DiGSegPipeline's batched (class x ensemble) path against a plain per-class,
per-member loop that follows appendix A.3 literally, on the same model, inputs and seeds; outputs checked equal.

    python benchmarks/batched_vs_naive.py [--quick]          # mini size, 8 classes, E = 4 (issue 7 target: >= 3x on CPU)

The naive loop, for each class: encodes the image, encodes the prompt with CLIP (no cache), runs each
ensemble member's DDIM chain with batch-1 U-Net calls, averages the member latents, decodes with the
VAE; then takes the per-pixel argmax. The two are timed alternately in one run, so they share the
machine's conditions; the ratio is of medians.
"""
from __future__ import annotations
import sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bench as C
import torch
import torch.nn.functional as F

NAME = "batched_vs_naive"


@torch.no_grad()
def naive_segment(pipe, images, classes, num_inference_steps=1, timestep_spacing="trailing", ensemble_size=1,
                  threshold=0.7, generator=None):
    "Appendix A.3 as a plain loop: per class, per member, batch-1 U-Net calls; same seeds as the pipeline."
    from digseg.latents import image_to_tensor, encode_pixels, decode_mask, vae_scale_factor
    from digseg.text import TextConditioner
    from digseg.unet import unet_input
    from digseg.sampler import denoise, ensemble_latents
    from digseg.pipeline import pair_generators, aggregate
    x = image_to_tensor(images)
    B, _, H, W = x.shape
    if (H, W) != (pipe.default_processing_resolution,)*2:
        raise ValueError(f"naive_segment compares at the working size {pipe.default_processing_resolution}, got {H}x{W}")
    # the pipeline's seeding: one base seed drawn from `generator`, then one generator per (image, class, member)
    base_seed = int(torch.randint(0, 2**62, (), generator=generator))
    text = TextConditioner(pipe.clip, pipe.text_projection, cache=None, template=pipe.config.prompt_template)
    dev, f = pipe.unet.device, vae_scale_factor(pipe.vae)
    probs, unc = torch.zeros(B, len(classes), H, W), torch.zeros(B, len(classes), H, W)
    first = {n: classes.index(n) for n in classes}                       # C(x) is a set: a repeated name is run once
    for b in range(B):
        for k, name in enumerate(classes):
            if first[name] != k:
                probs[b, k], unc[b, k] = probs[b, first[name]], unc[b, first[name]]; continue
            z_x = encode_pixels(pipe.vae, x[b:b+1])                     # M_c = f(x, t_c): the image latent ...
            cond = text([name]).to(dev, pipe.unet.dtype)                 # ... and the class's text embedding
            gens = pair_generators(base_seed, torch.tensor([b]), torch.tensor([k]), ensemble_size)
            members = []
            for e in range(ensemble_size):                               # one DDIM chain per member, batch 1
                model_fn = lambda x_t, t, c: pipe.unet(unet_input(z_x, x_t), t, encoder_hidden_states=c).sample
                members.append(denoise(model_fn, z_x, cond, num_inference_steps, timestep_spacing, 1,
                                       generator=[gens[e]], scheduler=pipe.scheduler).latents[0])
            mean, std = ensemble_latents(torch.stack(members))
            probs[b, k] = decode_mask(pipe.vae, mean, size=(H, W))[0].float().clamp(0, 1).cpu()
            spread = F.interpolate(std.float().mean(1, keepdim=True), scale_factor=f, mode="bilinear")[:, :, :H, :W]
            unc[b, k] = spread[0, 0].clamp_min(0).cpu()
    labels = aggregate(probs, torch.ones(B, len(classes), dtype=torch.bool), threshold)
    return labels, probs, unc


def compare(out, naive, atol=1e-5, rtol=1e-4):
    "Equality checks of the pipeline's output against the naive loop's."
    labels, probs, unc = naive
    return {"probabilities_allclose": bool(torch.allclose(out.probabilities, probs, atol=atol, rtol=rtol)),
            "uncertainty_allclose": bool(torch.allclose(out.uncertainty, unc, atol=atol, rtol=rtol)),
            "labels_equal_fraction": float((out.labels == labels).float().mean()),
            "max_abs_diff_probabilities": float((out.probabilities - probs).abs().max()),
            "atol": atol, "rtol": rtol}


def main(argv=None):
    p = C.base_parser(__doc__.splitlines()[0])
    p.add_argument("--size", choices=C.SIZES, default=None, help="architecture (default mini; tiny with --quick)")
    p.add_argument("--classes", type=int, default=8)
    p.add_argument("--ensemble", type=int, default=4, help="E")
    p.add_argument("--steps", type=int, default=1, help="S (trailing DDIM steps)")
    p.add_argument("--repeats", type=int, default=None, help="alternating timed repeats (default 5; 2 with --quick)")
    p.add_argument("--dtype", choices=("fp32", "bf16", "fp16"), default="fp32")
    p.add_argument("--atol", type=float, default=None, help="tolerance of the equality check (default by device and dtype)")
    args = p.parse_args(argv)
    dev = C.setup(args)
    size = args.size or ("tiny" if args.quick else "mini")
    repeats = args.repeats or (2 if args.quick else 5)
    env = C.machine(dev)
    pipe = C.build_pipeline(size, dev, C.dtype_of(args.dtype), args.seed)
    S = C.image_size(pipe)
    images = torch.rand(1, 3, S, S, generator=torch.Generator().manual_seed(args.seed))
    names = C.class_names(args.classes)
    kw = dict(num_inference_steps=args.steps, timestep_spacing="trailing", ensemble_size=args.ensemble)
    gen = lambda: torch.Generator().manual_seed(args.seed)
    batched = lambda: pipe(images, classes=names, generator=gen(), **kw)
    naive = lambda: naive_segment(pipe, images, names, generator=gen(), **kw)
    # batch-size-dependent kernels round differently: exact-ish on CPU fp32, looser with cuDNN's TF32 or half precision
    atol = args.atol or (1e-5 if (dev.type, args.dtype) == ("cpu", "fp32") else 1e-3 if args.dtype == "fp32" else 3e-2)
    check = compare(batched(), naive(), atol=atol, rtol=0 if args.dtype != "fp32" else 1e-4)   # also the warm-up of both
    tb, tn = [], []
    for _ in range(repeats):                                              # alternate: same conditions for both
        tn.append(C.timeit(naive, dev, repeats=1, warmup=0)); tb.append(C.timeit(batched, dev, repeats=1, warmup=0))
    med = lambda ts, k: sorted(t[k] for t in ts)[len(ts)//2]
    rows = [{"path": "naive (A.3 loop)", "median_s": med(tn, "median_s"), "cpu_median_s": med(tn, "cpu_median_s")},
            {"path": "batched pipeline", "median_s": med(tb, "median_s"), "cpu_median_s": med(tb, "cpu_median_s")}]
    for r in rows:
        r["masks_per_s"], r["masks_per_s_cpu"] = C.rate(args.classes, r)
        r["unet_calls"] = (args.classes*args.ensemble*args.steps if r["path"].startswith("naive")
                           else args.steps*-(-args.classes // max(1, 64 // args.ensemble)))   # the pipeline's default batch_size 64
    speedup = rows[0]["median_s"]/rows[1]["median_s"]; speedup_cpu = rows[0]["cpu_median_s"]/rows[1]["cpu_median_s"]
    record = {"machine": env, "config": {"size": size, "image_size": S, "classes": args.classes, "ensemble": args.ensemble,
                                         "steps": args.steps, "spacing": "trailing", "dtype": args.dtype, "repeats": repeats,
                                         "quick": args.quick, "weights": "random"},
              "rows": rows, "speedup": speedup, "speedup_cpu": speedup_cpu, "target_speedup": 3.0,
              "meets_target": speedup >= 3.0, "outputs_equal": check["probabilities_allclose"] and check["uncertainty_allclose"]
              and check["labels_equal_fraction"] >= (1.0 if atol <= 1e-5 else 0.999), "check": check,
              "times": {"naive": [t["median_s"] for t in tn], "batched": [t["median_s"] for t in tb]}}
    if not (dev.type == "cuda" and size == "sd2"):
        record["not_measured"] = [{"size": "sd2", "image_size": 512, "speedup": C.NOT_MEASURED,
                                   "reason": C.NO_GPU + "python benchmarks/batched_vs_naive.py --device cuda --size sd2 --dtype bf16"}]
    key = f"{dev.type}-{size}-{args.dtype}" + ("-quick" if args.quick else "")
    path = C.write_results(NAME, key, record, args.out)
    C.table(rows, ["path", "median_s", "cpu_median_s", "masks_per_s", "masks_per_s_cpu", "unet_calls"],
            f"{NAME} [{key}] {env['device']}, {S}x{S}, {args.classes} classes, E={args.ensemble}, S={args.steps}"
            + (" (shared machine)" if env["shared_machine"] else ""))
    print(f"speedup {speedup:.2f}x (wall), {speedup_cpu:.2f}x (CPU time); target >= 3x; outputs equal: {record['outputs_equal']} "
          f"(max |dp| = {check['max_abs_diff_probabilities']:.2e})")
    print(C.load_caveat(env))
    print(f"-> {path}")
    if not record["outputs_equal"]: raise SystemExit("the batched pipeline and the naive loop disagree: see 'check' in the JSON")
    return record


if __name__ == "__main__":
    main()
