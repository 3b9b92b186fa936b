"""Prompts as the model reads them: its chat template over the messages (pure; duck-typed
processors and tokenizers)."""

from __future__ import annotations

from typing import Any

from audio_thinker.inference.outputs import PromptInput


def render_prompt(processor: Any, prompt: PromptInput) -> str:
    """An audio prompt through the model's chat template (generation prompt appended)."""
    return processor.apply_chat_template(prompt.messages, add_generation_prompt=True, tokenize=False)


def render_text_prompt(tokenizer: Any, text: str) -> str:
    """``text`` as one user turn of the tokenizer's chat template (generation prompt appended;
    Qwen3's ``enable_thinking=False``), or unchanged when the tokenizer has no template.

    >>> class Raw:
    ...     chat_template = None
    >>> render_text_prompt(Raw(), "Hi")
    'Hi'
    """
    if not getattr(tokenizer, "chat_template", None):
        return text
    return tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                         add_generation_prompt=True, enable_thinking=False)


def encode_text_prompt(tokenizer: Any, text: str) -> list[int]:
    """The token ids of :func:`render_text_prompt` (the tokenizer's own special tokens added only
    when no chat template supplied them)."""
    rendered = render_text_prompt(tokenizer, text)
    templated = bool(getattr(tokenizer, "chat_template", None))
    return list(tokenizer(rendered, add_special_tokens=not templated)["input_ids"])
