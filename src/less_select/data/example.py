"""The in-memory example: normalized conversation plus the provenance every output carries."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Example:
    """One instruction example.

    ``messages`` is the conversation normalized to ``{"role": system|user|assistant, "content"}``.
    Records in prompt/completion form keep their raw text in ``prompt``/``completion`` and are encoded
    as raw text (no chat wrapping), as open-instruct and the LESS target builders do.
    """

    id: str
    messages: list[dict[str, str]]
    source: str = ""          # file the record came from ("" for examples built in code)
    line: int = 0             # 1-based line (JSONL) or 1-based position (JSON array / Parquet row)
    format: str = "messages"  # detected input format
    subtask: str | None = None
    prompt: str | None = None
    completion: str | None = None
    append_eos: bool = True   # raw prompt/completion only: LESS's target builders add no EOS
    raw: dict[str, Any] = field(default_factory=dict)  # the original record, written back on selection

    @property
    def prompt_text(self) -> str:
        """Everything the model reads before the (first) answer; used by text baselines."""
        if self.prompt is not None:
            return self.prompt
        return "\n".join(m["content"] for m in self.messages if m["role"] != "assistant")

    @property
    def completion_text(self) -> str:
        if self.completion is not None:
            return self.completion
        return "\n".join(m["content"] for m in self.messages if m["role"] == "assistant")

    @property
    def text(self) -> str:
        return self.prompt_text + "\n" + self.completion_text
