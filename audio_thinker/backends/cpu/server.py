"""The ``hf`` rollout's server: a Ray actor that verl's agent loop calls like its vLLM server (CPU).

:class:`HFRolloutServerActor` loads ``actor_rollout_ref.model.path`` with the auto class verl's
actor uses (:func:`~audio_thinker.backends.cpu.weights.load_rollout_model`) in float32 and serves
``generate(prompt_ids, sampling_params, request_id, ..., audio_data=...) -> TokenOutput``, the
call verl's ``LLMServerClient`` makes on a rollout server:

* **Batching.** Concurrent requests are collected by a
  :class:`~audio_thinker.backends.cpu.batcher.RequestBatcher` (up to ``max_batch_size`` requests
  arriving < ``batch_wait_ms`` apart, at most ``batch_max_wait_ms`` after the first) and generated
  as one left-padded, KV-cached batch by a
  :class:`~audio_thinker.backends.cpu.generator.BatchedGenerator` on a single model thread.
* **Audio** arrives raw (16 kHz float32 arrays). On the model thread, just before its batch runs,
  the server computes ``input_features`` / ``feature_attention_mask`` exactly as verl's agent loop
  does for the actor (decode the prompt with ``skip_special_tokens=True``, run the processor
  through ``build_multimodal_processor_inputs``; batched with verl's
  ``extract_multi_modal_inputs``); the prompt ids already carry the expanded audio placeholders,
  and the placeholder ids are never sampled.
* **Weights** arrive in buckets (``update_weights``, from the in-worker adapter of
  :mod:`~audio_thinker.backends.cpu.rollout`) and are loaded on the model thread, so they never
  interleave with a batch.
* **Abort.** ``abort_all_requests`` stops running batches at the next token (partial tokens,
  ``stop_reason="aborted"``) and parks or rejects new requests until ``resume_generation``.
* Sleep / wake-up / KV-cache / profiling calls (made by verl's ``RolloutReplica``) are no-ops: the
  weights stay in host memory and every batch builds its own KV cache.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import ray
import torch
from verl.workers.rollout.replica import TokenOutput

from audio_thinker.backends.cpu.batcher import RequestBatcher
from audio_thinker.backends.cpu.generator import BatchedGenerator, GenerationRequest, GenerationResult
from audio_thinker.backends.cpu.options import engine_options
from audio_thinker.backends.cpu.sampling import parse_sampling_params
from audio_thinker.backends.cpu.weights import load_named_tensors, load_rollout_model
from audio_thinker.inference.placeholders import multimodal_placeholder_ids

logger = logging.getLogger(__name__)
logger.setLevel(os.getenv("VERL_LOGGING_LEVEL", "INFO"))

__all__ = ["HFRolloutServerActor"]


def _stop_reason(finish_reason: str) -> str:
    return "aborted" if finish_reason == "abort" else "completed"


def _collate_multi_modal_inputs(items: list[dict[str, torch.Tensor]]) -> dict[str, Any]:
    """Batch per-request processor outputs exactly as verl's actor batches them."""
    from verl.utils.model import extract_multi_modal_inputs

    return extract_multi_modal_inputs(items)


