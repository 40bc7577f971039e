"DEDOS model (§3.5-3.6): matcher, losses, CLIP refinement, texture separation, Table 3 switches, training."
import itertools

import pytest
import torch
import torch.nn.functional as F

from digseg.dedos import (TABLE3_ROWS, DEDOSConfig, DEDOSTrainingModule, FeatureRefinement, TextureSeparation,
                          build_tiny_dedos, similarity_matrix)
from digseg.clip_blocks import clip_blocks, clip_dense, clip_input, clip_tokens, default_refine_layers
from digseg.cost_aggregation import LinearAttention
from digseg.mask2former import hungarian_match, pairwise_mask_costs, set_loss
from digseg.text import build_tiny_clip

NAMES = ["red circle", "blue star", "background"]


def batch():
    g = torch.Generator().manual_seed(0)
    images = torch.rand(2, 3, 32, 32, generator=g)
    labels = torch.full((2, 32, 32), 2)
    labels[0, 4:20, 4:20] = 0; labels[1, 10:30, 2:14] = 1; labels[1, :3] = 255
    return images, labels


@pytest.mark.parametrize("n,T", [(3, 3), (4, 2), (2, 2)])
def test_hungarian_matches_brute_force(n, T):
    g = torch.Generator().manual_seed(n * 10 + T)
    for _ in range(25):
        cost = torch.randn(n, T, generator=g)
        r, c = hungarian_match(cost)
        best = min(sum(cost[p[j], j].item() for j in range(T)) for p in itertools.permutations(range(n), T))
        assert abs(cost[r, c].sum().item() - best) < 1e-5


def test_pairwise_costs_against_torch_losses():
    g = torch.Generator().manual_seed(0)
    logits, t = torch.randn(3, 12, generator=g), (torch.rand(2, 12, generator=g) > 0.5).float()
    valid = torch.ones(12)
    bce, dice = pairwise_mask_costs(logits, t, valid)
    for i, j in itertools.product(range(3), range(2)):
        torch.testing.assert_close(bce[i, j], F.binary_cross_entropy_with_logits(logits[i], t[j]))
        p = logits[i].sigmoid()
        torch.testing.assert_close(dice[i, j], 1 - (2*(p*t[j]).sum() + 1)/(p.sum() + t[j].sum() + 1))


def test_set_loss_hand_built():
    cfg = DEDOSConfig(n1=1, n2=3, c1=4, c2=4, dim=16, heads=2)
    lab = torch.zeros(1, 4, 4, dtype=torch.long); lab[0, :, 2:] = 2
    left = torch.zeros(4, 4); left[:, :2] = 1
    masks = torch.stack([20*(1 - 2*left), -20*torch.ones(4, 4), 20*(2*left - 1)])[None]
    cls = torch.full((1, 3, 3), -20.); cls[0, 0, 2] = 20; cls[0, 2, 0] = 20
    total, parts, idx = set_loss(cls, masks, lab, cfg)
    assert idx[0][0].tolist() == [0, 2] and idx[0][1].tolist() == [1, 0]
    assert total < 0.01
    _, unsure, _ = set_loss(torch.zeros(1, 3, 3), torch.zeros(1, 3, 4, 4), lab, cfg)
    torch.testing.assert_close(unsure["bce"], torch.tensor(0.6931), atol=1e-4, rtol=0)   # BCE at logit 0 is log 2
    assert unsure["cls"] > 1 and unsure["dice"] > 0.3


def test_similarity_and_zero_consistency_loss():
    f = torch.randn(1, 6, 4)
    torch.testing.assert_close(torch.diagonal(similarity_matrix(f, f), dim1=1, dim2=2), torch.ones(1, 6))
    ts = TextureSeparation(4, 4, (0,), dim=4)
    with torch.no_grad():
        ts.query_proj.weight.copy_(torch.eye(4)); ts.query_proj.bias.zero_()
        ts.feat_proj["0"].weight.copy_(torch.eye(4)[:, :, None, None]); ts.feat_proj["0"].bias.zero_()
    q = torch.linalg.qr(torch.randn(4, 4))[0][None]
    assert ts(q, {0: torch.randn(1, 5, 4)}, {0: torch.randn(1, 5, 4)}, (2, 2)).item() < 1e-6


def test_linear_attention_dense_reference():
    torch.manual_seed(0)
    la = LinearAttention(8, 2)
    x, ctx = torch.randn(1, 3, 8), torch.randn(1, 4, 8)
    q, k, v = (t.view(1, -1, 2, 4).transpose(1, 2) for t in (la.q(x), la.k(ctx), la.v(ctx)))
    A = (F.elu(q) + 1) @ (F.elu(k) + 1).transpose(-1, -2); A = A / A.sum(-1, keepdim=True)
    torch.testing.assert_close(la(x, ctx), la.out((A @ v).transpose(1, 2).reshape(1, 3, 8)), atol=1e-5, rtol=1e-5)


