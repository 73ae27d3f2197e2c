"""Warmup checkpoints: parameter names, Adam moments keyed by name, and reading three layouts.

A checkpoint folder holds a LoRA adapter plus the AdamW moments ``exp_avg``/``exp_avg_sq`` of every
trainable parameter and the mean learning rate of the epoch that ended there (docs/method.md, "Warmup"). Read:

* ours: ``optimizer_moments.safetensors`` (keys ``<name>.exp_avg``/``<name>.exp_avg_sq``) and
  ``less_checkpoint.json`` (epoch, step, mean_lr, betas, eps, weight_decay, base_model);
* an HF Trainer checkpoint: ``optimizer.pt`` whose state is keyed by integer index, mapped to names
  through the Trainer's parameter groups; the learning rate from ``trainer_state.json``;
* an FSDP ``optimizer.bin`` whose state is keyed by parameter name (what the original LESS read).

Names are always in the canonical form of :func:`canonical_param_name`.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch

from ..errors import UserError
from ..stage_folder import write_atomic

log = logging.getLogger(__name__)

MOMENTS_FILE = "optimizer_moments.safetensors"
META_FILE = "less_checkpoint.json"
ADAPTER_FILE = "adapter_model.safetensors"
HF_OPTIMIZER = "optimizer.pt"
FSDP_OPTIMIZER = "optimizer.bin"
TRAINER_STATE = "trainer_state.json"

_WRAPPERS = re.compile(r"(?:^|(?<=\.))(?:module|_fsdp_wrapped_module|_orig_mod|_checkpoint_wrapped_module)\.")
_ADAPTER_SEGMENT = re.compile(r"\.(lora_A|lora_B|lora_magnitude_vector)\.[^.]+(?=\.)")
_EMBED_ADAPTER = re.compile(r"\.(lora_embedding_A|lora_embedding_B)\.[^.]+$")
_MODULES_TO_SAVE = re.compile(r"\.modules_to_save\.[^.]+(?=\.)")  # PEFT saves these as plain names


def canonical_param_name(name: str) -> str:
    """``base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight`` ->
    ``model.layers.0.self_attn.q_proj.lora_A.weight``: no PEFT/DDP/FSDP/compile wrappers, no adapter name."""
    name = _WRAPPERS.sub("", name)
    if name.startswith("base_model.model."):
        name = name[len("base_model.model."):]
    name = _ADAPTER_SEGMENT.sub(r".\1", name)
    name = _MODULES_TO_SAVE.sub("", name)
    return _EMBED_ADAPTER.sub(r".\1", name)


def hf_param_order(model) -> list[str]:
    """Canonical names of the trainable parameters in the order the HF Trainer puts them into its
    optimizer (weight-decay group first, then the no-decay group; ``named_parameters`` order in each),
    i.e. the order of the integer keys of its ``optimizer.pt``."""
    from transformers import Trainer
    decay = set(Trainer.get_decay_parameter_names(None, model))  # uses only `model`
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    order = [n for n, _ in named if n in decay] + [n for n, _ in named if n not in decay]
    return [canonical_param_name(n) for n in order]


def unwrap_optimizer(optimizer):
    while hasattr(optimizer, "optimizer"):  # accelerate's AcceleratedOptimizer and similar wrappers
        optimizer = optimizer.optimizer
    return optimizer


def moments_by_name(model, optimizer) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The live AdamW ``exp_avg``/``exp_avg_sq`` of every trainable parameter, by canonical name.

    A parameter the optimizer has no state for yet gets zeros (what Adam would start from).
    """
    optimizer = unwrap_optimizer(optimizer)
    names = {id(p): canonical_param_name(n) for n, p in model.named_parameters() if p.requires_grad}
    exp_avg, exp_avg_sq = {}, {}
    for group in optimizer.param_groups:
        for p in group["params"]:
            if id(p) not in names:
                continue
            st = optimizer.state.get(p, {})
            if "exp_avg" not in st:
                log.warning("%s has no optimizer state yet; saving zero moments", names[id(p)])
            for out, key in ((exp_avg, "exp_avg"), (exp_avg_sq, "exp_avg_sq")):
                t = st.get(key)
                out[names[id(p)]] = (t if t is not None else torch.zeros_like(p)).detach().float().cpu()
    missing = sorted(set(names.values()) - set(exp_avg))
    if missing:
        raise RuntimeError(f"trainable parameters not in the optimizer: {missing[:3]}")
    return exp_avg, exp_avg_sq


