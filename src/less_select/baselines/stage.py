"""The ``baseline`` stage: score the pool with a baseline method and write a selection folder in
the same format as LESS (``selection.write_selection``)."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..configs import option, shared
from ..data import load_examples
from ..data.encode import Template
from ..errors import UserError
from ..selection import BudgetConfig, write_selection
from ..subtask_rules import SubtaskRuleName
from .base import finish
from ..export import update_exports
from ..stage_folder import stage_dir, stage_settings
from .registry import BASELINES, baseline_config, make_baseline


@dataclass
class BaselineConfig(BudgetConfig):
    """Select from the pool with random, bm25, dsir, rds or rds_plus."""

    method: str = option("random", help="Baseline: random, bm25, dsir, rds, rds_plus.")
    data: list[str] = option(factory=list, help="Pool files.")
    task: str = option("", help="Target: bbh, mmlu, tydiqa or a file of target examples (not used by random).")
    data_dir: str = shared("data_dir")
    output_dir: str = option("", help="Selection folder to write.")
    seed: int = shared("seed")
    model: str = option("", help="Model to embed with (rds, rds_plus).")
    adapter: str = option("", help="Optional PEFT adapter for the embedding model (rds, rds_plus).")
    lenient: bool = shared("lenient")
    max_examples: int = shared("max_examples")
    tokenizer: str = option("", help=(
        "Tokenizer (model id/folder) used to leave out examples that keep no completion token at "
        "max_seq_length, as LESS does, so every method spends its budget on trainable examples "
        "(default: --model; none given: no example is left out)."))
    max_seq_length: int = shared("max_seq_length")
    template: Template = shared("template")
    dtype: str = shared("dtype")      # rds, rds_plus
    device: str = shared("device")    # rds, rds_plus
    options: dict[str, Any] = option(factory=dict, cli=False,
                                     help="Further options of the method (YAML/Python only), e.g. {k1: 1.2}.")
    subtask_rule: SubtaskRuleName = option("max", help=(
        "How per-subtask scores become one ranking: max (over subtasks) or balanced (round-robin "
        "over subtasks); methods with one score column (random, dsir) rank the same either way."))
    overwrite: bool = shared("overwrite")


def method_options(config: BaselineConfig) -> dict[str, Any]:
    if config.method not in BASELINES:
        raise UserError(f"unknown baseline {config.method!r}; valid baselines are {', '.join(sorted(BASELINES))}")
    fields = {f.name for f in dataclasses.fields(BASELINES[config.method].Config)}
    opts = {}
    if "seed" in fields:
        opts["seed"] = config.seed
    if "model" in fields:
        if not config.model:
            raise UserError(f"baseline {config.method} needs --model")
        opts["model"] = config.model
        if config.adapter:
            opts["adapter"] = config.adapter
    if "max_seq_length" in fields:  # embed at the training truncation, as LESS's gradients do
        opts["max_seq_length"] = config.max_seq_length
    if "template" in fields:
        opts["template"] = config.template
    for name in ("dtype", "device"):  # the embedding model's (rds, rds_plus)
        if name in fields:
            opts[name] = getattr(config, name)
    opts.update(config.options)
    baseline_config(config.method, **opts)  # validate early, naming any bad option
    return opts


def run_baseline(config: BaselineConfig) -> dict:
    from ..configs import validate
    from ..data.targets import build_target_examples
    validate(config)
    if not config.data or not config.output_dir:
        raise UserError("baseline needs --data and --output-dir")
    opts = method_options(config)
    if config.method != "random" and not config.task:
        raise UserError(f"baseline {config.method} needs a target --task")
    settings = stage_settings(config, config.data)
    with stage_dir(config.output_dir, f"baseline:{config.method}", settings,
                   overwrite=config.overwrite, config=dataclasses.asdict(config)) as part:
        if part is None:
            return update_exports(config.output_dir, config.export)
        examples, report = load_examples(config.data, lenient=config.lenient,
                                         max_per_file=config.max_examples or None)
        pool, unscored = split_trainable(examples, config)
        targets = build_target_examples(config.task, config.data_dir or None) if config.task else []
        start = time.perf_counter()
        per_subtask, names = score_per_subtask(make_baseline(config.method, **opts), pool, targets)
        seconds = time.perf_counter() - start
        return write_selection(part, pool, None, config, config.method, n_pool=len(examples),
                               unscored=unscored, per_subtask=per_subtask, subtasks=names,
                               subtask_rule=config.subtask_rule, target_examples=targets,
                               extra={"seconds": seconds, "options": opts,
                                      "n_malformed_skipped": report.total_skipped})


def score_per_subtask(selector, pool, targets) -> tuple[np.ndarray, list[str]]:
    """``[n_pool, K]`` scores and subtask names; methods without per-subtask scores (random, DSIR:
    one target distribution) give one column ``all``."""
    if hasattr(selector, "score_per_subtask") and pool:
        per_subtask, names = selector.score_per_subtask(pool, targets)
        finish(selector.name, per_subtask.max(axis=1) if per_subtask.size else
               np.zeros(len(pool)), len(pool))  # refuses non-finite scores
        return np.asarray(per_subtask, dtype=np.float64), names
    return selector.score(pool, targets)[:, None], ["all"]


def split_trainable(examples, config: BaselineConfig):
    """(examples with a completion token after truncation, [(left-out example, reason)])."""
    name = config.tokenizer or config.model
    if not name:
        return examples, []
    from ..data.encode import encode_all, split_by_completion
    from ..modeling import load_tokenizer
    encoded, _ = encode_all(examples, load_tokenizer(name), config.max_seq_length, config.template)
    keep, dropped = split_by_completion(encoded)
    reason = f"no completion token after truncation to {config.max_seq_length}"
    return [examples[i] for i in keep], [(examples[i], reason) for i in dropped]
