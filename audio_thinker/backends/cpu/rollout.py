"""A transformers rollout backend that verl's agent loop calls like its vLLM server (CPU).

verl 0.9.1 only ships vLLM / SGLang / TensorRT-LLM rollouts. This module adds one more through
verl's own registries, with no verl file edited:

* :class:`HFRolloutReplica` (``RolloutReplicaRegistry``, name ``hf``): ``launch_servers`` starts
  one :class:`HFRolloutServer` Ray actor per replica, named ``hf_server_{replica}_0`` (the name
  the in-worker adapter looks up), on the node of the replica's first worker.
* :class:`HFRolloutServer`: loads ``actor_rollout_ref.model.path`` with the auto class verl's actor
  uses (``get_hf_auto_model_class``; the project's plugin maps the audio configs) in float32 with
  eager attention, and serves ``generate(prompt_ids, sampling_params, request_id, ...,
  audio_data=...) -> TokenOutput`` with the signature of verl's vLLM server. Concurrent requests
  are batched (:class:`~audio_thinker.backends.cpu.generation.RequestBatcher`: up to
  ``max_batch_size`` requests arriving < ``batch_wait_ms`` apart, at most ``batch_max_wait_ms``
  after the first) and generated as one left-padded, KV-cached batch on a single model thread
  (:class:`~audio_thinker.backends.cpu.generation.BatchedGenerator`). Audio arrives raw (16 kHz
  float32 arrays); on the model thread, just before its batch runs, the server computes
  ``input_features`` / ``feature_attention_mask`` exactly as verl's agent loop does for the actor
  (decode the prompt with ``skip_special_tokens=True``, run the processor through
  ``build_multimodal_processor_inputs``; batched with verl's ``extract_multi_modal_inputs``); the
  prompt ids already carry the expanded audio placeholders. Weight updates arrive in buckets
  (``update_weights``) and run on the model thread, so they never interleave with a batch.
  ``abort_all_requests`` stops running batches at the next token (partial tokens,
  ``stop_reason="aborted"``) and parks or rejects new requests until ``resume_generation``.
  Sleep / wake-up / KV-cache / profiling calls are no-ops: the weights stay in CPU memory.
* :class:`HFServerAdapter` (verl's ``_ROLLOUT_REGISTRY``, key ``("hf", "async")``): the in-worker
  ``BaseRollout``. verl's V1 trainer always syncs weights with the ``naive`` checkpoint engine: the
  actor worker hands its ``get_per_tensor_param()`` generator to ``update_weights``; the replica's
  leader rank sends CPU copies to its server in buckets of
  ``checkpoint_engine.update_weights_bucket_megabytes``, every other rank drains the generator
  (it may run collectives).

:func:`register_cpu_rollout` performs both registrations (idempotent); it must run in every
process that resolves rollout classes (the trainer driver and the actor/rollout workers), e.g.
from the CPU platform plugin.

Config (``actor_rollout_ref.rollout``): ``name=hf`` ``mode=async`` (the only mode), plus the usual
``prompt_length`` / ``response_length`` / ``temperature`` / ``top_p`` / ``top_k`` / ``n`` /
``calculate_log_probs`` / ``logprobs_mode`` / ``seed``. ``tensor_model_parallel_size`` decides how
many actor ranks share one server (1 on CPU: one server per actor rank). Optional, under
``+actor_rollout_ref.rollout.engine_kwargs.hf.*``: ``max_batch_size`` (default
``min(max_num_seqs, 64)``), ``batch_wait_ms`` (50), ``batch_max_wait_ms`` (300), ``num_threads``
(torch threads, default ``min(4, cpu_count)``), ``attn_implementation`` (``eager``; the decoder),
``audio_attn_implementation`` (``sdpa``; the audio encoder, same values within float error), ``dtype``
(``float32``; ``rollout.dtype`` is a vLLM setting and is ignored), ``num_cpus`` (Ray CPUs held by
the server actor; Ray's default when unset). Not supported: images/video, LoRA adapters
(``peft_config``; merge them: ``model.lora.merge=True``), delta weight sync, an OpenAI HTTP
endpoint (the server address is a name, not a URL).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Optional

import ray
import torch

from verl.workers.rollout import base as _rollout_base
from verl.workers.rollout.base import BaseRollout
from verl.workers.rollout.replica import RolloutMode, RolloutReplica, RolloutReplicaRegistry, TokenOutput

from audio_thinker.backends.cpu.generation import (
    BatchedGenerator,
    GenerationRequest,
    GenerationResult,
    RequestBatcher,
    load_named_tensors,
    parse_sampling_params,
)
from audio_thinker.inference.placeholders import multimodal_placeholder_ids

logger = logging.getLogger(__name__)
logger.setLevel(os.getenv("VERL_LOGGING_LEVEL", "INFO"))

__all__ = [
    "ADAPTER_FQDN", "ROLLOUT_NAME", "HFRolloutReplica", "HFRolloutServer", "HFServerAdapter",
    "engine_options", "register_cpu_rollout",
]

#: ``actor_rollout_ref.rollout.name`` of this backend (verl 0.9.1 registers no rollout called ``hf``)
ROLLOUT_NAME = "hf"
#: what verl's ``get_rollout_class`` imports for ``(ROLLOUT_NAME, "async")``
ADAPTER_FQDN = f"{__name__}.HFServerAdapter"

_ENGINE_DEFAULTS = {
    "max_batch_size": None,  # min(max_num_seqs, 64)
    "batch_wait_ms": 50.0,
    "batch_max_wait_ms": 300.0,
    "num_threads": None,  # min(4, os.cpu_count())
    "attn_implementation": "eager",
    # the audio encoder is bidirectional over 30 s of padded frames: sdpa is ~4-7x faster than eager
    # there and equal to it within float error; the decoder keeps attn_implementation
    "audio_attn_implementation": "sdpa",
    "dtype": "float32",
    "num_cpus": None,
}


def _get(config: Any, key: str, default: Any = None) -> Any:
    if isinstance(config, dict):
        return config.get(key, default)
    getter = getattr(config, "get", None)
    if callable(getter):
        try:
            return getter(key, default)
        except Exception:
            pass
    return getattr(config, key, default)


def engine_options(config: Any) -> dict[str, Any]:
    """``rollout.engine_kwargs.hf`` merged over the defaults (unknown keys refused)."""
    engine_kwargs = _get(config, "engine_kwargs", None) or {}
    given = dict(_get(engine_kwargs, ROLLOUT_NAME, None) or {})
    unknown = sorted(set(given) - set(_ENGINE_DEFAULTS))
    if unknown:
        raise ValueError(
            f"unknown rollout.engine_kwargs.{ROLLOUT_NAME} keys {unknown}; known: {sorted(_ENGINE_DEFAULTS)}"
        )
    options = {**_ENGINE_DEFAULTS, **{k: v for k, v in given.items() if v is not None}}
    if options["max_batch_size"] is None:
        options["max_batch_size"] = max(1, min(int(_get(config, "max_num_seqs", 64) or 64), 64))
    if options["num_threads"] is None:
        options["num_threads"] = max(1, min(4, os.cpu_count() or 1))
    return options


def _stop_reason(finish_reason: str) -> str:
    return "aborted" if finish_reason == "abort" else "completed"


class HFRolloutServer:
    """Token-in/token-out generation server (a Ray actor) with verl's vLLM server interface."""

    def __init__(
        self,
        config: Any,
        model_config: Any,
        rollout_mode: RolloutMode = RolloutMode.HYBRID,
        workers: Optional[list] = None,
        replica_rank: int = 0,
        node_rank: int = 0,
        gpus_per_node: int = 1,
        nnodes: int = 1,
        **kwargs: Any,
    ) -> None:
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
        self.rollout_mode = rollout_mode
        self.replica_rank = replica_rank
        self.node_rank = node_rank
        self.options = engine_options(self.config)
        torch.set_num_threads(int(self.options["num_threads"]))

        self.tokenizer = self.model_config.tokenizer
        self.processor = self.model_config.processor
        self.model = self._load_model()
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
            "HFRolloutServer replica %d: %s (%s) loaded in %.1fs; max_batch_size=%d, threads=%d, "
            "max_model_len=%d", replica_rank, self.model_config.local_path, type(self.model).__name__,
            time.perf_counter() - started, self.options["max_batch_size"], self.options["num_threads"],
            self.max_model_len,
        )

    # ----------------------------------------------------------------- set-up
    def _load_model(self) -> torch.nn.Module:
        from verl.utils.model import get_hf_auto_model_class

        hf_config = self.model_config.hf_config
        dtype = getattr(torch, str(self.options["dtype"]).replace("torch.", ""))
        model_cls = get_hf_auto_model_class(hf_config)
        attn: Any = self.options["attn_implementation"]
        audio_attn = self.options["audio_attn_implementation"]
        sub_configs = list(getattr(hf_config, "sub_configs", None) or {})
        if audio_attn and audio_attn != attn and any("audio" in k for k in sub_configs):
            attn = {"": attn, **{k: audio_attn if "audio" in k else attn for k in sub_configs}}
        model = model_cls.from_pretrained(
            self.model_config.local_path,
            config=hf_config,
            dtype=dtype,
            attn_implementation=attn,
            trust_remote_code=self.model_config.trust_remote_code,
        )
        model.requires_grad_(False)
        return model.eval()

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
        self, prompt_ids: list[int], audio_data: list[Any], mm_processor_kwargs: Optional[dict[str, Any]]
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
        image_data: Optional[list[Any]] = None,
        video_data: Optional[list[Any]] = None,
        audio_data: Optional[list[Any]] = None,
        mm_processor_kwargs: Optional[dict[str, Any]] = None,
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
        global_steps: Optional[int] = None,
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

    async def set_global_steps(self, global_steps: int):
        self.global_steps = global_steps

    # --------------------------------------------------- pause / abort / drain
    async def abort_all_requests(
        self, reset_prefix_cache: bool = True, reject_request: bool = False
    ) -> dict[str, Any]:
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

    async def resume_engine_generation(self):
        pass

    async def open_submission_gate(self):
        await self.resume_generation()

    async def abort_request(self, request_id: str, reset_prefix_cache: bool = True) -> dict[str, Any]:
        matched = self.batcher.drain_pending(lambda request: request.request_id == request_id)
        for _, future in matched:
            future.set_result(GenerationResult([], [], "abort"))
        if matched:
            return {"aborted": True, "request_id": request_id}
        return {"aborted": False, "request_id": request_id, "error": "not queued (running requests finish)"}

    async def wait_for_requests_to_drain(self):
        while self.batcher.busy:
            await asyncio.sleep(0.01)

    # ------------------------------------------------- no-ops on a CPU server
    async def wake_up(self, tags: Optional[list[str]] = None):
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

    async def get_rollout_config(self):
        return self.config

    async def get_stats(self) -> dict[str, Any]:
        stats = dict(self._stats)
        stats["batch_sizes"] = list(self.batcher.batch_sizes)
        stats["tokens_per_s"] = stats["tokens"] / stats["generate_s"] if stats["generate_s"] else 0.0
        return stats

    async def get_state_dict(self) -> dict[str, torch.Tensor]:
        """A CPU copy of the served weights (tests, debugging)."""
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}


