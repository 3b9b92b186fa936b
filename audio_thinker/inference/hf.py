"""Batched generation for evaluation: the same prompts and decoding rules on CPU and GPU.

* :func:`build_messages` / :func:`render_prompt`: the chat prompt of an item, exactly as training
  builds it (:func:`audio_thinker.data.rows.build_prompt_messages`: audio first, then the question,
  its choices and the prompt mode's instruction), rendered by the model's own chat template.
* :class:`GenerationOptions`: greedy by default (``temperature=0``); sampling options as vLLM names
  them (``temperature``, ``top_p``, ``top_k``, ``seed``, ``max_new_tokens``).
* :class:`HFGenerator`: transformers on CPU (or any torch device): left-padded batches through the
  processor (audio features for every clip), ``model.generate`` with the multimodal placeholder
  tokens suppressed (a random tiny model would otherwise emit ``<|AUDIO|>``), and the response cut
  at the first end-of-sequence token. A batch that fails is retried item by item, so one bad item
  costs only itself.
* :mod:`audio_thinker.inference.vllm`: the vLLM backend (GPU), imported on demand.

Both backends return one :class:`Generated` per prompt, in order: the response text with the
model's special tokens kept except end-of-sequence and padding (so ``<think>``/``<answer>`` tags
survive whatever the tokenizer marks special), the number of generated tokens and whether
generation stopped (``stop``) or hit ``max_new_tokens`` (``length``), or an ``error``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from audio_thinker.data.benchmarks import BenchmarkItem
from audio_thinker.data.rows import build_prompt_messages, inline_audio

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GenerationOptions:
    """Decoding settings shared by both backends (vLLM's names and semantics); ``generation.*`` of
    ``python -m audio_thinker.evaluate``."""

    #: new tokens per response
    max_new_tokens: int = 512
    #: 0 = greedy (default); > 0 samples
    temperature: float = 0.0
    top_p: float = 1.0
    #: <= 0: disabled
    top_k: int = -1
    seed: int = 0
    #: prompts per generation call (the CPU batch; the vLLM submission chunk)
    batch_size: int = 8

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0 = greedy), got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must lie in (0, 1], got {self.top_p}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")

    @property
    def greedy(self) -> bool:
        return self.temperature < 1e-5


@dataclass(frozen=True)
class PromptInput:
    """One item ready for generation: its chat messages (audio inlined) and the decoded clips."""

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
    """What the evaluation loop needs of a backend."""

    def generate(self, prompts: Sequence[PromptInput]) -> list[Generated]: ...

    def close(self) -> None: ...


def build_messages(item: BenchmarkItem, mode: str) -> list[dict[str, str]]:
    """The item's chat messages (one ``<audio>`` placeholder), as training builds them."""
    return build_prompt_messages(item.question, list(item.choices), mode=mode)


def prompt_input(item: BenchmarkItem, mode: str, samples: Any) -> PromptInput:
    """:class:`PromptInput` of ``item`` with its decoded clip ``samples`` inlined."""
    return PromptInput(item.item_id, inline_audio(build_messages(item, mode), [samples]), [samples])


def render_prompt(processor: Any, prompt: PromptInput) -> str:
    """The prompt text through the model's chat template (generation prompt appended)."""
    return processor.apply_chat_template(prompt.messages, add_generation_prompt=True, tokenize=False)


def eos_token_ids(model: Any, tokenizer: Any) -> set[int]:
    """End-of-sequence ids: the generation config's plus the tokenizer's (as vLLM uses them)."""
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
    """Generated ids as a :class:`Generated`: cut at the first stop id, special tokens kept."""
    kept, reason = cut_response(ids, stop_ids, pad_id)
    return Generated(tokenizer.decode(kept, skip_special_tokens=False), len(kept) + (reason == "stop"), reason)


def generate_isolating(
    generate_batch: Callable[[Sequence[Any]], list[Generated]], prompts: Sequence[Any]
) -> list[Generated]:
    """``generate_batch(prompts)``; when that raises, every prompt alone, so a bad prompt costs only itself
    (its result carries ``error="generation_error: ..."``)."""
    if not prompts:
        return []
    try:
        return generate_batch(prompts)
    except Exception as error:  # isolate the prompt that breaks the batch
        if len(prompts) == 1:
            logger.warning("generation failed for %s: %r", getattr(prompts[0], "item_id", "a prompt"), error)
            return [Generated(None, error=f"generation_error: {type(error).__name__}: {error}")]
        logger.warning("batch of %d failed (%r); retrying one prompt at a time", len(prompts), error)
        return [result for prompt in prompts for result in generate_isolating(generate_batch, [prompt])]


class HFGenerator:
    """transformers generation (CPU by default) with batched, left-padded prompts.

    Args:
        model_dir: a Hugging Face model directory (Qwen2-Audio or a Qwen2.5-Omni thinker).
        options: decoding settings.
        device: torch device string (``cpu``, ``cuda``, ``cuda:1``).
        dtype: ``float32`` / ``bfloat16`` / ``float16`` / ``auto`` (the checkpoint's).
        attn_implementation: ``sdpa`` or ``eager``.
        num_threads: torch CPU threads (None: leave torch's default).
    """

    def __init__(
        self,
        model_dir: str,
        options: GenerationOptions,
        *,
        device: str = "cpu",
        dtype: str = "float32",
        attn_implementation: str = "sdpa",
        num_threads: int | None = None,
    ) -> None:
        import torch
        from transformers import AutoModelForImageTextToText

        from audio_thinker.inference.placeholders import multimodal_placeholder_ids
        from audio_thinker.verl_ext.plugin import load_audio_processor, register_model_classes

        if num_threads:
            torch.set_num_threads(int(num_threads))
        self.options = options
        self.device = torch.device(device)
        processor = load_audio_processor(model_dir)
        if processor is None:
            raise ValueError(
                f"{model_dir} is not an audio checkpoint this project evaluates (Qwen2-Audio or a Qwen2.5-Omni "
                "thinker): its config.json has another model_type"
            )
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.tokenizer.padding_side = "left"
        register_model_classes()
        torch_dtype = "auto" if dtype == "auto" else getattr(torch, dtype)
        self.model = AutoModelForImageTextToText.from_pretrained(
            model_dir, dtype=torch_dtype, attn_implementation=attn_implementation
        ).to(self.device).eval()
        self.model.requires_grad_(False)
        self.stop_ids = eos_token_ids(self.model, self.tokenizer)
        if not self.stop_ids:
            raise ValueError(f"{model_dir}: no eos_token_id in its generation config or tokenizer")
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else min(self.stop_ids)
        self.suppressed = sorted(multimodal_placeholder_ids(self.model.config, self.tokenizer))
        self.sampling_rate = int(processor.feature_extractor.sampling_rate)
        self._calls = 0

    def _inputs(self, prompts: Sequence[PromptInput]) -> Any:
        texts = [render_prompt(self.processor, p) for p in prompts]
        audios = [clip for p in prompts for clip in p.audios]
        inputs = self.processor(text=texts, audio=audios or None, sampling_rate=self.sampling_rate,
                                padding=True, return_tensors="pt")
        return inputs.to(self.device)

    def _generate_batch(self, prompts: Sequence[PromptInput]) -> list[Generated]:
        import torch

        inputs = self._inputs(prompts)
        kwargs: dict[str, Any] = {
            "max_new_tokens": self.options.max_new_tokens,
            "eos_token_id": sorted(self.stop_ids),
            "pad_token_id": self.pad_id,
            "suppress_tokens": self.suppressed or None,
        }
        if self.options.greedy:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:
            kwargs.update(do_sample=True, temperature=self.options.temperature, top_p=self.options.top_p,
                          top_k=self.options.top_k if self.options.top_k > 0 else 0)
            torch.manual_seed(self.options.seed + self._calls)
        self._calls += 1
        with torch.no_grad():
            out = self.model.generate(**inputs, **kwargs)
        new = out[:, inputs["input_ids"].shape[1]:].tolist()
        return [decode_response(self.tokenizer, ids, self.stop_ids, self.pad_id) for ids in new]

    def generate(self, prompts: Sequence[PromptInput]) -> list[Generated]:
        """One result per prompt; a failing batch is retried one prompt at a time."""
        return generate_isolating(self._generate_batch, prompts)

    def close(self) -> None:
        self.model = None
