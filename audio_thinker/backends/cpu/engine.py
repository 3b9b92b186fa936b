"""verl's FSDP2 training engine and engine workers on the CPU, through verl's own registries.

verl 0.9.1 registers its FSDP engines for ``device=["cuda", "npu"]`` only
(verl/workers/engine/fsdp/transformer_impl.py), so on the ``cpu`` platform
(:mod:`audio_thinker.backends.cpu.platform`) ``EngineRegistry.get_engine_cls`` finds nothing.
:func:`register_cpu_engines` registers thin subclasses of verl's engines for ``device="cpu"``:

* :class:`CPUFSDPEngineWithLMHead` (``model_type="language_model"``: actor and reference);
* :class:`CPUFSDPEngineWithValueHead` (``model_type="value_model"``: critic);

both for ``backend=["fsdp", "fsdp2"]`` (the ``strategy`` values verl looks up). They are verl's
engines with the few GPU assumptions that have no hook worked around, each as narrowly as possible:

1. **Reference-model offload pins memory** (``FSDPEngine._build_fsdp_module``): with
   ``strategy=fsdp2`` a forward-only engine (the reference policy), or any engine with
   ``offload_policy=True``, gets ``CPUOffloadPolicy(pin_memory=True)``, and pinning needs a CUDA
   driver ("Cannot access accelerator device when none is available"). The CPU engines build the
   FSDP module with the same policy, unpinned (:func:`_unpinned_cpu_offload_policy`); the
   parameters live in host memory either way.
2. **FSDP1 assumes a GPU**: verl wraps with ``sync_module_states=True``, which FSDP1 allows only
   for parameters on a GPU ("The module has CPU parameters or buffers when
   `sync_module_states=True`"), and its offload paths move flat parameters to ``cuda``. The CPU
   engines refuse ``strategy=fsdp`` up front with a fix-it message; use ``fsdp2``.

and the engine workers:

3. **The process group's backend string** (``verl.utils.distributed.initialize_global_process_group_ray``,
   called by ``TrainingWorker.__init__``) is ``f"cpu:gloo,{device}:{backend}"``, which on the CPU
   platform reads ``cpu:gloo,cpu:gloo`` and torch refuses ("Duplicate device type cpu").
   verl skips its own initialisation when a default process group exists, so
   :class:`CPUTrainingWorker` creates a plain ``gloo`` group first (with verl's own function and an
   explicit ``backend``), then runs ``TrainingWorker.__init__`` unchanged. When ``MASTER_ADDR`` is a
   loopback address (a local cluster's: ``audio_thinker.main_grpo.local_cluster_env``), the group's
   store listens on that address and gloo on the loopback interface (:func:`_loopback_store`):
   torch's own ``TCPStore`` would listen on every interface.
   :class:`CPUActorRolloutRefWorker` is verl's hybrid worker with the CPU training worker as its
   actor/ref worker class (the ``actor_worker_cls`` / ``ref_worker_cls`` class attributes verl
   provides for this). :mod:`audio_thinker.backends.cpu.trainer` puts these classes in the
   trainer's role -> worker mapping when ``trainer.device=cpu``.

Importing this module registers the engines (as verl's own engine modules do) and imports verl's
FSDP engine module, which resolves verl's platform at import time, so it imports
:mod:`~audio_thinker.backends.cpu.platform` first.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.distributed

from audio_thinker.backends.cpu import PLATFORM_NAME

# first: registers platform 'cpu' before verl's FSDP engine module resolves the platform at import
from audio_thinker.backends.cpu import platform as cpu_platform
from audio_thinker.inference.loopback import is_loopback, loopback_tcp_store

from verl.utils.distributed import initialize_global_process_group_ray  # noqa: E402
from verl.workers.engine.base import EngineRegistry  # noqa: E402
from verl.workers.engine.fsdp import transformer_impl  # noqa: E402
from verl.workers.engine.fsdp.transformer_impl import (  # noqa: E402
    FSDPEngineWithLMHead,
    FSDPEngineWithValueHead,
)
from verl.workers.engine_workers import ActorRolloutRefWorker, TrainingWorker  # noqa: E402

__all__ = [
    "CPU_ENGINE_BACKENDS", "CPU_WORKER_CLASSES", "CPUActorRolloutRefWorker", "CPUFSDPEngineWithLMHead",
    "CPUFSDPEngineWithValueHead", "CPUTrainingWorker", "init_gloo_process_group", "register_cpu_engines",
]

#: ``engine strategy`` values the CPU engines are registered for (``fsdp`` is refused with a message)
CPU_ENGINE_BACKENDS = ("fsdp", "fsdp2")
DEVICE = PLATFORM_NAME


@contextmanager
def _unpinned_cpu_offload_policy() -> Iterator[None]:
    """Workaround 1: ``CPUOffloadPolicy(...)`` inside ``FSDPEngine._build_fsdp_module`` builds unpinned.

    verl's ``_build_fsdp_module`` hard-codes ``CPUOffloadPolicy(pin_memory=True)`` for forward-only
    engines and ``offload_policy=True``; the name is looked up in verl's ``transformer_impl``
    module when the call runs, so it is rebound there for the duration of the call only (engine
    construction runs on one thread) and restored afterwards, whatever happens.
    """
    original = transformer_impl.CPUOffloadPolicy
    if original is None:  # torch without FSDP2: verl's own assertion reports it
        yield
        return

    def unpinned(*args: Any, **kwargs: Any) -> Any:
        kwargs["pin_memory"] = False
        return original(*args, **kwargs)

    transformer_impl.CPUOffloadPolicy = unpinned
    try:
        yield
    finally:
        transformer_impl.CPUOffloadPolicy = original


class _CPUFSDPEngineMixin:
    """The CPU workarounds shared by both engine classes (module docstring, items 1-2)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        engine_config = kwargs.get("engine_config", args[1] if len(args) > 1 else None)
        strategy = getattr(engine_config, "strategy", None)
        if strategy != "fsdp2":
            raise ValueError(
                f"the CPU FSDP engine supports strategy=fsdp2 only (got {strategy!r}): verl's FSDP1 wrapping "
                "(sync_module_states=True) needs the parameters on a GPU. Set "
                "actor_rollout_ref.actor.strategy=fsdp2, actor_rollout_ref.actor.fsdp_config.strategy=fsdp2, "
                "actor_rollout_ref.ref.fsdp_config.strategy=fsdp2 (and critic.strategy / "
                "critic.model.fsdp_config.strategy when a critic is used)"
            )
        super().__init__(*args, **kwargs)

    def _build_fsdp_module(self, module: torch.nn.Module) -> torch.nn.Module:
        with _unpinned_cpu_offload_policy():
            return super()._build_fsdp_module(module)  # type: ignore[misc]


