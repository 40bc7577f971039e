"""Interrupted runs: training and evaluation killed with SIGKILL — at random moments and inside a checkpoint
write — resume to bit-identical weights and identical metrics; a half-written checkpoint is never picked; a
non-finite loss stops training with a clear message and keeps the last good checkpoint.

Runs are forked from this (already imported) process, so a restart costs milliseconds, not an import of
torch; every run — reference, killed, resumed — is a child with one thread, so they compute alike."""
import json, os, random, select, shutil, signal, time
import multiprocessing as mp
from pathlib import Path

import pytest
import torch
from torch import nn

from digseg.train import Trainer, TrainConfig, NonFiniteLoss, list_checkpoints, load_checkpoint, read_log
import digseg.finetune, digseg.evaluate, digseg.models, digseg.data   # imported once here: forked runs inherit them

CTX = mp.get_context("fork")


# ---------------------------------------------------------------------------------------------- running and killing children
def _entry(target, w, args):
    import threading, tqdm.std, tqdm.auto
    # tqdm's default lock spans processes (a semaphore shared with the parent): a child killed while drawing a
    # progress bar would leave it held, and every later process would hang on it. Each child gets its own.
    for cls in {tqdm.std.tqdm, tqdm.auto.tqdm}: cls.set_lock(threading.RLock())
    torch.set_num_threads(1)
    mark = lambda s: os.write(w, (s + "\n").encode())      # one small write: atomic even if killed right after
    target(mark, *args)
    mark("done")


class Child:
    "A forked run that reports progress markers through a pipe, and can be killed with SIGKILL."
    alive = []
    def __init__(self, target, *args):
        r, w = os.pipe()
        self.proc = CTX.Process(target=_entry, args=(target, w, args), daemon=True)
        self.proc.start(); os.close(w); Child.alive.append(self.proc)
        self.r, self.buf, self.seen = r, b"", []

    def _lines(self, timeout):
        if not select.select([self.r], [], [], timeout)[0]: raise TimeoutError("no marker from the child")
        chunk = os.read(self.r, 4096)
        if not chunk: raise EOFError(f"child exited with {self.proc.join(5) or self.proc.exitcode} before the marker")
        self.buf += chunk
        *lines, self.buf = self.buf.split(b"\n")
        self.seen += [l.decode() for l in lines]
        return [l.decode() for l in lines]

    def wait_for(self, marker, count=1, timeout=60):
        "Block until `marker` has been reported `count` times in all."
        deadline = time.time() + timeout
        while self.seen.count(marker) < count: self._lines(max(0.01, deadline - time.time()))

    def kill(self):
        "SIGKILL the child; True if it was still running (a child starved of CPU may, rarely, have finished first)."
        os.kill(self.proc.pid, signal.SIGKILL); self.proc.join(10)
        assert self.proc.exitcode in (-signal.SIGKILL, 0), self.proc.exitcode
        os.close(self.r)
        return self.proc.exitcode == -signal.SIGKILL

    def finish(self, timeout=120):
        self.wait_for("done", timeout=timeout); self.proc.join(timeout)
        assert self.proc.exitcode == 0, self.proc.exitcode
        os.close(self.r)
        return self.seen


@pytest.fixture(autouse=True)
def _no_stray_children():
    "Whatever a test does (or fails to do), no child outlives it."
    yield
    for p in Child.alive:
        if p.is_alive(): os.kill(p.pid, signal.SIGKILL); p.join(10)
    Child.alive.clear()


