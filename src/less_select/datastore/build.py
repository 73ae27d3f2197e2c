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
from ..configs import at_least, non_negative, option, positive, shared, to_dict, validate
from ..data import Example, load_examples
from ..data.batching import collate, padding_aware_batches
from ..data.encode import Encoded, Template, encode_all, split_by_completion, tulu_encoding
from ..errors import UserError
from ..modeling import identity_mismatch, load_model, load_tokenizer, model_identity, resolve_device
from ..progress import Progress
from ..projection import make_projector
from ..data.hf_datasets import resolve_source, source_sha256
from ..stage_folder import file_sha256, stage_finished, write_atomic
from ..training.checkpoints import Checkpoint
from .build_folder import build_lock, finish_locked, take_finalize_lock
from .checkpoints import _attach_adapter, _ckpt_name, _load_adapter_weights, \
    _total_lora_params, read_checkpoint, resolve_checkpoints, store_weights
from ..gradients.features import AdamVariant, gradient_feature
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
    projector: str = shared("projector")
    dims: list[int] = option(factory=lambda: [8192], help="Projection dimensions d (several in one pass).",
                             check=positive)
    projection_seed: int = shared("projection_seed")
    max_seq_length: int = shared("max_seq_length")
    template: Template = shared("template")
    dtype: str = shared("dtype")
    device: str = shared("device")
    max_tokens_per_batch: int = shared("max_tokens_per_batch")
    max_memory: str = option("", help=(
        "Memory budget of the build, e.g. 8GB or 1500MB: the token budget of a batch is derived from "
        "it and the model (never above --max-tokens-per-batch; see gradients/memory.py); empty: none."))
    max_batch_size: int = shared("max_batch_size")
    chunk_size: int = option(4096, help="Rows per committed chunk (unit of resume and sharding).",
                             check=positive)
    num_shards: int = option(0, help="Processes sharing the build (0: WORLD_SIZE from torchrun, else 1).",
                             check=non_negative)
    shard_index: int = option(-1, help="This process's shard (-1: RANK from torchrun, else 0).",
                              check=at_least(-1))
    overwrite: bool = shared("overwrite")
    loss_tokens: LossTokens = option("completion", help=(
        "Tokens the per-example loss averages over: completion (LESS) or sequence (prompt too; "
        "robust to answer-format mismatch, see gradients/loss_tokens.py). Pool and targets must agree."))


@dataclass
class DatastoreConfig(FeatureConfig):
    """The pool gradient datastore (Adam features)."""

    data: list[str] = option(factory=list, help="Pool files (.jsonl/.json/.parquet, optionally .gz).")
    gradient_type: Literal["adam", "sgd"] = option("adam", help="Feature of pool examples: adam (LESS) or sgd.")
    adam_variant: AdamVariant = shared("adam_variant")
    mean_lrs: list[float] = option(factory=list, help="Override each checkpoint's mean learning rate.",
                                   check=positive)
    lenient: bool = shared("lenient")
    max_examples: int = shared("max_examples")


def _shard() -> tuple[int, int]:
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


# Settings of a store that are not in its config: the versions of the code whose output it holds.
# A store (or partial build) made by another version is never reused or mixed with this one's.
def code_versions(template: str) -> dict:
    from ..projection import HASH_VERSION
    return {"store_format": ds.FORMAT_VERSION, "tulu_encoding": tulu_encoding(template),
            "projection_hash": HASH_VERSION}


# Config fields that change how a store is computed but not what it holds (not in the skip key).
RUN_ONLY = ("output_dir", "num_shards", "shard_index", "overwrite", "max_tokens_per_batch",
            "max_batch_size", "device", "max_memory")


@dataclass
class BuildPlan:
    """What one process of a build does: the resolved config, the skip key, its shard of chunks."""

    config: FeatureConfig
    examples: list[Example]
    gradient_type: str
    adam_variant: AdamVariant
    mean_lrs: list[float] | None
    identity: dict
    settings: dict
    extra: dict
    rank: int
    world: int

    @property
    def out(self) -> Path:
        return Path(self.config.output_dir)

    @property
    def part(self) -> Path:
        return self.out.with_name(self.out.name + ".part")


