"""Benchmark of the gradient datastore (GitHub issue 6): throughput, projector fidelity, scoring, scaling.

    python benchmarks/bench_datastore.py                 # all sections, full workload (~20 min, 2 cores)
    python benchmarks/bench_datastore.py --quick         # toy sizes, seconds (the smoke test runs this)
    python benchmarks/bench_datastore.py --sections fidelity --threads 2

Each section prints a table and writes ``benchmarks/results/<section>.json`` (``--results-dir``).
Workload: a ~34M-parameter Llama (hidden 512, 8 layers, 8 heads, intermediate 1376, vocab 8192 BPE
trained offline on pool text), LoRA r=32 on q,k,v,o,gate,up,down (P = 2,498,560), sequences truncated
to 128 tokens, the CoT pool of ../shared/data, d = 8192. See docs/performance.md for the results.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (POOL_FILE, RESULTS, SIZES, Workload, loadavg, machine_info, peak_rss_mb,  # noqa: E402
                    pool_examples, print_table, setup_model, size_dir, write_result)

SECTIONS = ("throughput", "fidelity", "scoring", "scaling")


def sizes(quick: bool) -> dict:
    if quick:
        return dict(tp_examples=12, tp_repeats=2, orig_examples=3, orig_rows=64, dim=64, fid_pool=24,
                    fid_dims=[16, 64], rad_dims=[16], sparse_seeds=2, score_rows=20_000, score_dim=256,
                    score_chunk=4096, scale_sizes=[6, 12], targets_per_task=3, target_tasks=4)
    # sized for ~20 minutes on 2 shared cores (about 1 example/s under the load we had)
    return dict(tp_examples=64, tp_repeats=3, orig_examples=4, orig_rows=512, dim=8192, fid_pool=200,
                fid_dims=[1024, 4096, 8192, 32768], rad_dims=[1024], sparse_seeds=5,
                score_rows=1_000_000, score_dim=8192, score_chunk=4096, scale_sizes=[16, 32, 48, 64],
                targets_per_task=2, target_tasks=27)


# ------------------------------------------------------------------------------------------ helpers

def _encoded_pool(tok, n: int, seq_len: int, offset: int = 0):
    from less_select.data.encode import encode_all
    enc, _ = encode_all(pool_examples(4 * n + 32, offset), tok, seq_len)  # many CoT prompts fill 128 tokens
    enc = [e for e in enc if e.n_completion_tokens > 0][:n]
    assert len(enc) == n, "pool too small after dropping examples without completion tokens"
    return enc


def _load(model_dir: Path, ckpt: Path, dtype: str = "float32"):
    from less_select.datastore.build import _attach_adapter
    from less_select.modeling import load_model, load_tokenizer
    tok = load_tokenizer(str(model_dir))
    model = _attach_adapter(load_model(str(model_dir), dtype, torch.device("cpu")), ckpt, str(model_dir))
    return tok, model


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


# --------------------------------------------------------------------------------------- throughput

def plain_forward_backward(model, enc, pad_id: int, max_tokens: int, max_batch: int) -> None:
    """The ceiling: ordinary batched LoRA forward+backward (HF batch-mean loss, LoRA .grad filled),
    same batches as the datastore, no per-example gradients, no projection."""
    from less_select.data.batching import collate, padding_aware_batches
    lora = [p for n, p in model.named_parameters() if "lora_" in n]
    for p in lora:
        p.requires_grad_(True)
    model.eval()  # dropout off, as in the datastore
    for idx in padding_aware_batches([len(e.input_ids) for e in enc], max_tokens, max_batch):
        batch = collate([enc[i] for i in idx], pad_id)
        model(**batch, use_cache=False).loss.backward()
        for p in lora:
            p.grad = None


def datastore_loop(model, enc, ckpt, pad_id: int, dim: int, max_tokens: int, max_batch: int,
                   projector: str = "sparse") -> None:
    """The builder's feature loop for one chunk (per-example gradients, Adam, projection, normalize)."""
    from less_select.datastore.build import FeatureConfig, chunk_features
    from less_select.gradients.per_example import lora_layout
    from less_select.progress import Progress
    from less_select.projection import make_projector
    cfg = FeatureConfig(projector=projector, dims=[dim], max_tokens_per_batch=max_tokens,
                        max_batch_size=max_batch)
    last = lora_layout(model)[-1]
    projectors = {dim: make_projector(projector, last.offset + last.numel, dim, 0)}
    with Progress("bench", total=len(enc)) as prog:
        chunk_features(model, enc, ckpt, cfg, projectors, "adam", "less", pad_id,
                       torch.device("cpu"), prog)


