"""The Trainer component with a plain ``transformers.Trainer`` built by the test."""

import json

import pytest
import torch
from transformers import TrainerCallback

from less_select.dynamic import DynamicOptions
from less_select.errors import UserError

from .helpers import plain_trainer

OPTS = dict(warmup_step=2, update_step=2, update_times=2, proj_dim=64)


class Recorder(TrainerCallback):
    """The slice of the phase's selection the dataset serves at each optimizer step."""

    def __init__(self, sel):
        self.sel, self.slices = sel, {}

    def on_step_begin(self, args, state, control, **kw):
        self.slices[state.global_step] = list(self.sel.train_dataset.current)


def adapter(trainer):
    return {n: p.detach().clone() for n, p in trainer.model.named_parameters() if "lora_" in n}


def test_reselection_at_exactly_the_configured_steps_and_the_trainer_trains_on_it(tmp_path, tiny_tokenizer):
    opts = DynamicOptions(**OPTS)
    trainer, sel = plain_trainer(tmp_path, tiny_tokenizer, opts)
    rec = Recorder(sel)
    trainer.add_callback(rec)
    fed = []
    collate = trainer.data_collator
    trainer.data_collator = lambda rows: fed.append((trainer.state.global_step, rows)) or collate(rows)
    trainer.train()
    assert trainer.state.global_step == opts.total_steps == 6
    assert sel.summary()["reselection_steps"] == [2, 4]
    files = sorted(p.name for p in (tmp_path / "run" / "selections").iterdir())
    assert files == ["step_0.json", "step_2.json", "step_4.json"]
    gb = sel.global_batch
    for step in range(6):
        start = sel.phase_start(step)
        lo = (step - start) * gb
        assert rec.slices[step] == sel.phases[start][lo:lo + gb]
        # the collator saw exactly this step's examples (nothing prefetched from another step)
        got = sorted(tuple(r.input_ids) for s, rows in fed if s == step for r in rows)
        assert got == sorted(tuple(sel.pool_rows[i].input_ids) for i in rec.slices[step])
    rec2 = json.loads((tmp_path / "run" / "selections" / "step_2.json").read_text())
    assert rec2["method"] == "less" and len(rec2["indices"]) == 2 * gb
    assert rec2["scores"] == sorted(rec2["scores"], reverse=True)
    assert sum(rec2["per_subtask_share"].values()) == pytest.approx(1.0)
    assert rec2["n_candidates"] == 4 * 2 * gb and rec2["seconds"] > 0


@pytest.mark.slow
def test_seeded_determinism(tmp_path, tiny_tokenizer):
    opts = DynamicOptions(**OPTS)
    runs = []
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        trainer, sel = plain_trainer(tmp_path / name, tiny_tokenizer, opts, seed=seed)
        trainer.train()
        runs.append((sel.phases, adapter(trainer)))
    assert runs[0][0] == runs[1][0]
    assert all(torch.equal(runs[0][1][k], runs[1][1][k]) for k in runs[0][1])
    assert runs[0][0][0] != runs[2][0][0]  # another seed draws other warmup examples


def test_exclude_trained_never_repeats(tmp_path, tiny_tokenizer):
    opts = DynamicOptions(**OPTS, exclude_trained=True, candidates=-1)
    trainer, sel = plain_trainer(tmp_path, tiny_tokenizer, opts)
    trainer.train()
    seen = [i for s in sorted(sel.phases) for i in sel.phases[s]]
    assert len(seen) == len(set(seen)) == 6 * sel.global_batch


@pytest.mark.parametrize("kw, match", [
    (dict(update_step=11), r"update_step x global batch = 11 x 4 = 44 exceeds the pool \(40"),
    (dict(candidates=6), "update_step x global batch = 8 exceeds candidates = 6"),
    (dict(warmup_step=11), "warmup_step x global batch"),
    (dict(exclude_trained=True, update_times=9), "exclude_trained needs"),
])
def test_schedule_the_pool_cannot_fill_is_a_one_line_error(tmp_path, tiny_tokenizer, kw, match):
    with pytest.raises(UserError, match=match) as err:
        plain_trainer(tmp_path, tiny_tokenizer, DynamicOptions(**{**OPTS, **kw}))
    assert "\n" not in str(err.value)


def test_trainer_max_steps_must_match(tmp_path, tiny_tokenizer):
    trainer, _ = plain_trainer(tmp_path, tiny_tokenizer, DynamicOptions(**OPTS))
    trainer.args.max_steps = 5
    with pytest.raises(UserError, match="max_steps is 5"):
        trainer.train()


class Kill(TrainerCallback):
    def __init__(self, at):
        self.at = at

    def on_step_end(self, args, state, control, **kw):
        if state.global_step == self.at:
            raise KeyboardInterrupt


@pytest.mark.slow
def test_resume_reuses_selections_and_ends_with_the_same_adapter(tmp_path, tiny_tokenizer):
    """Killed after step 3 (checkpoint at 2, selection at 2 cached): the resumed run reuses step_2,
    re-selects only at 4 and ends with the uninterrupted run's adapter."""
    opts = DynamicOptions(**OPTS)
    from .helpers import lora_model
    whole, _ = plain_trainer(tmp_path / "whole", tiny_tokenizer, opts, save_steps=2,
                             model=lora_model(tiny_tokenizer, dropout=0.1))
    whole.train()
    killed, _ = plain_trainer(tmp_path / "cut", tiny_tokenizer, opts, save_steps=2,
                              model=lora_model(tiny_tokenizer, dropout=0.1))
    killed.add_callback(Kill(3))
    with pytest.raises(KeyboardInterrupt):
        killed.train()
    ckpt = tmp_path / "cut" / "run" / "checkpoint-2"
    assert ckpt.is_dir() and (tmp_path / "cut" / "run" / "selections" / "step_2.json").is_file()
    resumed, sel = plain_trainer(tmp_path / "cut", tiny_tokenizer, opts, save_steps=2,
                                 model=lora_model(tiny_tokenizer, dropout=0.1))
    resumed.train(resume_from_checkpoint=str(ckpt))
    assert sel.summary()["reselection_steps"] == [4]   # step 2 read back from selections/
    a, b = adapter(whole), adapter(resumed)
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_selections_made_with_other_settings_are_refused(tmp_path, tiny_tokenizer):
    trainer, _ = plain_trainer(tmp_path, tiny_tokenizer, DynamicOptions(**OPTS))
    trainer.train()
    other, _ = plain_trainer(tmp_path, tiny_tokenizer, DynamicOptions(**OPTS, projection_seed=1))
    with pytest.raises(UserError, match="step_2.json was made with other settings"):
        other.train()
