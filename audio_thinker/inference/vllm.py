"""vLLM (GPU): the offline engine (``vllm.LLM``) for evaluation and CoT, the async engine
(``AsyncLLM``) for the judge, and the plain functions that configure both.

Offline generators (:class:`VLLMGenerator` for audio prompts, :class:`VLLMTextGenerator` for
text) use the same prompts and decoding rules as the transformers path
(:mod:`audio_thinker.inference.hf`): the model's chat template, greedy unless sampling options are
set, and the token ids vLLM returns cut at the first end-of-sequence id and decoded by the model's
own tokenizer with special tokens kept, so parsing sees exactly what the CPU path sees. Audio
goes in as ``multi_modal_data``; vLLM expands the prompt's placeholder to the clip's feature
length. Before an engine is built, :func:`~audio_thinker.inference.vllm_models.prepare_vllm_model`
registers our vLLM model classes (the thinker-only Qwen2.5-Omni) in this process and checks that
vLLM's engine processes will see them too (the ``vllm.general_plugins`` entry point). Prompts are submitted in the chunks the caller passes (vLLM batches within a chunk
continuously), and a failing chunk is retried prompt by prompt.

The judge's engine (:func:`async_engine_kwargs`, :func:`build_async_engine`,
:func:`complete_async`) serves concurrent batches with continuous batching and prefix caching.

vLLM is imported only when an engine is built (:func:`import_vllm`); without it the error says
``pip install -e .[gpu]``. :func:`engine_kwargs`, :func:`async_engine_kwargs`,
:func:`sampling_kwargs`, :func:`request` and :func:`finish` are plain functions, tested on CPU.
Importing this module imports neither vLLM nor torch.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from audio_thinker.inference.batching import generate_isolating
from audio_thinker.inference.options import GenerationOptions, VLLMOptions
from audio_thinker.inference.outputs import Generated, PromptInput, cut_response, eos_token_ids
from audio_thinker.inference.templates import encode_text_prompt, render_prompt
from audio_thinker.inference.vllm_models import prepare_vllm_model

logger = logging.getLogger(__name__)

#: what to do when vLLM is missing (the ``gpu`` extra of setup.py pins it)
VLLM_INSTALL_HINT = (
    "backend=vllm needs vLLM (CUDA only): pip install -e .[gpu] on the GPU machine; on CPU use backend=hf"
)


class VLLMNotInstalledError(ImportError):
    """vLLM cannot be imported here; the message says how to install it."""


def import_vllm(hint: str = VLLM_INSTALL_HINT) -> Any:
    """``import vllm``, or :class:`VLLMNotInstalledError` with ``hint`` (what to install, or use instead)."""
    try:
        return importlib.import_module("vllm")
    except ImportError as exc:
        raise VLLMNotInstalledError(f"{hint} (import vllm failed: {exc})") from exc


# -- plain functions (no vLLM, no GPU) -------------------------------------------------------------


def check_engine_values(*, tensor_parallel_size: int, gpu_memory_utilization: float,
                        max_model_len: int | None, prefix: str = "vllm.") -> None:
    """``ValueError`` naming ``<prefix><key>`` for an engine setting vLLM would reject."""
    if tensor_parallel_size < 1:
        raise ValueError(f"{prefix}tensor_parallel_size must be >= 1, got {tensor_parallel_size}")
    if not 0 < gpu_memory_utilization <= 1:
        raise ValueError(f"{prefix}gpu_memory_utilization must lie in (0, 1], got {gpu_memory_utilization}")
    if max_model_len is not None and max_model_len < 1:
        raise ValueError(f"{prefix}max_model_len must be >= 1 or None, got {max_model_len}")


def engine_kwargs(model_dir: str, options: VLLMOptions, *, seed: int = 0,
                  audio: bool = True) -> dict[str, Any]:
    """Keyword arguments of ``vllm.LLM`` (``audio``: one clip per prompt; False for a text model).

    >>> kw = engine_kwargs("/m", VLLMOptions(tensor_parallel_size=2))
    >>> kw["limit_mm_per_prompt"], kw["tensor_parallel_size"], kw["model"]
    ({'audio': 1, 'image': 0, 'video': 0}, 2, '/m')
    >>> "limit_mm_per_prompt" in engine_kwargs("/m", VLLMOptions(), audio=False)
    False
    """
    check_engine_values(tensor_parallel_size=options.tensor_parallel_size,
                        gpu_memory_utilization=options.gpu_memory_utilization,
                        max_model_len=options.max_model_len)
    kwargs: dict[str, Any] = {
        "model": model_dir,
        "tokenizer": model_dir,
        "tensor_parallel_size": options.tensor_parallel_size,
        "gpu_memory_utilization": options.gpu_memory_utilization,
        "max_model_len": options.max_model_len,
        "max_num_seqs": options.max_num_seqs,
        "dtype": options.dtype,
        "enforce_eager": options.enforce_eager,
        # audio prompts only: no image/video inputs, so vLLM reserves no vision encoder budget
        # (the Omni thinker has a vision tower; models without one ignore these limits)
        "limit_mm_per_prompt": {"audio": 1, "image": 0, "video": 0},
        "seed": seed,
    }
    if not audio:
        del kwargs["limit_mm_per_prompt"]
    return kwargs


def async_engine_kwargs(
    model: str,
    *,
    tensor_parallel_size: int = 1,
    gpu_memory_utilization: float = 0.9,
    max_model_len: int | None = None,
    dtype: str = "auto",
    seed: int = 0,
    enforce_eager: bool = False,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Keyword arguments of ``vllm.AsyncEngineArgs`` for a text model serving concurrent batches.

    Prefix caching is on (prompts that share a few-shot block reuse its KV cache); with more than
    one GPU the engine uses vLLM's multiprocessing executor on the GPUs the process was given (a
    Ray executor inside a Ray actor would ask Ray for GPUs a second time). ``max_model_len``
    None: the model's context. ``extra`` overrides or adds any engine argument.

    >>> kw = async_engine_kwargs("m", tensor_parallel_size=2)
    >>> kw["distributed_executor_backend"], kw["enable_prefix_caching"], "max_model_len" in kw
    ('mp', True, False)
    """
    check_engine_values(tensor_parallel_size=tensor_parallel_size,
                        gpu_memory_utilization=gpu_memory_utilization, max_model_len=max_model_len, prefix="")
    kwargs: dict[str, Any] = {
        "model": model,
        "tensor_parallel_size": tensor_parallel_size,
        "gpu_memory_utilization": gpu_memory_utilization,
        "dtype": dtype,
        "seed": seed,
        "enforce_eager": enforce_eager,
        "enable_prefix_caching": True,
        "disable_log_stats": True,
    }
    if max_model_len is not None:
        kwargs["max_model_len"] = max_model_len
    if tensor_parallel_size > 1:
        kwargs["distributed_executor_backend"] = "mp"
    kwargs.update(extra or {})
    return kwargs