def original_gradients(model, enc, ckpt) -> torch.Tensor:
    """The original LESS loop: batch size 1, full P-dim gradient from autograd, Adam transform on the
    flattened vector (``collect_grads`` with ``gradient_type='adam'``). Returns [N, P] float32."""
    from less_select.training.checkpoints import canonical_param_name
    names, params = [], []
    for n, p in model.named_parameters():
        if "lora_" in n:
            p.requires_grad_(True)
            names.append(canonical_param_name(n))
            params.append(p)
    m = torch.cat([ckpt.exp_avg[n].flatten() for n in names])                 # [P]
    v = torch.cat([ckpt.exp_avg_sq[n].flatten() for n in names])              # [P]
    b1, b2 = ckpt.betas
    model.eval()
    out = []
    for e in enc:
        ids = torch.tensor([e.input_ids])
        loss = model(input_ids=ids, labels=torch.tensor([e.labels]), use_cache=False).loss
        loss.backward()
        g = torch.cat([p.grad.flatten() for p in params])                      # [P]
        for p in params:
            p.grad = None
        m1 = b1 * m + (1 - b1) * g
        v1 = b2 * v + (1 - b2) * g * g
        out.append(m1 / torch.sqrt(v1 + ckpt.eps))                             # [P]
    return torch.stack(out)                                                     # [N, P]


def original_dense_projection(grads: torch.Tensor, dim: int, rows: int, block: int = 128,
                              seed: int = 0) -> float:
    """TRAK ``BasicProjector`` (the CPU fallback of the original): for each block of ``block`` output
    rows, regenerate the [P, block] Rademacher matrix from its seed and multiply. Only the first
    ``rows`` of ``dim`` output rows are computed; returns the time scaled to all ``dim`` rows (the cost
    is exactly linear in the number of row blocks)."""
    n, p = grads.shape
    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    for b in range(0, rows, block):
        gen.manual_seed(seed + b)
        mat = torch.empty(p, block).bernoulli_(0.5, generator=gen).mul_(2).sub_(1)   # [P, block]
        _ = grads @ mat / math.sqrt(dim)                                               # [N, block]
    return (time.perf_counter() - t0) * dim / rows


def padding_stats(enc, max_tokens: int, max_batch: int) -> dict:
    """Tokens computed (batch size x longest, summed over batches) against real tokens, for the
    datastore's padding-aware batches and for greedy filling of the token budget."""
    from less_select.data.batching import padding_aware_batches, token_budget_batches
    lengths = [len(e.input_ids) for e in enc]
    real = sum(lengths)
    out = {"real_tokens": real}
    for name, fn in (("padding_aware", padding_aware_batches), ("greedy", token_budget_batches)):
        plan = fn(lengths, max_tokens, max_batch)
        padded = sum(len(b) * max(lengths[i] for i in b) for b in plan)
        out[name] = {"batches": len(plan), "computed_tokens": padded, "padding_over_real": padded / real - 1}
    return out


