"""Pool-datastore build throughput against EleutherAI bergson 2.5.1's ``bergson build`` (issue 14).

    python benchmarks/bench_bergson.py                    # 5M model, 64 examples, 3 interleaved repeats
    python benchmarks/bench_bergson.py --sizes 30m --repeats 1 --examples 32   # hours: see below
    python benchmarks/bench_bergson.py --quick            # toy model, 1 repeat: checks the setup

bergson is installed into its own virtual environment, ``benchmarks/.venv-bergson`` (created on
first use: ``pip install bergson==2.5.1 torch==2.13.0``; torch is pinned to this project's version so
no other torch build is pulled). Both tools get the same model folder, the same LoRA adapter, the same
Adam second moments, the same token ids and labels, the same token budget per batch and 1 thread:

* ours:    ``less-select --threads 1 datastore --dims 8192`` (sparse projector, LESS's Adam feature,
  rows unit-normalized, float16 store);
* bergson: ``bergson build --projection_dim 8192 --projection_target global --projection_type
  rademacher --loss_reduction mean --optimizer_state CKPT --unit_normalize true --precision fp32``:
  one global JL projection of the whole LoRA gradient to d = 8192, each example's loss the mean over
  its completion tokens, the gradient divided by sqrt(v) + eps (v: the checkpoint's Adam second
  moments), rows unit-normalized. These are the settings closest to ours; the feature still differs
  (docs/performance.md, "bergson").

Each repeat runs A = ours and B = bergson as separate processes on N examples and then on a small
pool (``--small``) to measure each tool's fixed cost (process start, imports, model load), in the
order A B A B; the table reports end-to-end examples/s, the marginal rate (N - small) / (t_N - t_small)
and the ratio of each, with min-max over repeats. Results: ``benchmarks/results/bergson.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, SIZES, Workload, loadavg, machine_info, pool_examples, print_table, \
    setup_model, size_dir, write_result  # noqa: E402

BERGSON_VERSION = "2.5.1"
TORCH_PIN = "2.13.0"
VENV = Path(__file__).resolve().parent / ".venv-bergson"


# --------------------------------------------------------------------------- the bergson environment

def ensure_venv(venv: Path = VENV) -> dict:
    """Create (once) the venv holding bergson; returns the versions installed there."""
    py = venv / "bin" / "python"
    probe = ("import importlib.metadata as m, json; print(json.dumps({p: m.version(p) for p in "
             "('bergson', 'torch', 'transformers', 'peft', 'datasets')}))")
    if py.is_file():
        res = subprocess.run([str(py), "-c", probe], capture_output=True, text=True)
        if res.returncode == 0 and json.loads(res.stdout)["bergson"] == BERGSON_VERSION \
                and not (venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" /
                         "site-packages" / "torchvision").exists():
            return json.loads(res.stdout)
    print(f"creating {venv} (pip install bergson=={BERGSON_VERSION} torch=={TORCH_PIN}) ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    (venv / ".gitignore").write_text("*\n")  # never committed
    subprocess.run([str(py), "-m", "pip", "install", "-q", f"bergson=={BERGSON_VERSION}",
                    f"torch=={TORCH_PIN}"], check=True)
    # bergson declares torchvision/torchaudio but never imports them; their PyPI wheels are built for
    # the CUDA torch, fail to load against the CPU torch, and transformers then fails to import
    subprocess.run([str(py), "-m", "pip", "uninstall", "-q", "-y", "torchvision", "torchaudio"], check=True)
    return json.loads(subprocess.run([str(py), "-c", probe], capture_output=True, text=True,
                                     check=True).stdout)


# --------------------------------------------------------------------------- shared inputs

def prepare_inputs(work: Path, model_dir: Path, ckpt: Path, n: int, seq_len: int,
                   offset: int = 2000) -> dict:
    """The pool for both tools: ``pool.jsonl`` (records, for ours) and ``tokens.jsonl`` (our encoder's
    input_ids/labels of the same records, for bergson), only examples with a completion token."""
    from less_select.data.encode import encode_all
    from less_select.modeling import load_tokenizer
    tok = load_tokenizer(str(model_dir))
    exs = pool_examples(4 * n + 32, offset)  # at 128 tokens many CoT prompts leave no completion
    enc, _ = encode_all(exs, tok, seq_len)
    keep = [i for i, e in enumerate(enc) if e.n_completion_tokens > 0][:n]
    if len(keep) < n:
        raise SystemExit(f"only {len(keep)} pool examples with a completion token; lower --examples")
    pool, tokens = work / f"pool_{n}.jsonl", work / f"tokens_{n}.jsonl"
    pool.write_text("".join(json.dumps(exs[i].raw) + "\n" for i in keep))
    tokens.write_text("".join(json.dumps({"input_ids": enc[i].input_ids, "labels": enc[i].labels,
                                          "length": len(enc[i].input_ids)}) + "\n" for i in keep))
    n_tok = sum(len(enc[i].input_ids) for i in keep)
    n_loss = sum(enc[i].n_completion_tokens for i in keep)
    return {"n": n, "pool": pool, "tokens": tokens, "tokens_total": n_tok, "loss_tokens": n_loss}


def bergson_checkpoint(model_dir: Path, ckpt: Path, out: Path) -> Path:
    """The warmup checkpoint as bergson reads it: the adapter (pointing at the base model folder)
    plus an HF-style ``optimizer.pt`` holding the same Adam moments, indexed in the order of
    ``get_peft_model_state_dict`` (one parameter group)."""
    from peft import PeftModel, get_peft_model_state_dict
    from less_select.modeling import load_model
    from less_select.training.checkpoints import canonical_param_name, load_checkpoint
    shutil.rmtree(out, ignore_errors=True)  # rebuilt every time: cheap, never stale
    out.mkdir(parents=True)
    shutil.copy(ckpt / "adapter_model.safetensors", out)
    cfg = json.loads((ckpt / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = str(model_dir)
    (out / "adapter_config.json").write_text(json.dumps(cfg, indent=2))
    ck = load_checkpoint(ckpt)
    peft = PeftModel.from_pretrained(load_model(str(model_dir), "float32", torch.device("cpu")), str(ckpt))
    names = [canonical_param_name(k) for k in get_peft_model_state_dict(peft)]
    state = {i: {"step": torch.tensor(float(ck.step)), "exp_avg": ck.exp_avg[k], "exp_avg_sq": ck.exp_avg_sq[k]}
             for i, k in enumerate(names)}
    groups = [{"params": list(range(len(names))), "lr": ck.mean_lr, "betas": tuple(ck.betas),
               "eps": ck.eps, "weight_decay": 0.0}]
    torch.save({"state": state, "param_groups": groups}, out / "optimizer.pt")
    return out


# --------------------------------------------------------------------------- one timed build

def _run(cmd: list[str], env: dict, log: Path) -> dict:
    """Run one build process; wall seconds and the child's own peak RSS (wait4)."""
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
    dt = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        tail = log.read_text()[-3000:]
        raise SystemExit(f"{cmd[0]} failed (exit {proc.returncode}); log {log}:\n{tail}")
    return {"seconds": dt, "peak_rss_mb": usage.ru_maxrss / 1024}


