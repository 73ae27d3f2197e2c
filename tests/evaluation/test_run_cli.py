"""EvalConfig / run_eval / the ``eval`` subcommand, and an end-to-end smoke run on the real data."""

from __future__ import annotations

import json

import pytest

from less_select.cli import main
from less_select.configs import from_dict
from less_select.errors import UserError
from less_select.evaluation.run import EvalConfig, run_eval, run_many
from less_select.evaluation.tasks import task_slug

from .conftest import real_data_dir


def test_cli_loss_on_generic_file(tiny_model_dir, target_file, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["eval", "--model", str(tiny_model_dir), "--task", f"loss:{target_file}",
                 "--output-dir", str(out), "--dtype", "float32"]) == 0
    summary = json.loads((out / "loss_target.json").read_text())
    assert summary["task"] == f"loss:{target_file}"
    assert set(summary["per_subtask"]) == {"a", "b"}
    assert summary["config"]["model"] == str(tiny_model_dir)
    assert "predictions" not in summary
    preds = [json.loads(x) for x in (out / "loss_target_predictions.jsonl").read_text().splitlines()]
    assert len(preds) == 6
    assert "macro average" in capsys.readouterr().out  # the table
    assert not list(out.glob("*.tmp"))


def test_cli_benchmark_on_synthetic_layout(tiny_model_dir, less_layout, tmp_path):
    out = tmp_path / "out"
    assert main(["eval", "--model", str(tiny_model_dir), "--task", "bbh", "--data-dir", str(less_layout),
                 "--output-dir", str(out), "--bbh-max-per-task", "1", "--max-new-tokens", "4",
                 "--dtype", "float32"]) == 0
    summary = json.loads((out / "bbh.json").read_text())
    assert summary["n_examples"] == 2 and summary["headline"]["metric"] == "exact_match"
    assert summary["config"]["bbh_max_per_task"] == 1


def test_run_many_loads_once_and_writes_each(tiny_model, tiny_tokenizer, less_layout, tmp_path):
    cfg = EvalConfig(model="unused", task="mmlu", data_dir=str(less_layout), output_dir=str(tmp_path),
                     mmlu_max_per_subject=1, tydiqa_max_per_language=1, max_new_tokens=2)
    res = run_many(cfg, ["mmlu", "tydiqa", "loss:tydiqa"], model=tiny_model, tokenizer=tiny_tokenizer)
    assert set(res) == {"mmlu", "tydiqa", "loss:tydiqa"}
    assert {p.name for p in tmp_path.glob("*.json")} == {"mmlu.json", "tydiqa.json", "loss_tydiqa.json"}


def test_bad_task_and_config_errors(tiny_model, tiny_tokenizer, tmp_path):
    cfg = EvalConfig(model="m", task="gsm8k", output_dir=str(tmp_path))
    with pytest.raises(UserError, match="--task 'gsm8k'"):
        run_eval(cfg, model=tiny_model, tokenizer=tiny_tokenizer)
    with pytest.raises(UserError, match="needs --data-dir"):
        run_eval(EvalConfig(model="m", task="mmlu"), model=tiny_model, tokenizer=tiny_tokenizer)
    with pytest.raises(UserError, match="chat_format"):
        from_dict(EvalConfig, {"model": "m", "task": "bbh", "chat_format": "llama"})


def test_task_slug():
    assert task_slug("bbh") == "bbh"
    assert task_slug("loss:mmlu") == "loss_mmlu"
    assert task_slug("loss:/a/b/my target.jsonl.gz") == "loss_my_target"
    assert task_slug("loss:d/a.v1.jsonl") == "loss_a.v1"  # the target's task_name, as its folders


def test_every_field_is_documented():
    import dataclasses
    assert all(f.metadata.get("help") for f in dataclasses.fields(EvalConfig))


def test_real_data_smoke(tiny_model, tiny_tokenizer, tmp_path):
    """Each evaluator once on the real LESS files with tiny caps (numbers are at chance level)."""
    data = real_data_dir()
    base = dict(model="tiny", data_dir=str(data), output_dir=str(tmp_path), max_new_tokens=3)
    mmlu = run_eval(EvalConfig(task="mmlu", subtasks=["abstract_algebra"], mmlu_max_per_subject=2,
                               mmlu_n_shot=1, **base), tiny_model, tiny_tokenizer)
    assert mmlu["n_examples"] == 2
    bbh = run_eval(EvalConfig(task="bbh", subtasks=["boolean_expressions"], bbh_max_per_task=1, **base),
                   tiny_model, tiny_tokenizer)
    assert bbh["n_examples"] == 1
    ty = run_eval(EvalConfig(task="tydiqa", subtasks=["english"], tydiqa_max_per_language=1, **base),
                  tiny_model, tiny_tokenizer)
    assert ty["n_examples"] == 1
    assert ty["demonstrations_from"].endswith("tydiqa-one-shot.json")
    loss = run_eval(EvalConfig(task="loss:tydiqa", **base), tiny_model, tiny_tokenizer)
    assert len(loss["per_subtask"]) == 9