def throughput_one(name: str, wl: Workload, model_dir, ckpt_dir, args, sz) -> dict:
    """One model size: plain fwd+bwd (A) and the datastore loop (B) on the same batches, A B A B."""
    from less_select.training.checkpoints import load_checkpoint
    tok, model = _load(model_dir, ckpt_dir)
    ckpt = load_checkpoint(ckpt_dir)
    n_params = sum(p.numel() for n, p in model.named_parameters() if "lora_" not in n)
    enc = _encoded_pool(tok, sz["tp_examples"], wl.seq_len)
    n_tok = sum(len(e.input_ids) for e in enc)
    mt, mb = args.max_tokens_per_batch, args.max_batch_size
    torch.set_num_threads(args.threads)
    datastore_loop(model, enc[:4], ckpt, tok.pad_token_id, sz["dim"], mt, mb)   # warm-up, not timed
    plain, store, loads = [], [], []
    for rep in range(sz["tp_repeats"]):
        loads.append(loadavg())
        plain.append(_timed(lambda: plain_forward_backward(model, enc, tok.pad_token_id, mt, mb)))
        store.append(_timed(lambda: datastore_loop(model, enc, ckpt, tok.pad_token_id, sz["dim"], mt, mb)))
        print(f"  {name} repeat {rep}: plain {len(enc) / plain[-1]:.2f} ex/s, datastore "
              f"{len(enc) / store[-1]:.2f} ex/s, ratio {plain[-1] / store[-1]:.3f}", flush=True)
    ratios = [p / s for p, s in zip(plain, store)]
    orig_enc = enc[:sz["orig_examples"]]
    t_og = {}
    t_og["grad"] = _timed(lambda: t_og.__setitem__("g", original_gradients(model, orig_enc, ckpt)))
    t_og["proj"] = original_dense_projection(t_og.pop("g"), sz["dim"], sz["orig_rows"])
    per_ex_orig = (t_og["grad"] + t_og["proj"]) / len(orig_enc)
    med = float(np.median(store))
    return {"size": name, "model_parameters": n_params, "total_params": ckpt_total(model),
            "lora_r": wl.lora_r, "lora_targets": wl.lora_targets, "examples": len(enc), "tokens": n_tok,
            "loss_tokens": sum(e.n_completion_tokens for e in enc), "threads": args.threads,
            "loadavg": loads + [loadavg()], "padding": padding_stats(enc, mt, mb),
            "plain_seconds": plain, "datastore_seconds": store, "ratios": ratios,
            "ratio_median": float(np.median(ratios)), "ratio_min": min(ratios), "ratio_max": max(ratios),
            "plain_examples_per_s": len(enc) / float(np.median(plain)),
            "datastore_examples_per_s": len(enc) / med, "datastore_tokens_per_s": n_tok / med,
            "original": {"examples_per_s": 1 / per_ex_orig, "examples": len(orig_enc),
                         "grad_loop_examples_per_s": len(orig_enc) / t_og["grad"],
                         "dense_projection_examples_per_s": len(orig_enc) / t_og["proj"],
                         "dense_projection_rows_measured": sz["orig_rows"]},
            "datastore_vs_original": (len(enc) / med) * per_ex_orig}


def section_throughput(args, sz, wl, model_dir, ckpt_dir) -> dict:
    """Datastore against plain batched forward+backward at every model size (``--tp-sizes``)."""
    runs = []
    for name in (["quick"] if args.quick else args.tp_sizes.split(",")):
        if name == "quick":
            mdir, cdir, wl_s = model_dir, ckpt_dir, wl
        else:
            wl_s = SIZES[name]
            mdir, cdir = setup_model(size_dir(Path(args.workdir), name), wl_s)
        runs.append(throughput_one(name, wl_s, mdir, cdir, args, sz))
    print_table(f"Datastore throughput vs plain batched fwd+bwd (d={sz['dim']}, sparse projector, "
                f"{args.threads} thread(s), same batches, {sz['tp_repeats']} interleaved repeats)",
                ["model", "params", "P", "examples", "plain ex/s", "datastore ex/s", "datastore tok/s",
                 "datastore/plain (min-max)", "padding", "original ex/s", "vs original", "load"],
                [[r["size"], f"{r['model_parameters'] / 1e6:.1f}M", r["total_params"], r["examples"],
                  r["plain_examples_per_s"], r["datastore_examples_per_s"], r["datastore_tokens_per_s"],
                  f"{r['ratio_median']:.3f} ({r['ratio_min']:.3f}-{r['ratio_max']:.3f})",
                  f"{100 * r['padding']['padding_aware']['padding_over_real']:.0f}% (greedy "
                  f"{100 * r['padding']['greedy']['padding_over_real']:.0f}%)",
                  r["original"]["examples_per_s"], r["datastore_vs_original"],
                  f"{min(r['loadavg'])}-{max(r['loadavg'])}"] for r in runs])
    return {"dim": sz["dim"], "projector": "sparse", "max_tokens_per_batch": args.max_tokens_per_batch,
            "max_batch_size": args.max_batch_size, "runs": runs}


