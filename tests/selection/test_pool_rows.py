"""The streamed pool rows (data/pool_rows.py) give the selection writer byte-identical outputs to
the fully loaded pool, and refuse pool files that no longer match the store's rows."""

import json

import numpy as np
import pytest

from less_select.data import load_examples
from less_select.data.pool_rows import PoolRows
from less_select.errors import UserError
from less_select.selection import BudgetConfig, write_selection


def make_pool(tmp_path, n_files=2, per_file=30):
    """Pool files, and a store folder whose index/skipped list them as the builder does: every
    7th example has no row (skipped), the others are rows in file order."""
    files, rows, skipped = [], [], []
    for j in range(n_files):
        f = tmp_path / f"pool{j}.jsonl"
        lines = []
        for i in range(per_file):
            rec = {"id": f"f{j}-{i}", "messages": [{"role": "user", "content": f"q {j} {i}"},
                                                     {"role": "assistant", "content": "a " * (1 + i % 5)}]}
            if i % 3:
                rec["task"] = f"t{i % 4}"
            if i % 2:
                rec["dataset"] = f"d{j}"
            lines.append(json.dumps(rec))
            (skipped if i % 7 == 3 else rows).append({"id": rec["id"], "file": str(f), "line": i + 1})
        f.write_text("\n".join(lines) + "\n")
        files.append(str(f))
    store = tmp_path / "store"
    store.mkdir()
    (store / "index.jsonl").write_text("".join(json.dumps({"row": r, **x, "subtask": None, "n_tokens": 5}) + "\n"
                                               for r, x in enumerate(rows)))
    (store / "skipped.jsonl").write_text("".join(json.dumps({**x, "reason": "no completion token"}) + "\n"
                                                 for x in skipped))
    return store, files, rows, skipped


def loaded_rows(files, rows, skipped):
    """The previous way: every example loaded, rows looked up by (file, line)."""
    examples, _ = load_examples(files)
    by_key = {(e.source, e.line): e for e in examples}
    return ([by_key[(r["file"], r["line"])] for r in rows],
            [(by_key[(r["file"], r["line"])], "no completion token") for r in skipped], len(examples))


def test_streamed_rows_write_the_same_selection_as_loaded_rows(tmp_path):
    store, files, rows, skipped = make_pool(tmp_path)
    per_subtask = np.random.default_rng(0).normal(size=(len(rows), 3)).astype(np.float32)
    budget = BudgetConfig(percentage=0.25)
    outs = []
    for name, (examples, unscored, n_pool) in (
            ("loaded", loaded_rows(files, rows, skipped)),
            ("streamed", (lambda p: (p, p.unscored, p.n_examples))(PoolRows(store, files)))):
        out = tmp_path / name
        report = write_selection(out, examples, None, budget, "less", n_pool=n_pool, unscored=unscored,
                                 per_subtask=per_subtask, subtasks=["a", "b", "c"])
        assert report["n_pool"] == 60 and report["n_unscored"] == len(skipped)
        outs.append(out)
    for f in ("top_p0.25.jsonl", "scores.csv", "selection.json", "per_subtask_scores.npy"):
        assert (outs[0] / f).read_bytes() == (outs[1] / f).read_bytes(), f
    assert not list(outs[1].glob("*.tmp"))


def test_only_selected_examples_are_held(tmp_path):
    store, files, rows, _ = make_pool(tmp_path)
    pool = PoolRows(store, files)
    pool.fetch([0, 5])
    assert pool[0].messages and pool[5].messages          # whole examples
    assert pool[1].messages == [] and pool[1].id == rows[1]["id"]  # a light row: id, file, line, fields
    assert pool[2].raw == {"task": "t2"} and pool[1].raw == {"task": "t1", "dataset": "d0"}


@pytest.mark.parametrize("change,match", [
    ("edit_id", "line 1 holds id 'other', the store's row has 'f0-0'"),
    ("drop_last", "row 25 \\(line 30\\) is no longer a usable record"),
    ("break_row", "line 2 is no longer a usable record"),
])
def test_changed_pool_file_refused(tmp_path, change, match):
    store, files, _, _ = make_pool(tmp_path)
    f = tmp_path / "pool0.jsonl"
    lines = f.read_text().splitlines()
    if change == "edit_id":
        lines[0] = lines[0].replace('"f0-0"', '"other"')
    elif change == "drop_last":
        lines = lines[:-1]
    else:
        lines[1] = '{"id": "f0-1", "text": "no known format"}'
    f.write_text("\n".join(lines) + "\n")
    pool = PoolRows(store, files, n_examples=60)
    with pytest.raises(UserError, match=match):
        pool.fetch([0, 1])


def test_corrupt_index_refused(tmp_path):
    store, files, _, _ = make_pool(tmp_path)
    (store / "index.jsonl").write_text('{"row": 0, "id": "x"}\n')
    with pytest.raises(UserError, match="index.jsonl line 1 is not row 0 with id, file and line"):
        PoolRows(store, files)


def test_max_per_file_and_lenient_match_load_examples(tmp_path):
    store, files, rows, skipped = make_pool(tmp_path)
    bad = tmp_path / "pool1.jsonl"
    bad.write_text(bad.read_text() + "not json\n")
    keep = [r for r in rows if r["line"] <= 20]
    drop = [r for r in skipped if r["line"] <= 20]
    (store / "index.jsonl").write_text("".join(json.dumps({"row": i, **x}) + "\n" for i, x in enumerate(keep)))
    (store / "skipped.jsonl").write_text("".join(json.dumps({**x, "reason": "r"}) + "\n" for x in drop))
    pool = PoolRows(store, files, lenient=True, max_per_file=20)
    pool.fetch(range(len(keep)))
    want, _ = load_examples(files, lenient=True, max_per_file=20)
    by_key = {(e.source, e.line): e for e in want}
    assert [pool[i].raw for i in range(len(keep))] == [by_key[(r["file"], r["line"])].raw for r in keep]
    assert pool.n_examples == len(want) == 40


def test_duplicate_ids_get_the_loader_s_suffix_when_earlier_rows_are_not_parsed(tmp_path):
    f = tmp_path / "dup.jsonl"
    rec = {"id": "same", "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    f.write_text((json.dumps(rec) + "\n") * 3)
    want = [e.id for e in load_examples([str(f)])[0]]
    assert want == ["same", "same@dup:2", "same@dup:3"]
    store = tmp_path / "store"
    store.mkdir()
    (store / "index.jsonl").write_text("".join(json.dumps({"row": r, "id": i, "file": str(f), "line": r + 1}) + "\n"
                                               for r, i in enumerate(want)))
    (store / "skipped.jsonl").write_text("")
    pool = PoolRows(store, [str(f)])
    pool.fetch([2])  # rows 0 and 1 are only decoded, not parsed
    assert pool[2].id == "same@dup:3" and pool[2].messages
