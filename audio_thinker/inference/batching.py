"""Batching: fixed-size chunks, and a batch that fails retried prompt by prompt (pure)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from audio_thinker.inference.outputs import Generated

logger = logging.getLogger(__name__)

T = TypeVar("T")


def batches(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """Consecutive slices of ``items`` of ``size`` (the last one may be shorter).

    >>> [list(b) for b in batches([1, 2, 3, 4, 5], 2)]
    [[1, 2], [3, 4], [5]]
    """
    if size < 1:
        raise ValueError(f"batch size must be >= 1, got {size}")
    for start in range(0, len(items), size):
        yield items[start:start + size]


def generate_isolating(
    generate_batch: Callable[[Sequence[Any]], list[Generated]], prompts: Sequence[Any]
) -> list[Generated]:
    """``generate_batch(prompts)``; when that raises, every prompt alone, so a bad prompt costs only
    itself (its result carries ``error="generation_error: ..."``).

    >>> def only_short(batch):
    ...     if any(len(p) > 3 for p in batch):
    ...         raise ValueError("too long")
    ...     return [Generated(p.upper(), 1, "stop") for p in batch]
    >>> [r.text or r.error for r in generate_isolating(only_short, ["ab", "long one", "cd"])]
    ['AB', 'generation_error: ValueError: too long', 'CD']
    """
    if not prompts:
        return []
    try:
        return generate_batch(prompts)
    except Exception as error:  # noqa: BLE001 - isolate the prompt that breaks the batch
        if len(prompts) == 1:
            logger.warning("generation failed for %s: %r", getattr(prompts[0], "item_id", "a prompt"), error)
            return [Generated(None, error=f"generation_error: {type(error).__name__}: {error}")]
        logger.warning("batch of %d failed (%r); retrying one prompt at a time", len(prompts), error)
        return [result for prompt in prompts for result in generate_isolating(generate_batch, [prompt])]