def ckpt_total(model) -> int:
    from less_select.gradients.per_example import lora_layout
    last = lora_layout(model)[-1]
    return last.offset + last.numel


# ----------------------------------------------------------------------------------------- fidelity

def _features(model, enc, pad_id, ckpt, adam: bool, mt: int, mb: int) -> torch.Tensor:
    """Exact (unprojected) features [N, P] float32, rows in ``enc`` order, via the production hooks."""
    from less_select.data.batching import collate, token_budget_batches
    from less_select.gradients.features import adam_preconditioned_gradient
    from less_select.gradients.per_example import PerExampleLoraGradients
    total = ckpt_total(model)
    out = torch.zeros(len(enc), total)
    for idx in token_budget_batches([len(e.input_ids) for e in enc], mt, mb):
        rows = torch.tensor(idx)

        def on_block(param, grad):                                   # grad: [n, p]
            if adam:
                grad = adam_preconditioned_gradient(grad, ckpt.exp_avg[param.name], ckpt.exp_avg_sq[param.name],
                                                    ckpt.betas, ckpt.eps)
            out[rows, param.offset:param.offset + param.numel] = grad
        with PerExampleLoraGradients(model, on_block) as collector:
            collector.run(collate([enc[i] for i in idx], pad_id))
    return out


def _unit(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x.float(), dim=1)


