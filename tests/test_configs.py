"Every shipped config parses into the objects it configures (a typo must fail here, not hours into a run)."
from pathlib import Path
import pytest
import yaml
from digseg.finetune import load_config, DiGSegObjective
from digseg.train import TrainConfig
from digseg.experiments import EXPERIMENTS, Experiment, train_config

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted(ROOT.glob("configs/*/*.yaml"))
TRAIN_CONFIGS = [p for p in CONFIGS if p.stem not in EXPERIMENTS]          # train.yaml and other run configs
EXPERIMENT_CONFIGS = [p for p in CONFIGS if p.stem in EXPERIMENTS]


def _check_training(cfg):
    cfg = load_config(cfg)
    TrainConfig.from_dict(cfg.get("train", {}))
    DiGSegObjective(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg.get("objective", {}).items()})
    assert cfg["model"]["spec"] in ("tiny", "mini", "sd2")


@pytest.mark.parametrize("path", TRAIN_CONFIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_config_parses(path):
    _check_training(path)


@pytest.mark.parametrize("path", EXPERIMENT_CONFIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_experiment_config_parses(path, tmp_path):
    "An experiment config names an existing notebook, and every training config it derives parses."
    assert (ROOT/"nbs"/"experiments"/f"{path.stem}.ipynb").exists(), f"no notebook for {path}"
    exp = Experiment(path.stem, path.parent.name, path, out_dir=tmp_path, smoke=False)
    if "train" in exp.cfg:
        for variant in (exp.cfg.get("variants") or {None: None}).values():
            cfg = train_config(exp, variant=variant)
            cfg["train"].pop("output_dir")
            _check_training(cfg)


def test_configs_exist():
    assert {p.parent.name for p in CONFIGS} >= {"mini", "paper"}
