"""Batched per-example gradients of the LoRA A/B matrices, from forward/backward hooks.

For a linear map y = x W^T applied at every position s of example n, the gradient of that example's
loss is dL_n/dW = sum_s gout[n,s]^T x[n,s]. We capture x in a forward hook and gout with a hook on the
output tensor, so one forward+backward of the batch yields every example's gradient, provided the
batch loss is the SUM of per-example losses (each the mean over that example's completion tokens).
HF's batch-mean loss would instead weight each example by its share of the batch's tokens.

Each module's gradient block is handed to a callback as soon as its backward hook fires, so the
caller can transform and project it module by module and the full [N, P] matrix is never held.
The output head computes logits only at the loss positions (:func:`loss_positions_only`): the
gradient is the same, and the vocabulary-wide work of prompt and padding positions is skipped.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Iterator

import torch

from ..data.batching import loss_positions, per_example_loss, token_loss_means  # noqa: F401 (re-export)
from ..errors import UserError
from ..training.checkpoints import canonical_param_name

BlockCallback = Callable[["LoraParam", torch.Tensor], None]


@dataclass(frozen=True)
class LoraParam:
    """One trainable LoRA matrix and its coordinates in the flattened P-dim gradient vector."""

    name: str          # canonical parameter name (see training.checkpoints.canonical_param_name)
    shape: tuple[int, int]
    offset: int

    @property
    def numel(self) -> int:
        return self.shape[0] * self.shape[1]


def lora_modules(model: torch.nn.Module) -> list[tuple[str, torch.nn.Linear]]:
    """The LoRA A/B Linear modules of a PEFT model, in ``named_parameters`` order."""
    found = []
    for name, module in model.named_modules():
        parts = name.split(".")
        if len(parts) >= 2 and parts[-2] in ("lora_A", "lora_B") and isinstance(module, torch.nn.Linear):
            if module.bias is not None:
                raise UserError(f"{name}: LoRA layers with bias are not supported")
            found.append((name, module))
    if not found:
        raise UserError("the model has no LoRA A/B layers: load it with a LoRA adapter "
                        "(warmup checkpoint) before computing gradients")
    return found


def lora_layout(model: torch.nn.Module) -> list[LoraParam]:
    """Offsets of every LoRA matrix in the P-dim vector (the order is the model's module order)."""
    layout, offset = [], 0
    for name, module in lora_modules(model):
        shape = tuple(module.weight.shape)
        layout.append(LoraParam(canonical_param_name(name + ".weight"), shape, offset))
        offset += shape[0] * shape[1]
    return layout


class PerExampleLoraGradients:
    """Context manager: while active, ``run(batch)`` calls ``callback(param, grad)`` once per LoRA
    matrix with ``grad`` of shape [N, O*I] (float32, or the model's dtype if float64)."""

    def __init__(self, model: torch.nn.Module, callback: BlockCallback):
        self.model = model
        self.callback = callback
        self.layout = lora_layout(model)
        self._modules = lora_modules(model)
        self._handles: list = []
        self._inputs: dict[int, torch.Tensor] = {}
        self._mask: torch.Tensor | None = None

    @property
    def total_params(self) -> int:
        last = self.layout[-1]
        return last.offset + last.numel

    def __enter__(self):
        for (name, module), param in zip(self._modules, self.layout):
            module.weight.requires_grad_(False)  # weight grads are not needed: we form per-example ones
            self._handles.append(module.register_forward_hook(self._make_forward_hook(param)))
        self._handles.append(self.model.get_input_embeddings().register_forward_hook(
            lambda m, i, out: out.requires_grad_(True)))
        return self

    def __exit__(self, *exc):
        for h in self._handles:
            h.remove()
        self._handles.clear()
        for _, module in self._modules:
            module.weight.requires_grad_(True)

    def _make_forward_hook(self, param: LoraParam):
        def forward_hook(module, inputs, output):
            x = inputs[0].detach()                                      # [N,S,I]
            acc_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
            # zero padding on the narrower side of the product (r wide for LoRA A's output and B's
            # input), never by copying the full-width one
            mask_input = x.shape[-1] <= output.shape[-1]

            def grad_hook(gout):                                        # gout: [N,S,O]
                xm, gm = x, gout
                if self._mask is not None:
                    m = self._mask[:, :, None]
                    if mask_input:
                        xm = x * m.to(x.dtype)
                    else:
                        gm = gout * m.to(gout.dtype)
                grad = torch.bmm(gm.transpose(1, 2).to(acc_dtype),
                                 xm.to(acc_dtype))                      # [N,O,S] @ [N,S,I] -> [N,O,I]
                self.callback(param, grad.reshape(grad.shape[0], -1))   # [N,O*I]
            output.register_hook(grad_hook)
        return forward_hook

    def run(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """One forward+backward; returns (per-example loss [N], completion token counts [N])."""
        was_training = self.model.training
        self.model.eval()  # dropout off: the gradient of the deterministic model
        mask, targets, n_tokens = loss_positions(batch["labels"])
        if bool((n_tokens == 0).any()):
            raise ValueError("batch contains an example without completion tokens")
        try:
            self._mask = batch["attention_mask"]
            with loss_positions_only(self.model, mask):
                out = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                 use_cache=False)
            logits = out.logits
            if logits.dim() == 3:     # the model did not let us narrow its output head
                logits = logits[:, :-1, :][mask]
            loss, _ = token_loss_means(logits, targets, mask)
            loss.sum().backward()  # sum of per-example means: each example keeps its own gradient
        finally:
            self._mask = None
            self.model.train(was_training)
        return loss.detach(), n_tokens


@contextlib.contextmanager
def loss_positions_only(model: torch.nn.Module, mask: torch.Tensor) -> Iterator[None]:
    """While active, the model's output head sees only the hidden states of the loss positions
    (``mask`` [N, S-1]), so it returns logits [T, V] instead of [N, S, V].

    The head (vocabulary x hidden) is often the largest matrix of a small model and most positions
    are prompt or padding: their logits are never needed. Anything the model applies to the head's
    output (scaling, soft-capping) is elementwise and unaffected. A head called without a positional
    hidden-state argument is left alone (the caller then gets [N, S, V] logits)."""
    head = model.get_output_embeddings()

    def narrow(module, args):
        if not args or args[0].dim() != 3 or args[0].shape[1] != mask.shape[1] + 1:
            return None
        return (args[0][:, :-1][mask], *args[1:])                     # [N,S,H] -> [T,H]

    handle = head.register_forward_pre_hook(narrow) if head is not None else None
    try:
        yield
    finally:
        if handle is not None:
            handle.remove()


def per_example_gradients(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Full per-example LoRA gradient matrix [N, P] (tests and small models only)."""
    blocks: dict[int, torch.Tensor] = {}
    with PerExampleLoraGradients(model, lambda p, g: blocks.__setitem__(p.offset, g)) as collector:
        collector.run(batch)
        return torch.cat([blocks[p.offset] for p in collector.layout], dim=1)
