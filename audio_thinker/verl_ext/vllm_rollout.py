"""verl's vLLM rollout (``rollout.name=vllm``) with the audio rules: the glue.

verl 0.9.1's ``vLLMHttpServer`` was written for vision models; the pure rules of
:mod:`audio_thinker.verl_ext.vllm_server` fix what goes wrong for audio. This module applies them
through the narrowest hooks verl offers: a ``vLLMHttpServer`` subclass and a ``vLLMReplica``
subclass whose servers are of that class, registered as verl's ``vllm`` rollout
(``RolloutReplicaRegistry``) by the project's verl plugin in every process.

:class:`AudioVLLMHttpServer` (built by :func:`audio_server_class`):

* ``generate`` collapses each expanded ``<|AUDIO|>`` run to one placeholder (vLLM expands it again
  to exactly the clip's length, so the engine sees the prompt the actor scores), sizes the
  response budget from the *expanded* length, and drops ``sampling_rate`` from
  ``mm_processor_kwargs`` (vLLM's Qwen2-Audio processor sets it itself: ``TypeError``);
* ``run_server`` re-applies verl's logits mask with the audio placeholders and delimiters added to
  verl's vision ones, so the policy can never sample an ``<|AUDIO|>`` the actor cannot score;
* the in-worker adapter (:func:`server_adapter_class`, registered in verl's ``_ROLLOUT_REGISTRY``)
  ends the run with :class:`WeightSyncError` when the server fails to take the actor's weights,
  where verl's would wait for the failed receiver forever;
* the Omni thinker is servable through the project's vLLM plugin
  (:func:`audio_thinker.inference.vllm_models.register_vllm_models`, the ``vllm.general_plugins``
  entry point), which vLLM loads in each of its processes.

With ``VERL_PLATFORM=cpu`` both are extended by the CPU pieces of :mod:`audio_thinker.backends.cpu.vllm`.
Importing this module is cheap; the classes are built on first use (they import verl's vLLM server,
which imports vLLM).
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from audio_thinker.verl_ext.vllm_server import (
    audio_placeholder_id,
    banned_token_ids,
    clean_mm_processor_kwargs,
    plan_request,
)

logger = logging.getLogger(__name__)

__all__ = [
    "WeightSyncError", "audio_replica_class", "audio_server_class",
    "register_audio_vllm_rollout", "server_adapter_class",
]

#: the name verl's rollout config selects (``actor_rollout_ref.rollout.name``)
ROLLOUT_NAME = "vllm"


@functools.cache
def audio_server_class() -> type:
    """verl's ``vLLMHttpServer`` with the audio rules (imports verl's vLLM server and vLLM)."""
    from verl.utils.tokenizer import normalize_token_ids
    from verl.workers.rollout.utils import get_vision_placeholder_token_ids
    from verl.workers.rollout.vllm_rollout.vllm_async_server import vLLMHttpServer

    class AudioVLLMHttpServer(vLLMHttpServer):
        """verl's vLLM server for audio models (module docstring)."""

        async def run_server(self, args: Any) -> None:
            await super().run_server(args)
            vision = get_vision_placeholder_token_ids(self.model_config.processor)
            banned = banned_token_ids(self.model_config.hf_config, self.model_config.tokenizer, vision)
            # verl masked the vision placeholders; a second mask over the first adds the audio ones
            await self.engine.collective_rpc(
                method="monkey_patch_model",
                kwargs={"vocab_size": len(self.model_config.tokenizer), "banned_token_ids": banned},
            )

        async def generate(self, prompt_ids: Any, sampling_params: dict[str, Any], request_id: str,
                           image_data: Any = None, video_data: Any = None, audio_data: Any = None,
                           mm_processor_kwargs: dict[str, Any] | None = None, priority: int = 0,
                           kv_transfer_params: dict | None = None) -> Any:
            ids = normalize_token_ids(prompt_ids)
            audio_id = audio_placeholder_id(self.model_config.hf_config, self.model_config.tokenizer)
            requested = sampling_params.pop("max_tokens", sampling_params.pop("max_new_tokens", None))
            plan = plan_request(
                ids, audio_id if audio_data else None, max_model_len=self.config.max_model_len,
                prompt_length=self.config.prompt_length, response_length=self.config.response_length,
                requested_max_tokens=requested,
            )
            sampling_params["max_tokens"] = plan.max_tokens
            return await super().generate(
                plan.prompt_ids, sampling_params, request_id, image_data=image_data, video_data=video_data,
                audio_data=audio_data, mm_processor_kwargs=clean_mm_processor_kwargs(mm_processor_kwargs),
                priority=priority, kv_transfer_params=kv_transfer_params,
            )

    return AudioVLLMHttpServer


