"""Weights in and out of the ``hf`` rollout's model.

* :func:`load_rollout_model`: the checkpoint, loaded with the auto class verl's actor uses.
* :func:`iter_weight_buckets`: the actor's ``(name, tensor)`` stream as host-memory buckets (the
  in-worker adapter's side of a weight sync).
* :func:`load_named_tensors`: one bucket copied into the served model (the server's side).

Only torch at import; verl is imported by :func:`load_rollout_model` when it runs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import Any

import torch

__all__ = ["drain", "iter_weight_buckets", "load_named_tensors", "load_rollout_model"]


def load_rollout_model(
    model_config: Any, *, dtype: str, attn_implementation: str, audio_attn_implementation: str | None
) -> torch.nn.Module:
    """The model at ``model_config.local_path`` in eval mode, without gradients.

    ``model_config`` is verl's ``HFModelConfig``. The class is ``get_hf_auto_model_class`` of its
    ``hf_config`` (what verl's actor loads; the project's plugin maps the audio configs). When the
    config has audio sub-configs and ``audio_attn_implementation`` differs from
    ``attn_implementation``, the audio encoder gets its own attention implementation.
    """
    from verl.utils.model import get_hf_auto_model_class

    hf_config = model_config.hf_config
    torch_dtype = getattr(torch, str(dtype).replace("torch.", ""))
    model_cls = get_hf_auto_model_class(hf_config)
    attn: Any = attn_implementation
    sub_configs = list(getattr(hf_config, "sub_configs", None) or {})
    if audio_attn_implementation and audio_attn_implementation != attn and any("audio" in k for k in sub_configs):
        attn = {"": attn, **{k: audio_attn_implementation if "audio" in k else attn for k in sub_configs}}
    model = model_cls.from_pretrained(
        model_config.local_path,
        config=hf_config,
        dtype=torch_dtype,
        attn_implementation=attn,
        trust_remote_code=model_config.trust_remote_code,
    )
    model.requires_grad_(False)
    return model.eval()


async def _iterate(weights: Any) -> AsyncIterator[Any]:
    if hasattr(weights, "__aiter__"):
        async for item in weights:
            yield item
    else:
        for item in weights:
            yield item


async def iter_weight_buckets(
    weights: Any, *, bucket_bytes: int
) -> AsyncIterator[tuple[list[tuple[str, torch.Tensor]], bool]]:
    """``(bucket, is_last)`` pairs of host-memory ``(name, tensor)`` copies from ``weights``.

    ``weights`` is a sync or async iterable of ``(name, tensor)`` (verl's
    ``get_per_tensor_param()``). A bucket is yielded with ``is_last=False`` as soon as it holds at
    least ``bucket_bytes``; the remainder, possibly empty, follows with ``is_last=True``. DTensors
    the engine did not gather are gathered here.
    """
    bucket: list[tuple[str, torch.Tensor]] = []
    size = 0
    async for name, tensor in _iterate(weights):
        tensor = tensor.detach()
        if hasattr(tensor, "full_tensor"):  # a DTensor that the engine did not gather
            tensor = tensor.full_tensor()
        tensor = tensor.to("cpu")
        bucket.append((name, tensor))
        size += tensor.numel() * tensor.element_size()
        if size >= bucket_bytes:
            yield bucket, False
            bucket, size = [], 0
    yield bucket, True


async def drain(weights: Any) -> None:
    """Consume ``weights`` without keeping anything (the generator may run collectives)."""
    async for _ in _iterate(weights):
        pass


def load_named_tensors(model: torch.nn.Module, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> list[str]:
    """Copy ``(name, tensor)`` pairs into ``model``'s parameters/buffers (dtype cast); names loaded.

    Names are the model's own ``state_dict`` keys (what verl's FSDP engine exports for the same
    class). An unknown name raises ``KeyError``, a shape mismatch ``ValueError``: a silently
    skipped tensor would leave the rollout on stale weights.
    """
    targets = model.state_dict(keep_vars=True)
    loaded = []
    with torch.no_grad():
        for name, tensor in named_tensors:
            target = targets.get(name)
            if target is None:
                raise KeyError(f"hf rollout: {name!r} is not a weight of {type(model).__name__}")
            if tuple(target.shape) != tuple(tensor.shape):
                raise ValueError(f"hf rollout: weight {name!r} has shape {tuple(tensor.shape)}, "
                                 f"the model expects {tuple(target.shape)}")
            target.copy_(tensor.detach().to(device=target.device, dtype=target.dtype))
            loaded.append(name)
    return loaded
