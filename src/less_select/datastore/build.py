"""The datastore and target-feature stages: per-example features of every example at every
checkpoint, projected (several d in one pass), row-normalized and written chunk by chunk.

Pool examples get the Adam-preconditioned gradient, target examples the plain gradient
(docs/method.md, "Pool feature" and "Target feature"). Work is split into chunks of rows; a chunk is
committed only when complete, so a crashed build resumes where it stopped and several processes (``torchrun`` ranks, or
``--num-shards``/``--shard-index``) can build disjoint chunks of one store.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from . import store as ds
from ..configs import at_least, non_negative, option, positive, to_dict, validate
from ..data import Example, load_examples
from ..data.batching import collate, token_budget_batches
from ..data.encode import Encoded, Template, encode_all, tulu_encoding
from ..errors import UserError
from ..modeling import adapter_fit_errors, default_device, identity_mismatch, load_model, \
    load_tokenizer, model_identity
from ..progress import Progress
from ..projection import make_projector
from ..stage_folder import file_sha256, stage_status, write_atomic
from ..training.checkpoints import META_FILE, Checkpoint, _lr_from_trainer_state, _trainer_state, \
    list_checkpoints, load_checkpoint
from .build_folder import build_lock, finish_locked, take_finalize_lock
from ..gradients.features import AdamVariant, adam_preconditioned_gradient
from ..gradients.loss_tokens import LossTokens, with_loss_tokens
from ..gradients.per_example import PerExampleLoraGradients

log = logging.getLogger(__name__)


@dataclass
class FeatureConfig:
    """Options shared by the pool datastore and the target features (they must agree)."""

    model: str = option("", help="Base model: a Hugging Face id or a local folder.")
    checkpoints: list[str] = option(factory=list, help=(
        "Warmup checkpoint folders, or one folder holding checkpoint-* subfolders "
        "(ours, HF Trainer with optimizer.pt, or FSDP optimizer.bin)."))
    output_dir: str = option("", help="Folder to write the store into.")
    projector: str = option("sparse", help=(
        "Projection kind: 'sparse' (sparse JL / CountSketch, fast, default), 'rademacher' "
        "(dense, the paper's), or 'identity' (no projection; exact, small models only)."))
    dims: list[int] = option(factory=lambda: [8192], help="Projection dimensions d (several in one pass).",
                             check=positive)
    projection_seed: int = option(0, help="Seed of the projection; pool and targets must share it.",
                                  check=non_negative)
    max_seq_length: int = option(2048, help="Truncate examples to this many tokens.", check=positive)
    template: Template = option("auto", help=(
        "Chat encoding: auto (tokenizer template if any, else Tulu), tulu (LESS's, ends in </s> and "
        "a newline), tulu_stripped (no final newline; stores before tulu-v2), chat_template."))
    dtype: str = option("auto", help="Model dtype for the forward/backward: auto, float32, bfloat16, float16, float64.")
    max_tokens_per_batch: int = option(8192, help="Token budget of a batch (batch size x longest sequence).",
                                       check=positive)
    max_batch_size: int = option(64, help="Upper bound on examples per batch.", check=positive)
    chunk_size: int = option(4096, help="Rows per committed chunk (unit of resume and sharding).",
                             check=positive)
    num_shards: int = option(0, help="Processes sharing the build (0: WORLD_SIZE from torchrun, else 1).",
                             check=non_negative)
    shard_index: int = option(-1, help="This process's shard (-1: RANK from torchrun, else 0).",
                              check=at_least(-1))
    overwrite: bool = option(False, help="Delete a finished store with other settings and rebuild.")
    loss_tokens: LossTokens = option("completion", help=(
        "Tokens the per-example loss averages over: completion (LESS) or sequence (prompt too; "
        "robust to answer-format mismatch, see gradients/loss_tokens.py). Pool and targets must agree."))


@dataclass
class DatastoreConfig(FeatureConfig):
    """The pool gradient datastore (Adam features)."""

    data: list[str] = option(factory=list, help="Pool files (.jsonl/.json/.parquet, optionally .gz).")
    gradient_type: Literal["adam", "sgd"] = option("adam", help="Feature of pool examples: adam (LESS) or sgd.")
    adam_variant: AdamVariant = option("less", help=(
        "Adam feature formula: less (the original: no bias correction, eps inside the root), "
        "bias_corrected, eps_outside."))
    mean_lrs: list[float] = option(factory=list, help="Override each checkpoint's mean learning rate.",
                                   check=positive)
    lenient: bool = option(False, help="Skip (and count) malformed records instead of stopping.")
    max_examples: int = option(0, help="Use only the first N examples of each file (0: all).",
                               check=non_negative)


def resolve_checkpoints(paths: list[str]) -> list[Path]:
    if not paths:
        raise UserError("no checkpoints given (--checkpoints)")
    if len(paths) == 1 and not (Path(paths[0]) / "adapter_config.json").is_file():
        found = list_checkpoints(paths[0])
    else:
        found = [Path(p) for p in paths]
    for p in found:
        if not (p / "adapter_model.safetensors").is_file():
            raise UserError(f"{p}: not a checkpoint with a LoRA adapter (no adapter_model.safetensors)")
    return found


def _shard() -> tuple[int, int]:
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def build_store(config: FeatureConfig, examples: list[Example], *, gradient_type: str,
                adam_variant: AdamVariant = "less", mean_lrs: list[float] | None = None,
                data_files: list[str] | None = None, extra: dict | None = None) -> Path:
    """Compute, project and write features of ``examples`` at every checkpoint. Returns the store."""
    if not config.model:
        raise UserError("no model given (--model)")
    if not config.output_dir:
        raise UserError("no output folder given (--output-dir)")
    if any(d <= 0 for d in config.dims) or len(set(config.dims)) != len(config.dims):
        raise UserError(f"dims must be distinct positive integers, got {config.dims}")
    ckpt_paths = [p.resolve() for p in resolve_checkpoints(config.checkpoints)]
    if mean_lrs and len(mean_lrs) != len(ckpt_paths):
        raise UserError(f"--mean-lrs has {len(mean_lrs)} value(s) for {len(ckpt_paths)} checkpoint(s)")
    # resolved paths: targets and selection re-read the model and checkpoints from any directory
    identity = model_identity(config.model)
    config = dataclasses.replace(config, model=identity["path"], checkpoints=[str(p) for p in ckpt_paths])
    out = Path(config.output_dir)
    settings = {
        "config": {k: v for k, v in to_dict(config).items()
                   if k not in ("output_dir", "num_shards", "shard_index", "overwrite",
                                "max_tokens_per_batch", "max_batch_size")},
        "gradient_type": gradient_type, "adam_variant": adam_variant, "mean_lrs": mean_lrs or [],
        "model_identity": identity, "tulu_encoding": tulu_encoding(config.template),
        "checkpoints": [{"path": str(p), "adapter_sha256": file_sha256(p / "adapter_model.safetensors")}
                        for p in ckpt_paths],
        "data_files": [{"path": f, "sha256": file_sha256(f)} for f in (data_files or [])],
        "examples_sha256": examples_fingerprint(examples),
        **(extra or {}),
    }
    if config.overwrite and out.exists():
        shutil.rmtree(out)
    if stage_status(out, settings) == "done":
        log.info("%s is up to date with these settings; skipping", out)
        return out
    if out.exists():
        raise UserError(f"{out} exists but is not a finished store; delete it or pass --overwrite")

    rank, world = _shard()
    if config.num_shards:
        world = config.num_shards
    if config.shard_index >= 0:
        rank = config.shard_index
    if not 0 <= rank < world:
        raise UserError(f"shard index {rank} is not in [0, {world})")
    part = out.with_name(out.name + ".part")
    with build_lock(part, rank, world, json.dumps(settings, sort_keys=True, default=str)):
        return _build(config, examples, settings, part, out, rank, world, gradient_type, adam_variant,
                      mean_lrs, identity, extra)


def _build(config, examples, settings, part, out, rank, world, gradient_type, adam_variant, mean_lrs,
           identity, extra) -> Path:
    """Compute this shard's missing chunks; the process that sees the store complete finalizes it."""
    tokenizer = load_tokenizer(config.model)
    encoded, enc_report = encode_all(examples, tokenizer, config.max_seq_length, config.template)
    keep = [i for i, e in enumerate(encoded) if e.n_completion_tokens > 0]
    rows_ex = [examples[i] for i in keep]
    rows_enc = with_loss_tokens([encoded[i] for i in keep], config.loss_tokens)
    n_rows = len(rows_ex)
    if n_rows == 0:
        raise UserError("no example has a completion token left after truncation; nothing to store")
    chunks = ds.n_chunks(n_rows, config.chunk_size)
    mine = [c for c in range(chunks) if c % world == rank]

    device = default_device()
    model = load_model(config.model, config.dtype, device)
    lr_required = gradient_type == "adam" or (extra or {}).get("kind") == "pool"
    ckpts = [read_checkpoint(Path(p), gradient_type, mean_lrs[i] if mean_lrs else None, lr_required)
             for i, p in enumerate(config.checkpoints)]
    names = [_ckpt_name(c.path) for c in ckpts]
    if len(set(names)) != len(names):
        raise UserError(f"checkpoint folder names must be distinct, got {names}")

    peft_model = _attach_adapter(model, ckpts[0].adapter_dir, config.model)
    layout_params = _total_lora_params(peft_model)
    # built once: the sparse projector's hash cache is then reused by every chunk and checkpoint
    projectors = {d: make_projector(config.projector, layout_params, d, config.projection_seed,
                                    device=device) for d in config.dims}
    log.info("building %s features: %d rows (%d skipped: no completion token), %d checkpoint(s), "
             "dims %s, projector %s, shard %d/%d (%d of %d chunks)", gradient_type, n_rows,
             len(examples) - n_rows, len(ckpts), config.dims, config.projector, rank, world,
             len(mine), chunks)
    for ck, name in zip(ckpts, names):
        todo = [c for c in mine if not all(ds.chunk_path(part, name, d, c).is_file() for d in config.dims)]
        if not todo:
            continue
        _load_adapter_weights(peft_model, ck.adapter_dir, config.model)
        with Progress(f"features@{name}", total=sum(_chunk_len(c, config.chunk_size, n_rows) for c in todo)) as prog:
            for c in todo:
                lo, hi = c * config.chunk_size, min((c + 1) * config.chunk_size, n_rows)
                feats = chunk_features(peft_model, rows_enc[lo:hi], ck, config, projectors,
                                        gradient_type, adam_variant, tokenizer.pad_token_id, device, prog)
                for d, mat in feats.items():
                    ds.write_chunk(part, name, d, c, mat)

    complete = all(ds.chunk_path(part, n, d, c).is_file()
                   for n in names for d in config.dims for c in range(chunks))
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
        complete = complete and rank == 0
    if not complete:
        log.info("shard %d done; the store completes when every shard has run", rank)
        return out
    if not take_finalize_lock(part, out):  # several shards may see the store complete at once
        return out

    weights = _checkpoint_weights(ckpts)
    manifest = {
        "format_version": ds.FORMAT_VERSION,
        "model": config.model,
        "model_identity": identity,
        "gradient_type": gradient_type,
        "adam_variant": adam_variant if gradient_type == "adam" else None,
        "checkpoints": [{"name": n, "path": str(c.path), "step": c.step, "mean_lr": c.mean_lr,
                         "weight": w, "adapter_sha256": s["adapter_sha256"]}
                        for n, c, w, s in zip(names, ckpts, weights, settings["checkpoints"])],
        "projectors": [projectors[d].spec() for d in config.dims],
        # one standard deviation of a JL map's error on the cosine of two unit vectors: ~1/sqrt(d)
        "expected_cosine_error": {str(d): (0.0 if config.projector == "identity" else 1 / math.sqrt(d))
                                  for d in config.dims},
        "total_params": layout_params,
        "dtype": "float16", "normalized": True,
        "chunk_size": config.chunk_size,
        "n_rows": n_rows, "n_examples": len(examples), "n_skipped_no_completion": len(examples) - n_rows,
        "n_truncated": enc_report.truncated, "encodings": list(enc_report.encodings),
        "max_seq_length": config.max_seq_length, "template": config.template,
        "loss_tokens": config.loss_tokens,
        "data_files": settings["data_files"],
        **(extra or {}),
    }
    write_atomic(part / ds.MANIFEST, json.dumps(manifest, indent=2))
    write_atomic(part / ds.INDEX, "".join(json.dumps(
        {"row": r, "id": ex.id, "file": ex.source, "line": ex.line, "subtask": ex.subtask,
         "n_tokens": len(enc.input_ids)}) + "\n" for r, (ex, enc) in enumerate(zip(rows_ex, rows_enc))))
    kept = set(keep)
    write_atomic(part / ds.SKIPPED, "".join(json.dumps(
        {"id": ex.id, "file": ex.source, "line": ex.line, "reason": "no completion token after truncation"})
        + "\n" for i, ex in enumerate(examples) if i not in kept))
    finish_locked(part, out, settings)
    return out


