"The benchmark scripts (issue 7) run in their quick mode with tiny sizes and write the JSON they promise; no timing is asserted."
import importlib, json, subprocess, sys
from pathlib import Path
import pytest
import torch

BENCH = Path(__file__).resolve().parent.parent/"benchmarks"
sys.path.insert(0, str(BENCH))
MACHINE_KEYS = {"device", "device_type", "cpu", "torch", "date", "loadavg_at_start", "loadavg_at_end", "shared_machine", "torch_threads"}


def run(name, tmp_path, *args):
    "Run benchmarks/<name>.py's main with `args`; return (its record, the JSON document written)."
    mod = importlib.import_module(name)
    out = tmp_path/f"{name}.json"
    rec = mod.main([*args, "--out", str(out)])
    doc = json.loads(out.read_text())
    assert doc["benchmark"] == name and len(doc["runs"]) == 1
    (stored,) = doc["runs"].values()
    assert MACHINE_KEYS <= set(stored["machine"]) and stored["machine"]["device_type"] == "cpu"
    assert stored["machine"]["torch"] == torch.__version__
    return rec, stored


def test_inference_throughput(tmp_path):
    _, r = run("inference_throughput", tmp_path, "--quick", "--grid", "1x1,2x2L", "--classes", "2")
    assert [(x["E"], x["S"], x["spacing"]) for x in r["rows"]] == [(1, 1, "trailing"), (2, 2, "leading")]
    for x in r["rows"]: assert {"masks_per_s", "images_per_s", "masks_per_s_cpu", "median_s", "unet_rows", "paper_fps"} <= set(x)
    assert r["rows"][0]["paper_fps"] == 11.27 and r["rows"][1]["unet_rows"] == 2*2*2
    assert all(x["masks_per_s"] == "not measured" and x["size"] == "sd2" for x in r["not_measured"])


def test_inference_throughput_with_mask_decoder_and_a_second_run_merges(tmp_path):
    import inference_throughput as m
    out = tmp_path/"inf.json"
    m.main(["--quick", "--grid", "1x1", "--classes", "2", "--out", str(out)])
    m.main(["--quick", "--grid", "1x1", "--classes", "2", "--mask-decoder", "random", "--out", str(out)])
    runs = json.loads(out.read_text())["runs"]
    assert set(runs) == {"cpu-tiny-fp32-quick", "cpu-tiny-fp32-maskdecoder-quick"}
    # with a decoder, each row is timed with and without it in the same run, and the ratio is recorded
    rows = runs["cpu-tiny-fp32-maskdecoder-quick"]["rows"]
    assert [x["decoder"] for x in rows] == ["VAE", "MaskDecoder"]
    assert rows[1]["speedup_vs_vae"] > 0 and "speedup_vs_vae" not in rows[0]


def test_batched_vs_naive_outputs_equal(tmp_path):
    _, r = run("batched_vs_naive", tmp_path, "--quick", "--classes", "3", "--ensemble", "2", "--repeats", "1")
    assert r["outputs_equal"] is True and r["check"]["labels_equal_fraction"] == 1.0
    assert {"speedup", "speedup_cpu", "target_speedup", "meets_target", "rows", "times"} <= set(r)
    assert [x["path"] for x in r["rows"]] == ["naive (A.3 loop)", "batched pipeline"]


def test_naive_loop_equals_pipeline_with_several_steps():
    "The literal A.3 loop and the batched pipeline agree beyond 1 step and with a repeated class name."
    from batched_vs_naive import naive_segment, compare
    from digseg.pipeline import build_tiny_pipeline
    pipe = build_tiny_pipeline()
    x, names = torch.rand(1, 3, 64, 64), ["red circle", "blue star", "red circle"]
    kw = dict(num_inference_steps=3, timestep_spacing="trailing", ensemble_size=3)
    out = pipe(x, classes=names, generator=torch.Generator().manual_seed(5), **kw)
    c = compare(out, naive_segment(pipe, x, names, generator=torch.Generator().manual_seed(5), **kw))
    assert c["probabilities_allclose"] and c["uncertainty_allclose"] and c["labels_equal_fraction"] == 1.0