def save_moments(path: str | Path, exp_avg: dict[str, torch.Tensor],
                 exp_avg_sq: dict[str, torch.Tensor]) -> None:
    from safetensors.torch import save
    tensors = {f"{n}.exp_avg": t.contiguous() for n, t in exp_avg.items()}
    tensors.update({f"{n}.exp_avg_sq": t.contiguous() for n, t in exp_avg_sq.items()})
    write_atomic(path, save(tensors))


def write_meta(folder: str | Path, meta: dict) -> None:
    write_atomic(Path(folder) / META_FILE, json.dumps(meta, indent=2))


@dataclass
class Checkpoint:
    path: Path
    adapter_dir: Path
    step: int
    epoch: float | None
    mean_lr: float | None
    exp_avg: dict[str, torch.Tensor] = field(repr=False)
    exp_avg_sq: dict[str, torch.Tensor] = field(repr=False)
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float | None = None
    base_model: str | None = None
    format: str = "less"  # less | hf | fsdp


def list_checkpoints(directory: str | Path) -> list[Path]:
    """``checkpoint-<step>`` folders of ``directory``, by increasing step."""
    directory = Path(directory)
    if not directory.is_dir():
        raise UserError(f"{directory}: no such checkpoint folder")
    found = [(int(m.group(1)), p) for p in directory.iterdir()
             if p.is_dir() and (m := re.fullmatch(r"checkpoint-(\d+)", p.name))]
    if not found:
        raise UserError(f"{directory}: no checkpoint-<step> folders; run the warmup stage first")
    return [p for _, p in sorted(found)]


def checkpoint_weights(ckpts: list[Checkpoint]) -> list[float]:
    """w_i = mean_lr_i / sum_j mean_lr_j (docs/method.md, "Influence with checkpoint weights")."""
    lrs = [c.mean_lr for c in ckpts]
    missing = [str(c.path) for c, lr in zip(ckpts, lrs) if lr is None]
    if missing:
        raise UserError(f"{missing[0]}: no mean learning rate known; pass the checkpoints' mean "
                        "learning rates with --mean-lrs (mean_lrs)")
    total = sum(lrs)
    if not total > 0:
        raise UserError(f"checkpoint learning rates {lrs} sum to {total}; they must be positive")
    return [lr / total for lr in lrs]


# --------------------------------------------------------------------------- reading

def _adapter_shapes(folder: Path) -> dict[str, tuple[int, ...]] | None:
    f = folder / ADAPTER_FILE
    if not f.is_file():
        return None
    from safetensors import safe_open
    with safe_open(str(f), framework="pt") as fh:
        return {canonical_param_name(k): tuple(fh.get_slice(k).get_shape()) for k in fh.keys()}


def _check_shapes(path: Path, exp_avg: dict[str, torch.Tensor], origin: dict[str, str]) -> None:
    shapes = _adapter_shapes(path)
    if shapes is None:
        log.warning("%s: no %s to check moment shapes against", path, ADAPTER_FILE)
        return
    for name, t in exp_avg.items():
        if name not in shapes:
            raise UserError(f"{path}: optimizer parameter {name} ({origin[name]}) is not in {ADAPTER_FILE}; "
                            "the parameter list does not belong to this checkpoint")
        if tuple(t.shape) != shapes[name]:
            raise UserError(f"{path}: optimizer state for {name} ({origin[name]}) has shape {tuple(t.shape)} "
                            f"but the adapter weight has {shapes[name]}; the parameter order is wrong "
                            "(pass param_names in the HF Trainer's order, see hf_param_order)")


def _trainer_state(path: Path) -> dict | None:
    f = path / TRAINER_STATE
    return json.loads(f.read_text()) if f.is_file() else None


def _lr_from_trainer_state(state: dict | None) -> float | None:
    """Mean of the logged learning rates within the epoch that ends at this checkpoint."""
    if not state or state.get("epoch") is None:
        return None
    end = float(state["epoch"])
    lrs = [h["learning_rate"] for h in state.get("log_history", [])
           if "learning_rate" in h and h.get("epoch") is not None
           and end - 1 < float(h["epoch"]) <= end + 1e-9]
    return sum(lrs) / len(lrs) if lrs else None


