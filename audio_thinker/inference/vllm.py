"""The vLLM evaluation backend (GPU): offline ``vllm.LLM`` with the audio as ``multi_modal_data``.

Same prompts as the CPU backend (:func:`audio_thinker.inference.hf.render_prompt`: the model's
chat template over the training messages, whose audio placeholder vLLM expands to the clip's
feature length), same decoding rules (greedy unless sampling options are set), and the same
post-processing: the token ids vLLM returns are cut at the first end-of-sequence id and decoded by
the model's own tokenizer with special tokens kept, so parsing sees exactly what the CPU path
sees. Prompts are submitted in chunks of ``batch_size`` (vLLM batches within a chunk
continuously; chunks give the progress bar and let the evaluation loop save records as it goes).

vLLM is imported only when :class:`VLLMGenerator` is built; without it the error says
``pip install -e .[gpu]``. :func:`engine_kwargs`, :func:`sampling_kwargs` and :func:`request`
are plain functions, tested on CPU.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from audio_thinker.inference.hf import (
    Generated,
    GenerationOptions,
    PromptInput,
    cut_response,
    eos_token_ids,
    generate_isolating,
    render_prompt,
)

logger = logging.getLogger(__name__)

VLLM_INSTALL_HINT = (
    "backend=vllm needs vLLM (CUDA only): pip install -e .[gpu] on the GPU machine; on CPU use backend=hf"
)


class VLLMNotInstalledError(ImportError):
    """vLLM cannot be imported here; the message says how to install it."""


def import_vllm() -> Any:
    try:
        return importlib.import_module("vllm")
    except ImportError as exc:
        raise VLLMNotInstalledError(f"{VLLM_INSTALL_HINT} (import vllm failed: {exc})") from exc


@dataclass(frozen=True)
class VLLMOptions:
    """Engine settings (``vllm.LLM`` keyword arguments of the same names)."""

    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.85
    max_model_len: int = 8192
    max_num_seqs: int = 64
    dtype: str = "bfloat16"
    enforce_eager: bool = False


def engine_kwargs(model_dir: str, options: VLLMOptions, *, seed: int = 0) -> dict[str, Any]:
    """Keyword arguments of ``vllm.LLM`` for an audio model (one clip per prompt).

    >>> kw = engine_kwargs("/m", VLLMOptions(tensor_parallel_size=2))
    >>> kw["limit_mm_per_prompt"], kw["tensor_parallel_size"], kw["model"]
    ({'audio': 1}, 2, '/m')
    """
    if options.tensor_parallel_size < 1:
        raise ValueError(f"vllm.tensor_parallel_size must be >= 1, got {options.tensor_parallel_size}")
    if not 0 < options.gpu_memory_utilization <= 1:
        raise ValueError(f"vllm.gpu_memory_utilization must lie in (0, 1], got {options.gpu_memory_utilization}")
    return {
        "model": model_dir,
        "tokenizer": model_dir,
        "tensor_parallel_size": options.tensor_parallel_size,
        "gpu_memory_utilization": options.gpu_memory_utilization,
        "max_model_len": options.max_model_len,
        "max_num_seqs": options.max_num_seqs,
        "dtype": options.dtype,
        "enforce_eager": options.enforce_eager,
        "limit_mm_per_prompt": {"audio": 1},
        "seed": seed,
    }


def sampling_kwargs(options: GenerationOptions, stop_ids: Sequence[int]) -> dict[str, Any]:
    """Keyword arguments of ``vllm.SamplingParams``: temperature 0 is greedy, as on CPU.

    >>> sampling_kwargs(GenerationOptions(max_new_tokens=8), [2])["temperature"]
    0.0
    >>> kw = sampling_kwargs(GenerationOptions(temperature=1.0, top_k=5, seed=3), [2, 7])
    >>> kw["top_k"], kw["seed"], kw["stop_token_ids"]
    (5, 3, [2, 7])
    """
    kwargs: dict[str, Any] = {
        "n": 1,
        "max_tokens": options.max_new_tokens,
        "temperature": 0.0 if options.greedy else options.temperature,
        "top_p": 1.0 if options.greedy else options.top_p,
        "top_k": options.top_k if (options.top_k > 0 and not options.greedy) else -1,
        "stop_token_ids": sorted(int(i) for i in stop_ids),
        "skip_special_tokens": False,
    }
    if not options.greedy:
        kwargs["seed"] = options.seed
    return kwargs


def request(prompt_text: str, audios: Sequence[Any], sampling_rate: int) -> dict[str, Any]:
    """One vLLM prompt: the rendered text and its clips as ``(samples, sampling_rate)`` tuples.

    >>> request("<|AUDIO|>hi", ["x"], 16000)
    {'prompt': '<|AUDIO|>hi', 'multi_modal_data': {'audio': [('x', 16000)]}}
    """
    return {"prompt": prompt_text, "multi_modal_data": {"audio": [(clip, sampling_rate) for clip in audios]}}


def finish(token_ids: Sequence[int], stop_ids: set[int], pad_id: int | None, decode: Any,
           max_tokens: int) -> Generated:
    """A vLLM completion as a :class:`Generated` (cut at the first stop id, like the CPU path).

    >>> finish([4, 5, 2], {2}, 0, lambda ids: str(ids), 8)
    Generated(text='[4, 5]', n_tokens=3, finish_reason='stop', error=None)
    """
    kept, reason = cut_response(token_ids, stop_ids, pad_id)
    if reason == "length" and len(token_ids) < max_tokens:
        reason = "stop"  # a stop string or an engine-side stop; vLLM ended it before max_tokens
    return Generated(decode(kept), len(token_ids), reason)


class VLLMGenerator:
    """``vllm.LLM`` over a Hugging Face model directory (GPU)."""

    def __init__(self, model_dir: str, options: GenerationOptions, engine: VLLMOptions) -> None:
        vllm = import_vllm()
        from audio_thinker.verl_ext.plugin import load_audio_processor

        self.options = options
        self.processor = load_audio_processor(model_dir)
        if self.processor is None:
            raise ValueError(f"{model_dir} is not a Qwen2-Audio / Qwen2.5-Omni thinker checkpoint")
        self.tokenizer = self.processor.tokenizer
        self.llm = vllm.LLM(**engine_kwargs(model_dir, engine, seed=options.seed))
        self.stop_ids = eos_token_ids(None, self.tokenizer) | self._generation_eos(model_dir)
        self.pad_id = self.tokenizer.pad_token_id
        self.sampling = vllm.SamplingParams(**sampling_kwargs(options, sorted(self.stop_ids)))
        self.sampling_rate = int(self.processor.feature_extractor.sampling_rate)

    @staticmethod
    def _generation_eos(model_dir: str) -> set[int]:
        from transformers import GenerationConfig

        try:
            value = GenerationConfig.from_pretrained(model_dir).eos_token_id
        except OSError:
            return set()
        if value is None:
            return set()
        return {int(v) for v in (value if isinstance(value, (list, tuple)) else [value])}

    def _generate_batch(self, prompts: Sequence[PromptInput]) -> list[Generated]:
        requests = [request(render_prompt(self.processor, p), p.audios, self.sampling_rate) for p in prompts]
        outputs = self.llm.generate(requests, self.sampling, use_tqdm=False)
        return [self._result(output) for output in outputs]

    def generate(self, prompts: Sequence[PromptInput]) -> list[Generated]:
        """One result per prompt; a failing chunk is retried one prompt at a time."""
        return generate_isolating(self._generate_batch, prompts)

    def _result(self, output: Any) -> Generated:
        completion = output.outputs[0]
        decode = lambda ids: self.tokenizer.decode(ids, skip_special_tokens=False)  # noqa: E731
        return finish(list(completion.token_ids), self.stop_ids, self.pad_id, decode, self.options.max_new_tokens)

    def close(self) -> None:
        self.llm = None


def build(model_dir: str, options: GenerationOptions, engine: Mapping[str, Any] | VLLMOptions) -> VLLMGenerator:
    """A :class:`VLLMGenerator`; ``engine`` may be a mapping of :class:`VLLMOptions` fields."""
    if not isinstance(engine, VLLMOptions):
        engine = VLLMOptions(**dict(engine))
    return VLLMGenerator(model_dir, options, engine)
