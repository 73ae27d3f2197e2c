"""Influence prediction against full LESS: how much of LESS's top 5% ``predicted`` and ``cascade``
recover, the target-set loss after training on each selection, and at what share of LESS's cost.

For each workload (``demo``: the built-in synthetic pool and its target; ``real``: a pool of cot,
t0 and alpaca_gpt4 examples from the data folder with the BBH target set), nothing downloaded:

1. a tiny Llama and tokenizer built offline from the pool (``less-select tiny-model``), and a LoRA
   warmup on 5% of the pool (1 epoch, so 1 checkpoint);
2. full LESS on the whole pool: datastore, targets, scores (timed; this is the truth);
3. RDS+ and BM25 alone (the baselines' own selectors) and random, for reference;
4. ``predict`` at each sample fraction, mode and seed, **replayed**: the stage runs as it is (sample,
   features, forward features, predictors, cascade, selection writer) but its ``scorer`` reads each
   requested example's real scores from the full LESS run instead of recomputing its gradients
   (the same numbers: checked in 6 below). Gradient passes are the exact counts the stage would pay;
   its gradient seconds are full LESS's measured seconds per row times those rows (an estimate,
   marked so); features, forward features and fitting seconds are measured;
5. LoRA training on each selection (the replayed ones, and full LESS's top k with each seed) and the
   loss on the target set (mean over subtasks of the per-example completion loss);
6. ``--end-to-end-seeds``: the same runs with real gradients (measured wall seconds; the largest
   difference between their real scores and full LESS's on the same examples is recorded).

Recall = |selected ∩ full LESS's top k| / k at k = 5% of the pool. Writes
``benchmarks/results/predict.json`` (rewritten after every step, ``complete: false`` until the end)
and prints tables.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, loadavg, machine_info, print_table, write_result  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("cot", "t0", "alpaca_gpt4")


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def real_pool(data_dir: Path, work: Path, per_source: int, max_chars: int) -> list[str]:
    """``3 x per_source`` records, the first of each source whose text is at most ``max_chars``
    long (so a CPU run fits them in a short ``max_seq_length``); a source with fewer such records
    (alpaca_gpt4) gives all it has and the others share its shortfall."""
    short = {}
    for src in SOURCES:
        path = data_dir / "train" / "processed" / src / f"{src}_data.jsonl"
        short[src] = []
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                rec = json.loads(line)
                if sum(len(m.get("content", "")) for m in rec.get("messages", [])) <= max_chars:
                    short[src].append(line)
                if len(short[src]) == 2 * per_source:
                    break
    take = {s: min(len(v), per_source) for s, v in short.items()}
    rest = [s for s in SOURCES if len(short[s]) > per_source]
    missing = 3 * per_source - sum(take.values())
    for i, s in enumerate(rest):
        take[s] = min(len(short[s]), take[s] + missing // len(rest) + (i < missing % len(rest)))
    files = []
    for src in SOURCES:
        out = work / "pool" / f"{src}.jsonl"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("".join(short[src][:take[src]]), encoding="utf-8")
        files.append(str(out))
    return files


def setup_model(work: Path, files: list[str], args) -> tuple[Path, Path]:
    from less_select.demo.tiny_model import TinyModelConfig, run_tiny_model
    import dataclasses
    from less_select.errors import UserError
    from less_select.training.warmup import WarmupConfig, run_warmup
    model = work / "model"
    if not (model / "config.json").is_file():
        run_tiny_model(TinyModelConfig(data=files, output_dir=str(model), pretrain_steps=args.pretrain_steps,
                                       max_examples=1000, vocab_size=args.vocab, hidden_size=args.hidden,
                                       intermediate_size=2 * args.hidden,
                                       pretrain_seq_length=args.max_seq_length))
    warm = work / "warmup"
    cfg = WarmupConfig(model=str(model), pool_files=files, output_dir=str(warm), percentage=0.05,
                       epochs=args.warmup_epochs, lora_r=8, lora_alpha=32, lora_dropout=0.0, effective_batch_size=8,
                       per_device_batch_size=4, learning_rate=1e-3, max_seq_length=args.max_seq_length,
                       dtype="float32", logging_steps=10, seed=0)
    try:
        run_warmup(cfg)
    except UserError:   # made by an older version with other recorded settings: train it again
        log(f"  {warm}: stale, trained again")
        run_warmup(dataclasses.replace(cfg, overwrite=True))
    return model, warm


def feature_options(model: Path, warm: Path, args) -> dict:
    return dict(model=str(model), checkpoints=[str(warm)], projector="sparse", dims=[args.dim],
                max_seq_length=args.max_seq_length, dtype="float32", max_tokens_per_batch=4096)


def full_less(work: Path, files: list[str], task: str, data_dir: str, opts: dict, args) -> dict:
    """Full LESS on the whole pool (timed): per-subtask scores, its top k, the store rows."""
    from less_select.datastore.store import Datastore
    from less_select.datastore.build import DatastoreConfig, TargetsConfig, run_datastore, run_targets
    from less_select.data import load_examples
    from less_select.scoring import compute_scores
    from less_select.subtask_rules import get_rule
    store, t_store = timed(lambda: run_datastore(DatastoreConfig(data=files, output_dir=str(work / "full_store"), **opts)))
    tgt, t_tgt = timed(lambda: run_targets(TargetsConfig(
        task=task, data_dir=data_dir, output_dir=str(work / "full_targets"),
        **{**opts, "max_seq_length": args.targets_max_seq_length})))
    scores, t_score = timed(lambda: compute_scores(store, tgt))
    examples, _ = load_examples(files)
    by_key = {key(e): e for e in examples}
    rows = [by_key[(Path(r["file"]).name, int(r["line"]))] for r in Datastore(store).index()]
    n_all = len(examples)
    k = int(np.floor(args.percentage * n_all + 1e-9))
    top = get_rule("max").rank(scores.per_subtask)[:k]
    top_file = work / "full_top.jsonl"
    top_file.write_text("".join(json.dumps(rows[i].raw, ensure_ascii=False) + "\n" for i in top), encoding="utf-8")
    n_ckpt = len(Datastore(store).checkpoints)
    return {"store": store, "targets": tgt, "per_subtask": scores.per_subtask, "subtasks": scores.subtasks,
            "rows": rows, "n_all": n_all, "k": k, "top": {key(rows[i]) for i in top}, "top_file": top_file,
            "seconds": {"datastore": t_store, "targets": t_tgt, "scoring": t_score},
            "n_ckpt": n_ckpt, "passes": Datastore(store).n_rows * n_ckpt}


def key(ex) -> tuple[str, int]:
    return Path(ex.source).name, int(ex.line)


def baselines(full: dict, task: str, data_dir: str, model: Path, args) -> dict:
    """Recall of LESS's top k by RDS+ alone, BM25 alone (the baseline selectors) and random."""
    from less_select.baselines.bm25 import BM25Selector
    from less_select.baselines.rds import RDSConfig, RDSPlusSelector
    from less_select.data.targets import build_target_examples
    from less_select.selection import rank_order
    targets = build_target_examples(task, data_dir or None)
    rows, k = full["rows"], full["k"]
    out = {}
    rds = RDSPlusSelector(RDSConfig(model=str(model), max_seq_length=args.targets_max_seq_length,
                                    dtype="float32", max_tokens_per_batch=4096))
    for name, fn in (("rds_plus", lambda: rds.score(rows, targets)),
                     ("bm25", lambda: BM25Selector().score(rows, targets))):
        scores, secs = timed(fn)
        chosen = {key(rows[i]) for i in rank_order(scores)[:k]}
        out[name] = {"recall": len(chosen & full["top"]) / k, "seconds": secs}
    rng = np.random.default_rng(0)
    rand = [len({key(rows[i]) for i in rng.choice(len(rows), k, replace=False)} & full["top"]) / k
            for _ in range(100)]
    out["random"] = {"recall": float(np.mean(rand)), "seconds": 0.0, "repeats": 100}
    return out


