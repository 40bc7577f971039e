"""Data parallelism on CPU: `accelerate launch --multi_gpu --num_processes 2` on a machine without GPUs runs two
gloo processes (the tested CPU form of the README's launch line; `--cpu --num_processes 2` runs ONE process).

* a 2-process run ends with the weights of a 1-process run with the same global batch (2 accumulation steps);
* only the main process writes checkpoints and the model;
* a 2-process run killed mid-way (SIGKILL) and resumed under 2 processes ends with the uninterrupted weights;
* a global batch that does not divide into processes x accumulation steps is refused;
* DEDOS trains under 2 processes with the same query memory on every rank."""
import json, os, signal, socket, subprocess, sys, time
from pathlib import Path
import pytest
import torch
import yaml
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT/"tests"/"distributed_worker.py"
ACCELERATE = Path(sys.executable).parent/"accelerate"
DIGSEG = {"model": {"spec": "tiny"}, "data": {"size": 16, "image_size": 32},
          "train": {"max_steps": 4, "batch_size": 4, "checkpoint_every": 1, "keep_checkpoints": 8, "log_every": 1,
                    "learning_rate": 1e-3, "cpu": True}}


def _port():
    with socket.socket() as s: s.bind(("127.0.0.1", 0)); return s.getsockname()[1]


def launch(config: dict, tmp: Path, name: str, processes: int = 2, wait: bool = True):
    "Run `digseg train --config` on `config` under `accelerate launch` (2 processes) or plain python (1)."
    cfg_path, record = tmp/f"{name}.yaml", tmp/f"{name}_record"
    cfg_path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "DIGSEG_TEST_RECORD": str(record), "PYTHONWARNINGS": "ignore"}
    head = [sys.executable] if processes == 1 else [
        str(ACCELERATE), "launch", "--multi_gpu", "--num_processes", str(processes), "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_ip", "127.0.0.1", "--main_process_port", str(_port())]
    cmd = head + [str(WORKER), "train", "--config", str(cfg_path)]
    proc = subprocess.Popen(cmd, env=env, cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    if not wait: return proc, record
    out, _ = proc.communicate(timeout=600)
    return proc.returncode, out, record


def config(tmp: Path, name: str, **train):
    return {**DIGSEG, "train": {**DIGSEG["train"], "output_dir": str(tmp/name), **train}}


def unet_weights(run: Path):
    return load_file(str(run/"model"/"unet"/"diffusion_pytorch_model.safetensors"))


def assert_same(a: dict, b: dict, tol: float = 1e-5):
    assert a.keys() == b.keys()
    worst = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
    assert worst < tol, f"largest weight difference {worst}"


def records(record: Path):
    "{rank: [what, ...]} of what each rank wrote."
    return {int(p.stem[4:]): [json.loads(l)["what"] for l in p.read_text().splitlines()] for p in sorted(record.glob("rank*.jsonl"))}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    "The 1-process reference (2 accumulation steps) and the uninterrupted 2-process run, trained once for the tests below."
    tmp = tmp_path_factory.mktemp("ddp")
    rc1, out1, rec1 = launch(config(tmp, "one", grad_accum=2), tmp, "one", processes=1)
    assert rc1 == 0, out1
    rc2, out2, rec2 = launch(config(tmp, "two"), tmp, "two")
    assert rc2 == 0, out2
    return tmp, rec1, rec2


def test_two_processes_match_one_with_accumulation(runs):
    "Same global batch, same samples and noise per shard: DDP's gradient mean equals accumulation's, so the weights agree."
    tmp, _, _ = runs
    assert_same(unet_weights(tmp/"one"), unet_weights(tmp/"two"))
    log = [json.loads(l)["step"] for l in (tmp/"two"/"log.jsonl").read_text().splitlines()]
    assert log == [1, 2, 3, 4]                                     # one log line per step: only rank 0 logs


def test_only_the_main_process_writes(runs):
    _, _, rec = runs
    written = records(rec)
    assert written.get(0, []).count("checkpoint") == 4 and written[0].count("model") == 1, written
    assert not written.get(1), f"rank 1 wrote {written.get(1)}"


def test_killed_two_process_run_resumes_to_the_same_weights(runs):
    "SIGKILL both ranks once a checkpoint exists, relaunch under 2 processes: the uninterrupted weights."
    tmp, _, _ = runs
    cfg = config(tmp, "killed")
    proc, _ = launch(cfg, tmp, "killed", wait=False)
    first = tmp/"killed"/"checkpoints"/"step_00000002"
    deadline = time.time() + 300
    while not first.exists() and proc.poll() is None and time.time() < deadline: time.sleep(0.05)
    killed = proc.poll() is None
    os.killpg(proc.pid, signal.SIGKILL); proc.wait()
    assert killed, "the run finished before it could be killed"
    assert not (tmp/"killed"/"model").exists()
    rc, out, _ = launch(cfg, tmp, "killed")
    assert rc == 0, out
    assert_same(unet_weights(tmp/"killed"), unet_weights(tmp/"two"))


def test_a_batch_that_does_not_divide_is_refused(tmp_path):
    rc, out, _ = launch(config(tmp_path, "odd", batch_size=6, grad_accum=2), tmp_path, "odd")
    assert rc != 0 and "`batch_size` (6) must be divisible by grad_accum x processes (2 x 2 = 4)" in out, out


def test_dedos_trains_under_two_processes_with_one_query_memory(tmp_path):
    cfg = {"model": {"method": "dedos", "spec": "tiny"}, "data": {"size": 8, "image_size": 32},
           "train": {"output_dir": str(tmp_path/"dedos"), "max_steps": 2, "batch_size": 4, "cpu": True, "log_every": 1}}
    rc, out, rec = launch(cfg, tmp_path, "dedos")
    assert rc == 0, out
    assert (tmp_path/"dedos"/"model"/"dedos_model.json").exists()
    m0, m1 = torch.load(rec/"buffers_rank0.pt"), torch.load(rec/"buffers_rank1.pt")
    assert m0.keys() == m1.keys() and m0
    for k in m0:
        assert m0[k].abs().sum() > 0, k                            # the memory was written...
        assert torch.equal(m0[k], m1[k]), k                        # ...and is the same on both ranks
    assert "model" not in records(rec).get(1, [])