class HFRolloutServerActor:
    """Token-in/token-out generation server (a Ray actor) answering verl's calls (module docstring).

    Args:
        config: verl's ``RolloutConfig`` (or its OmegaConf node).
        model_config: verl's ``HFModelConfig`` (or its OmegaConf node).
        replica_rank: the replica served (offsets the sampling seed).
    """

    def __init__(self, config: Any, model_config: Any, replica_rank: int = 0) -> None:
        from verl.utils.config import omega_conf_to_dataclass
        from verl.workers.config import HFModelConfig, RolloutConfig

        started = time.perf_counter()
        if not isinstance(config, RolloutConfig):
            config = omega_conf_to_dataclass(config, dataclass_type=RolloutConfig)
        self.config = config
        self.model_config = (
            model_config if isinstance(model_config, HFModelConfig)
            else omega_conf_to_dataclass(model_config, dataclass_type=HFModelConfig)
        )
        self.replica_rank = replica_rank
        self.options = engine_options(self.config)
        torch.set_num_threads(int(self.options["num_threads"]))

        self.tokenizer = self.model_config.tokenizer
        self.processor = self.model_config.processor
        self.model = load_rollout_model(
            self.model_config,
            dtype=self.options["dtype"],
            attn_implementation=self.options["attn_implementation"],
            audio_attn_implementation=self.options["audio_attn_implementation"],
        )
        self.max_model_len = self._max_model_len()
        self.generator = BatchedGenerator(
            self.model,
            eos_token_ids=self._eos_token_ids(),
            pad_token_id=self._pad_token_id(),
            logprobs_mode=self.config.logprobs_mode or "processed_logprobs",
            seed=int(self.config.seed) + int(replica_rank),
            collate_mm=_collate_multi_modal_inputs,
            banned_token_ids=multimodal_placeholder_ids(self.model_config.hf_config, self.tokenizer),
        )
        # one thread owns the model (and the tokenizer/processor, which are not re-entrant):
        # batches, their audio features and weight loads never overlap
        self._model_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hf-rollout-model")
        self.batcher = RequestBatcher(
            self._run_batch,
            executor=self._model_executor,
            max_batch_size=int(self.options["max_batch_size"]),
            max_wait_s=float(self.options["batch_wait_ms"]) / 1000.0,
            max_total_wait_s=float(self.options["batch_max_wait_ms"]) / 1000.0,
        )

        self.global_steps = None
        self._paused = False
        self._rejecting = False
        self._resume_event: asyncio.Event | None = None
        self._loaded_names: set[str] = set()
        self._stats = {"requests": 0, "batches": 0, "tokens": 0, "generate_s": 0.0, "weight_updates": 0}
        # no HTTP endpoint: a unique name for verl's load balancer
        node_ip = ray.util.get_node_ip_address().strip("[]")
        self._address = f"{node_ip}/{self.config.name}-rollout-{replica_rank}"
        logger.info(
            "hf rollout server, replica %d: %s (%s) loaded in %.1fs; max_batch_size=%d, threads=%d, "
            "max_model_len=%d", replica_rank, self.model_config.local_path, type(self.model).__name__,
            time.perf_counter() - started, self.options["max_batch_size"], self.options["num_threads"],
            self.max_model_len,
        )

    # ----------------------------------------------------------------- set-up
    def _max_model_len(self) -> int:
        if self.config.max_model_len:
            return int(self.config.max_model_len)
        from verl.workers.rollout.utils import get_max_position_embeddings

        return get_max_position_embeddings(self.model_config.hf_config)

    def _eos_token_ids(self) -> set[int]:
        """EOS ids as vLLM uses them: the tokenizer's plus generation_config's."""
        ids: set[int] = set()
        for source in (self.tokenizer, self.model_config.generation_config, self.model_config.hf_config):
            value = getattr(source, "eos_token_id", None) if source is not None else None
            if value is None:
                continue
            ids.update(int(v) for v in (value if isinstance(value, (list, tuple, set)) else [value]))
        if not ids:
            raise ValueError(f"{self.model_config.local_path}: no eos_token_id in tokenizer or generation")
        return ids

    def _pad_token_id(self) -> int:
        for attribute in ("pad_token_id", "eos_token_id"):
            value = getattr(self.tokenizer, attribute, None)
            if value is not None:
                return int(value)
        return 0

    # ------------------------------------------------------------- generation
    def _run_batch(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        """Runs on the model thread."""
        if self._paused:
            return [GenerationResult([], [], "abort") for _ in requests]
        for request in requests:  # features are computed here, so requests reach the batcher at once
            if request.mm_data is not None and request.mm_inputs is None:
                audio_data, mm_processor_kwargs = request.mm_data
                request.mm_inputs = self._multi_modal_inputs(
                    request.prompt_ids, audio_data, mm_processor_kwargs
                )
        results = self.generator.generate(requests, should_abort=lambda: self._paused)
        self._stats["batches"] += 1
        self._stats["requests"] += len(requests)
        self._stats["tokens"] += sum(len(r.token_ids) for r in results)
        self._stats["generate_s"] += results[0].stats.get("generate_s", 0.0) if results else 0.0
        return results

    def _multi_modal_inputs(
        self, prompt_ids: list[int], audio_data: list[Any], mm_processor_kwargs: dict[str, Any] | None
    ) -> dict[str, torch.Tensor]:
        """The actor's features for this prompt, computed the way verl's agent loop computes them."""
        from verl.utils.tokenizer import build_multimodal_processor_inputs

        if self.processor is None:
            raise ValueError(f"{self.model_config.local_path} has no processor: it cannot take audio_data")
        text = self.tokenizer.decode(prompt_ids, skip_special_tokens=True)
        inputs = build_multimodal_processor_inputs(
            self.processor, text=[text], audio=list(audio_data), mm_processor_kwargs=mm_processor_kwargs
        )
        if hasattr(inputs, "convert_to_tensors"):
            inputs = inputs.convert_to_tensors("pt")
        inputs = dict(inputs)
        inputs.pop("input_ids", None)
        inputs.pop("attention_mask", None)
        return inputs

    async def _park_until_admitted(self) -> bool:
        """Wait while generation is paused; False when the request must be rejected."""
        while self._paused:
            if self._rejecting:
                return False
            if self._resume_event is None:
                self._resume_event = asyncio.Event()
            await self._resume_event.wait()
        return True

    async def generate(
        self,
        prompt_ids: list[int],
        sampling_params: dict[str, Any],
        request_id: str,
        image_data: list[Any] | None = None,
        video_data: list[Any] | None = None,
        audio_data: list[Any] | None = None,
        mm_processor_kwargs: dict[str, Any] | None = None,
        priority: int = 0,
        **kwargs: Any,
    ) -> TokenOutput:
        """Generate one response, token ids in, ``TokenOutput`` out (verl's vLLM server contract)."""
        from verl.utils.tokenizer import normalize_token_ids

        if image_data or video_data:
            raise NotImplementedError("the hf rollout handles text and audio only (got image/video data)")
        if not await self._park_until_admitted():
            return TokenOutput(token_ids=[], log_probs=None, stop_reason="aborted",
                               extra_fields={"global_steps": self.global_steps})
        prompt_ids = normalize_token_ids(prompt_ids)
        max_possible_tokens = self.max_model_len - len(prompt_ids)
        if max_possible_tokens < 1:
            raise ValueError(
                f"Prompt length ({len(prompt_ids)}) leaves no room to generate within the model's maximum "
                f"context length ({self.max_model_len})."
            )
        response_length = self.config.response_length
        budget = self.config.prompt_length + response_length - len(prompt_ids)
        default_max_tokens = min(response_length, budget)
        defaults: dict[str, Any] = {
            "repetition_penalty": self.config.repetition_penalty or 1.0,
            "ignore_eos": self.config.ignore_eos,
        }
        if self.config.full_determinism:
            defaults["seed"] = self.replica_rank + self.config.seed
        spec = parse_sampling_params(
            dict(sampling_params),
            default_max_tokens=default_max_tokens,
            max_possible_tokens=max_possible_tokens,
            defaults=defaults,
        )
        has_audio = audio_data is not None and len(audio_data) > 0
        mm_data = (audio_data, mm_processor_kwargs) if has_audio else None
        result: GenerationResult = await self.batcher.submit(
            GenerationRequest(prompt_ids=prompt_ids, sampling=spec, request_id=request_id, mm_data=mm_data)
        )
        return TokenOutput(
            token_ids=result.token_ids,
            log_probs=result.log_probs if spec.logprobs else None,
            stop_reason=_stop_reason(result.finish_reason),
            num_preempted=0,
            extra_fields={"global_steps": self.global_steps, "num_cached_tokens": 0},
        )

    # ---------------------------------------------------------------- weights
    async def update_weights(
        self,
        named_tensors: list[tuple[str, torch.Tensor]],
        is_last: bool = True,
        global_steps: int | None = None,
    ) -> dict[str, int]:
        """Load one bucket of ``(name, tensor)`` (model ``state_dict`` names) on the model thread.

        With ``is_last`` the update is complete: counts are reported (an update that touched
        no parameter raises) and ``global_steps`` is recorded.
        """
        loop = asyncio.get_running_loop()
        loaded = await loop.run_in_executor(
            self._model_executor, load_named_tensors, self.model, named_tensors
        )
        self._loaded_names.update(loaded)
        if not is_last:
            return {"loaded": len(loaded)}
        total = len(self.model.state_dict())
        updated, self._loaded_names = len(self._loaded_names), set()
        if updated == 0:
            raise RuntimeError("hf rollout: a weight update ended without updating any parameter")
        if updated < total:
            logger.warning("hf rollout: weight update touched %d of %d tensors", updated, total)
        self._stats["weight_updates"] += 1
        if global_steps is not None:
            self.global_steps = global_steps
        return {"updated": updated, "total": total}

    # --------------------------------------------------- pause / abort / drain
    async def abort_all_requests(self, reject_request: bool = False) -> dict[str, Any]:
        """Stop running batches at the next token, answer queued requests as aborted, park new ones."""
        self._paused = True
        self._rejecting = reject_request
        if self._resume_event is None:
            self._resume_event = asyncio.Event()
        self._resume_event.clear()
        pending = self.batcher.drain_pending()
        for request, future in pending:
            future.set_result(GenerationResult([], [], "abort"))
        await self.batcher.wait_idle()
        request_ids = [request.request_id for request, _ in pending]
        return {"aborted_count": len(request_ids), "request_ids": request_ids}

    async def resume_generation(self):
        self._rejecting = False
        self._paused = False
        if self._resume_event is not None:
            self._resume_event.set()

    # ------------------------------------------------- no-ops on a CPU server
    async def wake_up(self):
        pass

    async def sleep(self):
        pass

    async def clear_kv_cache(self):
        pass  # no prefix cache: every batch builds its own KV cache

    async def release_kv_cache(self):
        pass

    async def resume_kv_cache(self):
        pass

    async def start_profile(self, **kwargs):
        pass

    async def stop_profile(self):
        pass

    # ------------------------------------------------------------ inspection
    async def get_server_address(self) -> str:
        return self._address

    async def get_stats(self) -> dict[str, Any]:
        stats = dict(self._stats)
        stats["batch_sizes"] = list(self.batcher.batch_sizes)
        stats["tokens_per_s"] = stats["tokens"] / stats["generate_s"] if stats["generate_s"] else 0.0
        return stats

    async def get_state_dict(self) -> dict[str, torch.Tensor]:
        """A CPU copy of the served weights (tests, debugging)."""
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}