def test_clip_blockwise_equals_open_clip_and_refinement_starts_as_identity():
    clip = build_tiny_clip(); v = clip.model.visual
    x = clip_input(v, torch.rand(1, 3, 32, 32))
    with torch.no_grad():
        tok, grid = clip_tokens(v, x)
        torch.testing.assert_close(tok, v._embeds(x))
        final, _ = clip_blocks(v, tok)
        torch.testing.assert_close(F.normalize(clip_dense(v, final)[1], dim=-1), clip.encode_image(x)[1], atol=1e-5, rtol=1e-5)
        ref = FeatureRefinement(8, 32, (0,))
        y = ref(0, tok, ref.mlp(torch.randn(1, 4, 8)), grid)
    torch.testing.assert_close(y, tok)
    assert default_refine_layers(12) == (2, 5, 8)


def test_table3_rows_and_config_errors():
    assert [DEDOSConfig.table3(r).decoupling for r in TABLE3_ROWS] == [False, False, False, True, True]
    assert DEDOSConfig.table3("II").timesteps == (50,)
    with pytest.raises(ValueError, match="need `proxy=True`"): DEDOSConfig(proxy=False)
    with pytest.raises(ValueError, match="unknown DEDOS option"): DEDOSConfig.from_dict({"lambda": 1})


def test_training_forward_gradients_and_inference_without_diffusion():
    model = build_tiny_dedos()
    images, labels = batch()
    out = model(images, labels, NAMES)
    assert torch.isfinite(out["loss"]) and {"loss_consist", "loss_proxy_masks", "loss_aux"} <= set(out)
    out["loss"].backward()
    assert model.proxy.kernels.basic.grad.abs().sum() > 0
    assert (model.proxy.kernels.diffusion.grad.flatten(1).abs().sum(1) > 0).all()
    assert all(p.grad is None for m in (model.unet, model.vae, model.clip) for p in m.parameters())
    calls = []
    h = model.unet.register_forward_hook(lambda *a: calls.append(1))
    res = model.segment(images, NAMES)
    h.remove()
    assert calls == [] and res.labels.shape == (2, 32, 32)
    torch.testing.assert_close(res.probabilities.sum(1), torch.ones(2, 32, 32))


def test_baseline_row_has_no_diffusion_branch():
    model = build_tiny_dedos(row="I")
    images, labels = batch()
    calls = []
    h = model.unet.register_forward_hook(lambda *a: calls.append(1))
    out = model(images, labels, NAMES)
    h.remove()
    assert calls == [] and model.proxy is None and "loss_consist" not in out


def test_loss_falls_on_a_fixed_batch():
    torch.manual_seed(0)
    model = build_tiny_dedos()
    images, labels = batch()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    losses = []
    for _ in range(12):   # ~0.25 s of CPU a step; the matching makes single steps noisy, 12 steps fall by ~20 %
        loss = model(images, labels, NAMES)["loss"]
        opt.zero_grad(); loss.backward(); opt.step(); losses.append(loss.item())
    assert losses[-1] < 0.85 * losses[0], losses


def test_training_module_maps_labels():
    tm = DEDOSTrainingModule(build_tiny_dedos(), ["red circle", "blue star"], class_ids=[1, 4])
    assert tm.map_labels(torch.tensor([[0, 1, 4, 255, 999]])).tolist() == [[255, 0, 1, 255, 255]]
    images, _ = batch()
    lab = torch.zeros(2, 32, 32, dtype=torch.long); lab[:, :10] = 1; lab[:, 20:] = 4
    assert torch.isfinite(tm({"image": images, "label": lab}, torch.Generator())["loss"])
    with pytest.raises(ValueError, match="one distinct id"): DEDOSTrainingModule(tm.model, ["a"], class_ids=[1, 2])


# --- train_dedos: the entry point, publication, reload, resume (digseg.dedos_train) ---

def _run(d, steps=4, **train):
    return {"model": {"spec": "tiny"},
            "data": {"size": 2, "image_size": 32},
            "train": {"output_dir": str(d), "max_steps": steps, "batch_size": 2, "learning_rate": 1e-3,
                      "backbone_learning_rate": 1e-5, "checkpoint_every": 2, "log_every": 1, "cpu": True, **train}}