def sampling_kwargs(
    options: GenerationOptions,
    stop_ids: Sequence[int] | set[int] | None = None,
    *,
    stop: Sequence[str] = (),
    skip_special_tokens: bool = False,
    seeded: bool = True,
) -> dict[str, Any]:
    """Keyword arguments of ``vllm.SamplingParams``: temperature 0 is greedy, as on CPU.

    ``stop_ids``: end-of-sequence token ids; ``stop``: strings that end the text (excluded);
    ``seeded``: a sampled request draws from ``options.seed`` (False: from the engine's RNG).

    >>> sampling_kwargs(GenerationOptions(max_new_tokens=8), [2])["temperature"]
    0.0
    >>> kw = sampling_kwargs(GenerationOptions(temperature=1.0, top_k=5, seed=3), [2, 7])
    >>> kw["top_k"], kw["seed"], kw["stop_token_ids"]
    (5, 3, [2, 7])
    >>> sampling_kwargs(GenerationOptions(max_new_tokens=4), stop=["\\n"], skip_special_tokens=True)["stop"]
    ['\\n']
    """
    kwargs: dict[str, Any] = {
        "n": 1,
        "max_tokens": options.max_new_tokens,
        "temperature": 0.0 if options.greedy else options.temperature,
        "top_p": 1.0 if options.greedy else options.top_p,
        "top_k": options.top_k if (options.top_k > 0 and not options.greedy) else -1,
        "skip_special_tokens": skip_special_tokens,
    }
    if stop_ids is not None:
        kwargs["stop_token_ids"] = sorted(int(i) for i in stop_ids)
    if stop:
        kwargs["stop"] = list(stop)
    if seeded and not options.greedy:
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


def generation_eos_ids(model_dir: str) -> set[int]:
    """The ``eos_token_id`` of ``model_dir``'s generation config (empty when it has none)."""
    from transformers import GenerationConfig

    try:
        value = GenerationConfig.from_pretrained(model_dir).eos_token_id
    except OSError:
        return set()
    if value is None:
        return set()
    return {int(v) for v in (value if isinstance(value, (list, tuple)) else [value])}


# -- the offline engine -----------------------------------------------------------------------------


