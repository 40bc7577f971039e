"""The cheap mask decoder's accuracy cost and speed: distil the mini VAE's decoder into a `MaskDecoder`
(digseg.mask_decoder), then compare the two decoders on mini-world mask latents (IoU against each other
and against the ground truth) and, given a fine-tuned pipeline, the pipeline's mIoU with each.

    python benchmarks/mask_decoder.py [--vae VAE_FOLDER] [--model RUN/model]   # default: the shipped pretrained/mini-sd/vae
    python benchmarks/mask_decoder.py --quick                              # tiny random VAE: a smoke run, numbers meaningless
"""
from __future__ import annotations
import sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bench as C
import torch

NAME = "mask_decoder"


def find_vae(arg: str | None, model: str | None):
    "The VAE to distil: --vae, else the --model pipeline's, else the shipped mini SD's (pretrained/mini-sd/vae)."
    from diffusers import AutoencoderKL
    from digseg.prior import shipped_models
    if arg: return AutoencoderKL.from_pretrained(Path(arg)).eval(), str(arg)
    if model: return None, f"{model}/vae"
    found = shipped_models()/"mini-sd"/"vae"
    if not found.is_dir(): raise SystemExit(f"no mini VAE at {found}: pass --vae FOLDER (digseg pretrain writes one) or --quick")
    return AutoencoderKL.from_pretrained(found).eval(), str(found)


def decode_speed(vae, dec, K, device, repeats, seed=0):
    "Per-mask time of decoding K mask latents with the VAE and with the MaskDecoder (batched, timed alternately)."
    from digseg.latents import decode_mask, vae_scale_factor
    h = 64 // vae_scale_factor(vae)
    lat = torch.randn(K, vae.config.latent_channels, h, h, generator=torch.Generator().manual_seed(seed)).to(vae.device)
    ts = C.alternate({"VAE decoder": lambda: decode_mask(vae, lat), "MaskDecoder": lambda: dec.decode(lat)}, device, repeats)
    out = [{"decoder": name, "ms_per_mask": 1e3*t["median_s"]/K, "ms_per_mask_cpu": 1e3*t["cpu_median_s"]/K, "batch": K}
           for name, t in ts.items()]
    out[1]["speedup_vs_vae"] = out[0]["ms_per_mask"]/out[1]["ms_per_mask"]
    out[1]["speedup_vs_vae_cpu"] = out[0]["ms_per_mask_cpu"]/out[1]["ms_per_mask_cpu"]
    return out


def pipeline_miou(model: str, dec, n_images: int, seed: int = 0):
    "mIoU of a saved DiGSeg pipeline on the first `n_images` mini-world val images, with the VAE decoder and with `dec`."
    from digseg.pipeline import DiGSegPipeline
    from digseg.data import MiniWorld
    from digseg.evaluate import evaluate
    from digseg.latents import decode_mask
    pipe = DiGSegPipeline.from_pretrained(model)
    pipe.mask_decoder = None                                     # the reference: the VAE decoder
    val = MiniWorld("val", size=n_images, seed=0)
    res, acc = {}, {"inter": 0, "union": 0, "agree": 0, "pixels": 0, "latents": 0}
    def both(latent, size):
        "The VAE decode, also comparing the MaskDecoder's masks on the same predicted latents (tau = 0.7)."
        full = decode_mask(pipe.vae, latent, size=size).float(); a, b = full > 0.7, dec.decode(latent, size) > 0.7
        acc["inter"] += (a & b).sum().item(); acc["union"] += (a | b).sum().item()
        acc["agree"] += (a == b).sum().item(); acc["pixels"] += a.numel(); acc["latents"] += len(latent)
        return full
    pipe.decode_masks = both                     # on this instance only: the VAE path, comparing on the way
    try: res["VAE decoder"] = {"mIoU": evaluate(pipe, val, progress=False, seed=seed)["mIoU"]}
    finally: del pipe.decode_masks
    with C.use_mask_decoder(pipe, dec): res["MaskDecoder"] = {"mIoU": evaluate(pipe, val, progress=False, seed=seed)["mIoU"]}
    res["miou_loss"] = res["VAE decoder"]["mIoU"] - res["MaskDecoder"]["mIoU"]
    res["predicted_latents"] = {"n": acc["latents"], "iou_vs_vae": acc["inter"]/max(acc["union"], 1),
                                "pixel_agreement": acc["agree"]/max(acc["pixels"], 1), "threshold": 0.7}
    res["images"] = n_images
    return res


