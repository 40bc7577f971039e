"""Attention heads of the mini U-Net: the same U-Net (same parameters) with 8 heads at every level (head
width 4 at 32 channels, 8 at 64: what the mini spec had) against MINI_UNET_CONFIG's heads (head width 16),
forward on the pipeline's rows (images x classes) and forward + backward on a training batch, ratios
measured in one run.

    OMP_NUM_THREADS=1 python benchmarks/unet_heads.py     # mini U-Net, 16x16 latents, 96 rows / batch 32
    python benchmarks/unet_heads.py --quick               # fewer rows, one repeat: a smoke run

CPU attention at 256 tokens is bound by the softmax over (heads x tokens x tokens): the same channels
split into more, narrower heads cost more, while the parameter count does not change.
"""
from __future__ import annotations
import sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bench as C
import torch

NAME = "unet_heads"
OLD_HEADS = 8   # the mini spec's `attention_head_dim` before (diffusers reads it as the number of heads)


def main(argv=None):
    p = C.base_parser(__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=96, help="forward rows (4 images x 24 classes in a mini evaluation)")
    p.add_argument("--batch", type=int, default=32, help="training batch (forward + backward)")
    p.add_argument("--repeats", type=int, default=None)
    args = p.parse_args(argv)
    dev = C.setup(args)
    from diffusers import UNet2DConditionModel
    from digseg.components import MINI_UNET_CONFIG
    rows, batch = (8, 4) if args.quick else (args.rows, args.batch)
    heads = {"old: 8 heads": OLD_HEADS, f"now: {MINI_UNET_CONFIG['attention_head_dim']}": MINI_UNET_CONFIG["attention_head_dim"]}
    g = torch.Generator().manual_seed(args.seed)
    side, ctx, width = MINI_UNET_CONFIG["sample_size"], 32, MINI_UNET_CONFIG["cross_attention_dim"]
    x = torch.randn(rows, 8, side, side, generator=g).to(dev)      # 8 input channels: mask latent + image latent
    c = torch.randn(rows, ctx, width, generator=g).to(dev)
    t = torch.full((rows,), 999, device=dev)
    nets = {}
    for k, h in heads.items():
        torch.manual_seed(args.seed)
        nets[k] = UNet2DConditionModel(**{**MINI_UNET_CONFIG, "attention_head_dim": h, "in_channels": 8}).to(dev)
    params = {k: sum(p.numel() for p in n.parameters()) for k, n in nets.items()}

    def fwd(n):
        with torch.no_grad(): n(x, t, encoder_hidden_states=c)

    def fwd_bwd(n):
        n.zero_grad(set_to_none=True)
        n(x[:batch], t[:batch], encoder_hidden_states=c[:batch]).sample.square().mean().backward()

    reps = args.repeats or (1 if args.quick else 5)
    tf = C.alternate({k: (lambda n=n: fwd(n)) for k, n in nets.items()}, dev, repeats=reps)
    tb = C.alternate({k: (lambda n=n: fwd_bwd(n)) for k, n in nets.items()}, dev, repeats=reps)
    old = next(iter(heads))
    out = [{"heads": k, "parameters": params[k], f"forward_{rows}_ms": 1e3*tf[k]["median_s"],
            f"fwd_bwd_{batch}_ms": 1e3*tb[k]["median_s"],
            "forward_speedup": tf[old]["median_s"]/tf[k]["median_s"], "fwd_bwd_speedup": tb[old]["median_s"]/tb[k]["median_s"]}
           for k in heads]
    env = C.machine(dev)
    record = {"machine": env, "rows": rows, "batch": batch, "latent": side, "context_tokens": ctx,
              "same_parameters": len(set(params.values())) == 1, "rows_table": out,
              "times": {"forward": tf, "fwd_bwd": tb}}
    key = f"{dev.type}-mini" + ("-quick" if args.quick else "")
    path = C.write_results(NAME, key, record, args.out)
    C.table(out, list(out[0]), f"mini U-Net attention heads ({C.load_caveat(env)})")
    print(f"same parameter count: {record['same_parameters']}; wrote {path}")
    return record


if __name__ == "__main__":
    main()