class _OfflineGenerator:
    """``vllm.LLM`` plus the tokenizer that decodes its token ids; subclasses make the requests."""

    def __init__(self, model_dir: str, tokenizer: Any, options: GenerationOptions,
                 engine: dict[str, Any]) -> None:
        vllm = import_vllm()
        prepare_vllm_model(model_dir)
        self.options = options
        self.tokenizer = tokenizer
        self.llm = vllm.LLM(**engine)
        self.stop_ids = eos_token_ids(None, tokenizer) | generation_eos_ids(model_dir)
        self.pad_id = tokenizer.pad_token_id
        self.sampling = vllm.SamplingParams(**sampling_kwargs(options, self.stop_ids))

    def _requests(self, prompts: Sequence[Any]) -> list[dict[str, Any]]:
        raise NotImplementedError

    def _generate_batch(self, prompts: Sequence[Any]) -> list[Generated]:
        outputs = self.llm.generate(self._requests(prompts), self.sampling, use_tqdm=False)
        decode = lambda ids: self.tokenizer.decode(ids, skip_special_tokens=False)
        return [finish(list(o.outputs[0].token_ids), self.stop_ids, self.pad_id, decode,
                       self.options.max_new_tokens) for o in outputs]

    def generate(self, prompts: Sequence[Any]) -> list[Generated]:
        """One result per prompt, in order; a failing chunk is retried one prompt at a time."""
        return generate_isolating(self._generate_batch, prompts)

    def close(self) -> None:
        """Shut the engine down (its GPU memory is free once the caller collects garbage)."""
        llm, self.llm = self.llm, None
        core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
        if core is not None and hasattr(core, "shutdown"):
            try:
                core.shutdown()
            except Exception as error:  # noqa: BLE001 - best effort; vLLM version specific
                logger.warning("vLLM engine shutdown failed: %r", error)


class VLLMGenerator(_OfflineGenerator):
    """``vllm.LLM`` over an audio model directory, generating from :class:`PromptInput` batches."""

    def __init__(self, model_dir: str, options: GenerationOptions, engine: VLLMOptions) -> None:
        from audio_thinker.inference.loading import load_audio_processor

        import_vllm()  # before loading anything: a machine without vLLM fails at once, with the hint
        self.processor = load_audio_processor(model_dir)
        self.sampling_rate = int(self.processor.feature_extractor.sampling_rate)
        super().__init__(model_dir, self.processor.tokenizer, options,
                         engine_kwargs(model_dir, engine, seed=options.seed))

    def _requests(self, prompts: Sequence[PromptInput]) -> list[dict[str, Any]]:
        return [request(render_prompt(self.processor, p), p.audios, self.sampling_rate) for p in prompts]


class VLLMTextGenerator(_OfflineGenerator):
    """``vllm.LLM`` over a text model, generating from prompt strings (token ids in and out)."""

    def __init__(self, model_path: str, options: GenerationOptions, engine: VLLMOptions) -> None:
        from transformers import AutoTokenizer

        import_vllm()
        super().__init__(model_path, AutoTokenizer.from_pretrained(model_path), options,
                         engine_kwargs(model_path, engine, seed=options.seed, audio=False))

    def _requests(self, prompts: Sequence[str]) -> list[dict[str, Any]]:
        return [{"prompt_token_ids": encode_text_prompt(self.tokenizer, p)} for p in prompts]


def build(model_dir: str, options: GenerationOptions,
          engine: Mapping[str, Any] | VLLMOptions) -> VLLMGenerator:
    """A :class:`VLLMGenerator`; ``engine`` may be a mapping of :class:`VLLMOptions` fields."""
    if not isinstance(engine, VLLMOptions):
        engine = VLLMOptions(**dict(engine))
    return VLLMGenerator(model_dir, options, engine)


# -- the async engine (the judge) ---------------------------------------------------------------------


def build_async_engine(kwargs: Mapping[str, Any], *, hint: str = VLLM_INSTALL_HINT) -> Any:
    """A vLLM (v1) ``AsyncLLM`` engine from ``AsyncEngineArgs(**kwargs)``."""
    import_vllm(hint)
    prepare_vllm_model(str(kwargs["model"]))
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.usage.usage_lib import UsageContext
    from vllm.v1.engine.async_llm import AsyncLLM

    # from_engine_args honours the engine args' disable_log_stats (from_vllm_config has its own flag)
    return AsyncLLM.from_engine_args(AsyncEngineArgs(**kwargs), usage_context=UsageContext.ENGINE_CONTEXT)


async def complete_async(engine: Any, prompts: Sequence[str], params: Any,
                         request_ids: Sequence[str]) -> list[str]:
    """The text of every prompt's completion on an ``AsyncLLM``, in order (``params``: a
    ``SamplingParams``; one unique request id per prompt).

    When this is cancelled (the caller's deadline passed) or one request fails, the other requests
    are cancelled too: vLLM aborts a request in the engine when its ``generate()`` stream is cancelled.
    """

    async def one(prompt: str, request_id: str) -> str:
        final = None
        async for output in engine.generate(prompt=prompt, sampling_params=params, request_id=request_id):
            final = output
        if final is None or not final.outputs:
            raise RuntimeError(f"vLLM returned no output for request {request_id} (aborted?)")
        return str(final.outputs[0].text)

    tasks = [asyncio.ensure_future(one(p, r)) for p, r in zip(prompts, request_ids)]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
