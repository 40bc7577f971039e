"Experiment notebooks run alone under papermill, with `-p` parameters and with a `-f` parameters file (a config YAML)."
import json
from pathlib import Path
import yaml

ROOT = Path(__file__).resolve().parents[1]
NB = ROOT/"nbs"/"experiments"/"table7_vae_masks.ipynb"


def _run(tmp_path, **parameters):
    import papermill as pm
    pm.execute_notebook(str(NB), str(tmp_path/"run.ipynb"), parameters=parameters, kernel_name="python3",
                        progress_bar=False, cwd=str(ROOT))
    return json.loads((Path(parameters["out_dir"])/"metrics.json").read_text())


def test_parameters_file_is_the_config(tmp_path):
    "`papermill NB OUT -f FILE.yaml` (parameters = the YAML's sections): the notebook's config is that file's content."
    cfg = yaml.safe_load((ROOT/"configs"/"mini"/"table7_vae_masks.yaml").read_text())
    cfg["report_note"] = "read from the -f file"
    f = tmp_path/"params.yaml"; f.write_text(yaml.safe_dump(cfg))
    m = _run(tmp_path, out_dir=str(tmp_path/"f"), **yaml.safe_load(f.read_text()))   # what papermill's -f does
    assert m["notes"] == "read from the -f file" and m["config"] == cfg and m["smoke"] is True


def test_config_parameter_names_a_file(tmp_path):
    "`-p config FILE` reads that file; `-p profile` and `-p out_dir` are honoured."
    cfg = yaml.safe_load((ROOT/"configs"/"mini"/"table7_vae_masks.yaml").read_text())
    cfg["report_note"] = "read from -p config"
    f = tmp_path/"own.yaml"; f.write_text(yaml.safe_dump(cfg))
    m = _run(tmp_path, out_dir=str(tmp_path/"p"), config=str(f), profile="mini")
    assert m["notes"] == "read from -p config" and m["profile"] == "mini"