def _arm(mark, kill_point, nap=30.0):
    "Make the child announce `kill_point` and then sleep there, so that the parent's SIGKILL lands inside it."
    import safetensors.torch as st, digseg.train as T
    def after(obj, name, when=lambda *a: True):
        orig = getattr(obj, name)
        def wrapped(*a, **k):
            out = orig(*a, **k)
            if when(*a): mark(kill_point); time.sleep(nap)
            return out
        setattr(obj, name, wrapped)
    def before(obj, name, when):
        orig = getattr(obj, name)
        def wrapped(*a, **k):
            if when(*a): mark(kill_point); time.sleep(nap)
            return orig(*a, **k)
        setattr(obj, name, wrapped)
    if kill_point == "weights-written": after(st, "save_file")                    # state.pt and meta.json not yet
    elif kill_point == "state-written": after(T.torch, "save")                    # meta.json not yet
    elif kill_point == "before-rename": before(T.os, "replace", lambda *a: bool(a) and Path(a[0]).name.startswith(".tmp_step"))
    elif kill_point == "pruning":                                                # an old checkpoint half deleted
        orig = T.shutil.rmtree
        def rmtree(p, *a, **k):
            if Path(p).name.startswith("step_"):
                (Path(p)/"state.pt").unlink(); mark(kill_point); time.sleep(nap)
            return orig(p, *a, **k)
        T.shutil.rmtree = rmtree
    elif kill_point is not None: raise ValueError(kill_point)


def _mark_micro_batches(mark):
    "Report every micro-batch the trainer starts (the trainer asks for one step generator per micro-batch)."
    import digseg.train as T
    orig = T.step_generator
    def step_generator(seed, micro): mark("micro"); return orig(seed, micro)
    T.step_generator = step_generator


# ---------------------------------------------------------------------------------------------- the generic trainer
class Toy(nn.Module):
    "A small regression whose loss draws noise from the step generator, like the diffusion objective."
    def __init__(self):
        super().__init__(); g = torch.Generator().manual_seed(0)
        self.net = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 1))
        with torch.no_grad():
            for p in self.net.parameters(): p.copy_(torch.randn(p.shape, generator=g)*0.5)
    def forward(self, batch, generator):
        x, y = batch
        time.sleep(0.002)         # a step takes a few ms, so random kills land everywhere in it
        y = y + 0.05*torch.randn(y.shape, generator=generator)
        return {"loss": ((self.net(x).squeeze(-1) - y)**2).mean()}

def toy_data():
    g = torch.Generator().manual_seed(1); X = torch.randn(40, 4, generator=g)
    return torch.utils.data.TensorDataset(X, torch.sin(X.sum(1)))

TOY = dict(max_steps=24, batch_size=8, grad_accum=2, learning_rate=0.02, warmup_steps=3, lr_schedule="cosine",
           checkpoint_every=4, keep_checkpoints=2, log_every=1, cpu=True)

def train_toy(mark, run_dir, kill_point=None):
    _mark_micro_batches(mark); _arm(mark, kill_point)
    Trainer(Toy(), toy_data(), TrainConfig(output_dir=str(run_dir), **TOY)).fit()


def final_weights(run_dir):
    cks = list_checkpoints(run_dir)
    assert cks and cks[-1].name == f"step_{TOY['max_steps']:08d}", cks
    return load_checkpoint(cks[-1])[0]

def assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a: assert torch.equal(a[k], b[k]), k

def assert_only_complete(run_dir):
    "Every checkpoint `list_checkpoints` offers loads, and is finite."
    for ck in list_checkpoints(run_dir):
        w, state, meta = load_checkpoint(ck)
        assert meta["step"] == int(ck.name.split("_")[1]) and all(torch.isfinite(t).all() for t in w.values())


@pytest.fixture(scope="module")
def toy_reference(tmp_path_factory):
    d = tmp_path_factory.mktemp("reference")
    Child(train_toy, d).finish()
    return final_weights(d), read_log(d)


