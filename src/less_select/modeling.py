"""Loading models and tokenizers (hub id or local folder), their identity (config and weights fingerprint)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Iterator

import torch

from .errors import UserError

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16,
          "float16": torch.float16}


def resolve_dtype(name: str, device: torch.device | None = None) -> torch.dtype:
    """The model dtype ``name`` names; ``auto`` is bfloat16 on a GPU that supports it (``device``,
    or any visible GPU when no device is given), else float32."""
    if name == "auto":
        on_gpu = device.type == "cuda" if device is not None else torch.cuda.is_available()
        return torch.bfloat16 if on_gpu and torch.cuda.is_bf16_supported() else torch.float32
    if name not in DTYPES:
        raise UserError(f"dtype {name!r} is not one of auto, {', '.join(DTYPES)}")
    return DTYPES[name]


def default_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def resolve_device(name: str = "auto", label: str = "--device") -> torch.device:
    """``auto`` (this process's GPU, ``LOCAL_RANK``, if CUDA is available, else the CPU), ``cpu``,
    ``cuda`` (= ``cuda:LOCAL_RANK``) or ``cuda:N``; a one-line error (naming the option as
    ``label``) for anything else or for a GPU that is not there."""
    name = (name or "auto").strip().lower()
    if name == "auto":
        return default_device()
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or (name.startswith("cuda:") and name[5:].isdigit()):
        if not torch.cuda.is_available():
            raise UserError(f"{label} {name}: torch sees no CUDA GPU on this machine; use --device cpu "
                            "or auto")
        index = int(name[5:]) if ":" in name else int(os.environ.get("LOCAL_RANK", 0))
        if index >= torch.cuda.device_count():
            raise UserError(f"{label} {name}: only {torch.cuda.device_count()} GPU(s) visible "
                            f"(cuda:0..cuda:{torch.cuda.device_count() - 1})")
        return torch.device("cuda", index)
    raise UserError(f"{label} {name!r}: expected auto, cpu, cuda or cuda:N")


def _check_local(name_or_path: str, what: str) -> None:
    """A name that looks like a path but does not exist is a typo, not a hub id."""
    # hub ids are "name" or "org/name"
    looks_local = name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1
    if looks_local and not Path(name_or_path).expanduser().exists():
        raise UserError(f"{name_or_path}: no such {what} folder")


def load_tokenizer(name_or_path: str):
    from transformers import AutoTokenizer
    _check_local(name_or_path, "tokenizer/model")
    try:
        tok = AutoTokenizer.from_pretrained(name_or_path)
    except OSError as exc:
        raise UserError(f"cannot load a tokenizer from {name_or_path!r}: {str(exc).splitlines()[0]}") from None
    if tok.pad_token is None:
        tok.pad_token = tok.unk_token or tok.eos_token
    return tok


def load_model(name_or_path: str, dtype: str = "auto", device: torch.device | None = None):
    from transformers import AutoModelForCausalLM
    _check_local(name_or_path, "model")
    try:
        model = AutoModelForCausalLM.from_pretrained(name_or_path, dtype=resolve_dtype(dtype, device))
    except OSError as exc:
        raise UserError(f"cannot load a model from {name_or_path!r}: {str(exc).splitlines()[0]}") from None
    return model.to(device or default_device())


def load_model_with_adapter(model: str, adapter: str | None, dtype: str = "auto",
                            device: torch.device | None = None, trainable: bool = False):
    """Base model plus an optional PEFT adapter folder (LoRA weights kept separate, not merged)."""
    base = load_model(model, dtype, device)
    if adapter is None:
        return base
    from peft import PeftModel
    if not (Path(adapter) / "adapter_config.json").is_file():
        raise UserError(f"{adapter}: not a PEFT adapter folder (no adapter_config.json)")
    with adapter_fit_errors(adapter, model):
        return PeftModel.from_pretrained(base, adapter, is_trainable=trainable)


@contextlib.contextmanager
def adapter_fit_errors(adapter: str | Path, model: str) -> Iterator[None]:
    """Turn PEFT's size-mismatch / missing-module failures into one line: the adapter was trained
    on another base model (architecture or size)."""
    try:
        yield
    except (RuntimeError, ValueError, KeyError) as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        detail = next((ln for ln in lines if "size mismatch" in ln or "shape" in ln), lines[0] if lines else "")
        raise UserError(f"{adapter}: this LoRA adapter does not fit the base model {model} "
                        f"({detail[:200]}); use the base model it was trained on") from None


# --------------------------------------------------------------------------- identifying a base model

def resolve_model_dir(name_or_path: str) -> str:
    """An absolute local folder for a model: the folder itself, or the hub cache snapshot of an id.

    Stores record this path, so later stages find the same files from any working directory.
    """
    p = Path(name_or_path).expanduser()
    if p.exists():
        return str(p.resolve())
    _check_local(name_or_path, "model")
    try:
        from huggingface_hub import snapshot_download
        snap = snapshot_download(name_or_path, allow_patterns=["*.json", "*.safetensors", "*.model",
                                                                "*.txt", "*.tiktoken"])
        if not any(Path(snap).glob("*.safetensors")):
            snap = snapshot_download(name_or_path, allow_patterns=["*.json", "*.bin", "*.model",
                                                                    "*.txt", "*.tiktoken"])
    except Exception as exc:  # network, auth, unknown repo: all mean "cannot resolve this name"
        raise UserError(f"cannot find model {name_or_path!r} locally or on the hub: "
                        f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    return str(Path(snap).resolve())


def _config_sha256(folder: Path) -> str | None:
    f = folder / "config.json"
    if not f.is_file():
        return None
    cfg = json.loads(f.read_text())
    for volatile in ("transformers_version", "_name_or_path", "_commit_hash"):
        cfg.pop(volatile, None)
    return hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()


def _weights_fingerprint(folder: Path) -> str | None:
    """sha256 over a deterministic sample of the weights: for every tensor (by name) its dtype,
    shape and first and last row. Independent of how the weights are sharded into files, cheap for
    any model size, and different for any two trained models of one architecture."""
    files = sorted(folder.glob("*.safetensors"))
    h = hashlib.sha256()
    if files:
        from safetensors import safe_open
        entries = []
        for f in files:
            with safe_open(str(f), framework="pt") as fh:
                for name in fh.keys():
                    sl = fh.get_slice(name)
                    shape = list(sl.get_shape())
                    if not shape or shape[0] <= 2:
                        sample = fh.get_tensor(name).reshape(-1)[:4096]
                    else:
                        sample = torch.cat([sl[0:1].reshape(-1), sl[shape[0] - 1:shape[0]].reshape(-1)])
                    entries.append((name, sl.get_dtype(), shape, sample.contiguous()))
        for name, dtype, shape, sample in sorted(entries, key=lambda e: e[0]):
            h.update(json.dumps([name, dtype, shape]).encode())
            h.update(sample.view(torch.uint8).numpy().tobytes())
        return h.hexdigest()
    files = sorted(folder.glob("*.bin"))
    if not files:
        return None
    for f in files:  # pickled weights: sample the bytes of each file (size + 16 blocks of 64 KiB)
        size = f.stat().st_size
        h.update(f"{f.name}:{size}".encode())
        with open(f, "rb") as fh:
            for i in range(16):
                fh.seek(size * i // 16)
                h.update(fh.read(1 << 16))
    return h.hexdigest()


def model_identity(name_or_path: str) -> dict:
    """What identifies a base model in a store's manifest: its resolved folder, the hash of its
    config (without version fields) and a fingerprint of its weights."""
    folder = Path(resolve_model_dir(name_or_path))
    return {"path": str(folder), "config_sha256": _config_sha256(folder),
            "weights_fingerprint": _weights_fingerprint(folder)}


def identity_mismatch(a: dict | None, b: dict | None) -> str | None:
    """Which part of two model identities differs (None if they agree or one is unknown)."""
    if not a or not b:
        return None
    for key, what in (("config_sha256", "model config"), ("weights_fingerprint", "model weights")):
        if a.get(key) and b.get(key) and a[key] != b[key]:
            return what
    return None