def plan_build(config: FeatureConfig, examples: list[Example], *, gradient_type: str,
               adam_variant: AdamVariant = "less", mean_lrs: list[float] | None = None,
               data_files: list[str] | None = None, extra: dict | None = None) -> BuildPlan:
    """Check the options, resolve model and checkpoint paths, and compute the store's settings."""
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
    extra = dict(extra or {})
    settings = {
        "config": {k: v for k, v in to_dict(config).items() if k not in RUN_ONLY},
        "gradient_type": gradient_type, "adam_variant": adam_variant, "mean_lrs": mean_lrs or [],
        "model_identity": identity, **code_versions(config.template),
        "checkpoints": [{"path": str(p), "adapter_sha256": file_sha256(p / "adapter_model.safetensors")}
                        for p in ckpt_paths],
        "data_files": [{"path": f, "sha256": source_sha256(f)} for f in (data_files or [])],
        "examples_sha256": examples_fingerprint(examples),
        **extra,
    }
    rank, world = _shard()
    if config.num_shards:
        world = config.num_shards
    if config.shard_index >= 0:
        rank = config.shard_index
    if not 0 <= rank < world:
        raise UserError(f"shard index {rank} is not in [0, {world})")
    return BuildPlan(config, examples, gradient_type, adam_variant, mean_lrs, identity, settings,
                     extra, rank, world)


def build_store(config: FeatureConfig, examples: list[Example], *, gradient_type: str,
                adam_variant: AdamVariant = "less", mean_lrs: list[float] | None = None,
                data_files: list[str] | None = None, extra: dict | None = None) -> Path:
    """Compute, project and write features of ``examples`` at every checkpoint. Returns the store.

    plan (options, settings, shard) -> skip or refuse (``stage_folder.stage_finished``) -> compute
    this shard's missing chunks -> finalize (manifest, index) once every chunk is there."""
    plan = plan_build(config, examples, gradient_type=gradient_type, adam_variant=adam_variant,
                      mean_lrs=mean_lrs, data_files=data_files, extra=extra)
    if plan.config.overwrite and plan.out.exists():
        shutil.rmtree(plan.out)
    if stage_finished(plan.out, "store", plan.settings):
        return plan.out
    with build_lock(plan.part, plan.rank, plan.world,
                    json.dumps(plan.settings, sort_keys=True, default=str)):
        built = compute_chunks(plan)
        if built is not None and take_finalize_lock(plan.part, plan.out):
            finalize(plan, built)
    return plan.out


@dataclass
class Built:
    """What finalizing needs from the computation: the rows and how they were made."""

    rows_ex: list[Example]
    rows_enc: list[Encoded]
    keep: list[int]
    enc_report: object
    ckpts: list[Checkpoint]
    names: list[str]
    projectors: dict
    layout_params: int


def compute_chunks(plan: BuildPlan) -> Built | None:
    """Compute this shard's missing chunks; the rows and models when the store is complete (every
    chunk of every shard written), else ``None`` (other shards are still to run)."""
    config = plan.config
    tokenizer = load_tokenizer(config.model)
    encoded, enc_report = encode_all(plan.examples, tokenizer, config.max_seq_length, config.template)
    keep, _ = split_by_completion(encoded)
    rows_ex = [plan.examples[i] for i in keep]
    rows_enc = with_loss_tokens([encoded[i] for i in keep], config.loss_tokens)
    n_rows = len(rows_ex)
    if n_rows == 0:
        raise UserError("no example has a completion token left after truncation; nothing to store")
    chunks = ds.n_chunks(n_rows, config.chunk_size)
    mine = [c for c in range(chunks) if c % plan.world == plan.rank]

    device = resolve_device(config.device)
    model = load_model(config.model, config.dtype, device)
    ckpts, names = _checkpoints(plan)
    peft_model = _attach_adapter(model, ckpts[0].adapter_dir, config.model)
    layout_params = _total_lora_params(peft_model)
    # built once: the sparse projector's hash cache is then reused by every chunk and checkpoint
    projectors = {d: make_projector(config.projector, layout_params, d, config.projection_seed,
                                    device=device) for d in config.dims}
    if config.max_memory:
        plan.config = config = with_memory_budget(config, peft_model, layout_params, projectors, n_rows)
    log.info("building %s features: %d rows (%d skipped: no completion token), %d checkpoint(s), "
             "dims %s, projector %s, shard %d/%d (%d of %d chunks)", plan.gradient_type, n_rows,
             len(plan.examples) - n_rows, len(ckpts), config.dims, config.projector, plan.rank,
             plan.world, len(mine), chunks)
    for ck, name in zip(ckpts, names):
        todo = [c for c in mine if not all(ds.chunk_path(plan.part, name, d, c).is_file()
                                           for d in config.dims)]
        if todo:
            _load_adapter_weights(peft_model, ck.adapter_dir, config.model)
            _write_chunks(plan, peft_model, rows_enc, ck, name, todo, projectors,
                          tokenizer.pad_token_id, device)

    complete = all(ds.chunk_path(plan.part, n, d, c).is_file()
                   for n in names for d in config.dims for c in range(chunks))
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
        complete = complete and plan.rank == 0
    if not complete:
        log.info("shard %d done; the store completes when every shard has run", plan.rank)
        return None
    return Built(rows_ex, rows_enc, keep, enc_report, ckpts, names, projectors, layout_params)


