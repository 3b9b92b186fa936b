"""Audio requests through verl 0.9.1's vLLM rollout server: the pure rules.

verl's vLLM server (``vLLMHttpServer``) was written for vision models. For an audio model four
things go wrong between verl's agent loop and vLLM's Qwen2-Audio processor; each is fixed here by a
pure function, meant to run around verl's own ``generate``:

1. **Processor keywords** (:func:`clean_mm_processor_kwargs`). The agent loop sends
   ``mm_processor_kwargs={"sampling_rate": 16000}``; vLLM's Qwen2-Audio processor builds
   ``dict(**mm_kwargs, sampling_rate=...)`` itself, so the key arrives twice (``TypeError``). vLLM
   restores the rate from the feature extractor, so dropping it loses nothing.
2. **Double expansion** (:func:`collapse_placeholder_runs`). verl sends prompt ids whose
   ``<|AUDIO|>`` run is already expanded to one token per audio frame and collapses only image/video
   runs; vLLM expands the first ``<|AUDIO|>`` again and keeps the rest as text (the engine saw 99
   audio tokens where the trainer scored 50). Each run is collapsed to one placeholder, which vLLM
   expands to exactly the clip's length.
3. **Banned ids** (:func:`banned_token_ids`). verl masks only the vision placeholders out of the
   sampler; a sampled ``<|AUDIO|>`` breaks the actor's forward (more placeholders than features).
   The audio placeholders and delimiters of
   :func:`audio_thinker.inference.placeholders.multimodal_placeholder_ids` are banned too.
4. **Prompt length** (:func:`plan_request`). verl sizes ``max_tokens`` from the length of the ids
   it is given; after the collapse that length would undercount the audio. The budget is computed
   from the expanded length (the ids as verl sent them, or a collapsed run plus the clip's token
   count), and a prompt that leaves no room says which limit to raise.

For a text-only model every rule is the identity. They are applied to verl's server by
:mod:`audio_thinker.verl_ext.vllm_rollout` (a ``vLLMHttpServer`` subclass registered as verl's
``vllm`` rollout).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

__all__ = [
    "DROPPED_PROCESSOR_KWARGS", "RequestPlan", "audio_placeholder_id", "banned_token_ids",
    "clean_mm_processor_kwargs", "collapse_placeholder_runs", "plan_request", "placeholder_runs",
]

#: processor keywords vLLM's audio processors set themselves (passing them again is a TypeError)
DROPPED_PROCESSOR_KWARGS = ("sampling_rate",)


def clean_mm_processor_kwargs(kwargs: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """``mm_processor_kwargs`` without the keys vLLM sets itself; ``None`` when nothing is left.

    >>> clean_mm_processor_kwargs({"sampling_rate": 16000}) is None
    True
    >>> clean_mm_processor_kwargs({"sampling_rate": 16000, "fps": 2})
    {'fps': 2}
    """
    if not kwargs:
        return None
    kept = {k: v for k, v in kwargs.items() if k not in DROPPED_PROCESSOR_KWARGS}
    return kept or None


def placeholder_runs(prompt_ids: Sequence[int], placeholder_id: int | None) -> list[int]:
    """The lengths of the maximal runs of ``placeholder_id`` in ``prompt_ids``, in order.

    >>> placeholder_runs([1, 9, 9, 9, 2, 9, 3], 9)
    [3, 1]
    """
    runs: list[int] = []
    previous = None
    for token in prompt_ids:
        if placeholder_id is not None and token == placeholder_id:
            if previous == placeholder_id:
                runs[-1] += 1
            else:
                runs.append(1)
        previous = token
    return runs


def collapse_placeholder_runs(prompt_ids: Sequence[int], placeholder_ids: Iterable[int]) -> list[int]:
    """``prompt_ids`` with every run of one placeholder id reduced to a single token.

    >>> collapse_placeholder_runs([1, 9, 9, 9, 2, 9, 9, 3], {9})
    [1, 9, 2, 9, 3]
    """
    collapse = set(placeholder_ids)
    out: list[int] = []
    for token in prompt_ids:
        if token in collapse and out and out[-1] == token:
            continue
        out.append(int(token))
    return out


@dataclass(frozen=True)
class RequestPlan:
    """What goes to vLLM for one request."""

    #: the prompt with each audio run collapsed to one placeholder
    prompt_ids: list[int]
    #: the prompt's length once vLLM has expanded the audio (what counts against max_model_len)
    expanded_length: int
    #: the response budget
    max_tokens: int


def plan_request(
    prompt_ids: Sequence[int],
    audio_id: int | None,
    *,
    max_model_len: int,
    prompt_length: int,
    response_length: int,
    audio_token_counts: Sequence[int] | None = None,
    requested_max_tokens: int | None = None,
) -> RequestPlan:
    """Collapse the audio runs and size the response budget from the expanded prompt length.

    A run longer than one token is an already expanded clip (its length counts); a single
    placeholder counts as ``audio_token_counts[k]`` when given (vLLM expands it to the clip's
    length). The budget follows verl's rule (``min(response_length, prompt_length +
    response_length - prompt)``, or ``requested_max_tokens``), clamped to ``[1, max_model_len -
    prompt]``.

    >>> plan = plan_request([1, 9, 9, 9, 2], 9, max_model_len=16, prompt_length=8, response_length=6)
    >>> plan.prompt_ids, plan.expanded_length, plan.max_tokens
    ([1, 9, 2], 5, 6)
    """
    runs = placeholder_runs(prompt_ids, audio_id)
    if audio_token_counts is not None and len(audio_token_counts) != len(runs):
        raise ValueError(f"{len(runs)} audio placeholder runs in the prompt but {len(audio_token_counts)} clips")
    extra = 0
    for k, run in enumerate(runs):
        if run == 1 and audio_token_counts is not None:
            extra += int(audio_token_counts[k]) - 1
        elif audio_token_counts is not None and run != audio_token_counts[k]:
            raise ValueError(f"audio clip {k}: {run} placeholder tokens in the prompt, {audio_token_counts[k]} expected")
    expanded = len(prompt_ids) + extra
    room = max_model_len - expanded
    if room < 1:
        raise ValueError(
            f"prompt of {expanded} tokens (audio expanded) leaves no room to generate within max_model_len="
            f"{max_model_len}: raise actor_rollout_ref.rollout.max_model_len / data.max_prompt_length, or "
            "shorten the clips (audio_thinker.audio.max_seconds; ~25 tokens per second for Qwen2-Audio)"
        )
    if requested_max_tokens is None:
        budget = min(response_length, prompt_length + response_length - expanded)
    else:
        budget = int(requested_max_tokens)
    collapsed = collapse_placeholder_runs(prompt_ids, [audio_id] if audio_id is not None else [])
    return RequestPlan(collapsed, expanded, max(1, min(budget, room)))


def audio_placeholder_id(hf_config: Any, tokenizer: Any = None) -> int | None:
    """The audio placeholder id of a model (``audio_token_index`` / ``audio_token_id``), or None.

    >>> from types import SimpleNamespace
    >>> audio_placeholder_id(SimpleNamespace(audio_token_index=7))
    7
    """
    for config in (hf_config, getattr(hf_config, "thinker_config", None)):
        for attr in ("audio_token_index", "audio_token_id"):
            value = getattr(config, attr, None) if config is not None else None
            if isinstance(value, int) and value >= 0:
                return value
    vocab = tokenizer.get_vocab() if tokenizer is not None and hasattr(tokenizer, "get_vocab") else {}
    value = vocab.get("<|AUDIO|>")
    return int(value) if value is not None else None


def banned_token_ids(hf_config: Any, tokenizer: Any, vision_ids: Iterable[int] = ()) -> list[int]:
    """Every id the rollout must never sample: verl's vision placeholders plus the audio ones."""
    from audio_thinker.inference.placeholders import multimodal_placeholder_ids

    return sorted({int(i) for i in vision_ids} | multimodal_placeholder_ids(hf_config, tokenizer))