class CPUFSDPEngineWithLMHead(_CPUFSDPEngineMixin, FSDPEngineWithLMHead):
    """verl's ``FSDPEngineWithLMHead`` (actor, reference) on the CPU platform."""


class CPUFSDPEngineWithValueHead(_CPUFSDPEngineMixin, FSDPEngineWithValueHead):
    """verl's ``FSDPEngineWithValueHead`` (critic) on the CPU platform."""


_ENGINES = {"language_model": CPUFSDPEngineWithLMHead, "value_model": CPUFSDPEngineWithValueHead}
_ENGINES_REGISTERED = False


def register_cpu_engines() -> None:
    """Register the CPU engines with verl's ``EngineRegistry`` for ``device="cpu"`` (idempotent).

    Refuses to replace a different engine already registered for the CPU (verl's registry asserts
    on duplicates).
    """
    global _ENGINES_REGISTERED
    if _ENGINES_REGISTERED:
        return
    registry = EngineRegistry._engines  # read-only look: verl's registry has no "is registered" query
    for model_type, engine_cls in _ENGINES.items():
        for backend in CPU_ENGINE_BACKENDS:
            current = registry.get(model_type, {}).get(backend, {}).get(DEVICE)
            if current is engine_cls:
                continue
            if current is not None:
                raise RuntimeError(
                    f"verl already has a {DEVICE} engine for {model_type}/{backend}: {current.__qualname__}"
                )
            EngineRegistry.register(model_type=model_type, backend=backend, device=DEVICE)(engine_cls)
    _ENGINES_REGISTERED = True