class Replay:
    """predict's ``scorer`` for the benchmark: each requested example's real LESS scores read from
    the full run (the stage computes exactly these: see ``sample_check``), its gradient seconds
    estimated as full LESS's measured datastore seconds per row times the rows."""

    def __init__(self, full: dict):
        self.description = f"replayed from the full LESS store {full['store']}"
        self.index = {key(r): i for i, r in enumerate(full["rows"])}
        self.full = full
        self.per_row = full["seconds"]["datastore"] / len(full["rows"])

    def __call__(self, config, examples, prefix, targets, timings):
        idx = [self.index[key(e)] for e in examples]
        f = self.full
        return f["per_subtask"][idx].astype(np.float64), list(f["subtasks"]), f["n_ckpt"], self.per_row * len(idx)


def selected_keys(sel_dir: Path) -> set:
    with open(sel_dir / "scores.csv", encoding="utf-8") as fh:
        return {(Path(r["file"]).name, int(r["line"])) for r in csv.DictReader(fh) if r["selected"] == "1"}


def one_run(run: Path, cfg: dict, mode: str, fraction: float, seed: int, full: dict, scorer) -> dict:
    """One predict run (replayed or real); its recall, costs and out-of-fold quality."""
    import shutil
    from less_select.predict import PredictConfig, run_predict
    load = loadavg()
    _, elapsed = timed(lambda: run_predict(PredictConfig(mode=mode, sample_fraction=fraction, seed=seed,
                                                         output_dir=str(run), **cfg), scorer=scorer))
    pred = json.loads((run / "selection" / "prediction.json").read_text())
    cost, q = pred["cost"], pred["quality_out_of_fold"]
    # both sides pay the targets; every other second is the run's own (cached features keep the
    # seconds they were measured with)
    wall = sum(cost["seconds"].values()) + full["seconds"]["targets"]
    keep = run / f"selection_{mode}"   # the next mode rewrites selection/
    shutil.rmtree(keep, ignore_errors=True)
    shutil.copytree(run / "selection", keep)
    return {
        "mode": mode, "sample_fraction": fraction, "seed": seed, "loadavg": load,
        "replayed": scorer is not None,
        "recall": len(selected_keys(keep) & full["top"]) / full["k"],
        "pool_gradient_passes": cost["pool_gradient_passes"],
        "pass_fraction": cost["pool_gradient_passes"] / full["passes"],
        "pool_forward_passes": cost.get("pool_forward_passes", 0),
        "seconds": cost["seconds"], "wall_seconds": wall,
        "wall_fraction": wall / sum(full["seconds"].values()),
        "gradient_seconds_estimated": scorer is not None, "elapsed_seconds": elapsed,
        "chosen_predictor": q["chosen"], "oof_spearman": q["predictors"][q["chosen"]]["spearman"],
        "oof_kendall": q["predictors"][q["chosen"]]["kendall"],
        "oof_best_single": q["best_single_feature"],
        "oof_best_single_spearman": q["single_features"][q["best_single_feature"]]["spearman"],
        "better_than_best_single_feature": q["better_than_best_single_feature"],
        "sample_score_max_abs_diff": None if scorer is not None else sample_check(keep, full),
        "selection": str(keep),
    }


