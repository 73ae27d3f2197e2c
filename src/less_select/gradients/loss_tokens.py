"""Which tokens the per-example loss of a gradient feature averages over (``--loss-tokens``).

- ``completion`` (LESS, the paper; default): the mean cross-entropy over the assistant tokens only
  (docs/method.md, "Loss of one example").
- ``sequence``: the mean over every predicted token of the example, prompt included. The gradient
  then also describes what the example asks, not only how its answer is written, so pool examples
  of the target's skill whose answers are formatted differently (option text vs a letter, True/False
  vs Yes/No, a bare answer vs chain of thought) stay similar to the targets. The same option must be
  used for the pool and the targets (``targets`` takes it from the datastore).
- ``prompt``: the mean over the prompt tokens only (what the example asks, nothing of its answer);
  an ablation of ``sequence`` (see docs/quality.md).

Which examples get a row does not change: an example is scored only if it keeps a completion token
after truncation, whatever this option says, so both modes score the same examples.
"""

from __future__ import annotations

import dataclasses
from typing import Literal, Sequence

from ..data.encode import IGNORE_INDEX, Encoded

LossTokens = Literal["completion", "sequence", "prompt"]
LOSS_TOKENS: tuple[str, ...] = ("completion", "sequence", "prompt")


def with_loss_tokens(encoded: Sequence[Encoded], loss_tokens: LossTokens,
                     pad_token_id: int | None = None) -> list[Encoded]:
    """The encoded examples with labels set for ``loss_tokens`` (``completion``: unchanged)."""
    if loss_tokens == "completion":
        return list(encoded)
    if loss_tokens not in LOSS_TOKENS:
        raise ValueError(f"loss_tokens must be one of {LOSS_TOKENS}, got {loss_tokens!r}")
    out = []
    for enc in encoded:
        if loss_tokens == "sequence":  # every real token is a label
            labels = list(enc.input_ids)
        else:  # prompt: exactly the tokens the completion loss leaves out
            labels = [t if lab == IGNORE_INDEX else IGNORE_INDEX for t, lab in zip(enc.input_ids, enc.labels)]
        labels[0] = IGNORE_INDEX  # never predicted (the loss shifts by one)
        out.append(dataclasses.replace(enc, labels=labels))
    return out
