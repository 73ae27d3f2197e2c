"""Influence prediction against full LESS: how much of LESS's top 5% ``predicted`` and ``cascade``
recover, and at what share of its cost.

For each workload (``demo``: the built-in synthetic pool and its target; ``real``: a pool of cot,
t0 and alpaca_gpt4 examples from the data folder with the BBH target set), nothing downloaded:

1. a tiny Llama and tokenizer built offline from the pool (``less-select tiny-model``), and a LoRA
   warmup on 5% of the pool (2 epochs, so 2 checkpoints);
2. full LESS on the whole pool: datastore, targets, scores (timed; this is the truth);
3. RDS+ and BM25 alone (the baselines' own selectors) and random, for reference;
4. ``predict`` at each sample fraction and seed: ``predicted`` first, then ``cascade`` in the same run
   folder (it reuses the features and the sample store, so its cost is the predicted run's plus its
   own, fitting counted twice), each given the full run's target store (the targets' seconds are
   added to both sides).

Recall = |selected ∩ full LESS's top k| / k at k = 5% of the pool. Gradient passes are exact counts
(one example at one checkpoint); wall seconds are measured once per seed on a shared machine.
Writes ``benchmarks/results/predict.json`` and prints a table.
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
    from less_select.training.warmup import WarmupConfig, run_warmup
    model = work / "model"
    if not (model / "config.json").is_file():
        run_tiny_model(TinyModelConfig(data=files, output_dir=str(model), pretrain_steps=args.pretrain_steps,
                                       max_examples=1000, vocab_size=args.vocab, hidden_size=args.hidden,
                                       intermediate_size=2 * args.hidden,
                                       pretrain_seq_length=args.max_seq_length))
    warm = work / "warmup"
    run_warmup(WarmupConfig(model=str(model), pool_files=files, output_dir=str(warm), percentage=0.05,
                            epochs=args.warmup_epochs, lora_r=8, lora_alpha=32, lora_dropout=0.0, effective_batch_size=8,
                            per_device_batch_size=4, learning_rate=1e-3, max_seq_length=args.max_seq_length,
                            dtype="float32", logging_steps=10, seed=0))
    return model, warm


def feature_options(model: Path, warm: Path, args) -> dict:
    return dict(model=str(model), checkpoints=[str(warm)], projector="sparse", dims=[args.dim],
                max_seq_length=args.max_seq_length, dtype="float32", max_tokens_per_batch=4096)


def full_less(work: Path, files: list[str], task: str, data_dir: str, opts: dict, args) -> dict:
    """Full LESS on the whole pool (timed): per-subtask scores, its top k, the store rows."""
    from less_select.datastore.store import Datastore
    from less_select.datastore.build import DatastoreConfig, TargetsConfig, run_datastore, run_targets
    from less_select.scoring import compute_scores
    from less_select.select_stage import pool_examples_for_store
    from less_select.subtask_rules import get_rule
    store, t_store = timed(lambda: run_datastore(DatastoreConfig(data=files, output_dir=str(work / "full_store"), **opts)))
    tgt, t_tgt = timed(lambda: run_targets(TargetsConfig(
        task=task, data_dir=data_dir, output_dir=str(work / "full_targets"),
        **{**opts, "max_seq_length": args.targets_max_seq_length})))
    scores, t_score = timed(lambda: compute_scores(store, tgt))
    rows, _, n_all = pool_examples_for_store(Datastore(store))
    k = int(np.floor(args.percentage * n_all + 1e-9))
    top = get_rule("max").rank(scores.per_subtask)[:k]
    return {"store": store, "targets": tgt, "per_subtask": scores.per_subtask, "rows": rows,
            "n_all": n_all, "k": k, "top": {(rows[i].source, rows[i].line) for i in top},
            "seconds": {"datastore": t_store, "targets": t_tgt, "scoring": t_score},
            "passes": Datastore(store).n_rows * len(Datastore(store).checkpoints)}


def baselines(full: dict, task: str, data_dir: str, model: Path, args) -> dict:
    """Recall of LESS's top k by RDS+ alone, BM25 alone (the baseline selectors) and random."""
    from less_select.baselines.bm25 import BM25Selector
    from less_select.baselines.rds import RDSConfig, RDSPlusSelector
    from less_select.data.targets import build_target_examples
    from less_select.subtask_rules import rank_order
    targets = build_target_examples(task, data_dir or None)
    rows, k = full["rows"], full["k"]
    out = {}
    rds = RDSPlusSelector(RDSConfig(model=str(model), max_seq_length=args.targets_max_seq_length,
                                    dtype="float32", max_tokens_per_batch=4096))
    for name, fn in (("rds_plus", lambda: rds.score(rows, targets)),
                     ("bm25", lambda: BM25Selector().score(rows, targets))):
        scores, secs = timed(fn)
        chosen = {(rows[i].source, rows[i].line) for i in rank_order(scores)[:k]}
        out[name] = {"recall": len(chosen & full["top"]) / k, "seconds": secs}
    rng = np.random.default_rng(0)
    rand = [len({(rows[i].source, rows[i].line) for i in rng.choice(len(rows), k, replace=False)}
                & full["top"]) / k for _ in range(100)]
    out["random"] = {"recall": float(np.mean(rand)), "seconds": 0.0, "repeats": 100}
    return out