def test_killed_at_random_moments(tmp_path, toy_reference):
    "Five SIGKILLs at random micro-batches and random instants within them; the resumed run is bit-identical."
    rng, kills = random.Random(5), 0
    for _ in range(5):
        c = Child(train_toy, tmp_path)
        c.wait_for("micro", rng.randint(1, 14)); time.sleep(rng.uniform(0, 0.01))
        kills += c.kill(); assert_only_complete(tmp_path)
    assert kills >= 3
    Child(train_toy, tmp_path).finish()
    assert_same(final_weights(tmp_path), toy_reference[0])
    ref_log, log = toy_reference[1], read_log(tmp_path)
    assert [r["step"] for r in log] == list(range(1, TOY["max_steps"] + 1))          # the log reads as one run
    assert [r["loss"] for r in log] == [r["loss"] for r in ref_log]


@pytest.mark.parametrize("kill_point", ["weights-written", "state-written", "before-rename", "pruning"])
def test_killed_inside_a_checkpoint_write(tmp_path, toy_reference, kill_point):
    "A kill inside `save` leaves no checkpoint that is picked half-written; the resumed run is bit-identical."
    c = Child(train_toy, tmp_path, kill_point)
    c.wait_for(kill_point); assert c.kill()
    cks = [p.name for p in list_checkpoints(tmp_path)]
    tmp = list((tmp_path/"checkpoints").glob(".tmp_step_*"))
    if kill_point == "pruning":        # step 12 published, step 4 being deleted: it is no longer complete
        assert cks == ["step_00000008", "step_00000012"] and (tmp_path/"checkpoints"/"step_00000004").exists()
    else:                              # the first checkpoint (step 4) was being written: none is published
        assert cks == [] and len(tmp) == 1
        assert (tmp[0]/"meta.json").exists() == (kill_point == "before-rename")   # all written but not renamed: still not picked
    assert_only_complete(tmp_path)
    Child(train_toy, tmp_path).finish()
    assert_same(final_weights(tmp_path), toy_reference[0])
    assert sorted(p.name for p in (tmp_path/"checkpoints").iterdir()) == ["step_00000020", "step_00000024"]   # litter removed on resume


def test_killed_inside_a_later_checkpoint_write(tmp_path, toy_reference):
    "Killed while writing the third checkpoint: resume from the second, and still end bit-identical."
    def third_write(mark, d):
        import digseg.train as T
        orig, n = T.save_checkpoint, []
        def save_checkpoint(*a, **k):
            n.append(1)
            if len(n) == 3: _arm(mark, "weights-written")
            return orig(*a, **k)
        T.save_checkpoint = save_checkpoint
        train_toy(mark, d)
    c = Child(third_write, tmp_path); c.wait_for("weights-written"); assert c.kill()
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_00000004", "step_00000008"]
    Child(train_toy, tmp_path).finish()
    assert_same(final_weights(tmp_path), toy_reference[0])


# ---------------------------------------------------------------------------------------------- non-finite loss
class NanFrom(Toy):
    "The toy whose loss becomes NaN from the `n`-th forward call on (counted in this process)."
    def __init__(self, n): super().__init__(); self.n, self.calls = n, 0
    def forward(self, batch, generator):
        self.calls += 1; out = super().forward(batch, generator)
        return {"loss": out["loss"]*float("nan")} if self.calls >= self.n else out

def train_nan(mark, run_dir):
    try: Trainer(NanFrom(2*10 + 1), toy_data(), TrainConfig(output_dir=str(run_dir), **TOY)).fit()   # NaN in step 11
    except NonFiniteLoss as e: mark(f"NonFiniteLoss: {e}")

def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path, toy_reference):
    seen = Child(train_nan, tmp_path).finish()
    err = [l for l in seen if l.startswith("NonFiniteLoss")]
    assert len(err) == 1 and "loss is nan at step 11: training stopped; the last good checkpoint" in err[0]
    assert "step_00000008, is kept" in err[0]
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_00000004", "step_00000008"]
    assert_only_complete(tmp_path)
    # the kept checkpoint is the good one (as the NaN-free run had it): a rerun resumes from it, bit-identical
    Child(train_toy, tmp_path).finish()
    assert_same(final_weights(tmp_path), toy_reference[0])


