"""Our model classes for vLLM: a vLLM plugin (entry point) and the same registration in-process.

vLLM 0.24.0 cannot serve a thinker-only Qwen2.5-Omni checkpoint (our training backbone) by itself;
:mod:`audio_thinker.inference.vllm_omni` holds the class that can. :func:`register_vllm_models`
tells vLLM's ``ModelRegistry`` which class serves which architecture, by ``"module:Class"`` name
(vLLM imports the class only when it builds that model). It is idempotent.

Where it runs:

* **Every vLLM process, once installed.** ``setup.py`` names it in vLLM's ``vllm.general_plugins``
  entry-point group, which vLLM loads in the process that builds an engine, in its engine-core
  process and in every worker (``pip install -e .`` registers the entry point).
* **In-process.** Our engine builders (:mod:`audio_thinker.inference.vllm`) and verl's rollout
  server call it before they build an engine, so a checkout that was not reinstalled works too,
  as far as that process reaches. vLLM *spawns* its engine-core and worker processes (always on
  CPU, and in a Ray actor or after CUDA is initialised); a spawned process starts with vLLM's own
  registry and sees our classes only through the entry point. :func:`prepare_vllm_model` registers
  in-process and, for a checkpoint that needs our classes, refuses with the fix when the entry
  point is missing and vLLM would build the model in another process.

Importing this module imports neither vLLM nor torch.
"""

from __future__ import annotations

import json
import logging
import os
from importlib import metadata
from pathlib import Path

logger = logging.getLogger(__name__)

#: the entry point's group and name (setup.py: ``entry_points["vllm.general_plugins"]``)
PLUGIN_GROUP = "vllm.general_plugins"
PLUGIN_NAME = "audio_thinker"
PLUGIN_TARGET = "audio_thinker.inference.vllm_models:register_vllm_models"

#: checkpoint architecture -> the ``"module:Class"`` vLLM builds for it
MODEL_CLASSES = {
    "Qwen2_5OmniThinkerForConditionalGeneration":
        "audio_thinker.inference.vllm_omni:Qwen2_5OmniThinkerOnlyForConditionalGeneration",
}


def register_vllm_models() -> None:
    """Register :data:`MODEL_CLASSES` with vLLM's ``ModelRegistry`` (idempotent; imports vLLM).

    The vLLM plugin entry point, and what verl's rollout server and our engine builders call
    before they build an engine. It also keeps this process's ``tcp://<loopback>`` process-group
    stores on loopback (:func:`audio_thinker.inference.loopback.patch_tcp_rendezvous`): vLLM's
    worker joins its group through ``tcp://127.0.0.1`` on one node, and torch's store would listen
    on every interface.
    """
    from vllm import ModelRegistry

    from audio_thinker.inference.loopback import patch_tcp_rendezvous

    patch_tcp_rendezvous()

    for arch, target in MODEL_CLASSES.items():
        if _registered_target(ModelRegistry, arch) != target:
            ModelRegistry.register_model(arch, target)


def _registered_target(registry: object, arch: str) -> str | None:
    """``"module:Class"`` of a lazily registered ``arch`` (None when absent or registered otherwise)."""
    entry = getattr(registry, "models", {}).get(arch)
    module, name = getattr(entry, "module_name", None), getattr(entry, "class_name", None)
    return f"{module}:{name}" if module and name else None


def plugin_installed() -> bool:
    """Whether the installed package declares :data:`PLUGIN_TARGET` in vLLM's plugin group."""
    return any(ep.name == PLUGIN_NAME and ep.value.replace(" ", "") == PLUGIN_TARGET
               for ep in metadata.entry_points(group=PLUGIN_GROUP))


def checkpoint_architectures(model_dir: str | Path) -> list[str]:
    """``architectures`` of ``model_dir/config.json`` (empty when there is no such file).

    >>> checkpoint_architectures("/no/such/dir")
    []
    """
    path = Path(model_dir) / "config.json"
    if not path.is_file():
        return []
    return list(json.loads(path.read_text(encoding="utf-8")).get("architectures") or [])


def needs_plugin(model_dir: str | Path) -> bool:
    """Whether vLLM serves ``model_dir`` only with our registration (its architecture is ours).

    >>> needs_plugin("/no/such/dir")
    False
    """
    return any(arch in MODEL_CLASSES for arch in checkpoint_architectures(model_dir))


def prepare_vllm_model(model_dir: str | Path) -> None:
    """Register our classes in this process; ``RuntimeError`` with the fix when vLLM cannot serve
    ``model_dir`` (its architecture is ours, the entry point is not installed, and vLLM builds the
    model in a spawned engine process: ``VLLM_ENABLE_V1_MULTIPROCESSING`` is not 0)."""
    register_vllm_models()
    if not needs_plugin(model_dir) or plugin_installed():
        return
    if os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING", "1") == "0":
        logger.warning("vLLM plugin %r is not installed; serving %s in this process only", PLUGIN_TARGET, model_dir)
        return
    raise RuntimeError(
        f"vLLM cannot serve {model_dir} ({', '.join(checkpoint_architectures(model_dir))}) without our vLLM "
        f"plugin in its engine processes: `pip install -e .` in the audio-thinker checkout registers it "
        f"(entry point {PLUGIN_GROUP}: {PLUGIN_NAME} = {PLUGIN_TARGET}); or set "
        "VLLM_ENABLE_V1_MULTIPROCESSING=0 to build a one-worker engine in this process")