def predict_runs(work: Path, files: list[str], task: str, data_dir: str, opts: dict, full: dict,
                 args, seeds, fractions, scorer, on_run=lambda runs: None) -> list[dict]:
    """Seed by seed (each seed at every fraction and mode), so a cut-short benchmark still has whole
    seeds; ``on_run`` gets the results so far after each run (the JSON is rewritten each time)."""
    out = []
    runs = work / ("runs" if scorer is not None else "e2e")
    cfg = dict(data=files, task=task, data_dir=data_dir, targets=str(full["targets"]),
               percentage=args.percentage, targets_max_seq_length=args.targets_max_seq_length,
               predictor=args.predictor, folds=args.folds, forward_features=args.forward_features, **opts)
    for seed in seeds:
        for fraction in fractions:
            run = runs / f"f{fraction:g}_s{seed}"
            share_caches(work, run)
            for mode in ("predicted", "cascade"):
                out.append(one_run(run, cfg, mode, fraction, seed, full, scorer))
                keep_caches(work, run)
                r = out[-1]
                log(f"  {'replay' if scorer else 'real':6s} {mode:9s} f={fraction:g} seed={seed}: recall "
                    f"{r['recall']:.3f}, passes {r['pass_fraction']:.3f}, wall {r['wall_fraction']:.3f}, "
                    f"{r['chosen_predictor']} oof rho {r['oof_spearman']:.3f}")
                on_run(out)
    return out


def share_caches(work: Path, run: Path) -> None:
    """Copy finished feature caches (they depend on neither the seed nor the fraction) from the
    workload's cache folder; their measured seconds travel with them into the run's cost."""
    import shutil
    for name in ("features", "forward"):
        cache, target = work / "caches" / name, run / name
        if (cache / "stage.json").is_file() and not (target / "stage.json").is_file():
            run.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(cache, target)