def with_memory_budget(config, model, lora_params: int, projectors: dict, n_rows: int):
    """``config`` with the batch token budget that keeps the build under ``--max-memory``."""
    from ..gradients.memory import batch_tokens_for_budget, memory_model, parse_bytes
    budget = parse_bytes(config.max_memory)
    cache = sum(min(getattr(p, "cache_bytes", 0), lora_params * 16 * getattr(p, "nnz", 1))
                for p in projectors.values())
    mem = memory_model(model, lora_params, config.dims, min(config.chunk_size, n_rows),
                       config.max_seq_length, cache)
    tokens = batch_tokens_for_budget(mem, budget, config.max_tokens_per_batch)
    log.info("--max-memory %s: %d tokens per batch (estimated peak %.2f GiB)", config.max_memory,
             tokens, mem.peak(tokens) / (1 << 30))
    return dataclasses.replace(config, max_tokens_per_batch=tokens)


def _checkpoints(plan: BuildPlan) -> tuple[list[Checkpoint], list[str]]:
    """The checkpoints (with their learning rates and, for Adam, moments) and their names."""
    lr_required = plan.gradient_type == "adam" or plan.extra.get("kind") == "pool"
    ckpts = [read_checkpoint(Path(p), plan.gradient_type, plan.mean_lrs[i] if plan.mean_lrs else None,
                             lr_required) for i, p in enumerate(plan.config.checkpoints)]
    names = [_ckpt_name(c.path) for c in ckpts]
    if len(set(names)) != len(names):
        raise UserError(f"checkpoint folder names must be distinct, got {names}")
    return ckpts, names


def _write_chunks(plan: BuildPlan, peft_model, rows_enc: list[Encoded], ck: Checkpoint, name: str,
                  todo: list[int], projectors: dict, pad_id: int, device) -> None:
    """Compute and commit the chunks ``todo`` at one checkpoint."""
    config, n_rows = plan.config, len(rows_enc)
    with Progress(f"features@{name}", total=sum(_chunk_len(c, config.chunk_size, n_rows)
                                                for c in todo)) as prog:
        for c in todo:
            lo, hi = c * config.chunk_size, min((c + 1) * config.chunk_size, n_rows)
            feats = chunk_features(peft_model, rows_enc[lo:hi], ck, config, projectors,
                                   plan.gradient_type, plan.adam_variant, pad_id, device, prog)
            for d, mat in feats.items():
                ds.write_chunk(plan.part, name, d, c, mat)


def finalize(plan: BuildPlan, built: Built) -> None:
    """Write manifest, index and skip list into the complete ``.part`` folder and rename it."""
    config, part = plan.config, plan.part
    weights = store_weights(built.ckpts)
    n_rows, n_examples = len(built.rows_ex), len(plan.examples)
    manifest = {
        "format_version": ds.FORMAT_VERSION,
        "model": config.model,
        "model_identity": plan.identity,
        "gradient_type": plan.gradient_type,
        "adam_variant": gradient_feature(plan.gradient_type, plan.adam_variant).variant,
        "checkpoints": [{"name": n, "path": str(c.path), "step": c.step, "mean_lr": c.mean_lr,
                         "weight": w, "adapter_sha256": s["adapter_sha256"]}
                        for n, c, w, s in zip(built.names, built.ckpts, weights,
                                              plan.settings["checkpoints"])],
        "projectors": [built.projectors[d].spec() for d in config.dims],
        # one standard deviation of a JL map's error on the cosine of two unit vectors: ~1/sqrt(d)
        "expected_cosine_error": {str(d): (0.0 if config.projector == "identity" else 1 / math.sqrt(d))
                                  for d in config.dims},
        "total_params": built.layout_params,
        "dtype": "float16", "normalized": True,
        "chunk_size": config.chunk_size,
        "n_rows": n_rows, "n_examples": n_examples, "n_skipped_no_completion": n_examples - n_rows,
        "n_truncated": built.enc_report.truncated, "encodings": list(built.enc_report.encodings),
        "max_seq_length": config.max_seq_length, "template": config.template,
        "loss_tokens": config.loss_tokens, "versions": code_versions(config.template),
        "data_files": plan.settings["data_files"],
        **plan.extra,
    }
    write_atomic(part / ds.MANIFEST, json.dumps(manifest, indent=2))
    write_atomic(part / ds.INDEX, "".join(json.dumps(
        {"row": r, "id": ex.id, "file": ex.source, "line": ex.line, "subtask": ex.subtask,
         "n_tokens": len(enc.input_ids)}) + "\n" for r, (ex, enc) in
        enumerate(zip(built.rows_ex, built.rows_enc))))
    kept = set(built.keep)
    write_atomic(part / ds.SKIPPED, "".join(json.dumps(
        {"id": ex.id, "file": ex.source, "line": ex.line, "reason": "no completion token after truncation"})
        + "\n" for i, ex in enumerate(plan.examples) if i not in kept))
    finish_locked(part, plan.out, plan.settings, config=to_dict(config))


