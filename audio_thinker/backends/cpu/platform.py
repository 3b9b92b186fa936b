"""verl platform ``cpu``: the host CPU as verl's "device" (selected only by ``VERL_PLATFORM=cpu``).

verl 0.9.1 resolves every device question through one platform object
(``verl.plugin.platform.get_platform()``; verl/utils/device.py delegates to it): the device name
used for ``torch.device`` / ``init_device_mesh`` / autocast, the collective backend, the Ray
resource name, and ``get_torch_device()``, the ``torch.cuda``-style module verl calls for memory,
stream and seed functions. Only CUDA, NPU and ROCm platforms ship. :class:`CPUPlatform` is one
more, registered under the name ``cpu`` with verl's own ``PlatformRegistry`` when this module is
imported (as verl registers its built-in platforms):

* device name ``cpu``; ``current_device()`` returns ``"cpu"`` (verl passes it straight to
  ``tensor.to(...)`` / ``torch.device(...)``), one device, ``set_device`` is a no-op;
* collective backend ``gloo``; Ray resource ``CPU`` (``ray_resource_options`` asks for
  ``num_cpus``, since Ray refuses ``CPU`` as a custom resource);
* :data:`cpu_device_module`, a stand-in for ``torch.cuda``: ``torch.cpu`` lacks most of what verl
  calls (``max_memory_allocated``, ``mem_get_info``, ``get_device_name``, ``empty_cache``, ...).

Selection is explicit. Registering the platform does not select it: verl picks the platform named
by ``VERL_PLATFORM`` and otherwise probes ``is_platform_available``, which is always ``False``
here, so a GPU-less host never silently falls onto this platform. verl resolves the platform once
per process, on first use (``verl.workers.engine.fsdp.transformer_impl`` already does it at import
time), so this module must be imported before that happens in every process that sets
``VERL_PLATFORM=cpu``; :func:`check_cpu_platform_selected` turns a late registration into a clear
error instead of verl's ``Unknown platform 'cpu'``.

This module imports only ``torch`` and ``verl.plugin.platform``: cheap to import. Its name and
the selecting variable are :data:`audio_thinker.backends.cpu.PLATFORM_NAME` / ``PLATFORM_ENV``.
"""

from __future__ import annotations

import os
import types
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from verl.plugin.platform import PlatformBase, PlatformRegistry

from audio_thinker.backends.cpu import PLATFORM_ENV, PLATFORM_NAME, cpu_backend_requested

#: vLLM-CPU's KV-cache size variable (GiB; vLLM's own default of 4 GiB is sized for real models)
KV_CACHE_ENV, DEFAULT_KV_CACHE_GIB = "VLLM_CPU_KVCACHE_SPACE", "1"

__all__ = [
    "CPUDeviceModule",
    "CPUPlatform",
    "check_cpu_platform_selected",
    "cpu_device_module",
    "register_cpu_platform",
]


def _host_memory() -> tuple[int, int]:
    """(available, total) host memory in bytes."""
    try:
        import psutil  # a verl dependency; imported lazily to keep this module cheap

        memory = psutil.virtual_memory()
        return int(memory.available), int(memory.total)
    except Exception:  # pragma: no cover - psutil missing or unreadable /proc
        page = os.sysconf("SC_PAGE_SIZE")
        return int(os.sysconf("SC_AVPHYS_PAGES") * page), int(os.sysconf("SC_PHYS_PAGES") * page)