def selected_keys(sel_dir: Path) -> set:
    with open(sel_dir / "scores.csv", encoding="utf-8") as fh:
        return {(r["file"], int(r["line"])) for r in csv.DictReader(fh) if r["selected"] == "1"}


def predict_runs(work: Path, files: list[str], task: str, data_dir: str, opts: dict, full: dict,
                 args, on_run=lambda runs: None) -> list[dict]:
    """Seed by seed (each seed at every fraction), so a cut-short benchmark still has whole seeds;
    ``on_run`` gets the results so far after each run (the JSON is rewritten each time)."""
    import shutil
    from less_select.predict import PredictConfig, run_predict
    out = []
    full_seconds = sum(full["seconds"].values())
    for seed in args.seeds:
        for fraction in args.fractions:
            run = work / "runs" / f"f{fraction:g}_s{seed}"
            cfg = dict(data=files, task=task, data_dir=data_dir, targets=str(full["targets"]),
                       output_dir=str(run), percentage=args.percentage, sample_fraction=fraction,
                       seed=seed, targets_max_seq_length=args.targets_max_seq_length,
                       predictor=args.predictor, folds=args.folds, **opts)
            walls = {}
            copied = share_features(work / "runs", run)
            for mode in ("predicted", "cascade"):
                load = loadavg()
                report, walls[mode] = timed(lambda: run_predict(PredictConfig(mode=mode, **cfg)))
                pred = json.loads((run / "selection" / "prediction.json").read_text())
                wall = walls["predicted"] + (walls["cascade"] if mode == "cascade" else 0.0)
                wall += full["seconds"]["targets"] + (pred["cost"]["seconds"]["features"] if copied else 0.0)
                q = pred["quality_out_of_fold"]
                out.append({
                    "mode": mode, "sample_fraction": fraction, "seed": seed, "loadavg": load,
                    "recall": len(selected_keys(run / "selection") & full["top"]) / full["k"],
                    "pool_gradient_passes": pred["cost"]["pool_gradient_passes"],
                    "pass_fraction": pred["cost"]["pool_gradient_passes"] / full["passes"],
                    "wall_seconds": wall, "wall_fraction": wall / full_seconds,
                    # the pool's gradient seconds alone (no targets, features or fitting)
                    "pool_gradient_seconds_fraction": sum(
                        v for key, v in pred["cost"]["seconds"].items() if key.endswith("_gradients"))
                        / full["seconds"]["datastore"],
                    "chosen_predictor": q["chosen"], "oof_spearman": q["predictors"][q["chosen"]]["spearman"],
                    "oof_best_single": q["best_single_feature"],
                    "oof_best_single_spearman": q["single_features"][q["best_single_feature"]]["spearman"],
                    "better_than_best_single_feature": q["better_than_best_single_feature"],
                    "sample_score_max_abs_diff": sample_check(run, full),
                })
                log(f"  {mode:9s} f={fraction:g} seed={seed}: recall {out[-1]['recall']:.3f}, "
                    f"passes {out[-1]['pass_fraction']:.3f}, wall {out[-1]['wall_fraction']:.3f}")
                keep = run / f"selection_{mode}"   # the next mode rewrites selection/
                shutil.rmtree(keep, ignore_errors=True)
                shutil.copytree(run / "selection", keep)
                on_run(out)
    return out


def share_features(runs: Path, run: Path) -> bool:
    """Copy a finished features cache of an earlier run (the features depend on neither the seed
    nor the fraction); its measured seconds travel with it and are added to this run's cost."""
    import shutil
    if (run / "features" / "stage.json").is_file():
        return True
    done = sorted(runs.glob("*/features/stage.json")) + sorted(runs.parent.glob("features_cache/stage.json"))
    if not done:
        return False
    run.mkdir(parents=True, exist_ok=True)
    shutil.copytree(done[0].parent, run / "features")
    return True