def _step_from_name(path: Path) -> int:
    m = re.fullmatch(r"checkpoint-(\d+)", path.name)
    return int(m.group(1)) if m else 0


def _infer_param_order(path: Path) -> list[str]:
    """Rebuild the PEFT model on the meta device from adapter_config.json to get its parameter order."""
    try:
        from peft import PeftConfig, get_peft_model
        from transformers import AutoConfig, AutoModelForCausalLM
        pcfg = PeftConfig.from_pretrained(str(path))
        pcfg.inference_mode = False
        if not pcfg.base_model_name_or_path:
            raise ValueError("adapter_config.json names no base model")
        cfg = AutoConfig.from_pretrained(pcfg.base_model_name_or_path, local_files_only=True)
        with torch.device("meta"):
            model = get_peft_model(AutoModelForCausalLM.from_config(cfg), pcfg)
        return hf_param_order(model)
    except Exception as exc:  # noqa: BLE001 - any failure means the user must name the order
        raise UserError(f"{path}/{HF_OPTIMIZER} is keyed by index and the parameter order could not be "
                        f"rebuilt from adapter_config.json ({type(exc).__name__}: {str(exc)[:120]}); "
                        "pass param_names=hf_param_order(model)") from None


def _moments_from_states(states: dict, keys: list, where: Path) -> tuple[dict, dict]:
    exp_avg, exp_avg_sq = {}, {}
    for name, key in keys:
        st = states[key]
        if not (isinstance(st, dict) and isinstance(st.get("exp_avg"), torch.Tensor)
                and isinstance(st.get("exp_avg_sq"), torch.Tensor)):
            raise UserError(f"{where}: optimizer state of {name} has no exp_avg/exp_avg_sq tensors; "
                            "LESS needs the moments of an Adam/AdamW optimizer")
        exp_avg[name] = st["exp_avg"].float()
        exp_avg_sq[name] = st["exp_avg_sq"].float()
    return exp_avg, exp_avg_sq


def _torch_load(file: Path) -> dict:
    """``torch.load`` of a foreign optimizer file with ``weights_only=True`` (no code from a pickle
    ever runs); anything but a plain dict of tensors and numbers is refused in one line."""
    import pickle
    try:
        obj = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # the weights-only unpickler met a class or function
        raise UserError(f"{file}: not a plain tensor checkpoint (it holds pickled Python objects); "
                        "it will not be loaded") from None
    except Exception as exc:  # noqa: BLE001 - torch raises many types on a file that is not its own
        raise UserError(f"{file}: not a readable torch checkpoint ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0][:120] if str(exc) else ''})") from None
    if not isinstance(obj, dict):
        raise UserError(f"{file}: expected an optimizer state dict, got {type(obj).__name__}")
    return obj


def _load_hf(path: Path, param_names: list[str] | None):
    osd = _torch_load(path / HF_OPTIMIZER)
    if not isinstance(osd.get("param_groups"), list) or not isinstance(osd.get("state"), dict):
        raise UserError(f"{path / HF_OPTIMIZER}: not an optimizer state dict (no 'state' and "
                        "'param_groups')")
    indices = [i for g in osd["param_groups"] for i in g["params"]]
    names = [canonical_param_name(n) for n in param_names] if param_names is not None \
        else _infer_param_order(path)
    if len(names) != len(indices):
        raise UserError(f"{path}/{HF_OPTIMIZER} has {len(indices)} parameters in its groups but "
                        f"{len(names)} parameter names were given; pass the trainable parameters of "
                        "the model this checkpoint was trained on (hf_param_order(model))")
    pairs = [(n, i) for n, i in zip(names, indices) if i in osd["state"]]
    exp_avg, exp_avg_sq = _moments_from_states(osd["state"], pairs, path / HF_OPTIMIZER)
    _check_shapes(path, exp_avg, {n: f"state index {i}" for n, i in pairs})
    return osd["param_groups"][0], exp_avg, exp_avg_sq


