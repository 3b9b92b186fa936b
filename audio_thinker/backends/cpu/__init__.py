"""CPU backend for verl: platform, FSDP engines, trainer pools and a transformers rollout.

verl's own V1 sync trainer runs on the CPU with only the device-specific pieces swapped through
verl's extension points, each selected explicitly by configuration (never by detecting that a
host has no GPU):

================================  =====================================  ==========================
piece                             verl extension point                    selected by
================================  =====================================  ==========================
:mod:`.platform` (``cpu``)        ``PlatformRegistry``                    ``VERL_PLATFORM=cpu``
:mod:`.engine` (FSDP2 engines)    ``EngineRegistry`` (``device="cpu"``)   the platform's device name
:mod:`.engine` (workers)          ``ActorRolloutRefWorker.*_worker_cls``  :mod:`.trainer`
:mod:`.trainer` (resource pools)  ``PPOTrainer._init_resource_pool_mgr``  ``trainer.device=cpu``
:mod:`.rollout` (``hf``)          ``RolloutReplicaRegistry``,             ``rollout.name=hf``
                                  ``_ROLLOUT_REGISTRY``
:mod:`.vllm` (verl's vLLM server  ``RolloutReplicaRegistry`` (through      ``rollout.name=vllm``
on vLLM's CPU build)              the plugin), ``worker_extension_cls``
================================  =====================================  ==========================

The ``hf`` rollout is split by job: :mod:`.options`, :mod:`.sampling`, :mod:`.generator`,
:mod:`.batcher`, :mod:`.weights`, :mod:`.server` and :mod:`.rollout` (see the latter). The verl
names all of this relies on, private ones included, are listed in
:mod:`audio_thinker.verl_ext.contract`.

Importing this package is cheap (no torch, no verl): it holds the two selection predicates,
:func:`cpu_backend_requested` (the environment) and :func:`trainer_uses_cpu` (the configuration).
:func:`register_cpu_backend` imports the modules, whose import registers them with verl
(idempotent).
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

__all__ = ["PLATFORM_ENV", "PLATFORM_NAME", "cpu_backend_requested", "register_cpu_backend", "trainer_uses_cpu"]

#: ``VERL_PLATFORM`` value (and ``PlatformRegistry`` name) of the CPU platform
PLATFORM_NAME = "cpu"
#: the environment variable verl reads to select a platform explicitly
PLATFORM_ENV = "VERL_PLATFORM"

_PLATFORM_MODULE = f"{__name__}.platform"
_ENGINE_MODULE = f"{__name__}.engine"
_ROLLOUT_MODULE = f"{__name__}.rollout"


def cpu_backend_requested() -> bool:
    """Whether this process selects the CPU platform (``VERL_PLATFORM=cpu``); imports nothing."""
    return os.environ.get(PLATFORM_ENV, "").strip().lower() == PLATFORM_NAME


def trainer_uses_cpu(config: Any) -> bool:
    """Whether the configuration selects the CPU pools and workers (``trainer.device == "cpu"``)."""
    trainer = config.get("trainer", {}) if hasattr(config, "get") else getattr(config, "trainer", {})
    device = trainer.get("device", None) if hasattr(trainer, "get") else getattr(trainer, "device", None)
    return str(device).strip().lower() == PLATFORM_NAME


def _initializing(name: str) -> bool:
    """Whether module ``name`` is being imported right now (an import cycle reached us)."""
    module = sys.modules.get(name)
    return module is not None and bool(getattr(getattr(module, "__spec__", None), "_initializing", False))


def register_cpu_backend(*, rollout: bool = True) -> None:
    """Register the CPU platform, the CPU FSDP engines and (``rollout=True``) the CPU rollouts with verl.

    Idempotent and safe to call from the project's verl plugin, i.e. during ``import verl``:

    * the platform module must be imported before anything resolves verl's platform in the
      process (verl's FSDP engine module does it at import time), so it comes first;
    * when verl itself is being imported *by* one of these modules (an import cycle: e.g. a
      test imports ``audio_thinker.backends.cpu.engine`` first, which imports verl, whose plugin
      calls this function), nothing is done here: the outer import completes the registration.

    Registration does not select anything: ``VERL_PLATFORM=cpu`` selects the platform,
    ``trainer.device=cpu`` the CPU pools and workers, ``actor_rollout_ref.rollout.name`` (``hf``
    or ``vllm``) the rollout.
    """
    if any(_initializing(name) for name in (_PLATFORM_MODULE, _ENGINE_MODULE, _ROLLOUT_MODULE)):
        return
    importlib.import_module(_PLATFORM_MODULE)  # registers platform "cpu" on import
    importlib.import_module(_ENGINE_MODULE)  # registers the CPU engines on import
    if rollout:
        module = importlib.import_module(_ROLLOUT_MODULE)
        module.register_cpu_rollout()
