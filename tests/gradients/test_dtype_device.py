"""Model dtype and device of the feature stages: bfloat16 features against float32 on CPU (the
per-example gradients are accumulated in float32 whatever the model dtype), and --device parsing."""

import numpy as np
import pytest
import torch

from less_select.data.batching import collate
from less_select.datastore.build import run_datastore
from less_select.errors import UserError
from less_select.gradients.per_example import per_example_gradients
from less_select.modeling import resolve_device, resolve_dtype

from ..datastore.test_build import ds_config, make_checkpoints
from .test_per_example import encoded_examples, lora_model

# Tolerance of bfloat16 (8-bit mantissa, relative rounding 2^-8 = 0.4% per op): each example's
# bfloat16 feature has cosine >= 0.995 with its float32 feature (measured 0.9986-0.9998 on the
# tiny 2-layer model of these tests; the sparse projection to d=256 adds no error of its own).
BF16_MIN_COSINE = 0.995


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(axis=1)


def test_bfloat16_gradients_are_float32_and_close_to_the_float32_model(tiny_model, tiny_tokenizer):
    batch = collate(encoded_examples(tiny_tokenizer), tiny_tokenizer.pad_token_id)
    g32 = per_example_gradients(lora_model(tiny_model, torch.float32, dropout=0.0), batch)
    g16 = per_example_gradients(lora_model(tiny_model, torch.bfloat16, dropout=0.0), batch)
    assert g16.dtype == torch.float32 and g32.dtype == torch.float32
    cos = _cos(g16.numpy(), g32.numpy())
    assert cos.min() >= BF16_MIN_COSINE, cos


def test_bfloat16_store_matches_float32_store(tmp_path, tiny_model_dir, pool_file):
    make_checkpoints(tiny_model_dir, tmp_path / "warmup")
    kw = dict(projector="sparse", dims=[256], device="cpu")
    s32 = run_datastore(ds_config(tmp_path, tiny_model_dir, pool_file, "f32", dtype="float32", **kw))
    s16 = run_datastore(ds_config(tmp_path, tiny_model_dir, pool_file, "bf16", dtype="bfloat16", **kw))
    files = sorted((s32 / "checkpoint-10").rglob("*.npy"))
    assert files
    for f in files:
        a = np.load(f).astype(np.float32)
        b = np.load(s16 / f.relative_to(s32)).astype(np.float32)
        assert _cos(a, b).min() >= BF16_MIN_COSINE


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda")
    for bad in ("gpu", "cuda:x", "tpu:0"):
        with pytest.raises(UserError, match="--device"):
            resolve_device(bad)
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="no CUDA GPU"):
            resolve_device("cuda:0")


def test_auto_dtype_follows_the_device():
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32
    assert resolve_dtype("bfloat16", torch.device("cpu")) == torch.bfloat16
    with pytest.raises(UserError):
        resolve_dtype("float8")