def _load_fsdp(path: Path):
    obj = _torch_load(path / FSDP_OPTIMIZER)
    states = obj.get("state", obj)
    groups = obj.get("param_groups") or [{}]
    pairs = [(canonical_param_name(str(k)), k) for k in states]
    if any(isinstance(k, int) for _, k in pairs):
        raise UserError(f"{path}/{FSDP_OPTIMIZER}: state is keyed by index, not by parameter name; "
                        "save it with FSDP.optim_state_dict (full, name-keyed)")
    exp_avg, exp_avg_sq = _moments_from_states(states, pairs, path / FSDP_OPTIMIZER)
    _check_shapes(path, exp_avg, {n: f"state key {k}" for n, k in pairs})
    return groups[0], exp_avg, exp_avg_sq


def _load_ours(path: Path):
    from safetensors.torch import load_file
    meta = json.loads((path / META_FILE).read_text())
    tensors = load_file(str(path / MOMENTS_FILE))
    exp_avg = {k[: -len(".exp_avg")]: v for k, v in tensors.items() if k.endswith(".exp_avg")}
    exp_avg_sq = {k[: -len(".exp_avg_sq")]: v for k, v in tensors.items() if k.endswith(".exp_avg_sq")}
    if set(exp_avg) != set(exp_avg_sq):
        raise UserError(f"{path}/{MOMENTS_FILE}: exp_avg and exp_avg_sq name different parameters")
    return meta, exp_avg, exp_avg_sq


def load_checkpoint(path: str | Path, param_names: list[str] | None = None,
                    mean_lr: float | None = None,
                    format: Literal["auto", "less", "hf", "fsdp"] = "auto") -> Checkpoint:
    """Read one checkpoint folder (ours, HF ``optimizer.pt`` or FSDP ``optimizer.bin``).

    ``param_names``: for ``optimizer.pt`` only, the trainable parameter names in the HF Trainer's
    optimizer order (:func:`hf_param_order`); by default rebuilt from ``adapter_config.json``.
    ``mean_lr``: the epoch's mean learning rate; overrides what the checkpoint records.
    """
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"{path}: no such checkpoint folder")
    if format == "auto":
        format = ("less" if (path / MOMENTS_FILE).is_file() else
                  "hf" if (path / HF_OPTIMIZER).is_file() else
                  "fsdp" if (path / FSDP_OPTIMIZER).is_file() else None)
        if format is None:
            raise UserError(f"{path}: no optimizer state ({MOMENTS_FILE}, {HF_OPTIMIZER} or "
                            f"{FSDP_OPTIMIZER}); LESS needs the Adam moments of each checkpoint")
    if format == "less":
        meta, exp_avg, exp_avg_sq = _load_ours(path)
        ckpt = Checkpoint(path=path, adapter_dir=path, step=int(meta["step"]), epoch=meta.get("epoch"),
                          mean_lr=meta.get("mean_lr"), exp_avg=exp_avg, exp_avg_sq=exp_avg_sq,
                          betas=tuple(meta.get("betas", (0.9, 0.999))), eps=meta.get("eps", 1e-8),
                          weight_decay=meta.get("weight_decay"), base_model=meta.get("base_model"),
                          format="less")
    else:
        group, exp_avg, exp_avg_sq = _load_hf(path, param_names) if format == "hf" else _load_fsdp(path)
        state = _trainer_state(path)
        ckpt = Checkpoint(path=path, adapter_dir=path,
                          step=int(state["global_step"]) if state else _step_from_name(path),
                          epoch=state.get("epoch") if state else None,
                          mean_lr=_lr_from_trainer_state(state), exp_avg=exp_avg, exp_avg_sq=exp_avg_sq,
                          betas=tuple(group.get("betas", (0.9, 0.999))), eps=group.get("eps", 1e-8),
                          weight_decay=group.get("weight_decay"), format=format)
    if mean_lr is not None:
        ckpt.mean_lr = float(mean_lr)
    if ckpt.mean_lr is None:
        raise UserError(f"{path}: the checkpoint records no learning rate (no {TRAINER_STATE} with "
                        "logged learning_rate); pass each checkpoint's mean learning rate with "
                        "--mean-lrs (mean_lrs)")
    if not exp_avg:
        raise UserError(f"{path}: the optimizer state is empty (saved before the first step?)")
    log.info("read %s checkpoint %s: step %s, %d parameters, mean lr %.3g", format, path,
             ckpt.step, len(exp_avg), ckpt.mean_lr)
    return ckpt
