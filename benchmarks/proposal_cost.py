"""What A.3's candidate proposals cost a DiGSeg pipeline, and which thresholds would cost least (issue 19).

    python benchmarks/proposal_cost.py                         # pretrained/digseg-mini on the calibration world
    python benchmarks/proposal_cost.py --model runs/x/model --images 100
    python benchmarks/proposal_cost.py --quick                 # seconds, a random tiny pipeline (what the test runs)

A released DiGSeg-mini scores its images with the classes CLIP proposes (A.3: global cosine > tau, or a patch
> tau_patch). How much does that choice cost, and could other thresholds recover it? Each image's mask is
denoised once for *every* prompt (1-step trailing, E = 1, the release protocol), and the label maps of each
candidate rule are then aggregated from those maps with the pipeline's argmax / background rule
(`digseg.predict.labels_from_probabilities`):

- `present`: the classes the label shows (not a test protocol: the ceiling of perfect proposals);
- `all`: every prompt (no proposals at all);
- `pipeline`: the pipeline's own `proposal_thresholds`;
- `global=<tau>`: a sweep of tau with the pipeline's tau_patch.

Scored on world seed CALIBRATION_SEED, which neither training nor the held-out measures of
`prior_quality.py` (seed 7) use, so a threshold chosen here is not chosen on the test images. The maps of a
class are seeded by its index among all prompts, so a rule's score differs from `evaluate`'s (which seeds by
the index among the candidates) by the noise of one 1-step sample, not systematically.
"""
from __future__ import annotations
import sys, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bench as C
from prior_quality import proposal_stats   # the same recall / precision as the release cards
import torch

NAME = "proposal_cost"
ROOT = Path(__file__).resolve().parent.parent
CALIBRATION_SEED = 5      # not 0 / 1 (training, experiments), not 7 (prior_quality's held-out images)
GLOBAL_SWEEP = (0.40, 0.44, 0.45, 0.46, 0.47, 0.48, 0.49, 0.50, 0.52)


def rule_scores(maps: list, labels: list, candidates: torch.Tensor, prompt_ids: list, class_names: list,
                subset: list, background_threshold: float = 0.7, ignore_index: int = 255):
    "mIoU_objects over `subset` of the label maps that `candidates` (N, K) bool selects among each image's (K, H, W) `maps`."
    from digseg.evaluate import to_dataset_labels, _subset_means
    from digseg.metrics import ConfusionMatrix
    from digseg.predict import labels_from_probabilities
    if candidates.shape != (len(maps), len(prompt_ids)):
        raise ValueError(f"`candidates` must be (images, prompts) = {(len(maps), len(prompt_ids))}, got {tuple(candidates.shape)}")
    bg = class_names.index("background") if "background" in class_names else None
    cm = ConfusionMatrix(len(class_names), ignore_index=ignore_index, class_names=class_names)
    for m, lab, c in zip(maps, labels, candidates):
        ids = c.nonzero()[:, 0]
        pred = labels_from_probabilities(m[ids].float(), ids, tuple(lab.shape), background_threshold)
        cm.update(to_dataset_labels(pred, prompt_ids, bg).numpy(), lab.numpy())
    return _subset_means(cm.compute(), class_names, {"objects": subset})["mIoU_objects"]


@torch.no_grad()
def class_maps(pipe, dataset, n: int):
    "Every prompt's (K, H, W) map of the first n images (release protocol) and their labels, the prompts' dataset ids."
    from digseg.evaluate import prompt_classes, _image_seed
    from digseg.predict import predict_class_maps
    prompt_ids, prompts = prompt_classes(list(dataset.class_names), "background", None)
    maps, labels = [], []
    for i in range(n):
        it = dataset[i]
        gen = torch.Generator().manual_seed(_image_seed(0, it["id"]))
        m, _ = predict_class_maps(pipe, it["image"], prompts, candidates="all", generator=gen,
                                  num_inference_steps=1, timestep_spacing="trailing", ensemble_size=1)
        maps.append(m.half()); labels.append(it["label"])
    return maps, labels, prompt_ids


def main(argv=None):
    p = C.base_parser(__doc__.splitlines()[0])
    p.add_argument("--model", default=str(ROOT/"pretrained"/"digseg-mini"), help="a DiGSegPipeline folder")
    p.add_argument("--images", type=int, default=200, help="seen-world validation images scored")
    p.add_argument("--world-seed", type=int, default=CALIBRATION_SEED, help="the mini world's seed (default: the calibration world)")
    args = p.parse_args(argv)
    C.setup(args)
    from digseg.data import MiniWorld, WorldConfig, class_subsets
    from digseg.pipeline import DiGSegPipeline, build_tiny_pipeline, candidates_from_similarities
    from digseg.prior import world_proposal_scores
    if args.images < 1: raise SystemExit(f"--images must be >= 1, got {args.images}")
    n = 3 if args.quick else args.images
    pipe = build_tiny_pipeline(seed=args.seed) if args.quick else DiGSegPipeline.from_pretrained(args.model)
    ds = MiniWorld("val", size=n, seed=args.world_seed, cfg=WorldConfig(image_size=32) if args.quick else None)
    model = Path(args.model).resolve()
    shown = str(model.relative_to(ROOT)) if model.is_relative_to(ROOT) else str(model)   # a repo path reads the same on every machine
    rec, t0 = {"machine": C.machine(args.device), "model": "random tiny" if args.quick else shown,
               "world_seed": args.world_seed, "images": n, "protocol": "1-step trailing, E = 1, tau_bg 0.7"}, time.time()
    maps, labels, prompt_ids = class_maps(pipe, ds, n)
    g, pp, _ = world_proposal_scores(pipe.clip, ds)   # CLIP's similarities, batched, as the calibration computes them
    present = torch.stack([torch.tensor([bool((l == i).any()) for i in prompt_ids]) for l in labels])
    tau, tau_patch = pipe.proposal_thresholds
    rules = {"present": present, "all": torch.ones_like(present),
             "pipeline": candidates_from_similarities(g, pp, tau, tau_patch),
             **{f"global={t:g}": candidates_from_similarities(g, pp, t, tau_patch) for t in GLOBAL_SWEEP}}
    subset = class_subsets({"objects": "seen"})["objects"]
    rec["rows"] = [{"rule": k, **proposal_stats(c, present),
                    "mIoU_objects": rule_scores(maps, labels, c, prompt_ids, list(ds.class_names), subset, ignore_index=ds.ignore_index)}
                   for k, c in rules.items()]
    rec["pipeline_thresholds"], rec["seconds"] = [tau, tau_patch], round(time.time() - t0, 1)
    sweep = [r for r in rec["rows"] if r["rule"].startswith("global=")]
    rec["best_sweep"] = max(sweep, key=lambda r: r["mIoU_objects"])["rule"]
    C.table([{k: (f"{v:.3f}" if isinstance(v, float) else v) for k, v in r.items()} for r in rec["rows"]],
            ["rule", "recall", "precision", "candidates_per_image", "mIoU_objects"], f"{NAME}: {rec['model']}")
    print(f"wrote {C.write_results(NAME, 'cpu' + ('-quick' if args.quick else ''), rec, args.out)}")
    return rec


if __name__ == "__main__":
    main()
