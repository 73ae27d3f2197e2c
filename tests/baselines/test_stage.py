"""The baseline stage: same selection folder as LESS, untrainable examples left out and listed."""

import csv
import json

from less_select.baselines.stage import BaselineConfig, run_baseline


def test_baseline_stage_leaves_out_untrainable_examples(tmp_path, tiny_model_dir, target_file):
    pool = tmp_path / "pool.jsonl"
    long_prompt = " ".join(["alpha beta gamma"] * 60)
    recs = [{"id": f"e{i}", "messages": [{"role": "user", "content": long_prompt if i == 0 else f"what is {i}"},
                                         {"role": "assistant", "content": "yes"}]} for i in range(10)]
    pool.write_text("".join(json.dumps(r) + "\n" for r in recs))
    cfg = BaselineConfig(method="bm25", data=[str(pool)], task=str(target_file), output_dir=str(tmp_path / "s"),
                         tokenizer=str(tiny_model_dir), max_seq_length=32, percentage=0.5)
    report = run_baseline(cfg)
    assert report["n_pool"] == 10 and report["n_scored"] == 9 and report["n_unscored"] == 1
    assert report["n_selected"] == 5
    rows = list(csv.DictReader(open(tmp_path / "s" / "scores.csv")))
    left_out = [r for r in rows if r["status"] != "scored"]
    assert [r["id"] for r in left_out] == ["e0"] and "truncation to 32" in left_out[0]["status"]
    selected = [json.loads(l)["id"] for l in open(tmp_path / "s" / "top_p0.5.jsonl")]
    assert "e0" not in selected and len(selected) == 5
    # same settings: skipped, same report
    assert run_baseline(cfg) == report


def test_rds_embeds_at_the_stage_truncation_and_baselines_write_per_subtask_scores(tmp_path):
    from less_select.baselines.stage import BaselineConfig, method_options
    opts = method_options(BaselineConfig(method="rds_plus", model="m", max_seq_length=77, template="tulu"))
    assert opts["max_seq_length"] == 77 and opts["template"] == "tulu"
    assert "max_seq_length" not in method_options(BaselineConfig(method="bm25"))


def test_bm25_per_subtask_scores_are_the_subtask_means_and_max_gives_the_score():
    import numpy as np

    from less_select.baselines.bm25 import BM25Selector
    from less_select.data import Example

    def ex(i, text, sub=None):
        return Example(id=str(i), messages=[{"role": "user", "content": text},
                                            {"role": "assistant", "content": "ok"}], subtask=sub)
    pool = [ex(0, "red apples and pears"), ex(1, "blue sky at night"), ex(2, "apples in the sky")]
    targets = [ex(10, "red apples", "fruit"), ex(11, "pears", "fruit"), ex(12, "night sky", "sky")]
    sel = BM25Selector()
    per, names = sel.score_per_subtask(pool, targets)
    assert names == ["fruit", "sky"] and per.shape == (3, 2)
    np.testing.assert_allclose(per.max(axis=1), sel.score(pool, targets))
    assert per[0, 0] > per[1, 0] and per[1, 1] > per[0, 1]
