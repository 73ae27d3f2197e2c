"""Shared workload of the benchmarks: a ~34M-parameter Llama built from a config, a BPE tokenizer
trained offline on pool text, LoRA r=32 on every linear layer, and a warmup checkpoint made by a
few real AdamW steps on pool examples (so the Adam moments and LoRA B are those of a trained adapter).

Nothing is downloaded: the pool and the BBH target prompts come from ../shared/data.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import time
from dataclasses import dataclass
from pathlib import Path

import torch

DATA_ROOT = Path(os.environ.get("LESS_BENCH_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
POOL_FILE = DATA_ROOT / "train" / "processed" / "cot" / "cot_data.jsonl"
RESULTS = Path(__file__).resolve().parent / "results"
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class Workload:
    """Model size; the full one is the issue's 34M Llama, ``quick`` a toy for the smoke test."""

    hidden: int = 512
    layers: int = 8
    heads: int = 8
    intermediate: int = 1376
    vocab: int = 8192
    lora_r: int = 32
    seq_len: int = 128
    warmup_steps: int = 24
    warmup_batch: int = 8
    warmup_lr: float = 1e-3
    lora_targets: str = ",".join(LORA_TARGETS)  # comma-separated LoRA target modules

    @classmethod
    def quick(cls) -> "Workload":
        return cls(hidden=64, layers=2, heads=4, intermediate=128, vocab=512, lora_r=4,
                   seq_len=256, warmup_steps=3, warmup_batch=4)


# the model sizes of the throughput benchmarks (bench_datastore.py throughput, bench_bergson.py)
SIZES = {
    # ~5.3M parameters, LoRA r 8 on the attention projections (P = 65,536)
    "5m": Workload(hidden=256, layers=4, heads=4, intermediate=688, vocab=4096, lora_r=8,
                   lora_targets="q_proj,k_proj,v_proj,o_proj"),
    # 33.7M parameters, LoRA r 32 on every linear layer (P = 2,498,560): the default Workload
    "30m": Workload(),
    "quick": Workload(hidden=64, layers=2, heads=4, intermediate=128, vocab=512, lora_r=4, seq_len=128,
                      warmup_steps=3, warmup_batch=4),
}


def size_dir(root: Path, name: str) -> Path:
    """Where a size's model and warmup checkpoint are cached (30m shares bench_datastore's "full")."""
    return Path(root) / ("full" if name == "30m" else f"size_{name}")


def machine_info() -> dict:
    load1, load5, load15 = os.getloadavg()
    return {"platform": platform.platform(), "python": platform.python_version(),
            "torch": torch.__version__, "cpus": os.cpu_count(),
            "torch_threads_default": torch.get_num_threads(),
            "loadavg_at_start": [round(load1, 2), round(load5, 2), round(load15, 2)],
            "time": time.strftime("%Y-%m-%d %H:%M:%S")}


def loadavg() -> float:
    return round(os.getloadavg()[0], 2)


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss it is not inherited over exec
    from the parent that started us)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def pool_examples(n: int, offset: int = 0):
    from less_select.data import load_examples
    examples, _ = load_examples([str(POOL_FILE)], max_per_file=offset + n)
    return examples[offset:offset + n]


def setup_model(work: Path, wl: Workload, log=print) -> tuple[Path, Path]:
    """Tokenizer + base model folder and one warmup checkpoint folder (cached in ``work``)."""
    from less_select.demo.tiny_model import build_tiny_llama, build_tokenizer
    model_dir, ckpt_root = work / "model", work / "warmup"
    ckpt = ckpt_root / "checkpoint-1"
    stamp = work / "workload.json"
    if stamp.is_file() and json.loads(stamp.read_text()) == wl.__dict__ and (ckpt / "less_checkpoint.json").exists():
        return model_dir, ckpt
    t0 = time.perf_counter()
    texts = [m["content"] for ex in pool_examples(4000, offset=20000) for m in (ex.messages or [])]
    tok = build_tokenizer(texts, vocab_size=wl.vocab)
    model = build_tiny_llama(len(tok), hidden_size=wl.hidden, num_layers=wl.layers, num_heads=wl.heads,
                             intermediate_size=wl.intermediate, max_positions=2048, tokenizer=tok)
    model_dir.mkdir(parents=True, exist_ok=True)
    tok.save_pretrained(model_dir)
    model.save_pretrained(model_dir)
    n_params = sum(p.numel() for p in model.parameters())
    _warmup(model, tok, ckpt, wl)
    stamp.write_text(json.dumps(wl.__dict__))
    log(f"setup: {n_params / 1e6:.1f}M-parameter model, vocab {len(tok)}, warmup checkpoint "
        f"in {time.perf_counter() - t0:.0f}s")
    return model_dir, ckpt


def _warmup(model, tok, ckpt: Path, wl: Workload) -> None:
    """A few real AdamW steps of LoRA training (lr constant, dropout 0) on pool examples; saves the
    adapter, the name-keyed Adam moments and meta like the warmup stage does."""
    from peft import LoraConfig, get_peft_model
    from less_select.data.batching import collate
    from less_select.data.encode import encode_all
    from less_select.training.checkpoints import MOMENTS_FILE, canonical_param_name, save_moments, write_meta
    torch.manual_seed(0)
    peft = get_peft_model(model, LoraConfig(r=wl.lora_r, lora_alpha=2 * wl.lora_r, lora_dropout=0.0,
                                            target_modules=wl.lora_targets.split(",")))
    params = {canonical_param_name(k): p for k, p in peft.named_parameters() if p.requires_grad}
    opt = torch.optim.AdamW(list(params.values()), lr=wl.warmup_lr, betas=(0.9, 0.999), eps=1e-8,
                            weight_decay=0.0)
    enc, _ = encode_all(pool_examples(4 * wl.warmup_steps * wl.warmup_batch, offset=10000), tok, wl.seq_len)
    enc = [e for e in enc if e.n_completion_tokens > 0][:wl.warmup_steps * wl.warmup_batch]
    peft.train()
    for s in range(0, len(enc) - wl.warmup_batch + 1, wl.warmup_batch):
        batch = collate(enc[s:s + wl.warmup_batch], tok.pad_token_id)
        loss = peft(**batch).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    peft.save_pretrained(ckpt)
    state = {id(p): opt.state[p] for p in params.values()}
    save_moments(ckpt / MOMENTS_FILE, {n: state[id(p)]["exp_avg"] for n, p in params.items()},
                 {n: state[id(p)]["exp_avg_sq"] for n, p in params.items()})
    step = int(state[id(next(iter(params.values())))]["step"])
    write_meta(ckpt, {"epoch": 1, "step": step, "mean_lr": wl.warmup_lr, "betas": [0.9, 0.999], "eps": 1e-8})


def write_result(name: str, payload: dict, results_dir: Path | None = None) -> Path:
    out = (results_dir or RESULTS)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, default=float) + "\n")
    return path


def print_table(title: str, header: list[str], rows: list[list]) -> None:
    cells = [[str(h) for h in header]] + [[_fmt(v) for v in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    print(f"\n{title}")
    for i, r in enumerate(cells):
        print("  " + "  ".join(c.rjust(w) for c, w in zip(r, widths)))
        if i == 0:
            print("  " + "  ".join("-" * w for w in widths))


def _fmt(v) -> str:
    if isinstance(v, float):
        if v == 0 or 0.01 <= abs(v) < 1e5:
            return f"{v:.3g}" if abs(v) < 10 else f"{v:.1f}"
        return f"{v:.2e}"
    return str(v)