def init_gloo_process_group() -> bool:
    """Workaround 3: create this worker's default process group with plain ``gloo``.

    Uses verl's own ``initialize_global_process_group_ray`` (RANK / WORLD_SIZE / MASTER_ADDR /
    MASTER_PORT from the worker group's environment, ``DIST_INIT_METHOD`` honoured) with an
    explicit ``backend="gloo"``; verl's later call without a backend then finds the group and
    returns. With a loopback ``MASTER_ADDR`` the same group is built on :func:`_loopback_store`.
    Returns whether a group was created here.
    """
    if torch.distributed.is_initialized():
        return False
    store = _loopback_store()
    if store is None:
        initialize_global_process_group_ray(timeout_second=None, backend="gloo")
    else:
        torch.distributed.init_process_group(
            backend="gloo", store=store, rank=int(os.environ.get("RANK", 0)),
            world_size=int(os.environ.get("WORLD_SIZE", 1)),
        )
    return True


def _loopback_interface() -> str | None:
    """The name of the network interface holding 127.0.0.1 (``lo`` on Linux)."""
    import psutil  # a dependency of Ray

    for name, addresses in psutil.net_if_addrs().items():
        if any(a.family == socket.AF_INET and a.address == "127.0.0.1" for a in addresses):
            return name
    return None


def _loopback_store() -> torch.distributed.TCPStore | None:
    """For a loopback ``MASTER_ADDR`` (and no ``DIST_INIT_METHOD``): the group's store from
    :func:`loopback_tcp_store`, with ``GLOO_SOCKET_IFNAME`` set to the loopback interface unless set.
    None otherwise: torch's own rendezvous then listens on every interface, as verl expects across
    nodes."""
    host = os.environ.get("MASTER_ADDR", "")
    if os.environ.get("DIST_INIT_METHOD") or not is_loopback(host):
        return None
    interface = _loopback_interface()
    if interface:
        os.environ.setdefault("GLOO_SOCKET_IFNAME", interface)
    return loopback_tcp_store(host, int(os.environ["MASTER_PORT"]), int(os.environ.get("WORLD_SIZE", 1)),
                              int(os.environ.get("RANK", 0)), torch.distributed.constants.default_pg_timeout)


class CPUTrainingWorker(TrainingWorker):
    """verl's ``TrainingWorker`` on the CPU platform: gloo process group, CPU engines registered."""

    def __init__(self, config: Any) -> None:
        cpu_platform.check_cpu_platform_selected()
        register_cpu_engines()
        init_gloo_process_group()
        super().__init__(config)


class CPUActorRolloutRefWorker(ActorRolloutRefWorker):
    """verl's hybrid actor/rollout/ref worker whose actor and reference run on :class:`CPUTrainingWorker`."""

    actor_worker_cls = CPUTrainingWorker
    ref_worker_cls = CPUTrainingWorker

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        cpu_platform.check_cpu_platform_selected()
        register_cpu_engines()
        super().__init__(*args, **kwargs)


#: verl worker class -> its CPU counterpart (what the CPU trainer swaps into the role mapping)
CPU_WORKER_CLASSES: dict[type, type] = {
    ActorRolloutRefWorker: CPUActorRolloutRefWorker,
    TrainingWorker: CPUTrainingWorker,
}


# registered on import, like verl's own engines (``register_cpu_engines`` is idempotent)
register_cpu_engines()
