"""Test-only vLLM hooks for ``tests/test_vllm_omni_on_cpu.py`` (vLLM's CPU build; never installed).

The test puts this folder on ``PYTHONPATH`` and declares :func:`keep_cpu_linear_weights` as a
``vllm.general_plugins`` entry point, so that vLLM runs it in its spawned engine processes.

* :func:`keep_cpu_linear_weights`: after loading, vLLM's CPU build repacks every linear and
  embedding weight for oneDNN: linear layers are left with an empty ``weight`` placeholder and the
  LM head computes from a packed copy, so a second ``load_weights`` (what a weight sync does)
  either fails or changes nothing. This hook keeps the weights and computes those layers with
  ``torch.nn.functional.linear`` on the live parameter, as the GPU path does (there an unquantized
  layer is used as loaded).
* :func:`reload_weights`: run in the worker by ``LLM.collective_rpc``; hands the ``(name, tensor)``
  pairs of a safetensors file to the live model's ``load_weights``, as verl's weight sync does.
"""

from __future__ import annotations

from typing import Any


def keep_cpu_linear_weights() -> None:
    """On CPU, make vLLM keep linear/embedding weights in place instead of repacking them."""
    import torch
    from vllm.model_executor.layers import utils
    from vllm.platforms import current_platform

    if not current_platform.is_cpu() or getattr(utils, "_audio_thinker_keeps_weights", False):
        return
    repack = utils.dispatch_cpu_unquantized_gemm

    def keep(layer: torch.nn.Module, remove_weight: bool) -> None:
        if layer.weight.is_meta or layer.weight.ndim != 2:
            repack(layer, remove_weight)
            return
        layer.cpu_linear = lambda x, weight, bias: torch.nn.functional.linear(x, weight, bias)

    utils.dispatch_cpu_unquantized_gemm = keep
    utils._audio_thinker_keeps_weights = True


def reload_weights(worker: Any, path: str) -> dict[str, list[str]]:
    """In a vLLM worker (``LLM.collective_rpc``): hand the ``(name, tensor)`` pairs of the safetensors
    file ``path`` to the live model's ``load_weights``, as verl's weight sync does; the names it
    loaded and the model's parameter names."""
    from safetensors.torch import load_file

    model = worker.model_runner.model
    loaded = model.load_weights(iter(load_file(path).items()))
    return {"loaded": sorted(loaded), "parameters": sorted(name for name, _ in model.named_parameters())}
