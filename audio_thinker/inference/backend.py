"""Which backend generates, on which device, and giving its memory back.

``hf`` is transformers (any torch device, the only choice on CPU); ``vllm`` is a vLLM engine
(CUDA). ``auto`` picks vLLM when CUDA and vLLM are both available. Importing this module imports
neither torch nor vLLM.
"""

from __future__ import annotations

import gc
import importlib.util
import logging
import sys
from typing import Any

logger = logging.getLogger(__name__)

#: the backend names every generation entry point accepts
BACKENDS = ("auto", "hf", "vllm")


def choose_backend(backend: str = "auto") -> str:
    """``hf`` or ``vllm`` (``auto``: vllm when CUDA and vLLM are both available).

    >>> choose_backend("hf")
    'hf'
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend != "auto":
        return backend
    return "vllm" if _cuda_available() and importlib.util.find_spec("vllm") is not None else "hf"


def resolve_device_and_dtype(device: str | None, dtype: str | None) -> tuple[str, str]:
    """``device`` (default: cuda when available, else cpu) and ``dtype`` (default: float32 on cpu,
    bfloat16 elsewhere: CPU kernels for half precision are slow or missing).

    >>> resolve_device_and_dtype("cpu", None), resolve_device_and_dtype("cuda:1", None)
    (('cpu', 'float32'), ('cuda:1', 'bfloat16'))
    """
    device = device or ("cuda" if _cuda_available() else "cpu")
    return device, dtype or ("float32" if device == "cpu" else "bfloat16")


def release(generator: Any) -> None:
    """Close a generator and give its (GPU) memory back before the next model loads (best effort)."""
    if generator is None:
        return
    close = getattr(generator, "close", None)
    if callable(close):
        close()
    gc.collect()
    if "torch" in sys.modules:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return False
    return bool(torch.cuda.is_available())
