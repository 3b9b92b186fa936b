"""Benchmark items as generation prompts: exactly the prompt training builds for the same question.

The chat messages come from :func:`audio_thinker.data.rows.build_prompt_messages` (audio first,
then the question, its choices and the prompt mode's instruction); the clip is inlined where the
``<audio>`` placeholder stands, and the model's own chat template renders the result
(:func:`audio_thinker.inference.templates.render_prompt`).
"""

from __future__ import annotations

from typing import Any

from audio_thinker.data.benchmarks import BenchmarkItem
from audio_thinker.data.rows import build_prompt_messages, inline_audio
from audio_thinker.inference.outputs import PromptInput


def build_messages(item: BenchmarkItem, mode: str) -> list[dict[str, str]]:
    """The item's chat messages (one ``<audio>`` placeholder), as training builds them."""
    return build_prompt_messages(item.question, list(item.choices), mode=mode)


def prompt_input(item: BenchmarkItem, mode: str, samples: Any) -> PromptInput:
    """:class:`PromptInput` of ``item`` with its decoded clip ``samples`` inlined."""
    return PromptInput(item.item_id, inline_audio(build_messages(item, mode), [samples]), [samples])
