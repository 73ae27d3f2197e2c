"""The benchmark's base model: a seeded tiny Llama pretrained on >= 2M tokens of real pool text.

Built once and cached (``<cache>/base_model/``, with ``pretrain.json`` recording the recipe, the
token count, the wall time and the loss); every suite and seed selects and trains from it. The text
is the three real pools (cot, t0, alpaca_gpt4) rendered in the Tulu format, never the target tasks.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from pathlib import Path

log = logging.getLogger(__name__)

# The recipe (see the README's quality section): ~1.5M parameters, BPE 4096, 2M+ tokens.
RECIPE = {"vocab_size": 4096, "hidden_size": 128, "num_layers": 4, "num_heads": 4,
          "intermediate_size": 344, "max_seq_length": 256, "batch_size": 32, "lr": 3e-3,
          "min_tokens": 2_000_000, "n_texts": 24_000, "seed": 0}
# --quick: a smaller model on fewer tokens (about 2 minutes), for checking the benchmark runs
QUICK_RECIPE = {**RECIPE, "hidden_size": 64, "num_layers": 2, "intermediate_size": 172,
                "min_tokens": 300_000, "n_texts": 6_000}
POOL_FILES = ("cot/cot_data.jsonl", "t0/t0_data.jsonl", "alpaca_gpt4/alpaca_gpt4_data.jsonl")


def pretraining_texts(data_dir: Path, n_texts: int, seed: int) -> list[str]:
    from less_select.data.encode import tulu_concat
    records = []
    for rel in POOL_FILES:
        with open(data_dir / "train" / "processed" / rel, encoding="utf-8") as fh:
            records.extend(json.loads(line) for line in fh)
    random.Random(seed).shuffle(records)
    return [tulu_concat(r["messages"], "</s>") for r in records[:n_texts]]


def build_base_model(data_dir: Path, cache: Path, recipe: dict | None = None,
                     threads: int = 2) -> Path:
    """The cached base model folder (built on first use; its recipe must match the cached one)."""
    from less_select.demo.pretrain import build_tokenizer, pretrain_tiny_model
    recipe = dict(recipe or RECIPE)
    out = cache / ("base_model" if recipe == RECIPE else "base_model_quick")
    info_file = out / "pretrain.json"
    if info_file.is_file():
        info = json.loads(info_file.read_text())
        if info["recipe"] == recipe:
            return out
        raise SystemExit(f"{out} was built with another recipe; delete it to rebuild")
    texts = pretraining_texts(data_dir, recipe["n_texts"], recipe["seed"])
    tok = build_tokenizer(texts[:5000], vocab_size=recipe["vocab_size"])
    lengths = [min(len(ids), recipe["max_seq_length"]) for ids in tok(texts)["input_ids"]]
    mean_len = sum(lengths) / len(lengths)
    steps = math.ceil(recipe["min_tokens"] / (recipe["batch_size"] * mean_len))
    start = time.perf_counter()
    tmp = out.with_name(out.name + ".part")
    res = pretrain_tiny_model(tmp, texts, seed=recipe["seed"], steps=steps,
                              batch_size=recipe["batch_size"], lr=recipe["lr"],
                              vocab_size=recipe["vocab_size"], hidden_size=recipe["hidden_size"],
                              num_layers=recipe["num_layers"], num_heads=recipe["num_heads"],
                              intermediate_size=recipe["intermediate_size"],
                              max_seq_length=recipe["max_seq_length"],
                              tokenizer_texts=texts[:5000], num_threads=threads, log_every_s=30)
    info = {"recipe": recipe, "n_params": res.n_params, "steps": res.steps,
            "tokens_seen": int(res.steps * recipe["batch_size"] * mean_len),
            "first_loss": res.first_loss, "final_loss": res.final_loss,
            "seconds": time.perf_counter() - start, "threads": threads}
    (tmp / "pretrain.json").write_text(json.dumps(info, indent=2))
    tmp.rename(out)
    log.info("base model: %d parameters, %d tokens, loss %.3f -> %.3f, %.0f s", res.n_params,
             info["tokens_seen"], res.first_loss, res.final_loss, info["seconds"])
    return out


if __name__ == "__main__":
    import argparse
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[3] / "shared" / "data"))
    ap.add_argument("--cache", default=str(Path(__file__).resolve().parent / "cache"))
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    print(build_base_model(Path(a.data_dir), Path(a.cache), threads=a.threads))