def test_cost_breakdown(tmp_path):
    _, r = run("cost_breakdown", tmp_path, "--quick", "--grid", "1x1", "--classes", "2", "--no-flops")
    stages = [x["stage"] for x in r["rows"]]
    for s in ("image encode", "text, cached", "U-Net steps", "mask decode (VAE", "mask decode (MaskDecoder)", "aggregation", "pipeline call"):
        assert any(st.startswith(s) for st in stages), s
    assert all("ms_per_mask" in x and "share_of_pipeline" in x for x in r["rows"])
    with_dec = [x for x in r["rows"] if x["stage"] == "pipeline call with mask_decoder (total)"]
    assert len(with_dec) == 1 and with_dec[0]["speedup_vs_vae"] > 0
    assert r["not_measured"][0]["ms_per_mask"] == "not measured"


def test_flops(tmp_path):
    _, r = run("flops", tmp_path, "--quick", "--matmul-n", "64", "--rows", "2", "--classes", "2")
    sd2 = {x["piece"]: x["gflop"] for x in r["counts"] if x["size"] == "sd2"}
    assert set(sd2) == {"unet_step", "vae_encode", "vae_decode", "mask_decoder"}
    assert 700 < sd2["unet_step"] < 1000 and 2000 < sd2["vae_decode"] < 3000     # SD2 at 512², FlopCounterMode: 0.80 and 2.52 TFLOP
    assert r["matmul_rate"]["flops_per_s"] > 0
    assert {"piece", "gflop", "achieved_s", "floor_s", "efficiency"} <= set(r["achieved_vs_floor"][0])
    assert any("datasheet" in f["rate"] for f in r["sd2_floors"]) and r["not_measured"][0]["value"] == "not measured"


def test_train_throughput(tmp_path):
    _, r = run("train_throughput", tmp_path, "--quick", "--batch", "2")
    (row,) = r["rows"]
    assert row["size"] == "tiny" and row["batch"] == 2
    assert {"samples_per_s", "s_per_step", "peak_rss_bytes_during", "process_peak_rss_bytes", "trainable_params", "state_gb_counted"} <= set(row)
    assert row["peak_rss_bytes_during"] > 0 and row["process_peak_rss_bytes"] >= row["peak_rss_bytes_during"] // 2
    assert {x["group"] for x in r["not_measured"]} == {"paper_a2", "full"}
    assert r["meets_targets"]["sd2_a2_bf16_ckpt_batch16_under_40gb"] == "not measured"
    a2, full = r["sd2_counted_state"]
    assert a2["trainable_params"] < 0.15*full["trainable_params"]            # A.2 trains a small part of the U-Net


def test_mask_decoder_benchmark(tmp_path):
    _, r = run("mask_decoder", tmp_path, "--quick", "--steps", "2", "--masks", "4", "--out-dir", str(tmp_path/"md"))
    assert {"iou_vs_vae", "iou_vae_vs_gt", "iou_small_vs_gt", "iou_loss"} <= set(r["agreement"][0])
    assert [x["decoder"] for x in r["speed"]] == ["VAE decoder", "MaskDecoder"]
    assert r["flops"]["sd2_512"]["ratio"] > 500


def test_pipeline_miou_compares_both_decoders_on_predicted_latents(tmp_path):
    "mask_decoder.py --model: the pipeline's mIoU with the VAE decoder and with the MaskDecoder, and their agreement."
    from mask_decoder import pipeline_miou
    from _bench import build_mask_decoder
    from digseg.pipeline import build_tiny_pipeline
    pipe = build_tiny_pipeline(); pipe.save_pretrained(tmp_path/"model")
    res = pipeline_miou(str(tmp_path/"model"), build_mask_decoder("random", pipe), n_images=2)
    assert {"VAE decoder", "MaskDecoder", "miou_loss", "predicted_latents"} <= set(res)
    assert res["predicted_latents"]["n"] > 0 and 0 <= res["predicted_latents"]["iou_vs_vae"] <= 1
    assert res["miou_loss"] == res["VAE decoder"]["mIoU"] - res["MaskDecoder"]["mIoU"]