def audio_replica_class(server_class: type | None = None) -> type:
    """verl's ``vLLMReplica`` whose servers are ``server_class`` (default :func:`audio_server_class`)."""
    import ray
    from verl.workers.rollout.vllm_rollout.vllm_async_server import vLLMReplica

    server = server_class or audio_server_class()

    class AudioVLLMReplica(vLLMReplica):
        """verl's vLLM replica serving through :class:`AudioVLLMHttpServer`."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.server_class = ray.remote(server)

    AudioVLLMReplica.__qualname__ = f"Audio{server.__name__.replace('HttpServer', 'Replica')}"
    return AudioVLLMReplica


#: verl's worker-side method the server runs while the actor streams the weights
WEIGHT_RECEIVER_METHOD = "update_weights_from_ipc"
#: where verl's ``get_rollout_class`` finds the in-worker adapter of the ``vllm`` rollout
ADAPTER_FQDN = f"{__name__}.AudioServerAdapter"


class WeightSyncError(RuntimeError):
    """The rollout server failed to take the actor's weights (the run stops instead of hanging)."""


@functools.cache
def server_adapter_class() -> type:
    """verl's in-worker vLLM ``ServerAdapter`` whose weight sync fails fast when the server's side fails.

    verl's ``update_weights`` starts the server's receiver (``update_weights_from_ipc``, non-blocking),
    then streams every bucket and only afterwards awaits the receiver: a receiver that dies (a weight
    name vLLM cannot map, a shape it cannot load) leaves the sender waiting for an acknowledgement
    forever. Here the receiver's result is watched while verl streams; its failure cancels the
    stream and raises :class:`WeightSyncError` naming the cause.
    """
    import asyncio

    from verl.workers.rollout.vllm_rollout.vllm_rollout import ServerAdapter

    class AudioServerAdapter(ServerAdapter):
        """verl's vLLM server adapter with a weight sync that cannot hang on a failed receiver."""

        async def _execute_method(self, method: str, non_block: bool = False, timeout: float | None = None,
                                  args: tuple = (), kwargs: dict | None = None) -> Any:
            result = await super()._execute_method(method, non_block=non_block, timeout=timeout, args=args,
                                                   kwargs=kwargs)
            if method == WEIGHT_RECEIVER_METHOD and non_block:
                self._weight_receiver = result
            return result

        async def update_weights(self, weights: Any, global_steps: int | None = None,
                                 wire_format: str = "named_tensors", **kwargs: Any) -> Any:
            self._weight_receiver = None
            send = asyncio.ensure_future(super().update_weights(
                weights, global_steps=global_steps, wire_format=wire_format, **kwargs))
            while self._weight_receiver is None and not send.done():
                await asyncio.wait({send}, timeout=0.05)
            if send.done() or self._weight_receiver is None:
                return await send
            receiver = self._weight_receiver

            async def receive() -> Any:
                return await receiver

            received = asyncio.ensure_future(receive())
            await asyncio.wait({send, received}, return_when=asyncio.FIRST_COMPLETED)
            if not send.done() and received.exception() is not None:
                send.cancel()
                error = received.exception()
                raise WeightSyncError(
                    f"rollout weight sync failed in the vLLM server ({WEIGHT_RECEIVER_METHOD}): "
                    f"{type(error).__name__}: {error}"
                ) from error
            if not received.done():
                received.cancel()
            return await send

    return AudioServerAdapter


def __getattr__(name: str) -> Any:
    """``AudioServerAdapter`` is built on first access (verl's ``get_rollout_class`` imports it by name)."""
    if name == "AudioServerAdapter":
        return server_adapter_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@functools.cache
def _audio_replica() -> type:
    return audio_replica_class()


@functools.cache
def _cpu_audio_replica() -> type:
    from audio_thinker.backends.cpu.vllm import cpu_replica_class, cpu_server_class

    return cpu_replica_class(audio_replica_class(cpu_server_class(audio_server_class())))


def register_audio_vllm_rollout(*, cpu: bool = False) -> None:
    """Make verl's ``vllm`` rollout entry build the audio replica (lazy: imports nothing now); with
    ``cpu`` (the CPU platform is selected) the one with the CPU pieces of
    :mod:`audio_thinker.backends.cpu.vllm`."""
    from verl.workers.rollout import base as rollout_base
    from verl.workers.rollout.replica import RolloutReplicaRegistry

    RolloutReplicaRegistry.register(ROLLOUT_NAME, _cpu_audio_replica if cpu else _audio_replica)
    # the in-worker adapter verl's actor/rollout workers build with get_rollout_class (no register
    # function exists for this dict; verl's own entry is replaced by its subclass)
    rollout_base._ROLLOUT_REGISTRY[(ROLLOUT_NAME, "async")] = ADAPTER_FQDN
