"""``less-select tiny-model`` and the tiny offline models of the tests, demo and benchmarks: a BPE
tokenizer trained on your data and a small Llama built from a config (nothing downloaded).

For trying the pipeline on a CPU without downloading anything: a byte-level BPE tokenizer trained on
the data, a tiny Llama from a config, briefly pre-trained as a causal LM on the data (Tulu-rendered).
Selections made with such a model are only as good as the model; use a real model for real work.
``tiny-model`` writes a chat template into the tokenizer (:data:`TULU_CHAT_TEMPLATE`, the Tulu format
the model is pretrained on), as tools that need one for prompt/completion data expect.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Literal

import torch

from ..configs import non_negative, option, positive, shared, validate
from ..data import load_examples
from ..data.encode import tulu_concat
from ..errors import UserError

log = logging.getLogger(__name__)


@dataclass
class TinyModelConfig:
    """A tiny offline Llama-architecture model trained briefly on the given data."""

    data: list[str] = option(factory=list, help="Text sources: pool or target files in any supported format.")
    output_dir: str = option("", help="Folder to save the model and tokenizer into.")
    chat_template: Literal["tulu", "none"] = option("tulu", help=(
        "Chat template written into the tokenizer: tulu (the Tulu format the model is pretrained on; "
        "data encodes token for token as with --template tulu) or none."))
    max_examples: int = shared("max_examples")
    vocab_size: int = option(1024, help="BPE vocabulary size.", check=positive)
    hidden_size: int = option(128, help="Model width.", check=positive)
    num_layers: int = option(2, help="Transformer layers.", check=positive)
    num_heads: int = option(4, help="Attention heads.", check=positive)
    intermediate_size: int = option(256, help="MLP width.", check=positive)
    pretrain_seq_length: int = option(256, help="Pretraining texts are cut to this many tokens (the "
                                                "model's context is max(512, this)).", check=positive)
    pretrain_steps: int = option(100, help="Causal-LM pretraining steps (0: random weights).",
                                 check=non_negative)
    seed: int = shared("seed")


def run_tiny_model(config: TinyModelConfig) -> Path:
    from .pretrain import pretrain_tiny_model
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
                        intermediate_size=config.intermediate_size, max_seq_length=config.pretrain_seq_length,
                        lr=3e-3 if config.pretrain_steps else 0.0)
    if config.chat_template == "tulu":
        write_chat_template(config.output_dir, TULU_CHAT_TEMPLATE)
    return Path(config.output_dir)


#: The Tulu format as a chat template. A conversation rendered with it is the text the ``tulu``
#: encoding tokenizes (BOS, then each turn as ``<|role|>\n`` + its stripped content, ``</s>`` after
#: an answer, a newline after every turn), and the generation prompt is ``<|assistant|>\n``, so the
#: ``chat-template-v1`` encoding of a tiny model's data equals its ``tulu-v2`` encoding token for token.
#: String literals only, so Jinja's whitespace control cannot touch a newline.
TULU_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{{ '<|' + m['role'] + '|>\\n' + (m['content'] | trim) }}"
    "{% if m['role'] == 'assistant' %}{{ eos_token }}{% endif %}{{ '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}")


def write_chat_template(model_dir: str | Path, template: str) -> None:
    """Save ``template`` as the chat template of the tokenizer in ``model_dir`` (peers such as
    bergson, and prompt/completion data with ``--template chat_template_all``, need one)."""
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    tok.chat_template = template
    tok.save_pretrained(str(model_dir))


def build_tokenizer(texts: Iterable[str], vocab_size: int = 512):
    """A byte-level BPE tokenizer trained on ``texts`` (offline), Llama-style special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<unk>", "<s>", "</s>", "<pad>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(list(texts), trainer=trainer)
    bos = tok.token_to_id("<s>")
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                       special_tokens=[("<s>", bos)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>", pad_token="<pad>")


def build_tiny_llama(vocab_size: int, *, hidden_size: int = 64, num_layers: int = 2,
                     num_heads: int = 4, intermediate_size: int = 128, max_positions: int = 512,
                     seed: int = 0, dtype: torch.dtype = torch.float32, tokenizer=None):
    """A randomly initialized Llama-architecture causal LM built from a config (nothing downloaded)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=vocab_size, hidden_size=hidden_size, intermediate_size=intermediate_size,
                      num_hidden_layers=num_layers, num_attention_heads=num_heads,
                      num_key_value_heads=num_heads, max_position_embeddings=max_positions,
                      tie_word_embeddings=False)
    if tokenizer is not None:
        cfg.bos_token_id = tokenizer.bos_token_id
        cfg.eos_token_id = tokenizer.eos_token_id
        cfg.pad_token_id = tokenizer.pad_token_id
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg).to(dtype)
    if tokenizer is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        model.generation_config.eos_token_id = tokenizer.eos_token_id
        model.generation_config.bos_token_id = tokenizer.bos_token_id
    return model


def make_tiny_model_dir(out_dir: str | Path, texts: Iterable[str], *, vocab_size: int = 512,
                        seed: int = 0, **model_kwargs) -> Path:
    """Save a tiny tokenizer + Llama model to ``out_dir`` so every stage can load it by path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = build_tokenizer(texts, vocab_size=vocab_size)
    model = build_tiny_llama(len(tok), seed=seed, tokenizer=tok, **model_kwargs)
    tok.save_pretrained(out)
    model.save_pretrained(out)
    log.info("wrote tiny model (%d parameters) to %s", sum(p.numel() for p in model.parameters()), out)
    return out