def _collate_multi_modal_inputs(items: list[dict[str, torch.Tensor]]) -> dict[str, Any]:
    """Batch per-request processor outputs exactly as verl's actor batches them."""
    from verl.utils.model import extract_multi_modal_inputs

    return extract_multi_modal_inputs(items)


def _node_id(_worker: Any) -> str:
    return ray.get_runtime_context().get_node_id()


class HFRolloutReplica(RolloutReplica):
    """One :class:`HFRolloutServer` per replica (the replica's ranks share it)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.server_class = ray.remote(HFRolloutServer)

    def rollout_worker_use_gpu(self) -> bool:
        return False

    def _get_server_name_prefix(self) -> str:
        return f"{self.config.name or ROLLOUT_NAME}_"

    def server_name(self, node_rank: int = 0) -> str:
        prefix = self._get_server_name_prefix()
        if self.is_reward_model:
            return f"{prefix}server_reward_{self.replica_rank}_{node_rank}{self.name_suffix}"
        if self.is_teacher_model:
            return f"{prefix}server_teacher_{self.replica_rank}_{node_rank}{self.name_suffix}"
        return f"{prefix}server_{self.replica_rank}_{node_rank}{self.name_suffix}"

    async def launch_servers(self):
        options: dict[str, Any] = {"name": self.server_name(0), "max_concurrency": self.max_concurrency}
        if self.workers:
            node_id = await self.workers[0].__ray_call__.remote(_node_id)
            options["scheduling_strategy"] = ray.util.scheduling_strategies.NodeAffinitySchedulingStrategy(
                node_id=node_id, soft=False
            )
        num_cpus = engine_options(self.config)["num_cpus"]
        if num_cpus is not None:
            options["num_cpus"] = num_cpus
        server = self.server_class.options(**options).remote(
            config=self.config,
            model_config=self.model_config,
            rollout_mode=self.rollout_mode,
            workers=self.workers,
            replica_rank=self.replica_rank,
            node_rank=0,
            gpus_per_node=self.gpus_per_replica_node,
            nnodes=1,
        )
        self.servers = [server]
        self._server_handle = server
        self._server_address = await server.get_server_address.remote()


class HFServerAdapter(BaseRollout):
    """In-worker side of the hf rollout: forwards the actor's weights to the replica's server."""

    def __init__(
        self, config: Any, model_config: Any, device_mesh: Any = None, replica_rank: int = -1, **kwargs: Any
    ):
        super().__init__(config, model_config, device_mesh)
        rank = int(os.environ.get("RANK", "0"))
        rollout_world_size = (
            self.config.tensor_model_parallel_size
            * self.config.data_parallel_size
            * self.config.pipeline_model_parallel_size
        )
        self.replica_rank = rank // rollout_world_size if replica_rank == -1 else replica_rank
        self.rollout_rank = rank % rollout_world_size
        self.is_leader_rank = self.rollout_rank == 0
        self.server_handle = None

    def _server(self):
        if self.server_handle is None:
            name = f"{self.config.name or ROLLOUT_NAME}_server_{self.replica_rank}_0"
            self.server_handle = ray.get_actor(name)
        return self.server_handle

    async def resume(self, tags: list[str]):
        pass  # the server never releases its weights

    async def release(self):
        pass

    async def update_weights(
        self,
        weights: Any,
        global_steps: Optional[int] = None,
        wire_format: str = "named_tensors",
        peft_config: Any = None,
        **kwargs: Any,
    ):
        if wire_format != "named_tensors":
            raise NotImplementedError(f"hf rollout: wire_format='named_tensors' only, got {wire_format!r}")
        if peft_config is not None:
            raise NotImplementedError(
                "the hf rollout cannot load LoRA adapters; merge them "
                "(actor_rollout_ref.model.lora.merge=True)"
            )
        started = time.perf_counter()
        if not self.is_leader_rank:  # other ranks of the replica: drain (the generator may run collectives)
            async for _ in _iterate(weights):
                pass
            return
        server = self._server()
        bucket_bytes = max(1, int(self.config.checkpoint_engine.update_weights_bucket_megabytes)) << 20
        bucket: list[tuple[str, torch.Tensor]] = []
        size = 0
        async for name, tensor in _iterate(weights):
            tensor = tensor.detach()
            if hasattr(tensor, "full_tensor"):  # a DTensor that the engine did not gather
                tensor = tensor.full_tensor()
            tensor = tensor.to("cpu")
            bucket.append((name, tensor))
            size += tensor.numel() * tensor.element_size()
            if size >= bucket_bytes:
                await server.update_weights.remote(bucket, is_last=False)
                bucket, size = [], 0
        result = await server.update_weights.remote(bucket, is_last=True, global_steps=global_steps)
        if global_steps is not None:
            await server.set_global_steps.remote(global_steps)
        if self.replica_rank == 0:
            logger.info("hf rollout: update_weights %s in %.2fs", result, time.perf_counter() - started)


async def _iterate(weights: Any):
    if hasattr(weights, "__aiter__"):
        async for item in weights:
            yield item
    else:
        for item in weights:
            yield item


def _load_replica() -> type[RolloutReplica]:
    return HFRolloutReplica


def register_cpu_rollout(name: str = ROLLOUT_NAME) -> None:
    """Register the hf rollout with verl (idempotent; run it in every verl process).

    * ``RolloutReplicaRegistry.register(name, loader)``: what ``LLMServerManager`` instantiates.
    * ``_ROLLOUT_REGISTRY[(name, "async")]``: what the actor/rollout worker and
      ``CheckpointEngineWorker`` build with ``get_rollout_class``. verl/workers/rollout/base.py
      offers no register function for this dict, so the one entry is added to it directly; an
      existing different entry under the same key is refused rather than overwritten.
    """
    key = (name, "async")
    current = _rollout_base._ROLLOUT_REGISTRY.get(key)
    if current is not None and current != ADAPTER_FQDN:
        raise ValueError(f"verl already registers rollout {key} as {current!r}; pick another name")
    _rollout_base._ROLLOUT_REGISTRY[key] = ADAPTER_FQDN
    RolloutReplicaRegistry.register(name, _load_replica)