def sample_check(run: Path, full: dict) -> float:
    """Largest difference between the run's real scores and full LESS's on the same examples."""
    sel = run / "selection"
    real = np.load(sel / "real_scored.npy")
    assert len(real) == len(full["per_subtask"]), "predict's pool rows differ from the full store's"
    ours = np.load(sel / "per_subtask_scores.npy")
    return float(np.abs(ours[real] - full["per_subtask"][real]).max())


def summarize(runs: list[dict], base: dict) -> list[dict]:
    rows = []
    for mode in ("predicted", "cascade"):
        for f in sorted({r["sample_fraction"] for r in runs}):
            rs = [r for r in runs if r["mode"] == mode and r["sample_fraction"] == f]
            if not rs:
                continue
            rec = [r["recall"] for r in rs]
            rows.append({"mode": mode, "sample_fraction": f, "seeds": len(rs),
                         "recall_mean": float(np.mean(rec)), "recall_min": float(np.min(rec)),
                         "recall_max": float(np.max(rec)),
                         "pass_fraction_mean": float(np.mean([r["pass_fraction"] for r in rs])),
                         "wall_fraction_mean": float(np.mean([r["wall_fraction"] for r in rs])),
                         "wall_fraction_max": float(np.max([r["wall_fraction"] for r in rs])),
                         "pool_gradient_seconds_fraction_mean": float(np.mean(
                             [r["pool_gradient_seconds_fraction"] for r in rs])),
                         "beats_rds_plus_and_bm25": bool(np.mean(rec) > max(base["rds_plus"]["recall"],
                                                                            base["bm25"]["recall"]))})
    return rows


def workload(name: str, work: Path, files: list[str], task: str, data_dir: str, args) -> dict:
    log(f"[{name}] model and warmup")
    (model, warm), t_setup = timed(lambda: setup_model(work, files, args))
    opts = feature_options(model, warm, args)
    import shutil
    saved = work / "full_less.json"
    keep = args.keep_full and saved.is_file()
    for stale in ("runs",) if keep else ("full_store", "full_targets", "runs"):
        shutil.rmtree(work / stale, ignore_errors=True)   # timings are only honest from scratch
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
            "baselines": base}
    runs = predict_runs(work, files, task, data_dir, opts, full, args,
                        on_run=lambda rs: partial(name, {**head, "runs": rs, "summary": summarize(rs, base),
                                                         "complete": False}))
    return {"pool_files": [Path(f).name for f in files], "n_pool": full["n_all"], "k": full["k"],
            "setup_seconds": t_setup, "full_less": {"seconds": full["seconds"],
                                                    "pool_gradient_passes": full["passes"]},
            "baselines": base, "runs": runs, "summary": summarize(runs, base), "complete": True}


PARTIAL: dict = {}


def partial(name: str, payload: dict) -> None:
    """Rewrite the results file with what has been measured so far."""
    PARTIAL["result"]["workloads"][name] = payload
    write_result("predict", PARTIAL["result"], PARTIAL["dir"])


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
    ap.add_argument("--keep-full", action="store_true", help=(
        "reuse the full LESS stores, seconds and baseline recalls of an earlier run of the same "
        "workload (full_less.json) instead of measuring them again"))
    ap.add_argument("--quick", action="store_true", help="toy sizes for a smoke test")
    ap.add_argument("--workdir", default=os.environ.get("LESS_BENCH_WORKDIR", "/tmp/less_bench_predict"))
    ap.add_argument("--results-dir", default=str(RESULTS))
    args = ap.parse_args(argv)
    if args.quick:
        args.per_source, args.demo_pool, args.fractions, args.seeds = 60, 200, [0.2], [0]
        args.pretrain_steps, args.dim, args.fractions = 5, 1024, [0.5]
    import torch
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    work = Path(args.workdir)
    result = {"section": "predict", "quick": args.quick, "machine": machine_info(),
              "settings": {k: v for k, v in vars(args).items() if k not in ("workdir", "results_dir")},
              "workloads": {}}
    PARTIAL.update(result=result, dir=Path(args.results_dir))
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
    path = write_result("predict", result, Path(args.results_dir))
    for name, w in result["workloads"].items():
        rows = [[s["mode"], s["sample_fraction"], s["seeds"], s["recall_mean"],
                 f"{s['recall_min']:.2f}-{s['recall_max']:.2f}", s["pass_fraction_mean"],
                 s["wall_fraction_mean"]] for s in w["summary"]]
        rows += [[b, "-", "-", v["recall"], "-", 0.0,
                  (v["seconds"] or 0.0) / sum(w["full_less"]["seconds"].values())]
                 for b, v in w["baselines"].items()]
        print_table(f"{name}: pool {w['n_pool']}, k {w['k']} (5%); recall of full LESS's top k",
                    ["method", "sample", "seeds", "recall", "range", "gradient passes", "wall"], rows)
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