class CPUDeviceModule(types.ModuleType):
    """The ``torch.cuda``-style namespace verl calls through ``get_torch_device()``, for the CPU.

    The functions are those verl 0.9.1 calls on it (``grep -rn "get_torch_device()" verl/``):
    device management, streams and events (``torch.cpu``'s), memory statistics and seeding.
    torch does not track host allocations, so the allocator statistics are 0 (verl logs them as
    ``perf/max_memory_*_gb``); ``mem_get_info`` reports host memory. The CPU generator is the
    "device" generator and verl seeds it with ``torch.manual_seed``, so the device seeding
    functions do nothing.
    """

    # -- device management ---------------------------------------------------------------------
    @staticmethod
    def is_available() -> bool:
        return True

    @staticmethod
    def is_initialized() -> bool:
        return True

    @staticmethod
    def device_count() -> int:
        return 1

    @staticmethod
    def current_device() -> str:
        return PLATFORM_NAME

    @staticmethod
    def set_device(device: Any) -> None:
        """No-op: there is one CPU "device" (verl calls this with a local rank)."""

    @staticmethod
    def synchronize(device: Any = None) -> None:
        """No-op: CPU kernels run synchronously."""

    @staticmethod
    def get_device_name(device: Any = None) -> str:
        # "CPU" is the key of verl's peak-FLOPs table (verl/utils/flops_counter.py), used for MFU
        return "CPU"

    @staticmethod
    def get_device_capability(device: Any = None) -> tuple[None, None]:
        return None, None

    # -- streams and events (torch.cpu's: every operation completes immediately) ---------------
    Stream = torch.cpu.Stream
    Event = torch.cpu.Event
    StreamContext = torch.cpu.StreamContext

    @staticmethod
    def stream(stream: Any = None) -> Any:
        return torch.cpu.stream(stream)

    @staticmethod
    def current_stream(device: Any = None) -> Any:
        return torch.cpu.current_stream(device)

    # -- memory ----------------------------------------------------------------------------------
    @staticmethod
    def empty_cache() -> None:
        """No-op: the CPU allocator keeps no cache to release."""

    @staticmethod
    def ipc_collect() -> None:
        """No-op (CUDA IPC only)."""

    @staticmethod
    def memory_allocated(device: Any = None) -> int:
        return 0

    @staticmethod
    def max_memory_allocated(device: Any = None) -> int:
        return 0

    @staticmethod
    def memory_reserved(device: Any = None) -> int:
        return 0

    @staticmethod
    def max_memory_reserved(device: Any = None) -> int:
        return 0

    @staticmethod
    def reset_peak_memory_stats(device: Any = None) -> None:
        """No-op: no statistics are kept."""

    @staticmethod
    def mem_get_info(device: Any = None) -> tuple[int, int]:
        """(free, total) bytes of host memory, like ``torch.cuda.mem_get_info``."""
        return _host_memory()

    @staticmethod
    def set_per_process_memory_fraction(fraction: float, device: Any = None) -> None:
        """No-op: host memory is not partitioned."""

    # -- random number generation ----------------------------------------------------------------
    @staticmethod
    def manual_seed(seed: int) -> None:
        """No-op: the CPU generator is seeded by ``torch.manual_seed``, which verl calls itself."""

    @staticmethod
    def manual_seed_all(seed: int) -> None:
        """No-op (see :meth:`manual_seed`)."""

    @staticmethod
    def seed() -> None:
        """No-op (see :meth:`manual_seed`)."""

    @staticmethod
    def get_rng_state(device: Any = None) -> torch.Tensor:
        return torch.get_rng_state()

    @staticmethod
    def set_rng_state(state: torch.Tensor, device: Any = None) -> None:
        torch.set_rng_state(state)


#: the object ``get_torch_device()`` returns on this platform
cpu_device_module = CPUDeviceModule(f"{__name__}.device", "torch.cuda-style namespace for the CPU")