def examples_fingerprint(examples: list[Example]) -> str:
    """Hash of the examples' ids and text: a store is reused only for the same examples."""
    import hashlib
    h = hashlib.sha256()
    for ex in examples:
        h.update(json.dumps([ex.id, ex.messages, ex.prompt, ex.completion, ex.subtask]).encode())
    return h.hexdigest()


def _ckpt_name(path: Path) -> str:
    return path.name


def _chunk_len(c: int, size: int, n: int) -> int:
    return min((c + 1) * size, n) - c * size


def _checkpoint_weights(ckpts) -> list[float]:
    lrs = [c.mean_lr for c in ckpts]
    if any(lr is None for lr in lrs):
        return [1.0 / len(ckpts)] * len(ckpts)
    total = sum(lrs)
    if total <= 0:
        raise UserError(f"checkpoint mean learning rates must be positive, got {lrs}")
    return [lr / total for lr in lrs]


def read_checkpoint(path: Path, gradient_type: str, mean_lr: float | None, lr_required: bool) -> Checkpoint:
    """A checkpoint with its mean learning rate; plain (sgd) features need no optimizer moments,
    but a pool store's checkpoint weights still come from the learning rates, as for Adam."""
    if gradient_type == "adam":
        return load_checkpoint(path, mean_lr=mean_lr)
    if mean_lr is None:
        meta = path / META_FILE
        mean_lr = json.loads(meta.read_text()).get("mean_lr") if meta.is_file() else \
            _lr_from_trainer_state(_trainer_state(path))
    if mean_lr is None and lr_required:
        raise UserError(f"{path}: the checkpoint records no learning rate; give each checkpoint's "
                        "mean learning rate with --mean-lrs")
    return Checkpoint(path=path, adapter_dir=path, step=_step_of(path), epoch=None,
                      mean_lr=None if mean_lr is None else float(mean_lr), exp_avg={}, exp_avg_sq={})