def test_use_mask_decoder_attaches_the_component_and_restores():
    from _bench import use_mask_decoder, build_mask_decoder
    from digseg.pipeline import build_tiny_pipeline
    pipe = build_tiny_pipeline()
    dec = build_mask_decoder("random", pipe)
    x, kw = torch.rand(1, 3, 64, 64), dict(classes=["red circle"], generator=torch.Generator().manual_seed(0))
    ref = pipe(x, **kw).probabilities
    assert pipe.mask_decoder is None
    with use_mask_decoder(pipe, dec): small = pipe(x, classes=["red circle"], generator=torch.Generator().manual_seed(0)).probabilities
    assert pipe.mask_decoder is None and small.shape == ref.shape and not torch.equal(small, ref)
    assert torch.equal(pipe(x, classes=["red circle"], generator=torch.Generator().manual_seed(0)).probabilities, ref)


def test_finish_machine_marks_a_busy_end(monkeypatch):
    import _bench as C
    rec = C.machine("cpu")
    monkeypatch.setattr(C.os, "getloadavg", lambda: (9.0, 9.0, 9.0))
    C.finish_machine(rec)
    assert rec["loadavg_at_end"] == [9.0, 9.0, 9.0] and rec["shared_machine"] is True and "note" in rec
    assert "SHARED MACHINE" in C.load_caveat(rec)


def test_bad_device_is_refused(tmp_path):
    import inference_throughput as m
    if torch.cuda.is_available(): pytest.skip("a GPU is present")
    with pytest.raises(SystemExit, match="CUDA"): m.main(["--quick", "--device", "cuda", "--out", str(tmp_path/"x.json")])


def test_dedos_efficiency(tmp_path):
    _, r = run("dedos_efficiency", tmp_path, "--quick", "--classes", "3")
    p = r["learnable_params_M"]
    assert p["total"] > 0 and abs(sum(v for k, v in p.items() if k != "total") - p["total"]) < 1e-6   # every trained part named
    assert p["clip"] > 0                                                   # --clip-trainable attention (the default)
    flops = {x["what"].split(",")[0]: x for x in r["flops"]}
    assert flops["training forward"]["GFLOPs"] > flops["inference"]["GFLOPs"] > 0 and flops["text tower"]["GFLOPs"] > 0
    assert all(abs(x["GFLOPs_fvcore"]*2 - x["GFLOPs"]) < 1e-9 for x in r["flops"])
    assert r["paper"]["DEDOS"]["GFLOPs"] == 1030.47 and r["not_measured"][0]["value"] == "not measured"


def test_decode_chunks(tmp_path):
    _, r = run("decode_chunks", tmp_path, "--quick", "--chunks", "2,1")
    assert r["outputs_equal"] is True and r["masks"] == 4
    assert [x["chunk"] for x in r["rows"]] == [4, 2, 1] and r["rows"][0]["speedup_vs_one_call"] == 1.0


def test_unet_heads(tmp_path):
    _, r = run("unet_heads", tmp_path, "--quick")
    assert r["same_parameters"] is True and r["rows"] == 8 and r["batch"] == 4
    assert [x["forward_speedup"] for x in r["rows_table"]][0] == 1.0 and len(r["rows_table"]) == 2


def test_world_ceiling_probe_is_scored_like_digseg(tmp_path):
    "The ceiling probe trains, and `evaluate` scores it through the pipeline's call signature: a curve of seen mIoU in [0, 1]."
    rec, r = run("world_ceiling", tmp_path, "--quick")
    assert r["input"] == "latent" and r["target"] == 0.5 and r["parameters"] > 0
    assert len(r["curve"]) >= 1 and all(0.0 <= x["mIoU_seen"] <= 1.0 and x["steps"] > 0 for x in r["curve"])


