"""Benchmark items as generation prompts: exactly the prompt training builds for the same question.

The chat messages come from :func:`audio_thinker.data.rows.build_prompt_messages` (audio first,
then the question, its choices and the prompt mode's instruction); the clip is inlined where the
``<audio>`` placeholder stands, and the model's own chat template renders the result
(:func:`audio_thinker.inference.templates.render_prompt`). :func:`prompt_length_check` measures
such a prompt in tokens (:mod:`audio_thinker.data.prompt_length`) before it is generated from.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from audio_thinker.data.benchmarks import BenchmarkItem
from audio_thinker.data.prompt_length import PROMPT_TOO_LONG, PromptLengthCounter, too_long_detail
from audio_thinker.data.rows import build_prompt_messages, inline_audio
from audio_thinker.inference.outputs import PromptInput


def build_messages(item: BenchmarkItem, mode: str) -> list[dict[str, str]]:
    """The item's chat messages (one ``<audio>`` placeholder), as training builds them."""
    return build_prompt_messages(item.question, list(item.choices), mode=mode)


def prompt_input(item: BenchmarkItem, mode: str, samples: Any) -> PromptInput:
    """:class:`PromptInput` of ``item`` with its decoded clip ``samples`` inlined."""
    return PromptInput(item.item_id, inline_audio(build_messages(item, mode), [samples]), [samples])


def prompt_length_check(processor: Any, *, max_prompt_length: int,
                        max_seconds: float | None) -> Callable[[PromptInput], str | None]:
    """A function of a :class:`PromptInput` (clips decoded): None when its prompt fits
    ``max_prompt_length`` tokens, else the record error ``prompt_too_long: <figures>``."""
    counter = PromptLengthCounter(processor, max_seconds=max_seconds)

    def check(prompt: PromptInput) -> str | None:
        n_tokens = counter.count_samples(prompt.messages, [len(clip) for clip in prompt.audios])
        if n_tokens <= max_prompt_length:
            return None
        return f"{PROMPT_TOO_LONG}: {too_long_detail(n_tokens, max_prompt_length, 'max_prompt_length')}"

    return check
