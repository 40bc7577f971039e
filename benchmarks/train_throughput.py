"""Training throughput (samples/s) and peak memory of the DiGSeg objective (§3.6) for tiny, mini and SD2 sizes.

    python benchmarks/train_throughput.py [--quick]            # tiny and mini, batch 32, 64x64, CPU (peak RSS)
    python benchmarks/train_throughput.py --device cuda        # SD2 size, batch 16, 512x512, bf16 + gradient
                                                                # checkpointing + SDPA, A.2 groups and full (peak GPU memory)

One step = the §3.6 forward (frozen VAE encodes, multi-res annealed noise, U-Net, loss), backward and an
AdamW update of the trainable parameters, as `digseg.train.Trainer` does (autocast for bf16 = accelerate's
mixed precision). Batches are synthetic and pre-built: data loading is not timed. Random weights.
"""
from __future__ import annotations
import resource, sys, threading, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bench as C
import torch

NAME = "train_throughput"
BYTES = {torch.float32: 4, torch.bfloat16: 2, torch.float16: 2}


class PeakRSS:
    "Sample this process's RSS every `interval` s in a thread; `peak` is the largest seen (bytes)."
    def __init__(self, interval: float = 0.02): self.interval, self.peak, self._stop = interval, 0, threading.Event()
    def _run(self):
        import psutil
        proc = psutil.Process()
        while not self._stop.is_set():
            self.peak = max(self.peak, proc.memory_info().rss); self._stop.wait(self.interval)
    def __enter__(self):
        self.t = threading.Thread(target=self._run, daemon=True); self.t.start(); return self
    def __exit__(self, *exc): self._stop.set(); self.t.join()


def synthetic_batches(n: int, batch: int, size: int, seed: int = 0):
    "`n` training batches of the ClassMaskSamples layout: image in [0, 1], binary mask, valid, class name."
    g = torch.Generator().manual_seed(seed); names = C.class_names(batch)
    return [{"image": torch.rand(batch, 3, size, size, generator=g), "mask": (torch.rand(batch, size, size, generator=g) > 0.5).float(),
             "valid": torch.ones(batch, size, size), "class_name": names} for _ in range(n)]


def state_bytes(pipe, trainable_params):
    "Counted bytes of all weights plus fp32 gradients and AdamW's two moments of the trainable ones (activations excluded)."
    weights = sum(p.numel()*p.element_size() for m in (pipe.unet, pipe.vae, pipe.clip, pipe.text_projection) for p in m.parameters())
    t = sum(p.numel() for p in trainable_params)
    return {"weights_bytes": weights, "grads_adam_bytes": t*4*3, "total_bytes": weights + t*12}