def test_world_ceiling_segmenter_matches_the_pipeline_output_layout():
    "ProbeSegmenter returns (1, K, H, W) probabilities at the image's size and all K classes as candidates."
    from world_ceiling import FiLMNet, ProbeSegmenter
    from digseg.data import world_class_names
    names = world_class_names()
    seg = ProbeSegmenter(FiLMNet(3, len(names), width=8), lambda x: x*2 - 1, names)
    out = seg(torch.rand(1, 3, 32, 48), classes=["red circle", "blue star"])
    assert out.probabilities.shape == (1, 2, 32, 48) and out.candidates.all()
    assert ((out.probabilities >= 0) & (out.probabilities <= 1)).all()


def test_prior_quality_measures_every_target(tmp_path):
    "The quality script measures each target of the mini foundation models and says whether it is met."
    rec, r = run("prior_quality", tmp_path, "--quick")
    assert set(r["targets"]) == {"clip.top1", "candidates.recall", "candidates.precision", "vae.mask_iou", "generation.both"}
    for key, t in r["targets"].items():
        m, k = key.split(".")
        assert t["value"] == r[m][k] and t["met"] == (t["value"] >= t["target"]) and 0.0 <= t["value"] <= 1.0
    assert r["clip"]["images"] == 24 and r["held_out_seed"] not in (0, 1)   # no training world seed
    assert 0.0 <= r["candidates"]["false_with_a_present_colour"] <= 1.0


def test_prior_quality_finetuned_measures(tmp_path):
    "The fine-tuning measures train DiGSeg and DEDOS (tiny, 2 steps), score seen and unseen images, and check their targets."
    rec, r = run("prior_quality", tmp_path, "--quick", "--only", "digseg_mini,dedos_mini", "--runs", str(tmp_path/"runs"))
    for m in ("digseg_mini", "dedos_mini"):
        assert r[m]["steps"] == 2 and r[m]["seen_images"] == r[m]["unseen_images"] == 2
        assert 0.0 <= r[m]["seen"] <= 1.0 and 0.0 <= r[m]["unseen"] <= 1.0
        assert r["targets"][f"{m}.seen"] == {"value": r[m]["seen"], "target": 0.5, "met": r[m]["seen"] >= 0.5}
    assert (tmp_path/"runs"/"digseg_mini"/"model"/"model_index.json").is_file()
    # the ceiling of perfect proposals: the same scorer with the classes each label shows as candidates
    import prior_quality as pq
    from digseg.pipeline import load_for_inference
    ceiling = pq.score_pipeline(load_for_inference(tmp_path/"runs"/"digseg_mini"/"model"), 2, 2, candidates="present")
    assert set(ceiling) == {"seen_present", "seen_present_mIoU", "unseen_present", "unseen_present_mIoU"}
    assert all(0.0 <= v <= 1.0 for v in ceiling.values())
    with pytest.raises(SystemExit, match="no released models"):
        run("prior_quality", tmp_path, "--quick", "--only", "digseg_released")


def test_prior_quality_judge_is_a_real_referee():
    "The generation judge, trained briefly on rendered scenes, names colours far above chance (1/4) on new ones."
    from prior_quality import train_judge
    torch.manual_seed(0)
    _, acc = train_judge(120, batch=32, width=8)
    assert acc["colour"] > 0.6, acc


def test_prior_quality_scores_a_perfect_clip_as_perfect():
    "Zero-shot scoring against an oracle: a stand-in CLIP that embeds each image as its true class scores top-1 = 1."
    import prior_quality as pq
    from digseg.data import world_class_names
    images, ids = pq.single_object_images(1)
    eye = torch.eye(len(world_class_names()) - 1)
    class Oracle:
        def tokenize(self, prompts): return list(prompts)
        def encode_text(self, prompts): return None, eye
        def preprocess(self, x): return x
        def encode_image(self, x): return eye[ids[:len(x)] - 1], None
    assert pq.clip_zero_shot(Oracle(), 1) == {"top1": 1.0, "colour": 1.0, "shape": 1.0, "seen": 1.0, "unseen": 1.0,
                                              "images": 24, "chance": 1/24}
    # a CLIP that never saw the held-out compositions: each is taken for the class before it (same colour, other shape)
    from digseg.data import UNSEEN_COMPOSITIONS
    held = torch.tensor([world_class_names()[i] in UNSEEN_COMPOSITIONS for i in ids.tolist()])
    class Blind(Oracle):
        def encode_image(self, x): return eye[torch.where(held, ids - 2, ids - 1)[:len(x)]], None
    r = pq.clip_zero_shot(Blind(), 1)
    assert (r["seen"], r["unseen"], r["colour"]) == (1.0, 0.0, 1.0) and r["top1"] == r["shape"] == pytest.approx(20/24), r


