"""The pipeline YAML's ``dynamic_train`` section: built from the shared keys, checked up front."""

import json

import pytest
import yaml

from less_select.errors import UserError
from less_select.pipeline import load_pipeline_config, run_pipeline_file

SECTION = {"warmup_step": 2, "update_step": 2, "update_times": 1, "per_device_batch_size": 2,
           "effective_batch_size": 4, "lora_r": 4, "lora_alpha": 8, "lora_target_modules": ["q_proj"],
           "proj_dim": 64, "max_seq_length": 64, "dtype": "float32", "loss_reduction": "token"}


def write(tmp_path, model_dir, pool_file, targets, section):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"run_dir": str(tmp_path / "run"), "model": str(model_dir),
                                    "data": [str(pool_file)], "targets": targets,
                                    "dynamic_train": section}))
    return path


@pytest.mark.slow
def test_dynamic_train_section_runs_into_the_run_folder(tmp_path, tiny_model_dir, pool_file, target_file):
    """The task comes from the only target; --only dynamic_train runs no static stage."""
    path = write(tmp_path, tiny_model_dir, pool_file, [{"task": str(target_file)}], SECTION)
    results = run_pipeline_file(path, only=["dynamic_train"])
    out = tmp_path / "run" / "dynamic_train" / "target"
    assert results == {"dynamic_train/target": str(out)}
    assert sorted(p.name for p in (out / "selections").iterdir()) == ["step_0.json", "step_2.json"]
    settings = json.loads((out / "stage.json").read_text())["settings"]
    assert settings["loss_reduction"] == "token" and settings["pool_files"] == [str(pool_file)]
    assert not (tmp_path / "run" / "warmup").exists()


def test_dynamic_train_section_errors_are_one_line_before_any_stage(tmp_path, tiny_model_dir, pool_file,
                                                                    target_file):
    bad = write(tmp_path, tiny_model_dir, pool_file, [{"task": str(target_file)}],
                {**SECTION, "update_times": "two"})
    with pytest.raises(UserError, match="dynamic_train") as err:
        load_pipeline_config(bad)
    assert "\n" not in str(err.value) and "update_times" in str(err.value)
    two = write(tmp_path, tiny_model_dir, pool_file, [{"task": str(target_file)}, {"task": "mmlu"}],
                SECTION)
    with pytest.raises(UserError, match="dynamic_train needs a 'task'"):
        load_pipeline_config(two)
    assert not (tmp_path / "run").exists()