def train_steps(pipe, group: str, batch: int, steps: int, device, mixed: str, checkpointing: bool, compile_unet: bool, seed: int = 0):
    "Time `steps` optimizer steps after one warm-up step; return the measured record."
    from digseg.finetune import DiGSegTrainingModule, DiGSegObjective
    module = DiGSegTrainingModule(pipe, DiGSegObjective(trainable=group))
    if checkpointing: pipe.unet.enable_gradient_checkpointing()
    if compile_unet: module.unet = torch.compile(module.unet)
    params = [p for p in module.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-5)
    size = C.image_size(pipe)
    batches = synthetic_batches(min(steps + 1, 4), batch, size, seed)
    dev = torch.device(device)
    amp = torch.autocast(dev.type, dtype=torch.bfloat16) if mixed == "bf16" else torch.autocast(dev.type, enabled=False)
    module.train()
    def step(i):
        with amp: loss = module({k: v.to(dev) if torch.is_tensor(v) else v for k, v in batches[i % len(batches)].items()},
                                generator=torch.Generator().manual_seed(seed*1000 + i))["loss"]
        loss.backward(); torch.nn.utils.clip_grad_norm_(params, 1.0); opt.step(); opt.zero_grad(set_to_none=True)
        return loss.item()
    if dev.type == "cuda": torch.cuda.reset_peak_memory_stats(dev)
    step(0)                                                   # warm-up: allocations, optimizer state
    with PeakRSS() as rss:
        t = C.timeit(lambda: [step(i + 1) for i in range(steps)], dev, repeats=1, warmup=0)
    rec = {"samples_per_s": batch*steps/t["median_s"], "samples_per_s_cpu": batch*steps/max(t["cpu_median_s"], 1e-9),
           "s_per_step": t["median_s"]/steps, "cpu_s_per_step": t["cpu_median_s"]/steps,
           "peak_rss_bytes_during": rss.peak, "process_peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss*1024,
           "trainable_params": sum(p.numel() for p in params), "total_params_unet": sum(p.numel() for p in pipe.unet.parameters()),
           "attention_processor": type(next(iter(pipe.unet.attn_processors.values()))).__name__,
           **state_bytes(pipe, params)}
    if dev.type == "cuda":
        rec["peak_gpu_allocated_bytes"] = torch.cuda.max_memory_allocated(dev); rec["peak_gpu_reserved_bytes"] = torch.cuda.max_memory_reserved(dev)
    for p in pipe.unet.parameters(): p.requires_grad_(False)
    return rec


def sd2_counted(groups):
    "Counted parameter-state bytes of SD2-size training per trainable group (meta device; activations excluded)."
    from digseg.models import build_unet, build_vae
    from digseg.unet import widen_conv_in, set_trainable
    from digseg.text import TextProjection
    out = []
    import logging, open_clip
    with torch.device("meta"):
        unet, vae = widen_conv_in(build_unet("sd2", seed=None), 8), build_vae("sd2", seed=None)
        proj = TextProjection(768, 1024)
    logging.getLogger().setLevel(logging.ERROR)                               # 'no pretrained weights': intended
    clip = open_clip.create_model("ViT-L-14", pretrained=None, device="meta")   # frozen CLIP ViT-L/14, both towers
    clip_params = sum(p.numel() for p in clip.parameters())
    for g in groups:
        tr = set_trainable(unet, g, extra_modules=[proj])
        n_tr = sum(p.numel() for p in tr)
        w = 4*(sum(p.numel() for m in (unet, vae, proj) for p in m.parameters()) + clip_params)
        out.append({"group": g, "trainable_params": n_tr, "clip_params": clip_params, "weights_bytes_fp32": w, "grads_adam_bytes": 12*n_tr,
                    "state_gb_counted": (w + 12*n_tr)/1e9})
    return out


