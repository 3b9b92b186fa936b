"""What goes into a generator and what comes out, and how generated ids become text (pure).

Every generator returns one :class:`Generated` per prompt, in order: the response text with the
model's special tokens kept except end-of-sequence and padding (so ``<think>``/``<answer>`` tags
survive whatever the tokenizer marks special), the number of generated tokens and whether
generation stopped (``stop``) or hit ``max_new_tokens`` (``length``), or an ``error``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class PromptInput:
    """One audio prompt ready for generation: its chat messages (audio inlined) and the decoded clips."""

    item_id: str
    messages: list[dict[str, Any]]
    audios: list[Any]


@dataclass(frozen=True)
class Generated:
    """The result for one prompt; ``text`` is None when ``error`` says why nothing was generated."""

    text: str | None
    n_tokens: int = 0
    finish_reason: str | None = None
    error: str | None = None


class Generator(Protocol):
    """What a caller needs of a backend: one :class:`Generated` per prompt, in order."""

    def generate(self, prompts: Sequence[PromptInput]) -> list[Generated]: ...

    def close(self) -> None: ...


def eos_token_ids(model: Any, tokenizer: Any) -> set[int]:
    """End-of-sequence ids: the generation config's plus the tokenizer's (as vLLM uses them).

    >>> from types import SimpleNamespace as NS
    >>> sorted(eos_token_ids(NS(generation_config=NS(eos_token_id=[7, 9]), config=None), NS(eos_token_id=2)))
    [2, 7, 9]
    """
    ids: set[int] = set()
    for source in (getattr(model, "generation_config", None), tokenizer, getattr(model, "config", None)):
        value = getattr(source, "eos_token_id", None) if source is not None else None
        if value is None:
            continue
        ids.update(int(v) for v in (value if isinstance(value, (list, tuple, set)) else [value]))
    return ids


def cut_response(ids: Sequence[int], stop_ids: set[int], pad_id: int | None) -> tuple[list[int], str]:
    """Generated ids up to (excluding) the first stop id, and ``stop`` / ``length``.

    >>> cut_response([5, 6, 2, 0, 0], {2}, 0)
    ([5, 6], 'stop')
    >>> cut_response([5, 6, 7], {2}, 0)
    ([5, 6, 7], 'length')
    """
    kept: list[int] = []
    for token in ids:
        token = int(token)
        if token in stop_ids:
            return kept, "stop"
        kept.append(token)
    if pad_id is not None and pad_id not in stop_ids:
        while kept and kept[-1] == pad_id:
            kept.pop()
    return kept, "length"


def decode_response(tokenizer: Any, ids: Sequence[int], stop_ids: set[int], pad_id: int | None) -> Generated:
    """Generated ids as a :class:`Generated`: cut at the first stop id, special tokens kept; the
    stop token is counted, not decoded."""
    kept, reason = cut_response(ids, stop_ids, pad_id)
    text = tokenizer.decode(kept, skip_special_tokens=False)
    return Generated(text, len(kept) + (reason == "stop"), reason)