def keep_caches(work: Path, run: Path) -> None:
    import shutil
    for name in ("features", "forward"):
        cache = work / "caches" / name
        if (run / name / "stage.json").is_file() and not (cache / "stage.json").is_file():
            shutil.rmtree(cache, ignore_errors=True)
            shutil.copytree(run / name, cache)


def sample_check(sel: Path, full: dict) -> float:
    """Largest difference between a real run's real scores and full LESS's on the same examples."""
    real = np.load(sel / "real_scored.npy")
    assert len(real) == len(full["per_subtask"]), "predict's pool rows differ from the full store's"
    ours = np.load(sel / "per_subtask_scores.npy")
    return float(np.abs(ours[real] - full["per_subtask"][real]).max())


def train_and_loss(model: Path, train_file: Path, out: Path, targets: list, seed: int, args) -> dict:
    """LoRA-train the base model on one selection; the target set's loss after (cached in out)."""
    from less_select.evaluation.loss import target_loss
    from less_select.modeling import load_model_with_adapter, load_tokenizer
    from less_select.training.finetune import FinetuneConfig, run_finetune
    done = out / "target_loss.json"
    if done.is_file():
        return json.loads(done.read_text())
    start = time.perf_counter()
    adapter = run_finetune(FinetuneConfig(
        model=str(model), train_files=[str(train_file)], output_dir=str(out / "adapter"), epochs=args.train_epochs,
        lora_r=8, lora_alpha=32, lora_dropout=0.0, learning_rate=1e-3, effective_batch_size=8,
        per_device_batch_size=8, max_seq_length=args.max_seq_length, dtype="float32", seed=seed,
        logging_steps=1000, overwrite=True))
    res = target_loss(load_model_with_adapter(str(model), str(adapter), "float32"), load_tokenizer(str(model)),
                      targets, args.targets_max_seq_length, 4096)
    result = {"loss": res["average"]["loss"], "seconds": time.perf_counter() - start}
    out.mkdir(parents=True, exist_ok=True)
    done.write_text(json.dumps(result))
    return result


def training(work: Path, model: Path, full: dict, runs: list[dict], task: str, data_dir: str, args,
             on_run=lambda q: None) -> dict:
    """Target-set loss after training on full LESS's top k (each seed) and on every replayed
    selection (its own seed), and of the untrained model."""
    from less_select.data.targets import build_target_examples
    from less_select.evaluation.loss import target_loss
    from less_select.modeling import load_model, load_tokenizer
    targets = build_target_examples(task, data_dir or None)
    base = target_loss(load_model(str(model), "float32"), load_tokenizer(str(model)), targets,
                       args.targets_max_seq_length, 4096)["average"]["loss"]
    q = {"base_model_loss": base, "train_epochs": args.train_epochs, "full_less": {}}
    for seed in args.seeds:
        q["full_less"][seed] = train_and_loss(model, full["top_file"], work / "train" / f"full_s{seed}",
                                              targets, seed, args)["loss"]
        on_run(q)
    for r in runs:
        sel = Path(r["selection"])
        r["target_loss"] = train_and_loss(model, next(sel.glob("top_*.jsonl")), sel.parent / f"train_{r['mode']}",
                                          targets, r["seed"], args)["loss"]
        log(f"  loss after training: {r['mode']} f={r['sample_fraction']:g} seed={r['seed']}: "
            f"{r['target_loss']:.4f} (full LESS {np.mean(list(q['full_less'].values())):.4f})")
        on_run(q)
    return q


def stats(values) -> dict:
    v = np.asarray([x for x in values if x is not None], np.float64)
    if not len(v):
        return {"n": 0}
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
            "min": float(v.min()), "max": float(v.max()), "n": int(len(v))}


def summarize(runs: list[dict], base: dict, quality: dict | None) -> list[dict]:
    rows = []
    full_loss = list((quality or {}).get("full_less", {}).values())
    for mode in ("predicted", "cascade"):
        for f in sorted({r["sample_fraction"] for r in runs}):
            rs = [r for r in runs if r["mode"] == mode and r["sample_fraction"] == f]
            if not rs:
                continue
            rec = stats([r["recall"] for r in rs])
            rows.append({"mode": mode, "sample_fraction": f, "seeds": len(rs), "recall": rec,
                         "pass_fraction": stats([r["pass_fraction"] for r in rs]),
                         "wall_fraction": stats([r["wall_fraction"] for r in rs]),
                         "forward_passes": rs[0]["pool_forward_passes"],
                         "oof_spearman": stats([r["oof_spearman"] for r in rs]),
                         "predictors_chosen": sorted({r["chosen_predictor"] for r in rs}),
                         "target_loss": stats([r.get("target_loss") for r in rs]),
                         "full_less_target_loss": stats(full_loss),
                         "beats_rds_plus_and_bm25": bool(rec["mean"] > max(base["rds_plus"]["recall"],
                                                                           base["bm25"]["recall"])),
                         "meets_cascade_target": bool(mode == "cascade" and rec["mean"] >= 0.9
                                                      and np.mean([r["pass_fraction"] for r in rs]) <= 0.35)})
    return rows


