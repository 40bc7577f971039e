"""How much mIoU does the mini world give a small model per minute of CPU? A discriminative ceiling probe (issue 3).

    python benchmarks/world_ceiling.py                      # latent input (the default prior's VAE), 30 min, curve every 10
    python benchmarks/world_ceiling.py --input pixel --minutes 10
    python benchmarks/world_ceiling.py --quick              # seconds, tiny world, random VAE (what the test runs)

Not DiGSeg and not a paper number: a yardstick for the issue-3 target (seen mIoU >= 0.5 after at most 15
minutes of fine-tuning on 2 CPU cores). The probe is the easiest model of the task we could think of that
sees what DiGSeg sees: a small conv U-Net on the frozen mini VAE's image latent (or the pixels), told the
class by an *oracle* embedding of its id through FiLM (no CLIP, no cross-attention, no diffusion noise),
predicting the class's binary mask with BCE + Dice on the very samples the recipe trains on
(`configs/mini/train_recipe.yaml`'s data section: augmentations, empty and hard-negative prompts). It is
scored exactly as DiGSeg is (`digseg.evaluate.evaluate` on 200 val images, seen classes, argmax with the
background below tau = 0.7). Its oracle class embedding cannot name an unseen composition, so only the seen
mIoU is reported. If this probe stays far below 0.5 at the budget, the bottleneck is the world's difficulty
for the compute, not a defect of the DiGSeg pathway.
"""
from __future__ import annotations
import sys, time
from pathlib import Path
from types import SimpleNamespace
sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bench as C
import torch, torch.nn as nn, torch.nn.functional as F

NAME = "world_ceiling"
RECIPE = Path(__file__).resolve().parent.parent/"configs"/"mini"/"train_recipe.yaml"


def block(cin: int, cout: int):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(min(8, cout), cout), nn.SiLU(),
                         nn.Conv2d(cout, cout, 3, padding=1), nn.GroupNorm(min(8, cout), cout), nn.SiLU())


class FiLMNet(nn.Module):
    "A 4-level conv U-Net whose every encoder level is scaled and shifted by an embedding of the class id (FiLM)."
    def __init__(self, in_channels: int, num_classes: int, width: int = 32, embed: int = 64):
        super().__init__()
        ch = [width, 2*width, 2*width, 4*width]
        self.emb = nn.Embedding(num_classes, embed)
        self.down = nn.ModuleList(block(i, o) for i, o in zip([in_channels] + ch[:-1], ch))
        self.film = nn.ModuleList(nn.Linear(embed, 2*o) for o in ch)
        self.up = nn.ModuleList(block(ch[k + 1] + ch[k], ch[k]) for k in (2, 1, 0))
        self.out = nn.Conv2d(ch[0], 1, 1)

    def forward(self, x, class_ids):   # (B, C, h, w), (B,) -> (B, 1, h, w) mask logits
        e, skips = self.emb(class_ids), []
        for k, (b, f) in enumerate(zip(self.down, self.film)):
            x = b(F.avg_pool2d(x, 2) if k else x)
            g, s = f(e).chunk(2, 1); x = x*(1 + g[..., None, None]) + s[..., None, None]; skips.append(x)
        for k, b in enumerate(self.up):
            x = b(torch.cat([F.interpolate(x, scale_factor=2), skips[-2 - k]], 1))
        return self.out(x)


class ProbeSegmenter:
    "The probe behind the pipeline's call signature, so `digseg.evaluate.evaluate` scores it as it scores DiGSeg."
    def __init__(self, net, encode, class_names: list):
        self.net, self.encode, self.names = net, encode, list(class_names)

    @torch.no_grad()
    def __call__(self, image, classes, generator=None, **_):
        ids = torch.tensor([self.names.index(c) for c in classes])
        x = self.encode(image).expand(len(ids), -1, -1, -1)
        p = self.net(x, ids).sigmoid()[:, 0]
        p = F.interpolate(p[None], size=image.shape[-2:], mode="bilinear", align_corners=False)
        return SimpleNamespace(probabilities=p, candidates=torch.ones(1, len(ids), dtype=torch.bool))


def default_vae():
    "The VAE folder of the mini SD the recipe starts from (the shipped pretrained/mini-sd/vae)."
    from digseg.prior import shipped_models
    return shipped_models()/"mini-sd"/"vae"