def test_train_dedos_loss_falls(tmp_path):
    from digseg.dedos_train import train_dedos
    from digseg.train import read_log
    cfg = _run(tmp_path, steps=10)
    cfg["data"].update(image_size=64, augment={"flip": False, "scale": [1, 1]})   # the same two images every step
    train_dedos(cfg)
    losses = [r["loss"] for r in read_log(tmp_path)]
    assert len(losses) == 10 and sum(losses[-2:]) < 0.9 * sum(losses[:2]), losses


def test_save_load_round_trip_gives_identical_predictions(tmp_path):
    from digseg.dedos_train import build_dedos, save_dedos, load_dedos
    spec = {"spec": "tiny", "seed": 3, "dedos": {"clip_trainable": "attention"}}
    model = build_dedos(spec)
    images, labels = batch()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(2):   # move weights and the query memory away from their initial values
        loss = model(images, labels, NAMES)["loss"]; opt.zero_grad(); loss.backward(); opt.step()
    save_dedos(model, tmp_path/"m", spec)
    back = load_dedos(tmp_path/"m")
    assert torch.equal(back.proxy.memory, model.proxy.memory) and back.proxy.memory_updates == 2
    a, b = model.segment(images, NAMES), back.segment(images, NAMES)
    assert torch.equal(a.scores, b.scores) and torch.equal(a.labels, b.labels)
    with pytest.raises(ValueError, match="does not match"):
        (tmp_path/"m"/"dedos_model.json").write_text('{"model": {"spec": "tiny", "row": "I"}}'); load_dedos(tmp_path/"m")


def test_resume_is_bit_exact(tmp_path):
    from safetensors.torch import load_file
    from digseg.dedos_train import train_dedos
    full = load_file(str(train_dedos(_run(tmp_path/"full"))/"dedos.safetensors"))
    train_dedos(_run(tmp_path/"resumed"), max_steps=2)   # stopped after step 2, then rerun to the end
    resumed = load_file(str(train_dedos(_run(tmp_path/"resumed"))/"dedos.safetensors"))
    assert set(full) == set(resumed) and "proxy.memory" in full
    for k in full: assert torch.equal(full[k], resumed[k]), k


def _dedos_configs():
    from pathlib import Path
    return sorted(Path(__file__).resolve().parents[1].glob("configs/*/dedos_*.yaml"))


@pytest.mark.parametrize("path", _dedos_configs(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_dedos_configs_parse(path, tmp_path):
    "Every DEDOS run config, and every model an experiment config derives, builds a DEDOSConfig and a TrainConfig."
    import yaml
    from pathlib import Path
    from digseg.dedos_train import dedos_config
    from digseg.experiments import Experiment, train_config
    from digseg.finetune import load_config
    from digseg.train import TrainConfig

    def check(cfg):
        cfg = load_config(cfg)
        TrainConfig.from_dict(cfg["train"]); dedos_config(cfg["model"])

    if path.stem == "dedos_train": return check(yaml.safe_load(path.read_text()))
    exp = Experiment(path.stem, path.parent.name, path, out_dir=tmp_path, smoke=False)
    models = list(exp.cfg.get("models", {}).values())
    specs = [(m["train"], None) for m in models if m["kind"] == "dedos" and "release" not in m["train"]]
    specs += [(None, v) for g in exp.cfg.get("groups", {}).values() for v in g.values()]
    releases = [m for m in models if "release" in m["train"]]
    assert specs or releases
    for spec, variant in specs: check(train_config(exp, spec, variant))
    smoke = Experiment(path.stem, path.parent.name, path, out_dir=tmp_path/"smoke", smoke=True)
    for m in releases:   # a released model: its shipped folder, and (DEDOS) the recipe its smoke stand-in trains
        name = m["train"]["release"]
        assert Path(train_config(exp, m["train"])["train"]["output_dir"]) == Path(__file__).resolve().parents[1]/"pretrained"/name
        if m["kind"] == "dedos": check(train_config(smoke, m["train"]))


def test_every_trainable_dedos_parameter_gets_a_gradient():
    "DDP (multi-GPU training) fails on a parameter that no loss reaches; one backward pass shows there is none."
    from digseg.dedos_train import build_dedos, build_semantic_data, DEDOSTrainingModule
    data, names, ids = build_semantic_data({"size": 4, "image_size": 32})
    mod = DEDOSTrainingModule(build_dedos({"spec": "tiny"}), names, ids).train()
    batch = torch.utils.data.default_collate([data[i] for i in range(2)])
    mod(batch, torch.Generator().manual_seed(0))["loss"].backward()
    assert not [n for n, p in mod.named_parameters() if p.requires_grad and p.grad is None]