def main(argv=None):
    p = C.base_parser(__doc__.splitlines()[0])
    p.add_argument("--vae", default=None, help="folder of the mini VAE to distil (default: the --model's, or the newest cached prior)")
    p.add_argument("--model", default=None, help="a saved fine-tuned DiGSeg pipeline: also compare its mIoU with each decoder")
    p.add_argument("--out-dir", default=None, help="decoder training run folder (default runs/mini/mask_decoder)")
    p.add_argument("--steps", type=int, default=None, help="distillation steps (default 600; 20 with --quick)")
    p.add_argument("--width", type=int, default=32, help="MaskDecoder width at the latent resolution (32 at mini size)")
    p.add_argument("--min-width", type=int, default=8)
    p.add_argument("--latent-jitter", type=float, default=0.1, help="distillation latent noise (relative to each latent's std)")
    p.add_argument("--latent-mix", type=float, default=0.5, help="fraction of distillation latents mixed from two")
    p.add_argument("--masks", type=int, default=None, help="held-out val masks compared (default 500; 16 with --quick)")
    p.add_argument("--eval-images", type=int, default=100, help="val images for the pipeline mIoU (with --model)")
    p.add_argument("--repeats", type=int, default=None)
    args = p.parse_args(argv)
    dev = C.setup(args)
    from digseg.mask_decoder import train_mask_decoder, mask_decoder_agreement, mini_world_masks
    from digseg.config import runs_dir
    from flops import count_models, meta_models, count_sd2
    env = C.machine(dev)
    if args.quick:
        from digseg.models import build_vae
        vae, vae_src = build_vae("tiny"), "random tiny VAE (--quick: numbers are meaningless)"
    else:
        vae, vae_src = find_vae(args.vae, args.model)
        if vae is None:
            from diffusers import AutoencoderKL
            vae = AutoencoderKL.from_pretrained(Path(args.model)/"vae").eval()
    vae = vae.to(dev)
    steps = args.steps or (20 if args.quick else 600)
    tag = f"w{args.width}_j{args.latent_jitter}_m{args.latent_mix}_s{steps}"       # one run folder per recipe
    out_dir = Path(args.out_dir) if args.out_dir else runs_dir("mini")/(f"mask_decoder_quick_{tag}" if args.quick else f"mask_decoder_{tag}")
    import time
    t0 = time.perf_counter()
    dec = train_mask_decoder(vae, out_dir, steps=steps, batch_size=8 if args.quick else 32, width=args.width, min_width=args.min_width,
                             world_size=64 if args.quick else 4000, seed=args.seed,
                             latent_jitter=args.latent_jitter, latent_mix=args.latent_mix).to(dev).eval()
    train_s = time.perf_counter() - t0
    masks = mini_world_masks(args.masks or (16 if args.quick else 500), split="val", seed=args.seed)
    agreement = [mask_decoder_agreement(dec, vae, masks, threshold=th, latent_jitter=j, seed=args.seed)
                 for th in (0.5, 0.7) for j in (0.0, 0.1)]
    speed = decode_speed(vae, dec, 8, dev, args.repeats or (1 if args.quick else 5), args.seed)
    mini = count_models(*meta_models("mini"), 64, 32) if not args.quick else None
    sd2 = count_sd2(512)
    flops = {"sd2_512": {"vae_decode_gflop": sd2["vae_decode"]/1e9, "mask_decoder_default_gflop": sd2["mask_decoder"]/1e9,
                         "ratio": sd2["vae_decode"]/sd2["mask_decoder"]}}
    if mini:
        from digseg.mask_decoder import decoder_flops
        f_dec = decoder_flops(dec, (1, vae.config.latent_channels, 16, 16))
        flops["mini_64"] = {"vae_decode_gflop": mini["vae_decode"]/1e9, "mask_decoder_gflop": f_dec/1e9, "ratio": mini["vae_decode"]/f_dec}
    record = {"machine": env, "config": {"vae": vae_src, "model": args.model, "steps": steps, "width": args.width, "min_width": args.min_width,
                                         "latent_jitter": args.latent_jitter, "latent_mix": args.latent_mix,
                                         "train_seconds": train_s, "decoder_params": sum(p.numel() for p in dec.parameters()),
                                         "vae_decoder_params": sum(p.numel() for p in vae.decoder.parameters()) + sum(p.numel() for p in vae.post_quant_conv.parameters()),
                                         "masks": len(masks), "quick": args.quick, "decoder_dir": str(out_dir/"mask_decoder")},
              "agreement": agreement, "speed": speed, "flops": flops}
    if args.model: record["pipeline"] = pipeline_miou(args.model, dec, args.eval_images, args.seed)
    key = f"{dev.type}-{'quick' if args.quick else 'mini'}-{tag}"
    path = C.write_results(NAME, key, record, args.out)
    C.table(agreement, ["threshold", "latent_jitter", "iou_vs_vae", "iou_vae_vs_gt", "iou_small_vs_gt", "iou_loss", "pixel_agreement"],
            f"{NAME} [{key}] {vae_src}, {len(masks)} val masks, decoder {record['config']['decoder_params']} params, trained {steps} steps")
    C.table(speed, ["decoder", "ms_per_mask", "ms_per_mask_cpu", "speedup_vs_vae", "speedup_vs_vae_cpu"], "decode time (64x64, batch 8)")
    print("FLOPs:", {k: {kk: round(vv, 4) for kk, vv in v.items()} for k, v in flops.items()})
    if "pipeline" in record: print("pipeline mIoU:", record["pipeline"])
    print(C.load_caveat(env))
    print(f"-> {path}")
    return record


if __name__ == "__main__":
    main()
