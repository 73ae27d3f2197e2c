"""The ``predict`` stage: LESS-quality selection with real gradients for only part of the pool.

Layout of the run folder (``output_dir``)::

    targets/              target features (plain gradients), unless an existing ``targets`` is given
    features/             cheap features of every pool example (cached; see features.py)
    forward/              forward-pass features under the base model and each checkpoint (forward.py)
    sample-<hash>/        gradient store of the labelled sample (the datastore builder on its rows)
    cascade-<hash>/       gradient store of the cascade's candidates outside the sample
    timings.json          measured seconds of each of those, kept when a later run reuses them
    selection/            top_p*.jsonl, scores.csv, selection.json (as every method writes them),
                          prediction.json (quality out of fold, single features, costs),
                          per_subtask_scores.npy (shown scores [n, K]) and real_scored.npy (bool [n])

Steps: draw the sample; real LESS scores for it (datastore builder, targets, ``compute_scores``);
fit the predictors on the sample and measure them out of fold; predict every other example; select
in ``predicted`` or ``cascade`` mode (modes.py) with the same subtask rule as LESS.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from ..configs import option, shared, to_dict, validate
from ..data import Example, load_examples
from ..errors import UserError
from ..datastore.build import DatastoreConfig, FeatureConfig, TargetsConfig, build_store, \
    examples_fingerprint, resolve_checkpoints, run_targets
from ..selection import BudgetConfig, write_selection
from ..data.hf_datasets import resolve_source, source_sha256
from ..export import update_exports
from ..stage_folder import RUN_ONLY, stage_dir, stage_status, write_atomic
from ..subtask_rules import get_rule
from . import forward, modes
from .features import PoolFeatures, Reducer, cached_features, design_matrix, n_design_columns
from .models import SubtaskPredictor
from .report import costs, evaluate_predictors, known_predictors
from .sampling import Stratify, draw_sample

log = logging.getLogger(__name__)

PREDICT_BLOCK = 4096  # pool examples per block of predictions (memory: block x K design rows)


@dataclass
class PredictConfig(DatastoreConfig, BudgetConfig):
    """Influence prediction: real LESS scores for a seeded sample of the pool, a predictor fitted on
    cheap features (RDS+ embedding and cosine, BM25, lengths, source), then top-k by prediction
    (``predicted``) or real gradients for the top c x k predicted candidates only (``cascade``)."""

    output_dir: str = option("", help="Run folder (stores, feature cache, selection/ with prediction.json).")
    task: str = option("", help="Target: bbh, mmlu, tydiqa (need --data-dir) or a file of target examples.")
    data_dir: str = shared("data_dir")
    targets: str = option("", help="A finished target-features folder to reuse (else built in the run folder).")
    targets_max_seq_length: int = option(0, help="Truncation of the target examples (0: --max-seq-length).")
    mode: Literal["predicted", "cascade"] = option("cascade", help=(
        "predicted: top-k by predicted score (sampled examples keep real scores); cascade: real "
        "gradients for the top c x k predicted candidates, then the exact top-k among them."))
    sample_fraction: float = option(0.1, help="Share of the pool labelled with real LESS scores, in (0, 1).")
    stratify: Stratify = option("none", help="Stratify the sample by source file or the records' dataset field.")
    seed: int = shared("seed")
    cascade_factor: float = option(3.0, help="c: the cascade scores the top c x k predicted candidates (>= 1).")
    predictor: Literal["auto", "ridge", "hgb"] = option("auto", help=(
        "ridge (linear), hgb (gradient boosting), or auto: the better out of fold."))
    label_transform: Literal["zscore", "rank"] = option("zscore", help=(
        "Per-subtask label scale the models fit: standardized scores or ranks."))
    folds: int = option(5, help="Folds of the out-of-fold measurement on the sample (>= 2).")
    pca_dims: int = option(32, help="PCA components of the RDS+ embedding used as features (0: none).")
    subtask_rule: Literal["max", "balanced"] = option("max", help=(
        "How per-subtask scores become one ranking: max (LESS) or balanced (round-robin)."))
    min_sample: int = option(30, help="Refuse samples with fewer labelled examples than this.")
    forward_features: bool = option(True, help=(
        "Also use forward-pass features (loss, logit-gradient norm, entropy under the base model and "
        "each checkpoint): one forward pass per example and model, no backward."))
    dim: int = shared("dim")


def check_config(config: PredictConfig) -> None:
    validate(config)
    if not (config.data and config.model and config.checkpoints and config.output_dir):
        raise UserError("predict needs --data, --model, --checkpoints and --output-dir")
    if not (config.task or config.targets):
        raise UserError("predict needs a target --task (and --targets to reuse its features)")
    if not config.task:
        raise UserError("predict needs --task even with --targets: the features compare the pool "
                        "with the target examples' text")
    if config.cascade_factor < 1:
        raise UserError(f"--cascade-factor must be >= 1, got {config.cascade_factor}")
    if config.folds < 2:
        raise UserError(f"--folds must be >= 2, got {config.folds}")
    if config.pca_dims < 0 or config.min_sample < 1:
        raise UserError("--pca-dims must be >= 0 and --min-sample >= 1")
    if config.num_shards > 1:
        raise UserError("predict builds its stores in one process; leave --num-shards at 0 or 1")


def check_sample_size(n_sample: int, n_features: int, n_subtasks: int, config: PredictConfig) -> None:
    """A sample too small to fit and measure the predictor is refused before any gradient is paid."""
    need = max(config.min_sample, n_features + 1, 2 * config.folds)
    if n_sample < need:
        raise UserError(
            f"the sample has {n_sample} example(s), too few for {n_features} features and "
            f"{n_subtasks} subtask(s): need at least {need} (max of --min-sample {config.min_sample}, "
            f"features + 1, 2 x --folds); raise --sample-fraction or lower --pca-dims")


class Timings:
    """Seconds of each expensive step, kept in the run folder so a reused store keeps its cost."""

    def __init__(self, path: Path):
        self.path = path
        self.data = json.loads(path.read_text()) if path.is_file() else {}

    def record(self, key: str, seconds: float, reused: bool) -> float:
        if not reused or key not in self.data:
            self.data[key] = seconds
            write_atomic(self.path, json.dumps(self.data, indent=2))
        return self.data[key]


def _feature_config(config: PredictConfig, output_dir: Path, **overrides) -> FeatureConfig:
    names = {f.name for f in dataclasses.fields(FeatureConfig)}
    values = {k: v for k, v in to_dict(config).items() if k in names}
    values.update(output_dir=str(output_dir), overwrite=False, **overrides)
    return FeatureConfig(**values)


def real_scores(config: PredictConfig, examples: list[Example], folder_prefix: str, targets: Path,
                timings: Timings) -> tuple[np.ndarray, list[str], int, float]:
    """(real per-subtask LESS scores [len(examples), K], subtasks, checkpoints, store seconds) via
    the datastore builder and ``compute_scores``, the same code as full LESS.

    ``run_predict(scorer=...)`` takes any function of this signature instead (the benchmark looks
    the scores up in a full LESS store it has already built, so many seeds cost no gradients)."""
    from ..datastore.store import Datastore
    from ..scoring import compute_scores
    out = Path(config.output_dir) / f"{folder_prefix}-{examples_fingerprint(examples)[:12]}"
    reused = (out / "stage.json").is_file()
    start = time.perf_counter()
    store = build_store(_feature_config(config, out), examples, gradient_type=config.gradient_type,
                        adam_variant=config.adam_variant, mean_lrs=config.mean_lrs or None)
    timings.record(out.name, time.perf_counter() - start, reused)
    rows = Datastore(store).index()
    if [(r["id"], r["line"]) for r in rows] != [(e.id, e.line) for e in examples]:
        raise RuntimeError(f"{store}: rows do not match the examples given (an example lost its "
                           "completion token although the pool check kept it)")
    scores = compute_scores(store, targets, config.dim or None)
    return (scores.per_subtask.astype(np.float64), scores.subtasks, len(Datastore(store).checkpoints),
            timings.data[out.name])


def trainable_pool(config: PredictConfig):
    """(examples with a completion token, [(left-out example, reason)], token counts [n, 2], size,
    their encodings)."""
    from ..data.encode import encode_all, split_by_completion
    from ..modeling import load_tokenizer
    examples, report = load_examples(config.data, lenient=config.lenient,
                                     max_per_file=config.max_examples or None)
    encoded, _ = encode_all(examples, load_tokenizer(config.model), config.max_seq_length, config.template)
    keep, dropped = split_by_completion(encoded)
    reason = f"no completion token after truncation to {config.max_seq_length}"
    left = [(examples[i], reason) for i in dropped]
    counts = np.asarray([[len(encoded[i].input_ids) - encoded[i].n_completion_tokens,
                          encoded[i].n_completion_tokens] for i in keep], np.int64).reshape(-1, 2)
    if report.total_skipped:
        log.warning("predict: %d malformed record(s) skipped (--lenient)", report.total_skipped)
    return [examples[i] for i in keep], left, counts, len(examples), [encoded[i] for i in keep]


def target_store(config: PredictConfig, timings: Timings) -> Path:
    if config.targets:
        return Path(config.targets)
    out = Path(config.output_dir) / "targets"
    names = {f.name for f in dataclasses.fields(TargetsConfig)}
    values = {k: v for k, v in to_dict(config).items() if k in names}
    values.update(output_dir=str(out), overwrite=False, datastore="",
                  max_seq_length=config.targets_max_seq_length or config.max_seq_length)
    reused = (out / "stage.json").is_file()
    start = time.perf_counter()
    path = run_targets(TargetsConfig(**values))
    timings.record("targets", time.perf_counter() - start, reused)
    return path


def pool_features(config: PredictConfig, pool: list[Example], counts: np.ndarray,
                  targets: list[Example]) -> tuple[PoolFeatures, bool]:
    from ..baselines.rds import RDSConfig
    rds = RDSConfig(model=config.model, template=config.template, dtype=config.dtype, device=config.device,
                    max_seq_length=max(config.max_seq_length, config.targets_max_seq_length),
                    max_tokens_per_batch=config.max_tokens_per_batch,
                    max_batch_size=config.max_batch_size)
    settings = {"rds": {k: v for k, v in to_dict(rds).items() if k != "device"}, "pool": examples_fingerprint(pool),
                "targets": examples_fingerprint(targets), "counts_max_seq_length": config.max_seq_length}
    return cached_features(Path(config.output_dir) / "features", settings, pool, targets, counts, rds)


def pool_forward(config: PredictConfig, pool: list[Example], encoded: list) -> tuple[np.ndarray, float, bool]:
    """Forward-pass features of the pool (cached in ``forward/``): (array, seconds, reused)."""
    from ..modeling import load_tokenizer, model_identity
    from ..stage_folder import file_sha256
    ckpts = [str(p.resolve()) for p in resolve_checkpoints(config.checkpoints)]
    weights = [Path(c) / "adapter_model.safetensors" for c in ckpts]
    settings = {"model": model_identity(config.model), "checkpoints": ckpts, "dtype": config.dtype,
                "adapters_sha256": [file_sha256(w) if w.is_file() else None for w in weights],
                "pool": examples_fingerprint(pool), "max_seq_length": config.max_seq_length,
                "template": config.template, "stats": list(forward.STATS)}
    tok = load_tokenizer(config.model)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    return forward.cached_forward(Path(config.output_dir) / "forward", settings, lambda: forward.forward_features(
        config.model, ckpts, encoded, pad, config.dtype, config.max_tokens_per_batch, config.max_batch_size,
        config.device))


def predict_pool(model: SubtaskPredictor, feats: PoolFeatures, reducer: Reducer) -> np.ndarray:
    n, k = feats.cosine.shape
    out = np.zeros((n, k), np.float64)
    for lo in range(0, n, PREDICT_BLOCK):
        idx = np.arange(lo, min(n, lo + PREDICT_BLOCK))
        out[idx] = model.predict(design_matrix(feats.rows(idx), reducer))
    return out


def selection_settings(config: PredictConfig) -> dict:
    settings = {k: v for k, v in to_dict(config).items() if k not in RUN_ONLY}
    if not settings.get("export"):  # recorded only when asked for: older selections still match
        settings.pop("export", None)
    settings["data_sha256"] = [source_sha256(f) for f in config.data]
    return settings


def run_predict(config: PredictConfig, scorer=None) -> dict:
    """The ``predict`` stage; returns the selection report (with ``prediction``).

    The selection folder is ``<output_dir>/selection`` (what ``compare`` trains on). ``scorer``
    (Python only) replaces :func:`real_scores`, e.g. to read real scores from an existing full
    store; its ``description`` attribute is recorded in the selection's settings."""
    check_config(config)
    config = dataclasses.replace(config, data=[resolve_source(f) for f in config.data])
    out = Path(config.output_dir)
    sel_dir = out / "selection"
    settings = selection_settings(config)
    if scorer is not None:
        settings["scores_from"] = str(getattr(scorer, "description", "a custom scorer"))
    try:  # the selection is derived: same settings skip, other settings rerun (stores are reused)
        changed = config.overwrite or stage_status(sel_dir, settings) != "done"
    except UserError:
        changed = True
    out.mkdir(parents=True, exist_ok=True)
    with stage_dir(sel_dir, "predict", settings, overwrite=changed) as part:
        if part is None:
            return update_exports(sel_dir, config.export)
        return _run(config, part, scorer or real_scores)


