"Shared parts of the benchmark scripts: the machine record, timing, model building, tables and JSON results."
from __future__ import annotations
import argparse, datetime, json, os, platform, statistics, subprocess, sys, time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")       # nothing is ever downloaded
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
import torch

RESULTS = Path(__file__).resolve().parent/"results"
NOT_MEASURED = "not measured"
NO_GPU = "no GPU in this run (none was lent to the task that wrote it); measure on a GPU machine with: "
SHARED_LOAD = 1.5        # 1-minute load average above which the machine counts as shared
SIZES = ("tiny", "mini", "sd2")
# Table 6 of the paper: E x S, timestep spacing, FPS as printed (the unit is not stated: per image, at an unstated class count)
TABLE6 = [(1, 1, "trailing", 11.27), (1, 2, "trailing", 10.61), (4, 5, "trailing", 5.82), (8, 2, "trailing", 3.15),
          (20, 50, "leading", 0.12)]


def base_parser(description: str, quick_help: str = "a fast smoke run (tiny sizes, one repeat)"):
    "Arguments every benchmark takes."
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help=quick_help)
    p.add_argument("--device", default="cpu", help="'cpu' or 'cuda' (or 'cuda:N')")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: $OMP_NUM_THREADS or torch's default)")
    p.add_argument("--out", default=None, help="JSON file to write (default benchmarks/results/<name>.json)")
    p.add_argument("--seed", type=int, default=0)
    return p