def main(argv=None):
    p = C.base_parser(__doc__.splitlines()[0])
    p.add_argument("--sizes", default=None, help="comma list of tiny,mini,sd2 (default tiny,mini on CPU; sd2 on GPU; tiny with --quick)")
    p.add_argument("--batch", type=int, default=None, help="batch (default 32 for tiny/mini, 16 for sd2; 4 with --quick)")
    p.add_argument("--steps", type=int, default=None, help="timed steps (default 5; 1 with --quick)")
    p.add_argument("--groups", default=None, help="trainable groups, comma list of full,paper_a2 (default full for tiny/mini; paper_a2,full for sd2)")
    p.add_argument("--mixed-precision", choices=("no", "bf16"), default=None, help="default bf16 on GPU, no on CPU")
    p.add_argument("--no-checkpointing", action="store_true", help="disable gradient checkpointing (on by default for sd2)")
    p.add_argument("--compile", action="store_true", help="torch.compile the U-Net")
    args = p.parse_args(argv)
    dev = C.setup(args)
    sizes = (args.sizes or ("tiny" if args.quick else ("sd2" if dev.type == "cuda" else "tiny,mini"))).split(",")
    steps = args.steps or (1 if args.quick else 5)
    mixed = args.mixed_precision or ("bf16" if dev.type == "cuda" else "no")
    env = C.machine(dev)
    rows = []
    for size in sizes:
        batch = args.batch or (4 if args.quick else (16 if size == "sd2" else 32))
        groups = (args.groups or ("paper_a2,full" if size == "sd2" else "full")).split(",")
        ckpt = size == "sd2" and not args.no_checkpointing
        for g in groups:
            pipe = C.build_pipeline(size, dev, torch.float32, args.seed)       # fp32 master weights; bf16 by autocast
            r = train_steps(pipe, g, batch, steps, dev, mixed, ckpt, args.compile, args.seed)
            rows.append({"size": size, "image_size": C.image_size(pipe), "batch": batch, "group": g, "mixed_precision": mixed,
                         "gradient_checkpointing": ckpt, "compile": args.compile, **r,
                         "peak_rss_gb": r["peak_rss_bytes_during"]/1e9,
                         "process_peak_rss_gb": r["process_peak_rss_bytes"]/1e9, "state_gb_counted": r["total_bytes"]/1e9})
            del pipe
    record = {"machine": env, "config": {"sizes": sizes, "steps": steps, "mixed_precision": mixed, "quick": args.quick,
                                         "data": "synthetic, pre-built (loading not timed)", "weights": "random"},
              "rows": rows, "targets": {"mini_cpu_peak_rss_gb_max": 4.0, "sd2_gpu_peak_gb_max_a2_bf16_ckpt": 40.0}}
    mini = [r for r in rows if r["size"] == "mini" and dev.type == "cpu"]
    sd2_a2 = [r for r in rows if r["size"] == "sd2" and dev.type == "cuda" and r["group"] == "paper_a2" and r["mixed_precision"] == "bf16"
              and r["gradient_checkpointing"] and r["batch"] == 16]
    record["meets_targets"] = {
        "mini_cpu_peak_rss_under_4gb": all(r["peak_rss_gb"] < 4.0 for r in mini) if mini else C.NOT_MEASURED,
        "sd2_a2_bf16_ckpt_batch16_under_40gb": all(r["peak_gpu_allocated_bytes"]/1e9 < 40.0 for r in sd2_a2) if sd2_a2 else C.NOT_MEASURED}
    if not any(r["size"] == "sd2" and dev.type == "cuda" for r in rows):
        record["not_measured"] = [{"size": "sd2", "image_size": 512, "batch": 16, "group": g, "mixed_precision": "bf16",
                                   "gradient_checkpointing": True, "samples_per_s": C.NOT_MEASURED, "peak_gpu_allocated_bytes": C.NOT_MEASURED,
                                   "reason": C.NO_GPU + "python benchmarks/train_throughput.py --device cuda"} for g in ("paper_a2", "full")]
        record["sd2_counted_state"] = sd2_counted(("paper_a2", "full"))
    key = f"{dev.type}-{'-'.join(sizes)}" + ("-quick" if args.quick else "")
    path = C.write_results(NAME, key, record, args.out)
    cols = ["size", "batch", "group", "mixed_precision", "samples_per_s", "samples_per_s_cpu", "s_per_step", "peak_rss_gb", "process_peak_rss_gb", "trainable_params"]
    if dev.type == "cuda":
        for r in rows: r["peak_gpu_gb"] = r["peak_gpu_allocated_bytes"]/1e9
        cols.append("peak_gpu_gb")
    C.table(rows, cols, f"{NAME} [{key}] {env['device']}, threads={env['torch_threads']}" + (" (shared machine)" if env["shared_machine"] else ""))
    if "sd2_counted_state" in record:
        C.table(record["sd2_counted_state"], ["group", "trainable_params", "state_gb_counted"],
                "SD2 size: weights + grads + AdamW state, counted (activations excluded); samples/s and peak GPU memory: not measured")
    print("targets:", record["meets_targets"])
    print(C.load_caveat(env))
    print(f"-> {path}")
    return record


if __name__ == "__main__":
    main()
