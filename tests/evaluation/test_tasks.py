"""Task kinds: each task name finds its kind, and each kind hands its evaluator LESS's defaults for
that benchmark unless the config overrides them."""

from __future__ import annotations

import pytest

from less_select.errors import UserError
from less_select.evaluation import tasks
from less_select.evaluation.run import EvalConfig


@pytest.mark.parametrize("task,kind", [("bbh", "bbh"), ("mmlu", "mmlu"), ("tydiqa", "tydiqa"),
                                       ("loss:bbh", "loss"), ("loss:d/t.jsonl", "loss"),
                                       ("exact_match:t.jsonl", "exact_match")])
def test_each_task_finds_its_kind(task, kind):
    assert tasks.task_kind(task).name == kind


@pytest.mark.parametrize("task", ["gsm8k", "loss:", "exact_match:", "BBH", ""])
def test_unknown_tasks_are_refused_with_the_valid_ones(task):
    with pytest.raises(UserError, match="use bbh, mmlu, tydiqa, loss:bbh"):
        tasks.check_task(task)


def _captured(monkeypatch, module: str, name: str) -> dict:
    seen: dict = {}
    monkeypatch.setattr(f"less_select.evaluation.{module}.{name}",
                        lambda *a, **k: seen.update(k, data_dir=a[2]) or {"task": module})
    return seen


@pytest.mark.parametrize("task,module,name,batch,chat", [
    ("mmlu", "mmlu", "evaluate_mmlu", 4, "none"), ("bbh", "bbh", "evaluate_bbh", 10, "none"),
    ("tydiqa", "tydiqa", "evaluate_tydiqa", 20, "tulu")])
def test_benchmarks_get_less_defaults_and_overrides(monkeypatch, task, module, name, batch, chat):
    seen = _captured(monkeypatch, module, name)
    tasks.task_kind(task).run(EvalConfig(model="m", task=task, data_dir="d"), None, None, task)
    assert (seen["batch_size"], seen["chat_format"], seen["seed"], seen["data_dir"]) == (batch, chat, 42, "d")
    if task != "mmlu":
        assert seen["max_new_tokens"] == tasks.DEFAULT_NEW_TOKENS[task]
    cfg = EvalConfig(model="m", task=task, batch_size=3, chat_format="tulu", sample_seed=7, max_new_tokens=5)
    tasks.task_kind(task).run(cfg, None, None, task)
    assert (seen["batch_size"], seen["chat_format"], seen["seed"]) == (3, "tulu", 7)


def test_target_loss_of_a_builtin_set_uses_the_tulu_format(monkeypatch):
    seen = {}
    monkeypatch.setattr("less_select.data.targets.build_target_examples",
                        lambda target, data_dir, **opts: seen.update(opts, target=target) or [])
    monkeypatch.setattr("less_select.evaluation.loss.target_loss", lambda *a: {"average": {}})
    out = tasks.task_kind("loss:bbh").run(EvalConfig(model="m", task="loss:bbh"), None, None, "loss:bbh")
    assert seen == {"target": "bbh", "chat_format": "tulu"} and out["task"] == "loss:bbh"
    seen.clear()
    tasks.task_kind("loss:t.jsonl").run(EvalConfig(model="m", task="x", lenient=True), None, None,
                                        "loss:t.jsonl")
    assert seen == {"target": "t.jsonl", "lenient": True}  # a file is read as it is


def test_result_files_are_named_by_the_target_task_name():
    assert tasks.task_slug("bbh") == "bbh"
    assert tasks.task_slug("loss:tydiqa") == "loss_tydiqa"
    assert tasks.task_slug("exact_match:d/my test.v2.jsonl.gz") == "exact_match_my_test.v2"