def workload(name: str, work: Path, files: list[str], task: str, data_dir: str, args) -> dict:
    import shutil
    log(f"[{name}] model and warmup")
    (model, warm), t_setup = timed(lambda: setup_model(work, files, args))
    opts = feature_options(model, warm, args)
    saved = work / "full_less.json"
    keep = args.keep_full and saved.is_file()
    for stale in ("runs", "e2e", "train") if keep else ("full_store", "full_targets", "runs", "e2e", "train"):
        shutil.rmtree(work / stale, ignore_errors=True)   # timings are only honest from scratch
    # feature caches are reused only with the same settings (stage.json) and keep the seconds they
    # were measured with; features_cache/ is where an earlier version of this script kept them
    if (work / "features_cache" / "stage.json").is_file() and not (work / "caches" / "features").exists():
        shutil.copytree(work / "features_cache", work / "caches" / "features")
    log(f"[{name}] full LESS" + (" (stores, seconds and baselines reused from full_less.json)" if keep else ""))
    full = full_less(work, files, task, data_dir, opts, args)
    if keep:
        old = json.loads(saved.read_text())
        full["seconds"], base = old["seconds"], old["baselines"]
    else:
        base = baselines(full, task, data_dir, model, args)
        saved.write_text(json.dumps({"seconds": full["seconds"], "baselines": base}, indent=2))
    log(f"[{name}] full LESS: {full['passes']} gradient passes, {full['seconds']}")
    log(f"[{name}] baselines: " + ", ".join(f"{k} {v['recall']:.3f}" for k, v in base.items()))
    head = {"pool_files": [Path(f).name for f in files], "n_pool": full["n_all"], "k": full["k"],
            "setup_seconds": t_setup, "full_less": {"seconds": full["seconds"],
                                                    "pool_gradient_passes": full["passes"]},
            "baselines": base, "complete": False}
    state = {"runs": [], "quality": None, "e2e": []}

    def save(**kw):
        state.update(kw)
        partial(name, {**head, **state, "summary": summarize(state["runs"], base, state["quality"]),
                       "summary_end_to_end": summarize(state["e2e"], base, None)})
    replay = predict_runs(work, files, task, data_dir, opts, full, args, args.seeds, args.fractions, Replay(full),
                          on_run=lambda rs: save(runs=rs))
    if args.train_epochs > 0:
        training(work, model, full, replay, task, data_dir, args, on_run=lambda q: save(quality=q))
    predict_runs(work, files, task, data_dir, opts, full, args, args.end_to_end_seeds,
                 args.end_to_end_fractions or args.fractions, None,
                 on_run=lambda rs: save(e2e=rs))
    head["complete"] = True
    save()
    return PARTIAL["result"]["workloads"][name]


PARTIAL: dict = {}


def partial(name: str, payload: dict) -> None:
    """Rewrite the results file with what has been measured so far."""
    PARTIAL["result"]["workloads"][name] = payload
    write_result(PARTIAL["name"], PARTIAL["result"], PARTIAL["dir"])


