"""The LESS ``select`` stage and ``LessSelector``: LESS behind the baselines' Selector interface,
and a select folder that skips on the same settings and refuses other ones like every stage."""

import json
from pathlib import Path

import numpy as np
import pytest

from less_select.baselines.base import Selector
from less_select.datastore.build import TargetsConfig, run_datastore, run_targets
from less_select.errors import UserError
from less_select.less_selector import LessSelector
from less_select.scoring import compute_scores
from less_select.select_stage import SelectConfig, run_select

from ..datastore.test_build import ds_config, make_checkpoints


@pytest.fixture
def stores(tmp_path, tiny_model_dir, pool_file, target_file):
    make_checkpoints(tiny_model_dir, tmp_path / "warmup")
    store = run_datastore(ds_config(tmp_path, tiny_model_dir, pool_file, projector="sparse", dims=[16],
                                    dtype="float32"))
    tgt = run_targets(TargetsConfig(task=str(target_file), datastore=str(store),
                                    output_dir=str(tmp_path / "tgt")))
    return tmp_path, store, tgt


def test_less_selector_is_a_selector_scoring_exactly_the_store_rows(stores):
    tmp, store, tgt = stores
    selector = LessSelector(store, tgt)
    assert isinstance(selector, Selector) and selector.name == "less"
    rows, unscored, n_pool = selector.pool_rows()
    assert n_pool == 24 and len(rows) == 24 - len(unscored)
    per_subtask, subtasks = selector.score_per_subtask(rows, selector.target_examples())
    want = compute_scores(store, tgt)
    np.testing.assert_array_equal(per_subtask, want.per_subtask.astype(np.float64))
    assert subtasks == want.subtasks == ["a", "b"]
    np.testing.assert_array_equal(selector.score(rows), per_subtask.max(axis=1))
    with pytest.raises(UserError, match="not those rows"):  # features exist only for the store's rows
        selector.score(rows[::-1])


def test_select_skips_the_same_settings_refuses_others_and_overwrite_replaces(stores):
    tmp, store, tgt = stores
    out = tmp / "sel"
    cfg = dict(datastore=str(store), targets=str(tgt), output_dir=str(out))
    first = run_select(SelectConfig(top_k=4, **cfg))
    record = json.loads((out / "stage.json").read_text())
    assert record["config"]["top_k"] == 4 and record["settings"]["datastore"]["path"] == str(store)
    assert set(record["settings"]["datastore"]) == {"path", "manifest_sha256", "index_sha256"}
    mtime = (out / "stage.json").stat().st_mtime_ns
    assert run_select(SelectConfig(top_k=4, **cfg)) == first
    assert (out / "stage.json").stat().st_mtime_ns == mtime  # skipped
    with pytest.raises(UserError, match=r"budget: \[0.05, 4\] -> \[0.05, 5\].*--overwrite"):
        run_select(SelectConfig(top_k=5, **cfg))
    assert len((out / "top_k4.jsonl").read_text().splitlines()) == 4  # the old selection is kept
    again = run_select(SelectConfig(top_k=5, overwrite=True, **cfg))
    assert again["n_selected"] == 5 and not (out / "top_k4.jsonl").exists()
    # the scores the selection ranked by are LESS's, row for row
    scores = np.load(out / "per_subtask_scores.npy")
    np.testing.assert_allclose(scores, compute_scores(store, tgt).per_subtask, rtol=1e-6)
    assert Path(again["targets"]) == Path(tgt)