def test_candidate_quality_counts_the_false_candidates_of_a_present_colour(monkeypatch):
    "On made-up similarities: an image of a red circle proposing the red circle, a red square and a blue star."
    import prior_quality as pq, digseg.prior
    from digseg.data import world_class_names
    names = world_class_names()[1:]
    g = torch.zeros(1, len(names)); g[0, [names.index(n) for n in ("red circle", "red square", "blue star")]] = 0.9
    truth = torch.zeros(1, len(names), dtype=torch.bool); truth[0, names.index("red circle")] = True
    monkeypatch.setattr(digseg.prior, "world_proposal_scores", lambda clip, world: (g, torch.zeros_like(g), truth))
    r = pq.candidate_quality(None, 1, (0.5, 0.5))
    assert (r["recall"], r["precision"], r["candidates_per_image"]) == (1.0, pytest.approx(1/3), 3.0)
    assert r["false_with_a_present_colour"] == 0.5   # the red square, not the blue star


def test_dedos_errors_tells_where_from_what():
    "On made-up segmenters: one that finds every object but names the wrong shape of the right colour, one exact."
    import prior_quality as pq
    from types import SimpleNamespace
    from digseg.data import MiniWorld, world_class_names
    names, n = world_class_names(), 3
    assert names[1:7] == ["red circle", "red square", "red triangle", "red star", "red ring", "red cross"]   # 6 shapes a colour
    labels = [torch.as_tensor(MiniWorld("val", size=n, seed=pq.HELD_OUT_SEED)[i]["label"]).long() for i in range(n)]
    other_shape = lambda l: torch.where(l > 0, (l - 1)//6*6 + l % 6 + 1, l)   # same colour, next shape (cross -> circle)
    class Made:
        def __init__(self, f): self.f, self.i = f, 0
        def segment(self, images, classes):
            assert list(classes) == names   # every class prompted, background included
            out = torch.stack([self.f(l) for l in labels[self.i:self.i + len(images)]]); self.i += len(images)
            return SimpleNamespace(labels=out)
    assert pq.dedos_errors(Made(other_shape), n) == {"foreground_iou": 1.0, "colour": 1.0, "shape": 0.0, "images": n}
    assert pq.dedos_errors(Made(lambda l: l), n) == {"foreground_iou": 1.0, "colour": 1.0, "shape": 1.0, "images": n}
    half = pq.dedos_errors(Made(lambda l: torch.where(torch.arange(64)[None] < 32, l, 0)), n)   # objects in the left half only
    assert 0.0 < half["foreground_iou"] < 1.0 and half["colour"] == half["shape"] == 1.0


def test_readme_table_says_which_numbers_are_of_an_earlier_prior():
    "The README's table of the mini models copies the JSON's numbers, and marks a measure taken on another prior."
    import prior_quality as pq
    rec = {"targets": {"vae.mask_iou": {"value": 0.99, "target": 0.97, "met": True},
                       "digseg_mini.seen": {"value": 0.4, "target": 0.5, "met": False}},
           "vae": {"mask_iou": 0.99, "channel_std": 0.0071, "channel_range": 0.0166},
           "digseg_mini": {"seen": 0.4, "unseen": 0.25, "train_minutes": 15.04, "steps": 4500, "batch": 4},
           "priors": {"vae": "new", "digseg_mini": "old"}, "commits": {"vae": "bbb", "digseg_mini": "aaa"}}
    lines = pq.readme_table(rec, "new").splitlines()
    assert lines[:2] == ["| model | measured | target |", "|---|---|---|"] and len(lines) == 4
    assert lines[2] == ("| VAE (`pretrained/mini-sd/vae`) | mask round trip IoU 0.990 (Table 7: channel std 0.0071, "
                        "max - min 0.0166) | mask_iou >= 0.97: met |")
    assert lines[3] == ("| DiGSeg-mini, fine-tuned 15.0 min (4500 steps of batch 4); measured on an earlier prior, at commit "
                        "`aaa` | seen mIoU_objects 0.400, unseen 0.250 | seen >= 0.5: missed |")
    assert "earlier prior" in pq.readme_table(rec, "newer").splitlines()[2]


def test_vocab_memory_compares_both_aggregations(tmp_path):
    "Peak memory of a vocabulary call with and without per-class maps, each in its own process; both give the same labels."
    rec, r = run("vocab_memory", tmp_path, "--quick")
    assert r["classes"] == 40 and r["same_labels"] is True
    assert r["maps"]["peak_mb"] >= 0 and r["running"]["peak_mb"] >= 0 and r["maps_floor_mb"] == round(40*128*128*9/2**20, 1)


def test_fresh_clone_refuses_a_used_folder_and_names_a_failed_step(tmp_path):
    "The timing script never measures into an existing clone, and a failing make step stops it with its log."
    fc = importlib.import_module("fresh_clone")
    (tmp_path/"used").mkdir()
    with pytest.raises(SystemExit, match="exists"): fc.main(["--work", str(tmp_path/"used"), "--dest", str(tmp_path/"dest")])
    assert not (tmp_path/"dest").exists()   # nothing published
    with pytest.raises(SystemExit, match="see .*false.log"): fc.timed(["false"], tmp_path, tmp_path/"false.log")
    assert fc.timed(["true"], tmp_path, tmp_path/"true.log") >= 0


def test_fresh_clone_names_the_commit_it_measured(tmp_path):
    "The published record names the clone's checked-out commit; a folder that is no clone is an error, not an empty name."
    fc = importlib.import_module("fresh_clone")
    repo = tmp_path/"repo"; repo.mkdir()
    git = lambda *a: subprocess.run(["git", "-C", str(repo), *a], capture_output=True, text=True, check=True).stdout.strip()
    git("init", "-q"); (repo/"f").write_text("x"); git("add", "f")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "one")
    full = git("rev-parse", "HEAD")
    assert len(fc.head_commit(repo)) >= 7 and full.startswith(fc.head_commit(repo))
    (repo/"f").write_text("y"); git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-am", "two")
    assert not full.startswith(fc.head_commit(repo))   # a new commit, a new name
    (tmp_path/"plain").mkdir()
    with pytest.raises(subprocess.CalledProcessError): fc.head_commit(tmp_path/"plain")


