"""`digseg` under `accelerate launch`, recording what each rank writes (used by tests/test_distributed.py).

    accelerate launch --multi_gpu --num_processes 2 tests/distributed_worker.py train --config run.yaml

With DIGSEG_TEST_RECORD=FOLDER, every checkpoint and model save is noted in FOLDER/rank<R>.jsonl by the rank that
made it, and each rank leaves its query-memory buffers (DEDOS) in FOLDER/buffers_rank<R>.pt after training."""
import json, os, sys
from pathlib import Path
import torch
import digseg.cli, digseg.train, digseg.dedos_train
from diffusers import DiffusionPipeline

RECORD = Path(os.environ["DIGSEG_TEST_RECORD"]); RECORD.mkdir(parents=True, exist_ok=True)
RANK = int(os.environ.get("RANK", "0"))


def note(what: str, **info):
    with open(RECORD/f"rank{RANK}.jsonl", "a") as f: f.write(json.dumps({"what": what, **info}) + "\n")


def recorded(owner, name: str, what: str):
    "Wrap `owner.name` so that each call is noted first."
    original = getattr(owner, name)
    def wrapper(*args, **kwargs):
        note(what); return original(*args, **kwargs)
    setattr(owner, name, wrapper)


recorded(digseg.train, "save_checkpoint", "checkpoint")          # Trainer.save looks it up in digseg.train
recorded(digseg.dedos_train, "save_dedos", "model")              # train_dedos looks it up in digseg.dedos_train
recorded(DiffusionPipeline, "save_pretrained", "model")          # train_digseg saves the pipeline

_fit = digseg.train.Trainer.fit
def fit(self, *args, **kwargs):
    step = _fit(self, *args, **kwargs)
    module = self.accelerator.unwrap_model(self.module)
    memory = {n: b.detach().cpu().clone() for n, b in module.named_buffers() if n.endswith("memory")}
    if memory: torch.save(memory, RECORD/f"buffers_rank{RANK}.pt")
    return step
digseg.train.Trainer.fit = fit

if __name__ == "__main__":
    sys.exit(digseg.cli.main(sys.argv[1:]))