class NanGradAt(Toy):
    "The toy whose gradients (not loss) become NaN in its `at`-th forward call."
    def __init__(self, at): super().__init__(); self.at, self.calls = at, 0
    def forward(self, batch, generator):
        self.calls += 1; out = super().forward(batch, generator)
        if self.calls == self.at: out["loss"].register_hook(lambda g: g*float("nan"))
        return out

def test_non_finite_weights_are_never_saved(tmp_path):
    "A finite loss with NaN gradients in a checkpoint step would poison the weights: that checkpoint is refused."
    tr = Trainer(NanGradAt(2*8), toy_data(), TrainConfig(output_dir=str(tmp_path), **TOY))   # last micro-batch of step 8
    with pytest.raises(NonFiniteLoss, match=r"are NaN or infinite at step 8 .*not saved; the last good checkpoint, .*step_00000004, is kept"):
        tr.fit()
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_00000004"]
    assert_only_complete(tmp_path)


# ---------------------------------------------------------------------------------------------- DiGSeg fine-tuning
DIGSEG = {"model": {"spec": "tiny"}, "data": {"size": 12, "image_size": 32},
          "train": {"max_steps": 6, "batch_size": 4, "checkpoint_every": 2, "log_every": 1, "cpu": True}}

def train_tiny_digseg(mark, run_dir, kill_point=None):
    from digseg.finetune import train_digseg
    _mark_micro_batches(mark); _arm(mark, kill_point)
    train_digseg({**DIGSEG, "train": {**DIGSEG["train"], "output_dir": str(run_dir)}})

def model_weights(run_dir):
    from safetensors.torch import load_file
    return {f"{c}.{k}": v for c in ("unet", "text_projection")
            for k, v in load_file(str(Path(run_dir)/"model"/c/"diffusion_pytorch_model.safetensors")).items()}

def test_digseg_finetune_killed_and_resumed(tmp_path):
    "train_digseg (tiny spec) killed at a random micro-batch and inside a checkpoint write ends bit-identical."
    ref, run = tmp_path/"ref", tmp_path/"run"
    Child(train_tiny_digseg, ref).finish()
    c = Child(train_tiny_digseg, run); c.wait_for("micro", random.Random(1).randint(2, 4)); c.kill()
    c = Child(train_tiny_digseg, run, "weights-written"); c.wait_for("weights-written"); assert c.kill()
    assert_only_complete(run)
    Child(train_tiny_digseg, run).finish()
    assert_same(model_weights(run), model_weights(ref))
    assert [r["step"] for r in read_log(run)] == list(range(1, 7))


# ---------------------------------------------------------------------------------------------- evaluation
def evaluate_tiny(mark, out_dir, stall_at=None, n=5, stall_in_write=None):
    """Evaluate the tiny pipeline on n mini-world images, reporting each image; stall inside image `stall_at`, or
    inside the write of prediction `stall_in_write` (its temporary written, not yet renamed), to be killed there."""
    from digseg.pipeline import build_tiny_pipeline
    from digseg.data import MiniWorld
    from digseg.evaluate import evaluate
    pipe, count, writes = build_tiny_pipeline(seed=0), [], []
    encode, replace = pipe.vae.encode, os.replace
    def counting_encode(*a, **k):                 # the pipeline encodes each image once
        count.append(1); mark("image")
        if len(count) == stall_at: time.sleep(30)
        return encode(*a, **k)
    def stalling_replace(src, dst):               # this child only: os is its own copy after the fork
        if Path(dst).parent.name == "preds":
            writes.append(1)
            if len(writes) == stall_in_write: mark("temporary-written"); time.sleep(30)
        return replace(src, dst)
    pipe.vae.encode, os.replace = counting_encode, stalling_replace
    evaluate(pipe, MiniWorld("val", size=n), out_dir=out_dir, progress=False)

def _metrics(d):
    m = json.loads((Path(d)/"metrics.json").read_text()); m.pop("seconds", None); return m