def test_fresh_clone_publish_replaces_the_report_but_quick(tmp_path):
    "A fresh or resumed run replaces the published report (a removed experiment leaves nothing), keeping quick/; an update adds to it."
    fc = importlib.import_module("fresh_clone")
    work, dest = tmp_path/"work", tmp_path/"dest"
    (work/"runs"/"mini").mkdir(parents=True); (work/"runs"/"mini"/"REPORT.md").write_text("new")
    (work/"runs"/"mini"/"reproduce.json").write_text('{"wall_seconds": 2}')
    for stale in ("gone_experiment", "quick"): (dest/stale).mkdir(parents=True); (dest/stale/"metrics.json").write_text("{}")
    assert fc.publish(work, dest, replace=False) == {"wall_seconds": 2} and (dest/"gone_experiment").is_dir()
    assert fc.publish(work, dest) == {"wall_seconds": 2}
    assert not (dest/"gone_experiment").exists() and (dest/"quick"/"metrics.json").exists() and (dest/"REPORT.md").read_text() == "new"


def test_fresh_clone_update_needs_an_earlier_run_and_its_timings(tmp_path):
    "--update reruns inside an earlier clone only: a folder without a run, or a published report without fresh-clone timings, stops it before any work."
    fc = importlib.import_module("fresh_clone")
    with pytest.raises(SystemExit, match="holds no earlier run"): fc.main(["--update", str(tmp_path), "--dest", str(tmp_path/"dest")])
    (tmp_path/"runs"/"mini").mkdir(parents=True); (tmp_path/"runs"/"mini"/"reproduce.json").write_text("{}")
    (tmp_path/"dest").mkdir(); (tmp_path/"dest"/"reproduce.json").write_text('{"wall_seconds": 1}')
    with pytest.raises(SystemExit, match="no fresh-clone timings"): fc.main(["--update", str(tmp_path), "--dest", str(tmp_path/"dest")])
    assert (tmp_path/"dest"/"reproduce.json").read_text() == '{"wall_seconds": 1}'   # nothing published