def setup(args):
    "Apply --threads and check --device; return the torch device."
    if args.threads is not None:
        if args.threads < 1: raise SystemExit(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available(): raise SystemExit("--device cuda: no CUDA device is available here")
    if dev.type not in ("cpu", "cuda"): raise SystemExit(f"--device must be cpu or cuda, got {args.device!r}")
    return dev


def cpu_name():
    "The CPU model name from /proc/cpuinfo (or platform.processor())."
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"): return line.split(":", 1)[1].strip()
    except OSError: pass
    return platform.processor() or "unknown"


def machine(device) -> dict:
    "What a result was measured on: device, CPU, threads, torch, date, load (and whether the machine was shared)."
    dev = torch.device(device)
    load = os.getloadavg()
    rec = {"device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU: {cpu_name()}",
           "device_type": dev.type, "cpu": cpu_name(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
           "torch": torch.__version__, "python": platform.python_version(), "platform": platform.platform(),
           "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "loadavg_at_start": [round(x, 2) for x in load], "shared_machine": load[0] > SHARED_LOAD}
    if dev.type == "cuda": rec["cuda"] = torch.version.cuda
    try:
        root = Path(__file__).resolve().parent.parent
        rec["git_commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10).stdout.strip()
        rec["git_dirty"] = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True, timeout=10).stdout.strip())
    except (OSError, subprocess.SubprocessError): pass
    try: rec["cpu_cgroup"] = next((l.split(":", 2)[2] for l in Path("/proc/self/cgroup").read_text().splitlines()
                                   if l.split(":")[1] in ("cpu", "cpu,cpuacct")), None)
    except (OSError, IndexError): pass
    if rec["shared_machine"]: rec["note"] = _shared_note(load[0], "start")
    return rec


def _shared_note(load: float, when: str) -> str:
    "The machine record's note for a run that shared the machine (load above SHARED_LOAD at its `when`)."
    return (f"load average {load:.2f} > {SHARED_LOAD} at {when} on {os.cpu_count()} cores: other jobs shared the "
            f"machine, so wall times are pessimistic and noisy (medians reported); the *_cpu rates divide by "
            f"the process CPU time instead, which does not count waiting for a core")


def finish_machine(rec: dict) -> dict:
    "Add the load average at the end of a run to its machine record; a run is shared if the load was high at its start or end."
    load = os.getloadavg()
    rec["loadavg_at_end"] = [round(x, 2) for x in load]
    if load[0] > SHARED_LOAD and not rec.get("shared_machine"):
        rec["shared_machine"], rec["note"] = True, _shared_note(load[0], "the end")
    return rec


def load_caveat(rec: dict) -> str:
    "One line for a printed table: the machine's load, and what it means for the numbers."
    start = rec.get("loadavg_at_start", ["?"])[0]
    if rec.get("shared_machine"):
        return (f"SHARED MACHINE (load average {start} at start on {rec.get('cpu_count')} cores): wall times are pessimistic; "
                f"ratios of alternated runs and *_cpu columns are the trustworthy numbers")
    return f"load average {start} at start on {rec.get('cpu_count')} cores"


def sync(device):
    if torch.device(device).type == "cuda": torch.cuda.synchronize(device)


def timeit(fn, device="cpu", repeats: int = 3, warmup: int = 1):
    "Median and min wall time (s) of `fn()` over `repeats` runs after `warmup` runs, and the median process CPU time."
    # On a shared CPU the wall time includes time spent waiting for a core; the process CPU time does not
    # (with one torch thread it is the single-core time the work needed). Both are kept.
    for _ in range(warmup): fn()
    times, cpu = [], []
    for _ in range(max(1, repeats)):
        sync(device); t0, c0 = time.perf_counter(), time.process_time()
        fn(); sync(device)
        times.append(time.perf_counter() - t0); cpu.append(time.process_time() - c0)
    return {"median_s": statistics.median(times), "min_s": min(times), "cpu_median_s": statistics.median(cpu),
            "times_s": [round(t, 6) for t in times]}


def alternate(fns: dict, device="cpu", repeats: int = 3, warmup: int = 1):
    "Time several callables `{name: fn}` in turn, `repeats` rounds, so they share the machine's conditions; {name: timing}."
    # Ratios between them (e.g. with and without the mask decoder) are then measured in one run, not across runs
    # that may have seen different loads.
    for _ in range(warmup):
        for fn in fns.values(): fn()
    runs = {k: [] for k in fns}
    for _ in range(max(1, repeats)):
        for k, fn in fns.items(): runs[k].append(timeit(fn, device, repeats=1, warmup=0))
    med = lambda ts, key: statistics.median(t[key] for t in ts)
    return {k: {"median_s": med(ts, "median_s"), "min_s": min(t["min_s"] for t in ts), "cpu_median_s": med(ts, "cpu_median_s"),
                "times_s": [t["times_s"][0] for t in ts]} for k, ts in runs.items()}


def rate(n, t: dict):
    "(per wall second, per CPU second) rates of `n` items done in the timing `t`."
    return n/t["median_s"], n/max(t["cpu_median_s"], 1e-9)


def dtype_of(name: str):
    "torch dtype from 'fp32' / 'bf16' / 'fp16'."
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[name]


def build_pipeline(size: str, device="cpu", dtype=torch.float32, seed: int = 0):
    "A DiGSeg pipeline with random weights of the `size` architecture (speed does not depend on weights)."
    from digseg.models import build_unet, build_vae, _seeded
    from digseg.components import MINI_CLIP_CONFIG
    from digseg.pipeline import build_tiny_pipeline, assemble_pipeline
    from digseg.text import ClipBackbone
    if size not in SIZES: raise SystemExit(f"--size must be one of {SIZES}, got {size!r}")
    dev = torch.device(device)
    if size == "tiny": pipe = build_tiny_pipeline(seed=seed)
    else:
        with dev:   # initialise on the target device: SD2's 866 M U-Net parameters initialise in seconds on a GPU
            unet, vae = build_unet(size, seed=seed), build_vae(size, seed=seed)
            clip = _seeded(seed, lambda: ClipBackbone(**MINI_CLIP_CONFIG) if size == "mini" else ClipBackbone("ViT-L-14"))
            pipe = _seeded(seed, lambda: assemble_pipeline(unet, vae, clip, processing_resolution=512 if size == "sd2" else None))
    pipe.to(dev)
    if dtype != torch.float32: pipe.to(dtype)
    return pipe


def image_size(pipe):
    "The pipeline's working size in pixels (so no resize happens in the benchmark)."
    return pipe.default_processing_resolution


def class_names(k: int):
    "`k` distinct mini-world class names (prompts); the text does not change the cost."
    from digseg.data import world_class_names
    names = world_class_names()[1:]
    if k > len(names): names = names + [f"{n} {i}" for i in range(k // len(names) + 1) for n in names]
    return names[:k]


def write_results(name: str, run_key: str, record: dict, out: str | None = None):
    "Merge `record` as runs[run_key] into the benchmark's JSON (other runs, e.g. a GPU run, are kept); return the path."
    path = Path(out) if out else RESULTS/f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"benchmark": name, "runs": {}}
    if path.exists():
        try: doc = json.loads(path.read_text()); doc.setdefault("runs", {})
        except ValueError: pass
    doc["benchmark"] = name
    if isinstance(record.get("machine"), dict): finish_machine(record["machine"])
    doc["runs"][run_key] = record
    tmp = path.with_suffix(".json.tmp"); tmp.write_text(json.dumps(doc, indent=1, default=str)); os.replace(tmp, path)
    return path


def table(rows: list, cols: list, title: str = ""):
    "Print `rows` (dicts) as a fixed-width table of `cols`."
    def fmt(v):
        if isinstance(v, float): return f"{v:.4g}"
        return str(v)
    cells = [[fmt(r.get(c, "")) for c in cols] for r in rows]
    w = [max(len(c), *(len(x[i]) for x in cells)) if cells else len(c) for i, c in enumerate(cols)]
    if title: print(f"\n{title}")
    print("  ".join(c.ljust(w[i]) for i, c in enumerate(cols)))
    print("  ".join("-"*w[i] for i in range(len(cols))))
    for x in cells: print("  ".join(v.ljust(w[i]) for i, v in enumerate(x)))
    sys.stdout.flush()


def build_mask_decoder(spec: str | None, pipe):
    "None, or a `MaskDecoder` for the pipeline's VAE: 'random' (speed only: random weights) or a saved decoder folder."
    if not spec: return None
    from digseg.mask_decoder import MaskDecoder
    p = next(pipe.vae.parameters())
    if spec == "random":
        small = pipe.vae.config.block_out_channels[-1] <= 64     # the mini VAE: a narrower decoder (see benchmarks/mask_decoder.py)
        dec = MaskDecoder.for_vae(pipe.vae, **(dict(width=32, min_width=8) if small else {}))
    else: dec = MaskDecoder.from_pretrained(spec)
    return dec.to(p.device, p.dtype).eval()


class use_mask_decoder:
    "Context manager: the pipeline decodes masks with `decoder` (its optional `mask_decoder` component); None: the VAE."
    # The component is attached for the duration and the pipeline's previous one put back, so timed runs with
    # and without it can alternate on one pipeline (same weights, inputs and machine conditions).
    def __init__(self, pipe, decoder): self.pipe, self.decoder = pipe, decoder
    def __enter__(self):
        self.old = self.pipe.mask_decoder
        self.pipe.mask_decoder = self.decoder
        return self.pipe
    def __exit__(self, *exc): self.pipe.mask_decoder = self.old
