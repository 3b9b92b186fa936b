"""transformers generation: one core for every batched ``model.generate`` in the project.

* :func:`generate_kwargs` / :func:`generate_new_ids`: decoding settings as ``model.generate``
  takes them (greedy unless ``temperature > 0``; vLLM's names: ``top_k <= 0`` is off), the
  end-of-sequence ids, padding, banned tokens and stopping criteria; returns the new ids of
  every row. A sampled call may be seeded: the global torch RNG is left as it was.
* :func:`left_pad`: token-id prompts padded on the left, so every row's continuation starts at the
  same column and decoder-only models see no pad between prompt and continuation (transformers
  derives position ids from the attention mask).
* :class:`HFGenerator`: an audio model (Qwen2-Audio, a Qwen2.5-Omni thinker) over
  :class:`~audio_thinker.inference.outputs.PromptInput` (the processor renders the chat template
  and computes audio features for every clip). The multimodal placeholder tokens are banned from
  sampling (a random tiny model would otherwise emit ``<|AUDIO|>``).
* :class:`HFTextGenerator`: a causal LM over prompt strings (rendered by its chat template, when
  it has one).

Both return one :class:`~audio_thinker.inference.outputs.Generated` per prompt, cut at the first
end-of-sequence token, and retry a failing batch prompt by prompt (one bad prompt costs only
itself). Build them from a directory with ``from_pretrained`` or around a model already loaded.
The judge's stop-at-a-string generation is :mod:`audio_thinker.inference.continuations`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from audio_thinker.inference.batching import generate_isolating
from audio_thinker.inference.loading import load_audio_model, load_audio_processor, load_causal_lm
from audio_thinker.inference.options import GenerationOptions
from audio_thinker.inference.outputs import Generated, PromptInput, decode_response, eos_token_ids
from audio_thinker.inference.placeholders import multimodal_placeholder_ids
from audio_thinker.inference.templates import encode_text_prompt, render_prompt


def generate_kwargs(options: GenerationOptions) -> dict[str, Any]:
    """The sampling keywords of ``model.generate``: greedy at temperature 0, else temperature,
    top-p and top-k sampling (``top_k <= 0``: off).

    >>> generate_kwargs(GenerationOptions())
    {'do_sample': False, 'temperature': None, 'top_p': None, 'top_k': None}
    >>> generate_kwargs(GenerationOptions(temperature=1.0))
    {'do_sample': True, 'temperature': 1.0, 'top_p': 1.0, 'top_k': 0}
    """
    if options.greedy:
        return {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
    return {"do_sample": True, "temperature": options.temperature, "top_p": options.top_p,
            "top_k": max(0, options.top_k)}


def left_pad(sequences: Sequence[Sequence[int]], pad_id: int) -> dict[str, Any]:
    """``input_ids`` and ``attention_mask`` (LongTensor[B, max_len]) of token-id prompts padded on the left.

    >>> batch = left_pad([[5, 6, 7], [8]], 0)
    >>> batch["input_ids"].tolist(), batch["attention_mask"].tolist()
    ([[5, 6, 7], [0, 0, 8]], [[1, 1, 1], [0, 0, 1]])
    """
    import torch

    width = max(len(seq) for seq in sequences)
    ids = torch.full((len(sequences), width), int(pad_id), dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        if seq:
            ids[row, width - len(seq):] = torch.tensor(list(seq), dtype=torch.long)
            mask[row, width - len(seq):] = 1
    return {"input_ids": ids, "attention_mask": mask}


@contextlib.contextmanager
def _seeded(seed: int | None, device: Any) -> Iterator[None]:
    """Seed torch for the block, then restore the RNG states as they were (no-op for None)."""
    if seed is None:
        yield
        return
    import torch

    cuda = [device] if getattr(device, "type", str(device)).startswith("cuda") else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        yield


def generate_new_ids(
    model: Any,
    inputs: Mapping[str, Any],
    options: GenerationOptions,
    *,
    stop_ids: set[int],
    pad_id: int | None,
    suppress: Sequence[int] = (),
    stopping_criteria: Sequence[Any] = (),
    seed: int | None = None,
) -> list[list[int]]:
    """``model.generate`` over a padded batch; the generated ids of every row (prompt cut off).

    ``inputs``: the model's keyword inputs (``input_ids`` LongTensor[B, P], ``attention_mask``,
    audio features...), on the model's device. ``suppress``: ids never generated. ``stopping_criteria``:
    transformers ``StoppingCriteria`` callables. ``seed``: seeds this call only (None: torch's
    current RNG). Rows that stopped early are padded with ``pad_id`` up to the longest row.
    """
    import torch
    from transformers import StoppingCriteriaList

    kwargs: dict[str, Any] = {
        "max_new_tokens": options.max_new_tokens,
        "eos_token_id": sorted(stop_ids) or None,
        "pad_token_id": pad_id,
        "suppress_tokens": sorted(suppress) or None,
        **generate_kwargs(options),
    }
    if stopping_criteria:
        kwargs["stopping_criteria"] = StoppingCriteriaList(list(stopping_criteria))
    with _seeded(seed, inputs["input_ids"].device), torch.no_grad():
        out = model.generate(**inputs, **kwargs)
    return out[:, inputs["input_ids"].shape[1]:].tolist()


class _TransformersGenerator:
    """What both generators share: stop/pad ids, seeding per call, per-prompt retry, decoding."""

    def __init__(self, model: Any, tokenizer: Any, options: GenerationOptions) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.options = options
        self.device = getattr(model, "device", "cpu")
        self._padding_side = tokenizer.padding_side
        tokenizer.padding_side = "left"
        self.stop_ids = eos_token_ids(model, tokenizer)
        if not self.stop_ids:
            name = getattr(model, "name_or_path", "") or type(model).__name__
            raise ValueError(f"{name}: no eos_token_id in its generation config or tokenizer")
        pad = tokenizer.pad_token_id
        self.pad_id = int(pad) if pad is not None else min(self.stop_ids)
        self.suppressed: list[int] = []
        self._calls = 0

    def _inputs(self, prompts: Sequence[Any]) -> dict[str, Any]:
        raise NotImplementedError

    def _generate_batch(self, prompts: Sequence[Any]) -> list[Generated]:
        seed = None if self.options.greedy else self.options.seed + self._calls  # each call its own draw
        self._calls += 1
        new = generate_new_ids(self.model, self._inputs(prompts), self.options, stop_ids=self.stop_ids,
                               pad_id=self.pad_id, suppress=self.suppressed, seed=seed)
        return [decode_response(self.tokenizer, ids, self.stop_ids, self.pad_id) for ids in new]

    def generate(self, prompts: Sequence[Any]) -> list[Generated]:
        """One result per prompt, in order; a failing batch is retried one prompt at a time."""
        return generate_isolating(self._generate_batch, prompts)

    def close(self) -> None:
        """Drop the model and give the tokenizer its padding side back."""
        self.tokenizer.padding_side = self._padding_side
        self.model = None


class HFGenerator(_TransformersGenerator):
    """An audio model generating from :class:`PromptInput` batches (left-padded, placeholders banned).

    Args:
        model: a loaded Qwen2-Audio / Qwen2.5-Omni thinker model (eval mode).
        processor: its processor (chat template, tokenizer, feature extractor).
        options: decoding settings.
    """

    def __init__(self, model: Any, processor: Any, options: GenerationOptions) -> None:
        super().__init__(model, processor.tokenizer, options)
        self.processor = processor
        self.suppressed = sorted(multimodal_placeholder_ids(model.config, self.tokenizer))
        self.sampling_rate = int(processor.feature_extractor.sampling_rate)

    @classmethod
    def from_pretrained(cls, model_dir: str, options: GenerationOptions, *, device: str = "cpu",
                        dtype: str = "float32", attn_implementation: str = "sdpa",
                        num_threads: int | None = None) -> HFGenerator:
        """Load ``model_dir`` on ``device`` (``cpu``, ``cuda:1``) in ``dtype`` (``float32``,
        ``bfloat16``, ``float16``, ``auto``); ``attn_implementation`` ``sdpa`` or ``eager``;
        ``num_threads``: torch CPU threads (None: torch's default)."""
        processor = load_audio_processor(model_dir)
        model = load_audio_model(model_dir, device=device, dtype=dtype,
                                 attn_implementation=attn_implementation, num_threads=num_threads)
        return cls(model, processor, options)

    def _inputs(self, prompts: Sequence[PromptInput]) -> dict[str, Any]:
        texts = [render_prompt(self.processor, p) for p in prompts]
        audios = [clip for p in prompts for clip in p.audios]
        inputs = self.processor(text=texts, audio=audios or None, sampling_rate=self.sampling_rate,
                                padding=True, return_tensors="pt")
        return inputs.to(self.device)


class HFTextGenerator(_TransformersGenerator):
    """A causal LM generating from prompt strings (its chat template applied when it has one)."""

    @classmethod
    def from_pretrained(cls, model_path: str, options: GenerationOptions, *, device: str = "cpu",
                        dtype: str = "float32", num_threads: int | None = None) -> HFTextGenerator:
        """Load the causal LM ``model_path`` (a folder or hub id) on ``device`` in ``dtype``."""
        model, tokenizer = load_causal_lm(model_path, device=device, dtype=dtype, num_threads=num_threads)
        return cls(model, tokenizer, options)

    def _inputs(self, prompts: Sequence[str]) -> dict[str, Any]:
        batch = left_pad([encode_text_prompt(self.tokenizer, p) for p in prompts], self.pad_id)
        return {key: value.to(self.device) for key, value in batch.items()}
