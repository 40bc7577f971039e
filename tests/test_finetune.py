"Training-entry-point behaviour that needs the main thread (signals): an interrupted run publishes no model and resumes."
import os, signal
from pathlib import Path
from unittest import mock
import pytest
from digseg.finetune import DiGSegTrainingModule, train_digseg
from digseg.train import list_checkpoints


def test_sigterm_checkpoints_raises_and_resumes(tmp_path):
    cfg = {"model": {"spec": "tiny"}, "data": {"size": 16, "image_size": 32},
           "train": {"output_dir": str(tmp_path), "max_steps": 4, "batch_size": 4, "cpu": True, "checkpoint_every": 10}}
    real, calls = DiGSegTrainingModule.forward, []
    def forward_then_stop(self, batch, generator):
        calls.append(1)
        if len(calls) == 2: os.kill(os.getpid(), signal.SIGTERM)   # arrives during step 2
        return real(self, batch, generator)
    with mock.patch.object(DiGSegTrainingModule, "forward", forward_then_stop):
        with pytest.raises(KeyboardInterrupt, match="interrupted at step 2"):
            train_digseg(cfg)
    assert not (tmp_path/"model").exists()
    assert [c.name for c in list_checkpoints(tmp_path)] == ["step_00000002"]
    out = train_digseg(cfg)
    assert (out/"model_index.json").exists() and (out/"train_config.json").exists()
    assert [c.name for c in list_checkpoints(tmp_path)][-1] == "step_00000004"
