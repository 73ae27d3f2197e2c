"""Dynamic LESS selection (``less-select dynamic-train``): cost of one re-selection and quality.

(a) cost: seconds (wall and process CPU) of one re-selection in our default mode (a seeded candidate
    subset of 4 x the examples needed, token-budget batches of per-example LoRA gradients with the LM
    head evaluated at completion positions only, sparse projection) and a middle mode (whole pool,
    batched, sparse) against a DataFlex-style reference written here the way DataFlex does it (the
    whole pool, batch size 1 through the model's own loss, ``.grad`` of every trainable parameter,
    dense Rademacher projection, one mean over the targets), on the same model, optimizer state and
    pool, for each ``--cost-pools`` size; modes interleaved A B C A B C, ``--repeats`` times. Ratios:
    of medians, and the median of the per-repeat (paired) ratios.
(b) quality: target-set loss after the same number of optimizer steps for dynamic LESS, static LESS
    (one selection from the state at the end of the warmup steps), random, and the full pool (one
    epoch, more steps: disclosed in the table), over ``--seeds`` seeds, on the demo data (plus its
    held-out loss and exact match) and on a real pool from ``--data-dir`` with an MMLU target (plus
    the loss on held-out MMLU test rows of the same subjects).

    python benchmarks/bench_dynamic.py --data-dir ../shared/data          # writes results/dynamic.json
    python benchmarks/bench_dynamic.py --quick                              # seconds-scale smoke run
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, loadavg, machine_info  # noqa: E402

from less_select.data import load_examples  # noqa: E402
from less_select.data.example import Example  # noqa: E402

log = logging.getLogger("bench_dynamic")
LORA = dict(lora_r=8, lora_alpha=16, lora_dropout=0.0, lora_target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])


# --------------------------------------------------------------------------- data and models

def demo_setup(work: Path, quick: bool, pool_size: int):
    from less_select.demo.pretrain import pretrain_tiny_model, pretraining_texts, tulu_texts
    from less_select.demo.tasks import make_demo_data, read_jsonl
    data = make_demo_data(work / "demo_data", seed=0, pool_size=300 if quick else pool_size,
                          n_test=40 if quick else 60)
    model_dir = work / "demo_model"
    if not (model_dir / "config.json").is_file():
        recs = read_jsonl(data.pool)
        pretrain_tiny_model(model_dir, pretraining_texts(recs), tokenizer_texts=tulu_texts(recs),
                            seed=0, epochs=1 if quick else 4)
    targets = [Example(id=r["id"], messages=r["messages"], subtask=r["subtask"])
               for r in read_jsonl(data.target)]
    tests = read_jsonl(data.test)
    return {"name": "demo (add_word target)", "dir": "demo", "pool_files": [str(data.pool)], "task": str(data.target),
            "model": str(model_dir), "target_examples": targets, "heldout_records": tests}


def real_pool_file(work: Path, data_dir: Path, n: int) -> Path:
    """``n`` examples drawn (seed 0) from FLAN CoT (40%), T0 (40%) and Alpaca-GPT4 (20%), shuffled."""
    per = {"cot/cot_data.jsonl": int(0.4 * n), "t0/t0_data.jsonl": int(0.4 * n),
           "alpaca_gpt4/alpaca_gpt4_data.jsonl": n - 2 * int(0.4 * n)}
    pool_file = work / ("real_pool.jsonl" if n == 500 else f"real_pool_{n}.jsonl")  # 500: earlier runs' name
    if not pool_file.is_file():
        rng = random.Random(0)
        lines = []
        for rel, k in per.items():
            exs, _ = load_examples([str(data_dir / "train" / "processed" / rel)], max_per_file=5000)
            for ex in rng.sample(exs, k):
                lines.append(json.dumps({"id": ex.id, "task": rel.split("/")[0], "messages": ex.messages}))
        rng.shuffle(lines)
        write_text_atomic(pool_file, "\n".join(lines) + "\n")
    return pool_file


def real_setup(work: Path, data_dir: Path, quick: bool, n_subjects: int, pool_size: int):
    """A mixed real pool (FLAN CoT, T0, Alpaca-GPT4) and an MMLU target (first subjects, 5 dev rows
    each, the LESS format), as a target file with one subtask per subject; held out: the first 20
    MMLU test rows of each of those subjects."""
    from less_select.demo.pretrain import pretrain_tiny_model, tulu_texts
    from less_select.data.targets import build_mmlu_targets
    n = 300 if quick else pool_size
    pool_file = real_pool_file(work, data_dir, n)
    root = data_dir / "eval" / "mmlu"
    subjects = sorted(p.name[:-len("_test.csv")] for p in (root / "test").glob("*_test.csv"))[:n_subjects]
    targets = build_mmlu_targets(data_dir, subjects=subjects)
    heldout = mmlu_heldout(work, root, subjects, per_subject=20)
    target_file = work / "mmlu_targets.jsonl"
    target_file.write_text("".join(json.dumps({"id": t.id, "prompt": t.prompt, "completion": t.completion,
                                               "subtask": t.subtask}) + "\n" for t in targets))
    model_dir = work / "real_model"
    if not (model_dir / "config.json").is_file():
        recs = [json.loads(l) for l in pool_file.read_text().splitlines()]
        texts = tulu_texts(recs) + [t.prompt + t.completion for t in targets]
        pretrain_tiny_model(model_dir, tulu_texts(recs), tokenizer_texts=texts, seed=0,
                            epochs=1 if quick else 3, vocab_size=1024, max_seq_length=256)
    return {"name": f"real pool ({n}: cot/t0/alpaca) -> MMLU ({n_subjects} subjects)",
            "dir": "real" if n == 500 else f"real_{n}",  # 500: the folder of earlier runs
            "pool_files": [str(pool_file)], "task": str(target_file), "model": str(model_dir),
            "target_examples": load_examples([str(target_file)])[0], "heldout_records": None,
            "heldout_examples": heldout}


def mmlu_heldout(work: Path, mmlu_root: Path, subjects: list[str], per_subject: int) -> list:
    """The first ``per_subject`` MMLU *test* rows of each subject, in the target format: the
    library's dev-row builder pointed at a folder whose dev files are the test files (not the
    target rows the selection saw)."""
    from less_select.data.targets import build_mmlu_targets
    fake = work / "mmlu_heldout" / "eval" / "mmlu"
    for split in ("dev", "test"):
        (fake / split).mkdir(parents=True, exist_ok=True)
    for s in subjects:
        for split in ("dev", "test"):
            link = fake / split / f"{s}_{split}.csv"
            if not link.exists():
                link.symlink_to(mmlu_root / "test" / f"{s}_test.csv")
    return build_mmlu_targets(work / "mmlu_heldout", subjects=subjects, k=per_subject)


# --------------------------------------------------------------------------- (a) re-selection cost

REFERENCE = "DataFlex-style reference (whole pool, batch 1, HF loss + .grad, dense)"
OURS = "ours (4x candidates, batched, sparse)"
OURS_WHOLE = "ours, whole pool (batched, sparse)"


def dataflex_style_reselect(model, opt, rows, targets, projector, need: int, pad_id: int) -> list[int]:
    """A re-selection written the way DataFlex's selector does it: every pool row, one example per
    forward/backward through the model's own (HF, token-mean) loss, gradients read from ``.grad`` of
    every trainable parameter, the LESS Adam formula with the optimizer's moments, a dense
    projection, and one mean over all target rows (no subtasks). Returns the top ``need`` rows."""
    from less_select.data.batching import collate
    from less_select.gradients.features import adam_preconditioned_gradient
    params = [p for p in model.parameters() if p.requires_grad]
    group = opt.param_groups[0]
    was_training = model.training
    model.eval()

    def feature(row, adam: bool) -> torch.Tensor:
        model.zero_grad(set_to_none=True)
        model(**collate([row], pad_id)).loss.backward()
        blocks = [p.grad.reshape(1, -1) for p in params]
        if adam:
            blocks = [adam_preconditioned_gradient(g, opt.state[p]["exp_avg"].reshape(1, -1),
                                                   opt.state[p]["exp_avg_sq"].reshape(1, -1),
                                                   tuple(group["betas"]), group["eps"])
                      for g, p in zip(blocks, params)]
        return torch.nn.functional.normalize(projector.project_block(torch.cat(blocks, 1), 0), dim=1)[0]

    try:
        target_mean = torch.stack([feature(t, False) for t in targets]).mean(0)
        scores = torch.stack([feature(r, True) for r in rows]) @ target_mean
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    return torch.argsort(scores, descending=True)[:need].tolist()


def cost_setup(setup: dict, work: Path, pool_file: Path):
    """Model (LoRA), encoded pool and targets, and an AdamW after 10 real steps on the pool."""
    from less_select.data.batching import collate
    from less_select.dynamic.stage import DynamicTrainConfig, _targets
    from less_select.training.trainer import encode_for_training, load_for_training
    cfg = DynamicTrainConfig(model=setup["model"], output_dir=str(work / "unused"), pool_files=[str(pool_file)],
                             task=setup["task"], max_seq_length=256, dtype="float32", seed=0, **LORA)
    model, tok = load_for_training(cfg, "lora")
    examples, _ = load_examples([str(pool_file)])
    rows, _, _ = encode_for_training(examples, tok, cfg)
    targets, labels = _targets(cfg, tok)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(10):  # a real (short) warmup, so exp_avg/exp_avg_sq and LoRA B are those of training
        idx = torch.randint(len(rows), (8,), generator=g).tolist()
        model(**collate([rows[i] for i in idx], tok.pad_token_id)).loss.backward()
        opt.step()
        opt.zero_grad()
    return model, tok, rows, targets, labels, opt


def cost_benchmark(setup: dict, work: Path, pool_file: Path, repeats: int, proj_dim: int) -> dict:
    """One re-selection in each mode, interleaved A B C A B C, wall and process-CPU seconds."""
    from less_select.dynamic import DynamicLessSelection, DynamicOptions
    from less_select.projection import make_projector
    model, tok, rows, targets, labels, opt = cost_setup(setup, work, pool_file)
    gb, update_step = 8, 5
    need = gb * update_step
    base = dict(warmup_step=0, update_step=update_step, update_times=1, proj_dim=proj_dim)
    sels = {}
    for name, opts in {OURS: DynamicOptions(**base), OURS_WHOLE: DynamicOptions(**base, candidates=-1)}.items():
        sel = DynamicLessSelection(rows, targets, labels, opts, global_batch=gb, pad_token_id=tok.pad_token_id,
                                   selections_dir=work / "cost_selections" / f"{len(rows)}_{len(sels)}")
        sel.on_train_begin(SimpleNamespace(max_steps=opts.total_steps, per_device_train_batch_size=gb,
                                           gradient_accumulation_steps=1, world_size=1, seed=0), None, None)
        sels[name] = sel
    dense = make_projector("rademacher", sum(p.numel() for p in model.parameters() if p.requires_grad),
                           proj_dim, 0)
    modes = {**{name: (lambda rep, s=sel: s.reselect(10 + rep, model, opt)) for name, sel in sels.items()},
             REFERENCE: lambda rep: dataflex_style_reselect(model, opt, rows, targets, dense, need,
                                                            tok.pad_token_id)}
    wall = {name: [] for name in modes}
    cpu = {name: [] for name in modes}
    chosen, loads = {}, []
    for rep in range(repeats):
        for name, run in modes.items():          # interleaved: A B C A B C ...
            t0, c0 = time.perf_counter(), time.process_time()
            got = run(rep)
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
            chosen[name] = set(got)
            loads.append(loadavg())
            log.info("cost pool %d rep %d %s: %.2fs wall, %.2fs cpu", len(rows), rep, name,
                     wall[name][-1], cpu[name][-1])
    out = {"setup": f"{pool_file.name} -> {Path(setup['task']).name}", "pool_file": pool_file.name, "pool": len(rows), "targets": len(targets),
           "global_batch": gb, "update_step": update_step, "needed_per_reselection": need,
           "proj_dim": proj_dim, "lora_params": dense.total_params, "repeats": repeats,
           "loadavg_during": [min(loads), max(loads)],
           "overlap_whole_pool_vs_reference": len(chosen[OURS_WHOLE] & chosen[REFERENCE]) / need,
           "modes": {}}
    for name in modes:
        n_cand = sels[name].records[-1]["n_candidates"] if name in sels else len(rows)
        out["modes"][name] = {"candidates": n_cand, **_timing(wall[name], wall[REFERENCE], "wall"),
                              **_timing(cpu[name], cpu[REFERENCE], "cpu")}
    return out


def _timing(ts: list[float], ref: list[float], kind: str) -> dict:
    """Seconds, median, spread, ratio of medians and per-repeat (paired) ratios to the reference."""
    paired = [t / r for t, r in zip(ts, ref)]
    return {f"{kind}_seconds": [round(t, 3) for t in ts], f"{kind}_median": round(statistics.median(ts), 3),
            f"{kind}_min": round(min(ts), 3), f"{kind}_max": round(max(ts), 3),
            f"{kind}_ratio_of_medians": round(statistics.median(ts) / statistics.median(ref), 4),
            f"{kind}_paired_ratios": [round(x, 4) for x in paired],
            f"{kind}_paired_ratio_median": round(statistics.median(paired), 4)}


# --------------------------------------------------------------------------- (b) quality

def train_method(method: str, setup: dict, out: Path, seed: int, sched: dict, quick: bool) -> tuple[dict, Path]:
    """Train one method; returns (steps and seconds, the adapter folder)."""
    from less_select.dynamic.stage import DynamicTrainConfig, run_dynamic_train
    from less_select.training.finetune import FinetuneConfig, run_finetune
    common = dict(model=setup["model"], output_dir=str(out), seed=seed, max_seq_length=256, dtype="float32",
                  learning_rate=3e-3, warmup_ratio=0.0, lr_scheduler="constant", per_device_batch_size=8,
                  effective_batch_size=8, logging_steps=50, **LORA)
    w, u, t = sched["warmup_step"], sched["update_step"], sched["update_times"]
    t0 = time.perf_counter()
    info: dict = {}
    if method == "full":
        cfg = FinetuneConfig(train_files=setup["pool_files"], epochs=1, method="lora", **common)
        run_finetune(cfg)
        info["steps"] = json.loads((out / "training_summary.json").read_text())["steps"]
    elif method == "static_pipeline":
        info = static_pipeline(setup, out, common, n_select=(w + u * t) * 8)
        out = out / "train"
    else:
        schedule = {"dynamic": dict(warmup_step=w, update_step=u, update_times=t),
                    "static": dict(warmup_step=w, update_step=u * t, update_times=1, candidates=-1),
                    "random": dict(warmup_step=w + u * t, update_step=1, update_times=0)}[method]
        cfg = DynamicTrainConfig(pool_files=setup["pool_files"], task=setup["task"], proj_dim=2048,
                                 save_steps=10_000, **schedule, **common)
        run_dynamic_train(cfg)
        info["steps"] = cfg.total_steps
    return {**info, "train_seconds": round(time.perf_counter() - t0, 2)}, out


def static_pipeline(setup: dict, out: Path, common: dict, n_select: int) -> dict:
    """LESS as a pipeline through the product's stages: warmup (2 epochs on a seeded 10% of the pool)
    -> pool datastore at both warmup checkpoints -> target features -> select the top ``n_select``
    -> train the base model one epoch on them (``n_select / 8`` steps, the other methods' count;
    the warmup's steps are extra and reported)."""
    from less_select.datastore.build import DatastoreConfig, TargetsConfig, run_datastore, run_targets
    from less_select.select_stage import SelectConfig, run_select
    from less_select.training.finetune import FinetuneConfig, run_finetune
    from less_select.training.warmup import WarmupConfig, run_warmup
    opts = {k: v for k, v in common.items() if k != "output_dir"}
    warm = run_warmup(WarmupConfig(pool_files=setup["pool_files"], output_dir=str(out / "warmup"),
                                   percentage=0.1, epochs=2, **opts))
    store = run_datastore(DatastoreConfig(model=setup["model"], checkpoints=[str(warm)], data=setup["pool_files"],
                                          output_dir=str(out / "datastore"), dims=[2048],
                                          projection_seed=common["seed"], max_seq_length=256))
    targets = run_targets(TargetsConfig(task=setup["task"], datastore=str(store), output_dir=str(out / "targets"),
                                        max_seq_length=256))
    run_select(SelectConfig(datastore=str(store), targets=str(targets), output_dir=str(out / "selected"),
                            top_k=n_select, subtask_rule="max"))
    run_finetune(FinetuneConfig(train_files=[str(out / "selected" / f"top_k{n_select}.jsonl")], epochs=1,
                                method="lora", **{**opts, "output_dir": str(out / "train")}))
    warm_steps = sum(1 for _ in Path(warm).glob("checkpoint-*"))
    return {"steps": json.loads((out / "train" / "training_summary.json").read_text())["steps"],
            "warmup_checkpoints": warm_steps}


def evaluate(setup: dict, adapter: Path) -> dict:
    from less_select.data.example import Example
    from less_select.evaluation.exact_match import evaluate_exact_match
    from less_select.evaluation.loss import target_loss
    from less_select.modeling import load_model_with_adapter, load_tokenizer
    tok = load_tokenizer(setup["model"])
    model = load_model_with_adapter(setup["model"], str(adapter), "float32", torch.device("cpu"))
    res = {"target_loss": target_loss(model, tok, setup["target_examples"], max_seq_length=256)["average"]["loss"]}
    if setup.get("heldout_examples"):
        res["heldout_loss"] = target_loss(model, tok, setup["heldout_examples"],
                                          max_seq_length=256)["average"]["loss"]
    if setup["heldout_records"]:
        held = setup["heldout_records"]  # mean over examples of each one's completion loss (Tulu)
        examples = [Example(id=str(r.get("id", i)), messages=r["messages"], raw=r) for i, r in enumerate(held)]
        res["heldout_loss"] = target_loss(model, tok, examples, max_seq_length=256,
                                          template="tulu")["micro_average"]["loss"]
        res["heldout_exact_match"] = evaluate_exact_match(
            model, tok, held, max_new_tokens=20)["micro_average"]["exact_match"] / 100.0
    return res


METHODS = ["dynamic", "static", "static_pipeline", "random", "full"]


def quality_benchmark(setup: dict, work: Path, seeds: list[int], sched: dict, quick: bool,
                      on_run=None, earlier: dict | None = None) -> dict:
    """Every method x seed; a run found in ``earlier`` (the same setup and schedule in an earlier
    results file) is reused, not retrained."""
    runs = {m: [] for m in METHODS}
    for seed in seeds:
        for m in METHODS:
            old = [r for r in (earlier or {}).get(m, []) if r["seed"] == seed]
            if old:
                runs[m].append(old[0])
                continue
            info, adapter = train_method(m, setup, work / f"seed{seed}" / m, seed, sched, quick)
            info.update(evaluate(setup, adapter))
            info["seed"] = seed
            runs[m].append(info)
            log.info("quality %s seed %d %s: %s", setup["name"], seed, m, info)
            if on_run:
                on_run({"setup": setup["name"], "partial": True, "runs": runs})
    return summarize(setup, seeds, sched, runs)


def summarize(setup: dict, seeds: list[int], sched: dict, runs: dict) -> dict:
    methods = list(runs)
    summary = {}
    for m, rs in runs.items():
        summary[m] = {"steps": rs[0]["steps"]}
        for key in rs[0]:
            if key in ("steps", "seed", "train_seconds"):
                continue
            vals = [r[key] for r in rs]
            summary[m][key] = {"mean": round(statistics.mean(vals), 4),
                               "std": round(statistics.stdev(vals), 4) if len(vals) > 1 else 0.0,
                               "values": [round(v, 4) for v in vals]}
        summary[m]["train_seconds_mean"] = round(statistics.mean(r["train_seconds"] for r in rs), 1)
    best = min(methods, key=lambda m: summary[m]["target_loss"]["mean"])
    return {"setup": setup["name"], "schedule": sched, "seeds": seeds, "methods": summary,
            "lowest_target_loss": best, "runs": runs}


# --------------------------------------------------------------------------- report

def print_tables(result: dict) -> None:
    costs = result.get("cost") or []
    result = {**result, "quality": [q for q in result.get("quality", []) if not q.get("partial")]}
    for c in costs if isinstance(costs, list) else [costs]:
        print(f"\n(a) one re-selection, {c['setup']} ({c.get('pool_file', '')}): pool {c['pool']}, "
              f"{c['targets']} targets, {c['needed_per_reselection']} examples chosen, d={c['proj_dim']}, "
              f"P={c['lora_params']}, {c['repeats']} interleaved repeats, load {c['loadavg_during']}")
        print(f"{'mode':72s} {'cand':>5s} {'wall med s':>10s} {'cpu med s':>9s} "
              f"{'x ref wall (paired)':>20s} {'x ref cpu (paired)':>19s}")
        for name, m in c["modes"].items():
            print(f"{name:72s} {m['candidates']:5d} {m['wall_median']:10.2f} {m['cpu_median']:9.2f} "
                  f"{m['wall_ratio_of_medians']:8.3f} ({m['wall_paired_ratio_median']:.3f})    "
                  f"{m['cpu_ratio_of_medians']:8.3f} ({m['cpu_paired_ratio_median']:.3f})")
        print(f"top-{c['needed_per_reselection']} overlap, ours whole pool vs reference: "
              f"{c['overlap_whole_pool_vs_reference']:.2f}")
    for q in result.get("quality", []):
        print(f"\n(b) {q['setup']}, seeds {q['seeds']}, schedule {q['schedule']}")
        keys = [k for k in ("target_loss", "heldout_loss", "heldout_exact_match") if k in q["methods"]["dynamic"]]
        print(f"{'method':10s} {'steps':>5s} " + " ".join(f"{k:>22s}" for k in keys) + f" {'train s':>8s}")
        for m, s in q["methods"].items():
            cells = " ".join(f"{s[k]['mean']:>13.4f} ± {s[k]['std']:<6.4f}" for k in keys)
            print(f"{m:10s} {s['steps']:5d} {cells} {s['train_seconds_mean']:8.1f}")
        print(f"lowest mean target loss: {q['lowest_target_loss']}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"),
                    help="LESS data folder (train/processed, eval/mmlu); the real-data part is skipped if absent")
    ap.add_argument("--work", default="/tmp/less_bench_dynamic", help="scratch folder (models, runs)")
    ap.add_argument("--out", default=str(RESULTS / "dynamic.json"))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--proj-dim", type=int, default=4096, help="d of the cost benchmark (DataFlex's example)")
    ap.add_argument("--cost-pools", type=int, nargs="+", default=[500, 2000],
                    help="real pool sizes drawn for the cost part (before dropping rows with no completion)")
    ap.add_argument("--mmlu-subjects", type=int, default=5)
    ap.add_argument("--demo-pool", type=int, default=600, help="demo pool size")
    ap.add_argument("--real-pool", type=int, default=500, help="real pool size (40%% cot, 40%% t0, 20%% alpaca)")
    ap.add_argument("--schedule", type=int, nargs=3, default=[5, 5, 3], metavar=("WARMUP", "UPDATE", "TIMES"),
                    help="warmup_step update_step update_times of the quality runs")
    ap.add_argument("--skip-quality", action="store_true")
    ap.add_argument("--only-cost", action="store_true", help="alias of --skip-quality")
    ap.add_argument("--skip-cost", action="store_true", help="keep the cost part of an existing --out file")
    ap.add_argument("--setups", nargs="+", default=["demo", "real"], choices=["demo", "real"],
                    help="quality setups to run")
    ap.add_argument("--quick", action="store_true", help="tiny sizes, for the smoke test")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("less_select", "transformers", "accelerate"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    torch.set_num_threads(1)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    data_dir = Path(args.data_dir)
    has_real = (data_dir / "train" / "processed").is_dir() and (data_dir / "eval" / "mmlu").is_dir()
    result = {"machine": machine_info(), "command": " ".join(sys.argv), "quick": args.quick}
    old = json.loads(Path(args.out).read_text()) if Path(args.out).is_file() else {}
    if args.skip_cost:
        result["cost"], result["cost_command"] = old.get("cost"), old.get("cost_command", old.get("command"))
    setups = [demo_setup(work, args.quick, args.demo_pool)]
    if has_real:
        setups.append(real_setup(work, data_dir, args.quick, 3 if args.quick else args.mmlu_subjects,
                                 args.real_pool))
    else:
        log.warning("%s has no real pool/MMLU: real-data part skipped", data_dir)
    if not args.skip_cost:
        sizes = [300] if args.quick else args.cost_pools
        pools = ([real_pool_file(work, data_dir, n) for n in sizes] if has_real
                 else [Path(setups[0]["pool_files"][0])])
        result["cost"], result["cost_command"] = [], result["command"]
        for pool in pools:
            result["cost"].append(cost_benchmark(setups[-1], work / "cost", pool, args.repeats, args.proj_dim))
            _write(args.out, result)
    # quality entries of an earlier --out are kept; a setup run again reuses its runs (same schedule)
    quality = [q for q in old.get("quality", []) if not q.get("partial")]
    if not (args.skip_quality or args.only_cost):
        w, u, t = (2, 2, 2) if args.quick else args.schedule
        sched = dict(warmup_step=w, update_step=u, update_times=t)
        for s, key in zip(setups, ["demo", "real"]):
            if key not in args.setups:
                continue
            earlier = [q for q in old.get("quality", []) if q["setup"] == s["name"]
                       and q.get("schedule", sched) == sched]
            quality = [q for q in quality if q["setup"] != s["name"] or q.get("schedule") != sched]
            partial = lambda p: _write(args.out, {**result, "quality": quality + [p]})  # noqa: E731
            entry = quality_benchmark(s, work / s["dir"], args.seeds, sched, args.quick,
                                      on_run=partial, earlier=earlier[-1]["runs"] if earlier else None)
            entry["command"] = result["command"]
            if earlier:
                entry["reused_runs_of"] = earlier[-1].get("command", old.get("command"))
            quality.append(entry)
            result["quality"] = quality
            _write(args.out, result)
    result["quality"] = quality
    result["machine"]["loadavg_at_end"] = loadavg()
    _write(args.out, result)
    print_tables(result)
    return 0


def _write(path: str, result: dict) -> None:
    write_text_atomic(Path(path), json.dumps(result, indent=2, default=str))


def write_text_atomic(p: Path, text: str) -> None:
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(p)


if __name__ == "__main__":
    sys.exit(main())