def test_fresh_clone_resume_needs_a_stopped_run_and_its_sittings(tmp_path):
    "--resume finishes a stopped clone only: no sitting given, a bad one, no run, or a finished run stop it before any work."
    fc = importlib.import_module("fresh_clone")
    dest = ["--dest", str(tmp_path/"dest")]
    with pytest.raises(SystemExit, match="needs --stopped"): fc.main(["--resume", str(tmp_path)] + dest)
    with pytest.raises(SystemExit, match="SECONDS must be a number"): fc.main(["--resume", str(tmp_path), "--stopped", "abc", "x", "y"] + dest)
    with pytest.raises(SystemExit, match="SECONDS must be > 0"): fc.main(["--resume", str(tmp_path), "--stopped", "abc", "0", "y"] + dest)
    with pytest.raises(SystemExit, match="no runs/mini"): fc.main(["--resume", str(tmp_path), "--stopped", "abc", "60", "y"] + dest)
    (tmp_path/"runs"/"mini").mkdir(parents=True); (tmp_path/"runs"/"mini"/"reproduce.json").write_text("{}")
    with pytest.raises(SystemExit, match="use --update"): fc.main(["--resume", str(tmp_path), "--stopped", "abc", "60", "y"] + dest)
    assert not (tmp_path/"dest").exists()   # nothing published
    assert fc.stopped_sittings([["abc", "59.6", "killed"], ["def", "10", "reboot"]]) == [
        {"commit": "abc", "seconds": 60, "stopped": True, "why": "killed"}, {"commit": "def", "seconds": 10, "stopped": True, "why": "reboot"}]


def test_proposal_cost_scores_each_candidate_rule(tmp_path):
    "The proposal-cost study scores present / all / the pipeline's thresholds / a tau sweep from one pass of every prompt."
    import proposal_cost as pc
    rec, r = run("proposal_cost", tmp_path, "--quick")
    rules = [x["rule"] for x in r["rows"]]
    assert rules[:3] == ["present", "all", "pipeline"] and len(rules) == 3 + len(pc.GLOBAL_SWEEP)
    assert r["world_seed"] == pc.CALIBRATION_SEED and pc.CALIBRATION_SEED not in (0, 1, 7)
    by = {x["rule"]: x for x in r["rows"]}
    assert by["present"]["recall"] == 1.0 and by["present"]["precision"] == 1.0 and by["all"]["recall"] == 1.0
    assert all(0.0 <= x["mIoU_objects"] <= 1.0 for x in r["rows"]) and r["best_sweep"] in rules


def test_proposal_cost_rule_scores_follow_the_candidates():
    "Made-up maps: the true class wins where it is a candidate; a confident false class steals its pixels when proposed."
    from proposal_cost import rule_scores, proposal_stats
    names = ["background", "red circle", "red square"]
    label = torch.zeros(4, 4, dtype=torch.int64); label[:2] = 1                       # top half: a red circle
    maps = torch.zeros(2, 4, 4); maps[0, :2] = 0.8; maps[1, :2] = 0.9                 # 'red square' is more confident there
    right, both = torch.tensor([[True, False]]), torch.tensor([[True, True]])
    assert rule_scores([maps], [label], right, [1, 2], names, ["red circle"]) == 1.0
    assert rule_scores([maps], [label], both, [1, 2], names, ["red circle"]) == 0.0
    present = torch.tensor([[True, False]])
    assert proposal_stats(both, present) == {"recall": 1.0, "precision": 0.5, "candidates_per_image": 2.0}
    with pytest.raises(ValueError, match="candidates"): rule_scores([maps], [label], torch.ones(1, 3, dtype=torch.bool), [1, 2], names, ["red circle"])
