"""Rollout ``hf``: a transformers rollout registered with verl's own rollout registries (CPU).

verl 0.9.1 ships vLLM / SGLang / TensorRT-LLM rollouts only. This adds one more, with no verl file
edited; its pieces, by job:

==============================================  ==================================================
:mod:`~audio_thinker.backends.cpu.options`       the name ``hf`` and ``rollout.engine_kwargs.hf``
:mod:`~audio_thinker.backends.cpu.sampling`      vLLM sampling parameters, top-k / top-p
:mod:`~audio_thinker.backends.cpu.generator`     batched, KV-cached generation for one model
:mod:`~audio_thinker.backends.cpu.batcher`       concurrent requests -> batches on one thread
:mod:`~audio_thinker.backends.cpu.weights`       model loading, weight buckets, in-place updates
:mod:`~audio_thinker.backends.cpu.server`        the server Ray actor verl's agent loop calls
this module                                      the replica and the in-worker adapter, registered
==============================================  ==================================================

* :class:`HFRolloutReplica` (``RolloutReplicaRegistry``, name ``hf``): ``launch_servers`` starts
  one :class:`~audio_thinker.backends.cpu.server.HFRolloutServerActor` per replica, named
  :func:`server_actor_name` (``hf_server_{replica}_0``), on the node of the replica's first worker.
* :class:`HFServerAdapter` (verl's ``_ROLLOUT_REGISTRY``, key ``("hf", "async")``): the in-worker
  ``BaseRollout``. verl's V1 trainer always syncs weights with the ``naive`` checkpoint engine: the
  actor worker hands its ``get_per_tensor_param()`` generator to ``update_weights``; the replica's
  leader rank sends host-memory copies to its server in buckets of
  ``checkpoint_engine.update_weights_bucket_megabytes``, every other rank drains the generator
  (it may run collectives).

:func:`register_cpu_rollout` performs both registrations (idempotent); it must run in every
process that resolves rollout classes (the trainer driver and the actor/rollout workers), e.g.
from the project's verl plugin.

Config (``actor_rollout_ref.rollout``): ``name=hf`` ``mode=async`` (the only mode), plus the usual
``prompt_length`` / ``response_length`` / ``temperature`` / ``top_p`` / ``top_k`` / ``n`` /
``calculate_log_probs`` / ``logprobs_mode`` / ``seed``, and the engine options of
:mod:`~audio_thinker.backends.cpu.options`. ``tensor_model_parallel_size`` decides how many actor
ranks share one server (1 on CPU: one server per actor rank). Not supported: images/video, LoRA
adapters (``peft_config``; merge them: ``model.lora.merge=True``), delta weight sync, an OpenAI
HTTP endpoint (the server address is a name, not a URL).
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import ray
from verl.workers.rollout import base as _rollout_base
from verl.workers.rollout.base import BaseRollout
from verl.workers.rollout.replica import RolloutReplica, RolloutReplicaRegistry

from audio_thinker.backends.cpu.options import ROLLOUT_NAME, engine_options
from audio_thinker.backends.cpu.server import HFRolloutServerActor
from audio_thinker.backends.cpu.weights import drain, iter_weight_buckets

logger = logging.getLogger(__name__)
logger.setLevel(os.getenv("VERL_LOGGING_LEVEL", "INFO"))

__all__ = ["ADAPTER_FQDN", "HFRolloutReplica", "HFServerAdapter", "register_cpu_rollout", "server_actor_name"]

#: what verl's ``get_rollout_class`` imports for ``(ROLLOUT_NAME, "async")``
ADAPTER_FQDN = f"{__name__}.HFServerAdapter"


def server_actor_name(
    rollout_name: str | None, replica_rank: int, *, role: str = "", node_rank: int = 0, name_suffix: str = ""
) -> str:
    """Ray actor name of a replica's server: ``{rollout}_server_[{role}_]{replica}_{node}{suffix}``.

    >>> server_actor_name("hf", 3)
    'hf_server_3_0'
    >>> server_actor_name(None, 0, role="reward", name_suffix="_judge")
    'hf_server_reward_0_0_judge'
    """
    role_part = f"{role}_" if role else ""
    return f"{rollout_name or ROLLOUT_NAME}_server_{role_part}{replica_rank}_{node_rank}{name_suffix}"


def _node_id(_worker: Any) -> str:
    return ray.get_runtime_context().get_node_id()


class HFRolloutReplica(RolloutReplica):
    """One :class:`~audio_thinker.backends.cpu.server.HFRolloutServerActor` per replica (its ranks share it)."""

    def rollout_worker_use_gpu(self) -> bool:
        return False

    def _server_role(self) -> str:
        if self.is_reward_model:
            return "reward"
        return "teacher" if self.is_teacher_model else ""

    async def launch_servers(self):
        name = server_actor_name(
            self.config.name, self.replica_rank, role=self._server_role(), name_suffix=self.name_suffix
        )
        options: dict[str, Any] = {"name": name, "max_concurrency": self.max_concurrency}
        if self.workers:
            node_id = await self.workers[0].__ray_call__.remote(_node_id)
            options["scheduling_strategy"] = ray.util.scheduling_strategies.NodeAffinitySchedulingStrategy(
                node_id=node_id, soft=False
            )
        num_cpus = engine_options(self.config)["num_cpus"]
        if num_cpus is not None:
            options["num_cpus"] = num_cpus
        server = ray.remote(HFRolloutServerActor).options(**options).remote(
            config=self.config, model_config=self.model_config, replica_rank=self.replica_rank
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
            self.server_handle = ray.get_actor(server_actor_name(self.config.name, self.replica_rank))
        return self.server_handle

    async def resume(self, tags: list[str]):
        pass  # the server never releases its weights

    async def release(self):
        pass

    async def update_weights(
        self,
        weights: Any,
        global_steps: int | None = None,
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
            await drain(weights)
            return
        server = self._server()
        bucket_bytes = max(1, int(self.config.checkpoint_engine.update_weights_bucket_megabytes)) << 20
        async for bucket, is_last in iter_weight_buckets(weights, bucket_bytes=bucket_bytes):
            if not is_last:
                await server.update_weights.remote(bucket, is_last=False)
                continue
            result = await server.update_weights.remote(bucket, is_last=True, global_steps=global_steps)
            if self.replica_rank == 0:
                logger.info("hf rollout: update_weights %s in %.2fs", result, time.perf_counter() - started)


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
