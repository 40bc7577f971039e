"Every shipped config parses into the objects it configures (a typo must fail here, not hours into a run)."
from pathlib import Path
import pytest
from digseg.finetune import load_config, DiGSegObjective
from digseg.train import TrainConfig

CONFIGS = sorted(Path(__file__).resolve().parents[1].glob("configs/*/*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_config_parses(path):
    cfg = load_config(path)
    TrainConfig.from_dict(cfg.get("train", {}))
    DiGSegObjective(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg.get("objective", {}).items()})
    assert cfg["model"]["spec"] in ("tiny", "mini", "sd2")


def test_configs_exist():
    assert {p.parent.name for p in CONFIGS} >= {"mini", "paper"}
