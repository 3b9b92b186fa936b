"""GPU-free resource pools and CPU workers for verl's V1 trainer (``trainer.device=cpu``).

verl's ``PPOTrainer._init_resource_pool_mgr`` (verl/trainer/ppo/v1/trainer_base.py) maps each role
to a worker class (``ray.remote(ActorRolloutRefWorker)``, ``ray.remote(TrainingWorker)`` for a
critic) and builds a ``ResourcePoolManager`` whose pools reserve one GPU per worker process
(``RayResourcePool(use_gpu=True)``) and whose ``_check_resource_available`` counts only GPU/NPU
resources ("Total available GPUs 0 is less than total desired GPUs 1"). On the CPU neither holds.

:func:`use_cpu_resources` runs *after* verl's method and changes only what is device-specific,
so the role/pool logic stays verl's:

* every worker class becomes its CPU counterpart from :mod:`audio_thinker.backends.cpu.engine`
  (``ActorRolloutRefWorker`` -> ``CPUActorRolloutRefWorker``, ``TrainingWorker`` ->
  ``CPUTrainingWorker``: gloo process group, CPU FSDP2 engines);
* the pool manager becomes :class:`CPUResourcePoolManager`: the same pool specification and
  role -> pool mapping, pools built with ``use_gpu=False`` (each worker process holds a
  placement-group bundle of ``max_colocate_count`` logical CPUs and no accelerator), and a resource
  check that counts Ray's logical CPUs.

The project's trainer (:class:`audio_thinker.verl_ext.trainer.AudioThinkerTrainer`) calls
:func:`use_cpu_resources` from its ``_init_resource_pool_mgr`` override when the configuration
says ``trainer.device=cpu`` (:func:`audio_thinker.backends.cpu.trainer_uses_cpu`; the only
switch, nothing is inferred from the host).
"""

from __future__ import annotations

import logging
from typing import Any

import ray
from verl.single_controller.ray import RayResourcePool
from verl.single_controller.ray.base import ResourcePoolManager

from audio_thinker.backends.cpu import platform as cpu_platform

logger = logging.getLogger(__name__)

__all__ = ["CPUResourcePoolManager", "cpu_worker_class", "use_cpu_resources"]


class CPUResourcePoolManager(ResourcePoolManager):
    """verl's ``ResourcePoolManager`` with CPU-only pools (``RayResourcePool(use_gpu=False)``)."""

    def create_resource_pool(self) -> None:
        for name, process_on_nodes in self.resource_pool_spec.items():
            self.resource_pool_dict[name] = RayResourcePool(
                process_on_nodes=process_on_nodes,
                use_gpu=False,
                max_colocate_count=self.max_colocate_count,
                name_prefix=name,
            )
        self._check_resource_available()

    def required_cpus(self) -> int:
        """Logical CPUs the pools reserve: one bundle of ``max_colocate_count`` per worker process."""
        return self.get_n_gpus() * self.max_colocate_count

    def _check_resource_available(self) -> None:
        available = ray.available_resources().get("CPU", 0)
        required = self.required_cpus()
        if available < required:
            raise ValueError(
                f"the CPU resource pools need {required} logical CPUs ({self.get_n_gpus()} worker "
                f"processes x {self.max_colocate_count}) but Ray has {available:g} free: raise "
                "ray_kwargs.ray_init.num_cpus (logical slots; they need not match physical cores) or lower "
                "trainer.n_gpus_per_node"
            )


def cpu_worker_class(actor_class: Any) -> Any:
    """The ``ray.remote`` CPU counterpart of a ``ray.remote`` verl worker class."""
    from audio_thinker.backends.cpu.engine import CPU_WORKER_CLASSES

    original = getattr(actor_class, "__ray_actor_class__", actor_class)
    if original in CPU_WORKER_CLASSES.values():
        return actor_class
    cpu_class = CPU_WORKER_CLASSES.get(original)
    if cpu_class is None:
        raise TypeError(
            f"no CPU counterpart for worker class {original.__module__}.{original.__qualname__}; known: "
            f"{sorted(cls.__qualname__ for cls in CPU_WORKER_CLASSES)}"
        )
    return ray.remote(cpu_class)


def use_cpu_resources(trainer: Any) -> None:
    """Turn the worker classes and pools verl's ``_init_resource_pool_mgr`` just built into CPU ones.

    Call it right after ``super()._init_resource_pool_mgr()``. Raises a fix-it error when this
    process does not run verl's ``cpu`` platform (``VERL_PLATFORM=cpu`` missing).
    """
    cpu_platform.check_cpu_platform_selected()
    trainer.role_worker_mapping = {
        role: cpu_worker_class(worker) for role, worker in trainer.role_worker_mapping.items()
    }
    manager = trainer.resource_pool_manager
    trainer.resource_pool_manager = CPUResourcePoolManager(
        resource_pool_spec=manager.resource_pool_spec,
        mapping=manager.mapping,
        max_colocate_count=manager.max_colocate_count,
    )
    mapping = trainer.role_worker_mapping
    workers = {str(role): worker.__ray_actor_class__.__name__ for role, worker in mapping.items()}
    logger.info("CPU backend: workers %s, pools %s", workers, manager.resource_pool_spec)