def _run(config: PredictConfig, part: Path, scorer=real_scores) -> dict:
    from ..datastore.store import Datastore
    from ..data.targets import build_target_examples
    out = Path(config.output_dir)
    timings = Timings(out / "timings.json")
    rule = get_rule(config.subtask_rule)
    pool, unscored, counts, n_all, encoded = trainable_pool(config)
    k = config.n_select(n_all)
    if not pool:
        raise UserError("no pool example keeps a completion token at --max-seq-length; nothing to select")
    targets = target_store(config, timings)
    subtasks = sorted({str(r["subtask"]) for r in Datastore(targets).index()})
    target_examples = build_target_examples(config.task, config.data_dir or None)
    feats, reused = pool_features(config, pool, counts, target_examples)
    seconds = {"features": timings.record("features", feats.seconds, reused)}
    feats = feats.columns(subtasks)
    reducer = Reducer(config.pca_dims, config.seed).fit(feats.embedding)
    sample = draw_sample(pool, config.sample_fraction, config.seed, config.stratify)
    n_forward = 2 * len(forward.STATS) * (1 + len(resolve_checkpoints(config.checkpoints)))
    check_sample_size(len(sample), n_design_columns(feats, reducer) + n_forward * config.forward_features,
                      len(subtasks), config)
    if config.forward_features:   # after the refusal: a refused run pays no forward pass either
        feats.forward, secs, reused = pool_forward(config, pool, encoded)
        seconds["forward_features"] = timings.record("forward_features", secs, reused)

    y, got, n_ckpt, seconds["sample_gradients"] = scorer(config, [pool[i] for i in sample], "sample",
                                                         targets, timings)
    if got != subtasks:
        raise RuntimeError(f"scored subtasks {got} differ from the targets' {subtasks}")
    seconds["targets"] = timings.data.get("targets", 0.0)

    start = time.perf_counter()
    quality, combined = fit_and_predict(config, feats, reducer, sample, y, rule, subtasks)
    seconds["fitting"] = time.perf_counter() - start
    if config.mode == "cascade":
        order, shown, real_rows, cand = run_cascade(config, pool, combined, sample, y, k, rule,
                                                    targets, timings, seconds, scorer)
    else:
        real_rows, cand = sample, np.zeros(0, np.int64)
        order, shown = rule.rank(combined), combined
    n_targets = Datastore(targets).n_rows
    prediction = {
        "mode": config.mode, "subtask_rule": rule.name, "n_pool": n_all, "n_scorable": len(pool),
        "n_sample": int(len(sample)), "n_cascade_scored": int(len(cand)), "budget": k,
        "subtasks": subtasks, "sample_fraction": config.sample_fraction, "stratify": config.stratify,
        "seed": config.seed, "quality_out_of_fold": quality,
        "cost": costs(len(pool), len(sample), len(cand), n_ckpt, n_targets, seconds,
                      n_forward_models=(1 + n_ckpt) if config.forward_features else 0),
    }
    return _write(part, config, pool, unscored, n_all, order, shown, real_rows, subtasks, rule, prediction)