def test_killed_evaluation_resumes_without_recomputing(tmp_path):
    ref, run = tmp_path/"ref", tmp_path/"run"
    Child(evaluate_tiny, ref).finish()
    c = Child(evaluate_tiny, run, 3); c.wait_for("image", 3); assert c.kill()        # killed inside the third image
    done = len(list((run/"preds").glob("*.png")))
    assert done == 2 and not (run/"metrics.json").exists()
    seen = Child(evaluate_tiny, run).finish()
    assert seen.count("image") == 5 - done                       # finished images are not recomputed
    assert _metrics(run) == _metrics(ref)                        # and the metrics are the same


def test_evaluation_killed_inside_a_prediction_write(tmp_path):
    "A kill between writing a prediction's temporary and renaming it: the temporary is never taken for a prediction."
    ref, run = tmp_path/"ref", tmp_path/"run"
    Child(evaluate_tiny, ref).finish()
    c = Child(evaluate_tiny, run, None, 5, 3); c.wait_for("temporary-written"); assert c.kill()
    preds = run/"preds"
    assert sorted(p.name for p in preds.glob("*.png")) == ["val_000000.png", "val_000001.png"]   # the stray matches no *.png
    assert [p.name for p in preds.iterdir() if p.name.startswith(".")] == [f".val_000002.png.{c.proc.pid}.tmp"]   # the killed writer's
    (preds/"val_000003.png.tmp.png").write_bytes(b"half")        # the temporary name of earlier versions, if one was left
    seen = Child(evaluate_tiny, run).finish()
    assert seen.count("image") == 3                              # the interrupted image is made again, the others not
    assert sorted(p.name for p in preds.iterdir()) == [f"val_{i:06d}.png" for i in range(5)]   # strays deleted
    assert _metrics(run) == _metrics(ref) and _metrics(run)["images"] == 5


# ---------------------------------------------------------------------------------------------- make reproduce
def _notebook(path, code):
    "A one-cell experiment notebook (with papermill's parameters cell)."
    import nbformat
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('profile = "mini"\nout_dir = "."'); params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(code)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "python3", "language": "python"}
    nbformat.write(nb, str(path))

def test_reproduce_continues_past_a_failure_and_a_rerun_continues(tmp_path, monkeypatch, capsys):
    "A failing experiment does not stop the others; the report names it; a rerun runs only what is not complete."
    import digseg.report as report
    nbs, out, fix = tmp_path/"nbs", tmp_path/"runs", tmp_path/"fixed"
    nbs.mkdir()
    ok = 'import json, pathlib\npathlib.Path(out_dir, "metrics.json").write_text(json.dumps({"rows": []}))'
    _notebook(nbs/"first.ipynb", ok); _notebook(nbs/"third.ipynb", ok)
    _notebook(nbs/"second.ipynb", f'import pathlib\nif not pathlib.Path({str(fix)!r}).exists(): raise RuntimeError("the second experiment broke")\n' + ok)
    monkeypatch.setattr(report, "EXPERIMENTS", {n: dict(title=f"The {n} experiment", paper=None) for n in ("first", "second", "third")})
    monkeypatch.setattr(report, "experiment_notebook", lambda name: nbs/f"{name}.ipynb")
    st = report.reproduce("mini", out_root=out)
    assert {n: s["state"] for n, s in st.items()} == {"first": "ok", "second": "failed", "third": "ok"}   # the third still ran
    assert "RuntimeError: the second experiment broke" in st["second"]["error"]
    md = (out/"REPORT.md").read_text()
    assert "| second | failed |" in md and "the second experiment broke" in md
    assert "failed: ['second']" in capsys.readouterr().out
    fix.touch()                                                      # fixed; the rerun continues where it stopped
    st = report.reproduce("mini", out_root=out)
    assert [n for n, s in st.items() if s.get("skipped")] == ["first", "third"] and st["second"]["state"] == "ok"
    assert "| second | ok |" in (out/"REPORT.md").read_text()