def less_scores(pool: torch.Tensor, targets: torch.Tensor, labels: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(score [N], per-subtask influence [N, K]) of unit pool rows vs unit target rows (docs/method.md)."""
    pool, targets = _unit(pool), _unit(targets)
    subtasks = sorted(set(labels))
    means = torch.stack([targets[[j for j, s in enumerate(labels) if s == k]].mean(0) for k in subtasks])
    inf = (pool @ means.T).double().numpy()                                      # [N, K]
    return inf.max(1), inf


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def _top_overlap(a: np.ndarray, b: np.ndarray, frac: float = 0.05) -> float:
    k = max(1, int(round(frac * len(a))))
    return len(set(np.argsort(-a)[:k]) & set(np.argsort(-b)[:k])) / k


def section_fidelity(args, sz, wl, model_dir, ckpt_dir) -> dict:
    from less_select.data.targets import build_bbh_targets
    from less_select.data.encode import encode_all
    from less_select.projection import make_projector
    from less_select.scoring import projection_noise
    from less_select.training.checkpoints import load_checkpoint
    torch.set_num_threads(args.threads)
    tok, model = _load(model_dir, ckpt_dir)
    ckpt = load_checkpoint(ckpt_dir)
    mt, mb = args.max_tokens_per_batch, args.max_batch_size
    t0 = time.perf_counter()
    # BBH-like targets: LESS's BBH prompts without in-context examples (the CoT answer is the
    # completion), 3 per task; short enough for the 34M model's budget
    tex = [e for e in build_bbh_targets(str(POOL_FILE.parents[3]), chat_format="none")]
    tasks = sorted({e.subtask for e in tex})[:sz["target_tasks"]]
    tex = [e for e in tex if e.subtask in tasks and int(e.id.rsplit("/", 1)[1]) < sz["targets_per_task"]]
    tenc, _ = encode_all(tex, tok, 4 * wl.seq_len)
    keep = [i for i, e in enumerate(tenc) if e.n_completion_tokens > 0]
    labels = [str(tex[i].subtask) for i in keep]
    tenc = [tenc[i] for i in keep]
    targets = _features(model, tenc, tok.pad_token_id, ckpt, adam=False, mt=mt, mb=mb)   # [M, P]
    enc = _encoded_pool(tok, sz["fid_pool"], wl.seq_len, offset=1000)
    pool = _features(model, enc, tok.pad_token_id, ckpt, adam=True, mt=mt, mb=mb)         # [N, P]
    t_grads = time.perf_counter() - t0
    exact, exact_inf = less_scores(pool, targets, labels)
    total = pool.shape[1]
    print(f"  exact features: {len(enc)} pool x {len(tenc)} targets ({len(set(labels))} subtasks), "
          f"P={total}, {t_grads:.0f}s; exact score std {exact.std():.4g}", flush=True)

    # exact cosines of every (pool, target) pair, for the cosine-error check
    exact_cos = (_unit(pool) @ _unit(targets).T).numpy()                          # [N, M]
    results = []
    configs = [("sparse", {"nnz": 1}, s, sz["fid_dims"]) for s in range(sz["sparse_seeds"])]
    configs += [("sparse", {"nnz": 4}, 0, sz["fid_dims"])]
    configs += [("rademacher", {}, 0, sz["rad_dims"])]
    for kind, opts, seed, dims in configs:
        if not dims:
            continue
        # rademacher rows do not depend on d: project once at the largest d and take row prefixes
        plan = [(max(dims), dims)] if kind == "rademacher" else [(d, [d]) for d in dims]
        for d_big, ds in plan:
            proj = make_projector(kind, total, d_big, seed, **opts)
            t1 = time.perf_counter()
            pp = proj.project(pool)                                             # [N, d_big]
            tt = proj.project(targets)                                          # [M, d_big]
            t_proj = time.perf_counter() - t1
            for d in ds:
                score, inf = less_scores(pp[:, :d], tt[:, :d], labels)
                cos = (_unit(pp[:, :d]) @ _unit(tt[:, :d]).T).numpy()
                means = {"c": np.stack([_unit(tt[:, :d])[[j for j, s in enumerate(labels) if s == k]].mean(0).numpy()
                                        for k in sorted(set(labels))])}
                noise = projection_noise(means, [1.0], [{"name": "c"}], d, score, kind)
                results.append({
                    "projector": kind, **opts, "seed": seed, "dim": d,
                    "spearman": _spearman(score, exact), "top5_overlap": _top_overlap(score, exact),
                    "pearson": float(np.corrcoef(score, exact)[0, 1]),
                    "cosine_error_std": float((cos - exact_cos).std()),
                    "expected_cosine_error": 1 / math.sqrt(d),
                    "influence_error_std": float((inf - exact_inf).std()),
                    "noise_std_estimate": noise["noise_std"],
                    "noise_to_spread_estimate": noise["noise_to_spread"],
                    "noise_dominated_flag": noise["noise_dominated"],
                    "projection_examples_per_s": (len(enc) + len(tenc)) / t_proj,
                    "projection_dim_computed": d_big})
            print(f"  {kind}{opts or ''} seed {seed} d={d_big}: {(len(enc) + len(tenc)) / t_proj:.1f} "
                  f"vectors/s", flush=True)
    # summary: sparse(nnz=1) mean +- std over seeds
    summary = []
    keys = sorted({(r["projector"], r.get("nnz", 0), r["dim"]) for r in results})
    for kind, nnz, d in keys:
        rs = [r for r in results if r["projector"] == kind and r.get("nnz", 0) == nnz and r["dim"] == d]
        sp = np.array([r["spearman"] for r in rs])
        ov = np.array([r["top5_overlap"] for r in rs])
        summary.append({"projector": kind, "nnz": nnz or None, "dim": d, "seeds": len(rs),
                        "spearman_mean": float(sp.mean()), "spearman_std": float(sp.std()),
                        "top5_mean": float(ov.mean()), "top5_std": float(ov.std()),
                        "cosine_error_std": float(np.mean([r["cosine_error_std"] for r in rs])),
                        "expected_cosine_error": 1 / math.sqrt(d),
                        "influence_error_std": float(np.mean([r["influence_error_std"] for r in rs])),
                        "noise_std_estimate": float(np.mean([r["noise_std_estimate"] for r in rs])),
                        "projection_examples_per_s": float(np.mean([r["projection_examples_per_s"] for r in rs]))})
    print_table(f"Projector fidelity vs exact LESS scores ({len(enc)} pool examples, {len(tenc)} BBH targets "
                f"in {len(set(labels))} subtasks; exact score std {exact.std():.3g})",
                ["projector", "d", "seeds", "spearman", "+-", "top-5%", "+-", "cos err", "1/sqrt(d)",
                 "infl err", "noise est", "proj vec/s"],
                [[s["projector"] + (f"(nnz={s['nnz']})" if s["nnz"] else ""), s["dim"], s["seeds"],
                  s["spearman_mean"], s["spearman_std"], s["top5_mean"], s["top5_std"], s["cosine_error_std"],
                  s["expected_cosine_error"], s["influence_error_std"], s["noise_std_estimate"],
                  s["projection_examples_per_s"]] for s in summary])
    return {"pool_examples": len(enc), "target_examples": len(tenc), "subtasks": len(set(labels)),
            "total_params": total, "threads": args.threads, "feature_seconds": t_grads,
            "exact_score_std": float(exact.std()), "exact_score_mean": float(exact.mean()),
            "exact_influence_std": float(exact_inf.std()),
            "exact_cosine_std": float(exact_cos.std()), "summary": summary, "runs": results,
            "loadavg_end": loadavg()}


# ------------------------------------------------------------------------------------------ scoring

def _synthetic_store(root: Path, n: int, dim: int, chunk: int, m_targets: int, k: int) -> tuple[Path, Path]:
    """A pool store of ``n`` unit float16 rows and a target store, in the real store format. Chunks are
    one random block of unit rows, rolled per chunk (content does not change the cost), and evicted
    from the page cache after writing so scoring reads them from disk."""
    from less_select.datastore import store as ds
    rng = np.random.default_rng(0)
    base = rng.standard_normal((chunk, dim), dtype=np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    base16 = base.astype(np.float16)
    spec = {"kind": "sparse", "seed": 0, "dim": dim, "total_params": 2498560, "hash": "splitmix64-v1", "nnz": 1}
    ck = [{"name": "checkpoint-1", "path": "x", "step": 1, "mean_lr": 1.0, "weight": 1.0, "adapter_sha256": "0"}]
    paths = []
    for name, rows in (("pool", n), ("targets", m_targets)):
        path = root / name
        path.mkdir(parents=True, exist_ok=True)  # write_chunk never creates the build folder itself
        for c in range(ds.n_chunks(rows, chunk)):
            lo, hi = c * chunk, min((c + 1) * chunk, rows)
            ds.write_chunk(path, "checkpoint-1", dim, c, np.roll(base16, c, axis=0)[:hi - lo])
            f = ds.chunk_path(path, "checkpoint-1", dim, c)
            fd = os.open(f, os.O_RDONLY)
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            os.close(fd)
        mf = {"format_version": ds.FORMAT_VERSION, "gradient_type": "adam" if name == "pool" else "sgd",
              "checkpoints": ck, "projectors": [spec], "chunk_size": chunk, "n_rows": rows}
        (path / ds.MANIFEST).write_text(json.dumps(mf))
        (path / "stage.json").write_text("{}")  # marks the store finished, as the builder does
        (path / ds.INDEX).write_text("".join(json.dumps({"row": r, "subtask": f"t{r % k}"}) + "\n"
                                             for r in range(rows)))
        paths.append(path)
    return paths[0], paths[1]


def _child_score(pool: str, targets: str, out_file: str) -> None:
    from less_select.scoring import compute_scores
    t0 = time.perf_counter()
    s = compute_scores(pool, targets, out_file=out_file)
    dt = time.perf_counter() - t0
    print(json.dumps({"seconds": dt, "rows": int(s.per_subtask.shape[0]), "subtasks": len(s.subtasks),
                      "peak_rss_mb": peak_rss_mb()}))


def section_scoring(args, sz, wl, model_dir, ckpt_dir) -> dict:
    import shutil
    root = Path(args.workdir) / "synthetic_store"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    n, dim, k = sz["score_rows"], sz["score_dim"], 27
    try:
        t0 = time.perf_counter()
        pool, targets = _synthetic_store(root, n, dim, sz["score_chunk"], 81, k)
        t_write = time.perf_counter() - t0
        gb = sum(f.stat().st_size for f in (pool / "checkpoint-1").rglob("*.npy")) / 1e9
        runs = []
        for threads in args.thread_counts:
            env = {**os.environ, "OMP_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": str(threads),
                   "MKL_NUM_THREADS": str(threads)}
            # evict again so every run reads from disk
            for f in (pool / "checkpoint-1").rglob("*.npy"):
                fd = os.open(f, os.O_RDONLY)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                os.close(fd)
            la = loadavg()
            res = subprocess.run([sys.executable, __file__, "--_child-score", str(pool), str(targets),
                                  str(root / "scores.npy")], capture_output=True, text=True, env=env, check=True)
            r = json.loads(res.stdout.strip().splitlines()[-1])
            r.update(threads=threads, rows_per_s=n / r["seconds"], gb_per_s=gb / r["seconds"], loadavg=la)
            runs.append(r)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print_table(f"Scoring a synthetic store: {n:,} x {dim} float16 rows ({gb:.1f} GB, cold page cache), "
                f"{k} subtasks (written in {t_write:.0f}s, then deleted)",
                ["threads", "seconds", "rows/s", "GB/s", "peak RSS MB", "load"],
                [[r["threads"], r["seconds"], r["rows_per_s"], r["gb_per_s"], r["peak_rss_mb"], r["loadavg"]]
                 for r in runs])
    return {"rows": n, "dim": dim, "subtasks": k, "store_gb": gb, "write_seconds": t_write, "runs": runs}


# ------------------------------------------------------------------------------------------ scaling

def _child_build(model_dir: str, ckpt: str, out: str, n: int, seq_len: int, dim: int, threads: int,
                 mt: int, mb: int) -> None:
    import logging
    logging.disable(logging.WARNING)
    torch.set_num_threads(threads)
    from less_select.datastore.build import DatastoreConfig, run_datastore
    cfg = DatastoreConfig(model=model_dir, checkpoints=[ckpt], data=[str(POOL_FILE)], output_dir=out,
                          projector="sparse", dims=[dim], max_seq_length=seq_len, dtype="float32",
                          max_examples=n, max_tokens_per_batch=mt, max_batch_size=mb)
    t0 = time.perf_counter()
    store = run_datastore(cfg)
    dt = time.perf_counter() - t0
    mf = json.loads((Path(store) / "manifest.json").read_text())
    print(json.dumps({"seconds": dt, "rows": mf["n_rows"], "peak_rss_mb": peak_rss_mb()}))


def section_scaling(args, sz, wl, model_dir, ckpt_dir) -> dict:
    import shutil
    runs = []
    for n in sz["scale_sizes"]:
        out = Path(args.workdir) / f"scale_{n}"
        shutil.rmtree(out, ignore_errors=True)
        la = loadavg()
        res = subprocess.run([sys.executable, __file__, "--_child-build", str(model_dir), str(ckpt_dir), str(out),
                              str(n), str(wl.seq_len), str(sz["dim"]), str(args.threads),
                              str(args.max_tokens_per_batch), str(args.max_batch_size)],
                             capture_output=True, text=True, check=True)
        r = json.loads(res.stdout.strip().splitlines()[-1])
        r.update(examples=n, loadavg=la, rows_per_s=r["rows"] / r["seconds"])
        runs.append(r)
        shutil.rmtree(out, ignore_errors=True)
        print(f"  {n} examples: {r['seconds']:.1f}s, peak RSS {r['peak_rss_mb']:.0f} MB", flush=True)
    x = np.array([r["rows"] for r in runs], float)
    y = np.array([r["seconds"] for r in runs])
    slope, intercept = np.polyfit(x, y, 1)
    resid = y - (slope * x + intercept)
    r2 = 1 - (resid ** 2).sum() / ((y - y.mean()) ** 2).sum()
    print_table(f"Scaling: end-to-end run_datastore (process start excluded; model load, tokenization, "
                f"build, manifest included), d={sz['dim']}, {args.threads} thread(s)",
                ["examples", "rows", "seconds", "rows/s", "peak RSS MB", "load"],
                [[r["examples"], r["rows"], r["seconds"], r["rows_per_s"], r["peak_rss_mb"], r["loadavg"]]
                 for r in runs])
    print(f"  linear fit: {slope:.3f} s/row + {intercept:.1f} s fixed, R^2 = {r2:.4f}")
    return {"dim": sz["dim"], "threads": args.threads, "runs": runs, "fit_seconds_per_row": slope,
            "fit_fixed_seconds": intercept, "fit_r2": r2}


# ------------------------------------------------------------------------------------------- main

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="toy sizes (a smoke test in seconds)")
    ap.add_argument("--sections", default=",".join(SECTIONS), help="comma-separated subset of " + ",".join(SECTIONS))
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the fidelity/scaling sections")
    ap.add_argument("--thread-counts", default="1,2", help="thread counts the throughput/scoring sections compare")
    ap.add_argument("--scale-sizes", default="", help="comma-separated pool sizes of the scaling section "
                    "(default: 16,32,48,64; larger pools span several batches and show flat memory)")
    ap.add_argument("--tp-sizes", default="5m,30m", help="model sizes of the throughput section "
                    "(comma-separated subset of 5m,30m)")
    ap.add_argument("--tp-repeats", type=int, default=0, help="interleaved repeats of the throughput "
                    "section (default 3; more narrow the spread on a noisy machine)")
    ap.add_argument("--max-tokens-per-batch", type=int, default=8192)
    ap.add_argument("--max-batch-size", type=int, default=64)
    ap.add_argument("--workdir", default=os.environ.get("LESS_BENCH_WORKDIR", "/tmp/less_bench"),
                    help="model, checkpoint and temporary stores (the 1M-row store is deleted after use)")
    ap.add_argument("--results-dir", default=str(RESULTS))
    ap.add_argument("--_child-score", nargs=3, help=argparse.SUPPRESS)
    ap.add_argument("--_child-build", nargs=9, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._child_score:
        _child_score(*args._child_score)
        return 0
    if args._child_build:
        a = args._child_build
        _child_build(a[0], a[1], a[2], int(a[3]), int(a[4]), int(a[5]), int(a[6]), int(a[7]), int(a[8]))
        return 0
    import logging
    logging.basicConfig(level=logging.ERROR)
    import warnings
    warnings.filterwarnings("ignore")
    args.thread_counts = [int(t) for t in args.thread_counts.split(",")]
    sections = [s for s in args.sections.split(",") if s]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        ap.error(f"unknown sections {sorted(unknown)}")
    wl = Workload.quick() if args.quick else Workload()
    sz = sizes(args.quick)
    if args.tp_repeats:
        sz["tp_repeats"] = args.tp_repeats
    if args.scale_sizes:
        sz["scale_sizes"] = [int(n) for n in args.scale_sizes.split(",")]
    work = Path(args.workdir) / ("quick" if args.quick else "full")
    info = machine_info()
    print(f"machine: {info['platform']}, {info['cpus']} CPUs, torch {info['torch']}, "
          f"load average {info['loadavg_at_start']}")
    torch.set_num_threads(args.threads)
    model_dir, ckpt_dir = setup_model(work, wl)
    results_dir = Path(args.results_dir)
    for name in sections:
        t0 = time.perf_counter()
        print(f"\n== {name}", flush=True)
        payload = globals()[f"section_{name}"](args, sz, wl, model_dir, ckpt_dir)
        payload = {"section": name, "quick": args.quick, "workload": wl.__dict__, "machine": info,
                   "wall_seconds": time.perf_counter() - t0, "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]),
                   **payload}
        path = write_result(name, payload, results_dir)
        print(f"  -> {path} ({payload['wall_seconds']:.0f}s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