def probe(minutes: float, width: int, input: str, vae, eval_every: float, world_size: int, eval_size: int,
          batch: int, lr: float, seed: int):
    "Train the probe for `minutes` of wall time (evaluations excluded); return its curve of seen mIoU."
    import yaml
    from digseg.data import MiniWorld, seen_class_names, world_class_names
    from digseg.evaluate import evaluate
    from digseg.finetune import build_training_data
    from digseg.latents import encode_image
    torch.manual_seed(seed)
    names = world_class_names()
    data_cfg = {**yaml.safe_load(RECIPE.read_text())["data"], "size": world_size}
    data = build_training_data(data_cfg, seed=seed)
    if input == "latent":
        vae = vae.eval().requires_grad_(False)
        encode = lambda x: encode_image(vae, x)
        cin = vae.config.latent_channels
    else:
        encode, cin = (lambda x: x*2 - 1), 3
    net = FiLMNet(cin, len(names), width)
    opt = torch.optim.AdamW(net.parameters(), lr)
    loader = torch.utils.data.DataLoader(data, batch_size=batch, shuffle=True, drop_last=True,
                                         generator=torch.Generator().manual_seed(seed))
    val = MiniWorld("val", size=eval_size, seed=0)
    seg = ProbeSegmenter(net, encode, names)

    def score(trained_s, steps):
        net.eval()
        m = evaluate(seg, val, subsets={"seen": seen_class_names()}, progress=False)
        net.train()
        row = {"minutes": round(trained_s/60, 2), "steps": steps, "samples": steps*batch, "mIoU_seen": m["mIoU_seen"]}
        print(row, flush=True)
        return row

    curve, trained, steps, next_eval = [], 0.0, 0, eval_every*60
    while trained < minutes*60:
        for b in loader:
            t0 = time.perf_counter()
            with torch.no_grad(): x = encode(b["image"])
            ids = torch.tensor([names.index(c) for c in b["class_name"]])
            logit = F.interpolate(net(x, ids), size=b["mask"].shape[-2:], mode="bilinear", align_corners=False)[:, 0]
            m, p = b["mask"].float(), logit.sigmoid()
            dice = 1 - (2*(p*m).flatten(1).sum(1) + 1)/((p + m).flatten(1).sum(1) + 1)
            loss = F.binary_cross_entropy_with_logits(logit, m) + dice.mean()
            opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
            trained += time.perf_counter() - t0; steps += 1
            if trained >= next_eval and trained < minutes*60: curve.append(score(trained, steps)); next_eval += eval_every*60
            if trained >= minutes*60: break
    curve.append(score(trained, steps))
    return curve, sum(p.numel() for p in net.parameters())


def main(argv=None):
    p = C.base_parser(__doc__.splitlines()[0], "seconds: tiny world, 8 val images, a random mini VAE")
    p.add_argument("--minutes", type=float, default=30.0, help="training wall time (evaluations not counted)")
    p.add_argument("--eval-every", type=float, default=10.0, help="minutes of training between curve points")
    p.add_argument("--width", type=int, default=32, help="channels of the first level (then 2x, 2x, 4x)")
    p.add_argument("--input", choices=("latent", "pixel"), default="latent")
    p.add_argument("--vae", default=None, help="a mini VAE folder (default: the recipe's prior's, pretrained if not cached)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    args = p.parse_args(argv)
    C.setup(args)
    from diffusers import AutoencoderKL
    if args.quick:
        from digseg.models import build_vae
        minutes, every, world, n_eval, width = 0.05, 0.05, 32, 8, 8
        vae = build_vae("mini", seed=args.seed) if args.input == "latent" else None
    else:
        minutes, every, world, n_eval, width = args.minutes, args.eval_every, 4000, 200, args.width
        vae = AutoencoderKL.from_pretrained(args.vae or default_vae()) if args.input == "latent" else None
    rec = {"machine": C.machine(args.device)}
    curve, params = probe(minutes, width, args.input, vae, every, world, n_eval, args.batch, args.lr, args.seed)
    rec.update(input=args.input, width=width, parameters=params, batch=args.batch, lr=args.lr, world_size=world,
               eval_images=n_eval, curve=curve, reference="DiGSeg-mini acceptance run (benchmarks/results/mini_recipe.json "
               "acceptance_run): 0.147 seen mIoU after 13.6 min on 2 threads", target=0.5)
    C.table([{"minutes": r["minutes"], "steps": r["steps"], "mIoU_seen": f"{r['mIoU_seen']:.3f}"} for r in curve],
            ["minutes", "steps", "mIoU_seen"], f"ceiling probe ({args.input}, width {width}, {params/1e6:.2f} M parameters)")
    key = f"{rec['machine']['device_type']}-{args.input}-w{width}" + ("-quick" if args.quick else "")
    C.write_results(NAME, key, rec, args.out)
    return rec


if __name__ == "__main__":
    main()