class CPUPlatform(PlatformBase):
    """verl's platform interface for the host CPU (module docstring)."""

    @property
    def device_name(self) -> str:
        return PLATFORM_NAME

    @property
    def vendor_name(self) -> str:
        return PLATFORM_NAME

    @property
    def device_module(self) -> types.ModuleType:
        return cpu_device_module

    def is_available(self) -> bool:
        return True

    def is_platform_available(self, use_smi_check: bool = False) -> bool:
        """Never auto-detected: the CPU platform is selected only by ``VERL_PLATFORM=cpu``."""
        return False

    def current_device(self) -> str:  # type: ignore[override]  # verl passes it to tensor.to()
        return PLATFORM_NAME

    def device_count(self) -> int:
        return 1

    def set_device(self, device_index: int) -> None:
        pass

    def synchronize(self, device_index: int | None = None) -> None:
        pass

    def manual_seed(self, seed: int) -> None:
        cpu_device_module.manual_seed(seed)

    def manual_seed_all(self, seed: int) -> None:
        cpu_device_module.manual_seed_all(seed)

    def set_allocator_settings(self, settings: str) -> None:
        """No-op: ``expandable_segments`` and friends are CUDA caching-allocator settings."""

    def empty_cache(self) -> None:
        cpu_device_module.empty_cache()

    def get_device_capability(self, device_index: int = 0) -> tuple[int | None, int | None]:
        return None, None

    def communication_backend_name(self) -> str:
        return "gloo"

    def visible_devices_envvar(self) -> str:
        # verl forwards this variable between workers; no library reads it for the CPU
        return "VERL_CPU_VISIBLE_DEVICES"

    @contextmanager
    def nvtx_range(self, msg: str) -> Iterator[None]:
        yield

    def profiler_start(self) -> None:
        pass

    def profiler_stop(self) -> None:
        pass

    def ray_resource_name(self) -> str:
        return "CPU"

    def ray_resource_options(self, num_gpus: float) -> dict[str, Any]:
        # Ray refuses "CPU" in `resources`; the CPU share of a worker is `num_cpus`
        return {"num_cpus": num_gpus}

    def ray_noset_envvars(self) -> list[str]:
        return []

    def rollout_env_vars(self) -> dict[str, str]:
        """For verl's vLLM server on vLLM-CPU: a KV cache of ``VLLM_CPU_KVCACHE_SPACE`` GiB (default 1)."""
        return {KV_CACHE_ENV: os.environ.get(KV_CACHE_ENV, DEFAULT_KV_CACHE_GIB)}

    def is_ipc_supported(self) -> bool:
        return False

    def cudart(self) -> Any:
        return None


def register_cpu_platform() -> type[CPUPlatform]:
    """Register :class:`CPUPlatform` as ``cpu`` with verl's ``PlatformRegistry`` (idempotent)."""
    if PlatformRegistry.get(PLATFORM_NAME) is not CPUPlatform:
        PlatformRegistry.register(platform=PLATFORM_NAME)(CPUPlatform)
    return CPUPlatform


def check_cpu_platform_selected() -> None:
    """Raise a fix-it error unless verl's platform in this process is (or will be) :class:`CPUPlatform`.

    Call it where the CPU backend is about to be used (CPU workers, CPU resource pools): a process
    without ``VERL_PLATFORM=cpu`` would run verl's CUDA paths (NCCL, ``cuda:0``) and fail far from
    the cause.
    """
    from verl.plugin.platform import platform_manager

    current = platform_manager._current_platform  # resolved lazily by verl; None until first use
    if current is not None:
        if not isinstance(current, CPUPlatform):
            raise RuntimeError(
                f"the CPU backend is configured (trainer.device=cpu) but verl resolved platform "
                f"{type(current).__name__} ({current.device_name!r}) in this process: set "
                f"{PLATFORM_ENV}=cpu for every process (ray_kwargs.ray_init.runtime_env.env_vars."
                f"{PLATFORM_ENV}=cpu) and import audio_thinker.backends.cpu.platform before anything "
                "resolves verl's platform"
            )
        return
    if not cpu_backend_requested():
        raise RuntimeError(
            f"the CPU backend is configured (trainer.device=cpu) but {PLATFORM_ENV}="
            f"{os.environ.get(PLATFORM_ENV, '')!r} in this process: set {PLATFORM_ENV}=cpu for every process "
            f"(ray_kwargs.ray_init.runtime_env.env_vars.{PLATFORM_ENV}=cpu)"
        )


register_cpu_platform()
