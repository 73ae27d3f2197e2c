"""Run under ``torchrun --nproc-per-node 2``: live scores with each rank scoring its shard (gloo),
saved per rank for tests/dynamic/test_stage.py to compare with one process."""

import sys
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]
from conftest import corpus  # noqa: E402
from helpers import encoded_rows, trained_one_step  # noqa: E402

from less_select.dynamic import DynamicOptions  # noqa: E402
from less_select.dynamic.features import build_projector, live_scores  # noqa: E402
from less_select.demo.tiny_model import build_tokenizer  # noqa: E402


def scores(tok):
    model, opt = trained_one_step(tok)
    cand, _ = encoded_rows(tok, 21, seed=0)
    targets, _ = encoded_rows(tok, 5, seed=1)
    opts = DynamicOptions(projector="sparse", proj_dim=256, max_batch_size=3)
    return live_scores(model, opt, 1, cand, targets, ["a", "b", "b", "a", "b"], build_projector(model, opts),
                       opts, tok.pad_token_id).per_subtask


if __name__ == "__main__":
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    got = scores(build_tokenizer(corpus(), vocab_size=300))
    np.save(Path(sys.argv[1]) / f"rank{dist.get_rank()}.npy", got)
    dist.destroy_process_group()