def _env(threads: int, cache: Path) -> dict:
    t = str(threads)
    return {**os.environ, "OMP_NUM_THREADS": t, "MKL_NUM_THREADS": t, "OPENBLAS_NUM_THREADS": t,
            "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
            "HF_DATASETS_CACHE": str(cache), "WANDB_MODE": "disabled", "TOKENIZERS_PARALLELISM": "false"}


def run_ours(model_dir, ckpt, data: dict, out: Path, args) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    exe = str(Path(sys.executable).parent / "less-select")
    cmd = [exe, "--threads", str(args.threads), "datastore", "--model", str(model_dir),
           "--checkpoints", str(ckpt), "--data", str(data["pool"]), "--output-dir", str(out),
           "--dims", str(args.dim), "--max-seq-length", str(args.seq_len), "--dtype", "float32",
           "--max-tokens-per-batch", str(args.max_tokens_per_batch),
           "--max-batch-size", str(args.max_batch_size)] + args.ours_extra
    r = _run(cmd, _env(args.threads, out.parent / "hf_cache_ours"), out.parent / "ours.log")
    rows = json.loads((out / "manifest.json").read_text())["n_rows"]
    if rows != data["n"]:
        raise SystemExit(f"ours stored {rows} rows, expected {data['n']}")
    shutil.rmtree(out, ignore_errors=True)
    return r