def examples_fingerprint(examples: list[Example]) -> str:
    """Hash of the examples' ids and text: a store is reused only for the same examples."""
    import hashlib
    h = hashlib.sha256()
    for ex in examples:
        h.update(json.dumps([ex.id, ex.messages, ex.prompt, ex.completion, ex.subtask]).encode())
    return h.hexdigest()


def _chunk_len(c: int, size: int, n: int) -> int:
    return min((c + 1) * size, n) - c * size


def chunk_features(model, encoded: list[Encoded], ckpt, config: FeatureConfig, projectors: dict,
                    gradient_type: str, adam_variant: AdamVariant, pad_id: int, device,
                    prog: Progress) -> dict[int, np.ndarray]:
    """Projected, normalized features {dim: float32 [rows, dim]} of one chunk of rows."""
    from ..gradients.per_example import lora_layout
    layout = lora_layout(model)
    out = {d: np.zeros((len(encoded), d), np.float32) for d in config.dims}
    feature = gradient_feature(gradient_type, adam_variant).for_checkpoint(
        ckpt, [p.name for p in layout], device)                     # (name, grad) -> feature
    acc: dict = {}                                                   # dim -> BlockSum of the batch

    def on_block(param, grad):                                       # grad: [N, p]
        grad = feature(param.name, grad)
        for d in projectors:
            acc[d].add(grad.float(), param.offset)                      # += grad @ Pi[:, block]^T

    lengths = [len(e.input_ids) for e in encoded]
    with PerExampleLoraGradients(model, on_block) as collector:
        for batch_idx in padding_aware_batches(lengths, config.max_tokens_per_batch, config.max_batch_size):
            batch = {k: v.to(device) for k, v in collate([encoded[i] for i in batch_idx], pad_id).items()}
            acc.update({d: proj.accumulator() for d, proj in projectors.items()})
            collector.run(batch)
            for d, block_sum in acc.items():
                mat = torch.nn.functional.normalize(block_sum.result(), dim=1)  # [N, d], rows L2-normalized
                out[d][batch_idx] = mat.cpu().numpy()
            prog.update(len(batch_idx), extra=sum(lengths[i] for i in batch_idx))
    return out


def run_datastore(config: DatastoreConfig) -> Path:
    """The ``datastore`` stage: Adam features of every pool example at every checkpoint."""
    validate(config)
    if not config.data:
        raise UserError("no pool files given (--data)")
    # absolute paths: the store is re-read (selection, provenance) from any working directory
    config = dataclasses.replace(config, data=[resolve_source(f) for f in config.data])
    examples, report = load_examples(config.data, lenient=config.lenient,
                                     max_per_file=config.max_examples or None)
    # recorded in the manifest: the select stage re-reads the pool rows exactly as they were read here
    extra = {"kind": "pool", "n_malformed_skipped": report.total_skipped, "lenient": config.lenient,
             "max_examples": config.max_examples}
    return build_store(config, examples, gradient_type=config.gradient_type,
                       adam_variant=config.adam_variant, mean_lrs=config.mean_lrs or None,
                       data_files=list(config.data), extra=extra)


@dataclass
class TargetsConfig(FeatureConfig):
    """Target features (plain gradients) of a target task, with each row's subtask."""

    task: str = option("", help="bbh, mmlu, tydiqa (LESS validation sets) or a file of target examples.")
    data_dir: str = shared("data_dir")
    datastore: str = option("", help=(
        "A finished pool datastore: model, checkpoints, projection settings and template left at "
        "their defaults are taken from it, so targets and pool match (max_seq_length is not taken)."))


def fill_from_datastore(config: TargetsConfig) -> TargetsConfig:
    """Take unset feature options from the pool datastore's manifest; refuse another base model."""
    if not config.datastore:
        return config
    store = ds.Datastore(config.datastore)
    mf = store.manifest
    recorded = mf.get("model_identity") or {}
    defaults = FeatureConfig()
    specs = mf["projectors"]
    # what must match for scores to mean anything; truncation may differ (targets are often longer)
    taken = {"model": recorded.get("path") or mf["model"],
             "checkpoints": [c["path"] for c in mf["checkpoints"]],
             "projector": specs[0]["kind"], "dims": [s["dim"] for s in specs],
             "projection_seed": specs[0]["seed"],
             "loss_tokens": mf.get("loss_tokens", defaults.loss_tokens),
             "template": mf.get("template", defaults.template)}
    config = dataclasses.replace(config, **{k: v for k, v in taken.items()
                                            if getattr(config, k) == getattr(defaults, k)})
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
    alive = {str(examples[i].subtask) for i in split_by_completion(encoded)[0]}
    return sorted({str(ex.subtask) for ex in examples} - alive)