def _step_of(path: Path) -> int:
    meta = path / META_FILE
    if meta.is_file():
        return int(json.loads(meta.read_text()).get("step", 0))
    tail = path.name.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def _attach_adapter(model, adapter_dir: Path, model_name: str):
    from peft import PeftModel
    with adapter_fit_errors(adapter_dir, model_name):
        return PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=False)


def _load_adapter_weights(peft_model, adapter_dir: Path, model_name: str) -> None:
    """Load this checkpoint's LoRA weights, checking every LoRA matrix was replaced."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file
    state = load_file(str(Path(adapter_dir) / "adapter_model.safetensors"))
    with adapter_fit_errors(adapter_dir, model_name):
        result = set_peft_model_state_dict(peft_model, state)
    missing = [k for k in getattr(result, "missing_keys", []) if "lora_" in k]
    if missing:
        raise UserError(f"{adapter_dir}: adapter lacks {len(missing)} LoRA weight(s), e.g. {missing[0]}")


def _total_lora_params(peft_model) -> int:
    from ..gradients.per_example import lora_layout
    last = lora_layout(peft_model)[-1]
    return last.offset + last.numel


def chunk_features(model, encoded: list[Encoded], ckpt, config: FeatureConfig, projectors: dict,
                    gradient_type: str, adam_variant: AdamVariant, pad_id: int, device,
                    prog: Progress) -> dict[int, np.ndarray]:
    """Projected, normalized features {dim: float32 [rows, dim]} of one chunk of rows."""
    from ..gradients.per_example import lora_layout
    layout = lora_layout(model)
    out = {d: np.zeros((len(encoded), d), np.float32) for d in config.dims}
    moments = None
    if gradient_type == "adam":
        moments = {}
        for p in layout:
            if p.name not in ckpt.exp_avg:
                raise UserError(f"{ckpt.path}: optimizer state has no moments for {p.name}")
            moments[p.name] = (ckpt.exp_avg[p.name].to(device), ckpt.exp_avg_sq[p.name].to(device))
    acc: dict[int, torch.Tensor] = {}

    def on_block(param, grad):                                       # grad: [N, p]
        if moments is not None:
            m, v = moments[param.name]
            grad = adam_preconditioned_gradient(grad, m, v, ckpt.betas, ckpt.eps, adam_variant, ckpt.step)
        for d, proj in projectors.items():
            contrib = proj.project_block(grad.float(), param.offset)    # [N, d]
            acc[d] = contrib if d not in acc else acc[d] + contrib

    lengths = [len(e.input_ids) for e in encoded]
    with PerExampleLoraGradients(model, on_block) as collector:
        for batch_idx in token_budget_batches(lengths, config.max_tokens_per_batch, config.max_batch_size):
            batch = {k: v.to(device) for k, v in collate([encoded[i] for i in batch_idx], pad_id).items()}
            acc.clear()
            collector.run(batch)
            for d, mat in acc.items():
                mat = torch.nn.functional.normalize(mat, dim=1)           # rows L2-normalized
                out[d][batch_idx] = mat.cpu().numpy()
            prog.update(len(batch_idx), extra=sum(lengths[i] for i in batch_idx))
    return out


def run_datastore(config: DatastoreConfig) -> Path:
    """The ``datastore`` stage: Adam features of every pool example at every checkpoint."""
    validate(config)
    if not config.data:
        raise UserError("no pool files given (--data)")
    # absolute paths: the store is re-read (selection, provenance) from any working directory
    config = dataclasses.replace(config, data=[str(Path(f).resolve()) for f in config.data])
    examples, report = load_examples(config.data, lenient=config.lenient,
                                     max_per_file=config.max_examples or None)
    extra = {"kind": "pool", "n_malformed_skipped": report.total_skipped}
    return build_store(config, examples, gradient_type=config.gradient_type,
                       adam_variant=config.adam_variant, mean_lrs=config.mean_lrs or None,
                       data_files=list(config.data), extra=extra)


@dataclass
class TargetsConfig(FeatureConfig):
    """Target features (plain gradients) of a target task, with each row's subtask."""

    task: str = option("", help="bbh, mmlu, tydiqa (LESS validation sets) or a file of target examples.")
    data_dir: str = option("", help="LESS data folder (holding eval/) for the built-in tasks.")
    datastore: str = option("", help=(
        "A finished pool datastore: model, checkpoints, projection settings and template left at "
        "their defaults are taken from it, so targets and pool match (max_seq_length is not taken)."))