def run_bergson(model_dir, bckpt, data: dict, out: Path, args) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    cache = out.parent / "hf_cache_bergson"
    shutil.rmtree(cache, ignore_errors=True)  # no reuse of the previous run's arrow conversion
    cmd = [str(VENV / "bin" / "bergson"), "build", str(out), "--model", str(bckpt),
           "--tokenizer", str(model_dir), "--dataset", str(data["tokens"]),
           "--projection_dim", str(args.dim), "--projection_target", "global",
           "--projection_type", "rademacher", "--loss_reduction", "mean",
           "--optimizer_state", str(bckpt), "--unit_normalize", "true", "--precision", "fp32",
           "--token_batch_size", str(args.max_tokens_per_batch),
           "--max_batch_size", str(args.max_batch_size), "--overwrite", "true"]
    r = _run(cmd, _env(args.threads, cache), out.parent / "bergson.log")
    info = json.loads((out / "info.json").read_text()) if (out / "info.json").is_file() else {}
    rows = info.get("num_grads", data["n"])
    if rows != data["n"]:
        raise SystemExit(f"bergson stored {rows} rows, expected {data['n']}")
    shutil.rmtree(out, ignore_errors=True)
    return r


# --------------------------------------------------------------------------- one model size

def _spread(xs: list[float]) -> dict:
    if not xs:
        return {"median": None, "min": None, "max": None, "values": []}
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "values": xs}


