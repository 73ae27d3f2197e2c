"""``less-select tiny-model``: build a small Llama and its tokenizer offline from your own data.

For trying the pipeline on a CPU without downloading anything: a byte-level BPE tokenizer trained on
the data, a tiny Llama from a config, briefly pre-trained as a causal LM on the data (Tulu-rendered).
Selections made with such a model are only as good as the model; use a real model for real work.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from .configs import non_negative, option, positive, validate
from .data import load_examples
from .data.encode import tulu_concat
from .errors import UserError

log = logging.getLogger(__name__)


@dataclass
class TinyModelConfig:
    """A tiny offline Llama-architecture model trained briefly on the given data."""

    data: list[str] = option(factory=list, help="Text sources: pool or target files in any supported format.")
    output_dir: str = option("", help="Folder to save the model and tokenizer into.")
    max_examples: int = option(2000, help="Use at most the first N examples of each file (0: all).",
                               check=non_negative)
    vocab_size: int = option(1024, help="BPE vocabulary size.", check=positive)
    hidden_size: int = option(128, help="Model width.", check=positive)
    num_layers: int = option(2, help="Transformer layers.", check=positive)
    num_heads: int = option(4, help="Attention heads.", check=positive)
    intermediate_size: int = option(256, help="MLP width.", check=positive)
    max_seq_length: int = option(256, help="Pretraining sequence length.", check=positive)
    pretrain_steps: int = option(100, help="Causal-LM pretraining steps (0: random weights).",
                                 check=non_negative)
    seed: int = option(0, help="Seed of the initialization and the data order.", check=non_negative)


def run_tiny_model(config: TinyModelConfig) -> Path:
    from .demo.pretrain import pretrain_tiny_model
    validate(config)
    if not config.data or not config.output_dir:
        raise UserError("tiny-model needs --data and --output-dir")
    if config.hidden_size % config.num_heads:
        raise UserError(f"--hidden-size {config.hidden_size} must be a multiple of --num-heads "
                        f"{config.num_heads}")
    examples, _ = load_examples(config.data, max_per_file=config.max_examples or None)
    log.info("tiny-model: using %d example(s) from %d file(s)%s", len(examples), len(config.data),
             f" (at most {config.max_examples} per file: --max-examples)" if config.max_examples else "")
    texts = [tulu_concat(e.messages, "</s>") for e in examples]
    pretrain_tiny_model(config.output_dir, texts, seed=config.seed, steps=max(config.pretrain_steps, 1),
                        vocab_size=config.vocab_size, hidden_size=config.hidden_size,
                        num_layers=config.num_layers, num_heads=config.num_heads,
                        intermediate_size=config.intermediate_size, max_seq_length=config.max_seq_length,
                        lr=3e-3 if config.pretrain_steps else 0.0)
    return Path(config.output_dir)