def fit_and_predict(config: PredictConfig, feats: PoolFeatures, reducer: Reducer, sample: np.ndarray,
                    y: np.ndarray, rule, subtasks: list[str]) -> tuple[dict, np.ndarray]:
    """Measure the predictors out of fold, fit the chosen one on the whole sample, and predict the
    pool: (quality report, per-subtask scores [n, K] with the sample's real ones in place)."""
    x_sample = design_matrix(feats.rows(sample), reducer)
    names = known_predictors() if config.predictor == "auto" else [config.predictor]
    quality = evaluate_predictors(names, x_sample, y, feats.rows(sample), rule, subtasks,
                                  folds=config.folds, transform=config.label_transform,
                                  seed=config.seed, top_fraction=config.percentage,
                                  cascade_factor=config.cascade_factor)
    model = SubtaskPredictor(quality["chosen"], config.label_transform, config.seed).fit(x_sample, y)
    return quality, modes.combine(predict_pool(model, feats, reducer), sample, y)


def run_cascade(config: PredictConfig, pool: list[Example], combined: np.ndarray, sample: np.ndarray,
                y: np.ndarray, k: int, rule, targets: Path, timings: Timings, seconds: dict,
                scorer=real_scores):
    """Real scores for the candidates outside the sample; (order, shown scores, real rows, candidates)."""
    cand = modes.cascade_candidates(combined, sample, k, config.cascade_factor, rule)
    yc = np.zeros((0, y.shape[1]))
    if len(cand):
        yc, _, _, seconds["cascade_gradients"] = scorer(config, [pool[i] for i in cand], "cascade",
                                                        targets, timings)
    real_rows = np.concatenate([sample, cand])
    order, shown = modes.cascade_order(combined, real_rows, np.concatenate([y, yc]), rule)
    return order, shown, real_rows, cand


def _write(part: Path, config: PredictConfig, pool: list[Example], unscored, n_all: int,
           order: np.ndarray, shown: np.ndarray, real_rows: np.ndarray, subtasks: list[str], rule,
           prediction: dict) -> dict:
    """The selection folder in the common format, plus prediction.json and the score arrays."""
    real_mask = np.zeros(len(pool), bool)
    real_mask[real_rows] = True
    np.save(part / "per_subtask_scores.npy", shown.astype(np.float32))
    np.save(part / "real_scored.npy", real_mask)
    write_atomic(part / "prediction.json", json.dumps(prediction, indent=2))
    q = prediction["quality_out_of_fold"]
    extra = {"prediction": {"mode": prediction["mode"], "chosen_predictor": q["chosen"],
                            "verdict": q["verdict"], "n_real_scored": int(real_mask.sum()),
                            "cost": prediction["cost"]}}
    # the score column is the shown score (real or predicted); the cascade's order ranks the real
    # scores first, so it is passed as is
    return write_selection(part, pool, None, config, f"predict:{prediction['mode']}", n_pool=n_all,
                           unscored=unscored, extra=extra, per_subtask=shown, subtasks=subtasks,
                           subtask_rule=rule.name, order=order)