def log(msg: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {msg}", flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data"),
                    help="LESS data folder (train/processed, eval/bbh) for the real workload")
    ap.add_argument("--workloads", default="demo,real")
    ap.add_argument("--per-source", type=int, default=700, help="real pool examples from each source")
    ap.add_argument("--demo-pool", type=int, default=2000)
    ap.add_argument("--fractions", type=lambda s: [float(x) for x in s.split(",")], default=[0.05, 0.1, 0.2])
    ap.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")], default=[0, 1, 2])
    ap.add_argument("--percentage", type=float, default=0.05)
    ap.add_argument("--dim", type=int, default=4096)
    ap.add_argument("--max-seq-length", type=int, default=192)
    ap.add_argument("--max-chars", type=int, default=450, help="real pool: longest record text kept")
    ap.add_argument("--targets-max-seq-length", type=int, default=2048)
    ap.add_argument("--pretrain-steps", type=int, default=60)
    ap.add_argument("--hidden", type=int, default=64, help="tiny model width")
    ap.add_argument("--vocab", type=int, default=1024, help="tiny model BPE vocabulary")
    ap.add_argument("--warmup-epochs", type=int, default=1, help="LoRA warmup epochs = checkpoints")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--predictor", default="auto", help="predict's --predictor (auto, ridge, hgb)")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--end-to-end-seeds", type=lambda s: [int(x) for x in s.split(",") if x], default=[0],
                    help="seeds also run with real gradients (measured seconds, score check); '' for none")
    ap.add_argument("--end-to-end-fractions", type=lambda s: [float(x) for x in s.split(",")], default=None,
                    help="sample fractions of those runs (default: --fractions)")
    ap.add_argument("--train-epochs", type=int, default=3, help="epochs of training on each selection (0: none)")
    ap.add_argument("--keep-full", action="store_true", help=(
        "reuse the full LESS stores, seconds and baseline recalls of an earlier run of the same "
        "workload (full_less.json) instead of measuring them again"))
    ap.add_argument("--no-forward-features", dest="forward_features", action="store_false",
                    help="predict without its forward features (the ablation)")
    ap.add_argument("--tag", default="", help="results file predict_<tag>.json instead of predict.json")
    ap.add_argument("--quick", action="store_true", help="toy sizes for a smoke test")
    ap.add_argument("--workdir", default=os.environ.get("LESS_BENCH_WORKDIR", "/tmp/less_bench_predict"))
    ap.add_argument("--results-dir", default=str(RESULTS))
    args = ap.parse_args(argv)
    if args.quick:
        args.per_source, args.demo_pool, args.fractions, args.seeds = 60, 200, [0.2], [0]
        args.pretrain_steps, args.dim, args.fractions, args.train_epochs = 5, 1024, [0.5], 1
    import torch
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    work = Path(args.workdir)
    result = {"section": "predict", "quick": args.quick, "machine": machine_info(),
              "settings": {k: v for k, v in vars(args).items() if k not in ("workdir", "results_dir")},
              "workloads": {}}
    PARTIAL.update(result=result, dir=Path(args.results_dir), name="predict" + (f"_{args.tag}" if args.tag else ""))
    for name in args.workloads.split(","):
        wdir = work / name
        if name == "demo":
            from less_select.demo.tasks import make_demo_data
            data = make_demo_data(wdir / "data", seed=0, pool_size=args.demo_pool)
            files, task, data_dir = [str(data.pool)], str(data.target), ""
        else:
            if not (Path(args.data_dir) / "train" / "processed").is_dir():
                log(f"[real] skipped: no {args.data_dir}/train/processed")
                continue
            files, task, data_dir = (real_pool(Path(args.data_dir), wdir, args.per_source, args.max_chars),
                                     "bbh", args.data_dir)
        result["workloads"][name] = workload(name, wdir, files, task, data_dir, args)
    path = write_result(PARTIAL["name"], result, Path(args.results_dir))
    for name, w in result["workloads"].items():
        for title, summary in (("replayed", w["summary"]), ("end to end, real gradients", w["summary_end_to_end"])):
            rows = [[s["mode"], s["sample_fraction"], s["seeds"], s["recall"]["mean"],
                     f"{s['recall']['min']:.2f}-{s['recall']['max']:.2f}", s["pass_fraction"]["mean"],
                     s["wall_fraction"]["mean"], s["target_loss"].get("mean", float("nan")),
                     s["target_loss"].get("std", float("nan"))] for s in summary]
            print_table(f"{name} ({title}): pool {w['n_pool']}, k {w['k']}; recall of full LESS's top k",
                        ["method", "sample", "seeds", "recall", "range", "gradient passes", "wall",
                         "target loss", "sd"], rows)
        q = w.get("quality") or {}
        full_loss = stats(list(q.get("full_less", {}).values()))
        rows = [["full LESS", full_loss.get("mean", float("nan")), full_loss.get("std", float("nan"))],
                ["untrained", q.get("base_model_loss", float("nan")), 0.0]]
        rows += [[b, v["recall"], "-"] for b, v in w["baselines"].items()]
        print_table(f"{name}: target loss after training on full LESS's top k / baselines' recall",
                    ["method", "loss or recall", "sd"], rows)
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