def bench_size(name: str, wl: Workload, args, work: Path) -> dict:
    model_dir, ckpt = setup_model(work, wl)
    n_params = sum(p.numel() for p in __import__("less_select.modeling", fromlist=["x"]).load_model(
        str(model_dir), "float32", torch.device("cpu")).parameters())
    bckpt = bergson_checkpoint(model_dir, ckpt, work / "bergson_ckpt")
    big = prepare_inputs(work, model_dir, ckpt, args.examples, wl.seq_len)
    small = prepare_inputs(work, model_dir, ckpt, args.small, wl.seq_len)
    args.seq_len = wl.seq_len
    runs = []
    for rep in range(args.repeats):
        row = {"repeat": rep, "loadavg": loadavg()}
        for label, data in (("big", big), ("small", small)):
            for tool in ("ours", "bergson"):  # A B A B
                fn, src = (run_ours, ckpt) if tool == "ours" else (run_bergson, bckpt)
                r = fn(model_dir, src, data, work / f"out_{tool}", args)
                row[f"{tool}_{label}"] = r
                print(f"  {name} repeat {rep} {tool:7s} n={data['n']:4d}: {r['seconds']:7.1f} s, "
                      f"peak RSS {r['peak_rss_mb']:.0f} MB", flush=True)
        for tool in ("ours", "bergson"):
            tb, ts = row[f"{tool}_big"]["seconds"], row[f"{tool}_small"]["seconds"]
            row[f"{tool}_ex_per_s"] = big["n"] / tb
            # undefined when the extra examples cost less than the noise of the process start
            row[f"{tool}_marginal_ex_per_s"] = (big["n"] - small["n"]) / (tb - ts) if tb > ts else None
        row["ratio_end_to_end"] = row["ours_ex_per_s"] / row["bergson_ex_per_s"]
        ours_m, theirs_m = row["ours_marginal_ex_per_s"], row["bergson_marginal_ex_per_s"]
        row["ratio_marginal"] = ours_m / theirs_m if ours_m and theirs_m else None
        runs.append(row)
    summary = {k: _spread([r[k] for r in runs if r[k] is not None]) for k in
               ("ours_ex_per_s", "bergson_ex_per_s", "ratio_end_to_end", "ours_marginal_ex_per_s",
                "bergson_marginal_ex_per_s", "ratio_marginal")}
    return {"size": name, "workload": wl.__dict__, "model_parameters": n_params,
            "examples": big["n"], "small_examples": small["n"], "tokens": big["tokens_total"],
            "loss_tokens": big["loss_tokens"], "runs": runs, "summary": summary}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="toy model, 16 examples, 1 repeat")
    ap.add_argument("--sizes", default="5m", help="comma-separated subset of " + ",".join(SIZES) +
                    " (30m: every bergson batch regenerates a 2.5M x 8192 matrix on the CPU, hours)")
    ap.add_argument("--examples", type=int, default=64, help="pool size N of the timed builds")
    ap.add_argument("--small", type=int, default=16, help="pool size of the fixed-cost builds")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--dim", type=int, default=8192)
    # bergson refuses a token budget above the model's max_position_embeddings (2048 here)
    ap.add_argument("--max-tokens-per-batch", type=int, default=2048)
    ap.add_argument("--max-batch-size", type=int, default=64)
    ap.add_argument("--ours-extra", default="", help="extra flags for our datastore command")
    ap.add_argument("--workdir", default=os.environ.get("LESS_BENCH_WORKDIR", "/tmp/less_bench"))
    ap.add_argument("--results-dir", default=str(RESULTS))
    args = ap.parse_args(argv)
    args.ours_extra = args.ours_extra.split()
    if args.quick:
        args.sizes, args.examples, args.small, args.repeats = "quick", 16, 4, 1
    sizes = args.sizes.split(",")
    if set(sizes) - set(SIZES):
        ap.error(f"unknown sizes {sorted(set(sizes) - set(SIZES))}")
    versions = ensure_venv()
    info = machine_info()
    print(f"machine: {info['platform']}, {info['cpus']} CPUs, load {info['loadavg_at_start']}; "
          f"bergson venv: {versions}", flush=True)
    t0 = time.perf_counter()
    results = [bench_size(s, SIZES[s], args, size_dir(Path(args.workdir), s)) for s in sizes]
    rows = []
    for r in results:
        s = {k: (v if v["median"] is not None else {"median": float("nan"), "min": float("nan"),
                                                      "max": float("nan")}) for k, v in r["summary"].items()}
        rows.append([r["size"], f"{r['model_parameters'] / 1e6:.1f}M", r["examples"],
                     s["ours_ex_per_s"]["median"], s["bergson_ex_per_s"]["median"],
                     f"{s['ratio_end_to_end']['median']:.2f} ({s['ratio_end_to_end']['min']:.2f}-"
                     f"{s['ratio_end_to_end']['max']:.2f})",
                     s["ours_marginal_ex_per_s"]["median"], s["bergson_marginal_ex_per_s"]["median"],
                     f"{s['ratio_marginal']['median']:.2f} ({s['ratio_marginal']['min']:.2f}-"
                     f"{s['ratio_marginal']['max']:.2f})"])
    print_table(f"Build throughput, ours vs bergson {BERGSON_VERSION} (d={args.dim}, {args.threads} thread(s), "
                f"{args.max_tokens_per_batch}-token batches, medians over {args.repeats} interleaved repeats, "
                "ratio min-max in brackets)",
                ["model", "params", "N", "ours ex/s", "bergson ex/s", "ours/bergson", "ours marginal ex/s",
                 "bergson marginal ex/s", "marginal ratio"], rows)
    payload = {"section": "bergson", "quick": args.quick, "machine": info, "bergson_venv": versions,
               "command": " ".join([Path(sys.argv[0]).name] + (argv if argv is not None else sys.argv[1:])),
               "dim": args.dim, "threads": args.threads, "max_tokens_per_batch": args.max_tokens_per_batch,
               "max_batch_size": args.max_batch_size, "repeats": args.repeats,
               "wall_seconds": time.perf_counter() - t0, "sizes": results}
    path = write_result("bergson_quick" if args.quick else "bergson", payload, Path(args.results_dir))
    print(f"  -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