def fill_from_datastore(config: TargetsConfig) -> TargetsConfig:
    """Take unset feature options from the pool datastore's manifest; refuse another base model."""
    if not config.datastore:
        return config
    store = ds.Datastore(config.datastore)
    mf = store.manifest
    settings = json.loads((store.path / "stage.json").read_text())["settings"]["config"]
    recorded = mf.get("model_identity") or {}
    defaults = FeatureConfig()
    updates = {}
    # what must match for scores to mean anything; truncation may differ (targets are often longer)
    for field in ("model", "checkpoints", "projector", "dims", "projection_seed", "loss_tokens"):
        if getattr(config, field) == getattr(defaults, field):
            updates[field] = (recorded.get("path") or settings["model"] if field == "model" else
                              [c["path"] for c in mf["checkpoints"]] if field == "checkpoints" else
                              settings.get(field, getattr(defaults, field)))
    if "template" in settings and config.template == defaults.template:
        updates["template"] = settings["template"]
    config = dataclasses.replace(config, **updates)
    if recorded and (what := identity_mismatch(recorded, model_identity(config.model))):
        raise UserError(f"{config.model}: its {what} differ(s) from the base model of the datastore "
                        f"{store.path} ({recorded['path']}); target features must use the same model")
    return config


def run_targets(config: TargetsConfig) -> Path:
    """The ``targets`` stage: plain-gradient features of the target examples."""
    from ..data.targets import build_target_examples
    validate(config)
    if not config.task:
        raise UserError("no target task given (--task bbh|mmlu|tydiqa|FILE)")
    config = fill_from_datastore(config)
    examples = build_target_examples(config.task, config.data_dir or None)
    files = [config.task] if Path(config.task).is_file() else []
    lost = subtasks_without_completion(examples, config)
    if lost:
        log.warning("targets: %d subtask(s) keep no example with a completion token at "
                    "max_seq_length=%d and drop out of the score's max over subtasks: %s; "
                    "raise --max-seq-length", len(lost), config.max_seq_length, ", ".join(lost))
    return build_store(config, examples, gradient_type="sgd", data_files=files,
                       extra={"kind": "targets", "task": config.task,
                              "data_dir": str(Path(config.data_dir).resolve()) if config.data_dir else "",
                              "subtasks": sorted({str(e.subtask) for e in examples}),
                              "subtasks_without_rows": lost})


def subtasks_without_completion(examples: list[Example], config: FeatureConfig) -> list[str]:
    """Subtasks none of whose examples keeps a completion token after truncation."""
    tokenizer = load_tokenizer(config.model)
    encoded, _ = encode_all(examples, tokenizer, config.max_seq_length, config.template)
    alive = {str(ex.subtask) for ex, enc in zip(examples, encoded) if enc.n_completion_tokens > 0}
    return sorted({str(ex.subtask) for ex in examples} - alive)
