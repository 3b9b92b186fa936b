"""The ``hf`` rollout's name and its engine options (``rollout.engine_kwargs.hf``).

Cheap to import (standard library only). The options, all optional, under
``+actor_rollout_ref.rollout.engine_kwargs.hf.*``:

=============================  ===========================  ===============================================
key                            default                      meaning
=============================  ===========================  ===============================================
``max_batch_size``             ``min(max_num_seqs, 64)``    requests generated as one batch
``batch_wait_ms``              50                           a batch keeps collecting while requests
                                                            arrive less than this apart ...
``batch_max_wait_ms``          300                          ... for at most this long after the first
``num_threads``                ``min(4, cpu_count)``        torch threads of the server
``attn_implementation``        ``eager``                    the decoder's attention
``audio_attn_implementation``  ``sdpa``                     the audio encoder's (same values within float
                                                            error, 4-7x faster than eager there)
``dtype``                      ``float32``                  model dtype (``rollout.dtype`` is a vLLM
                                                            setting and is ignored)
``num_cpus``                   Ray's default                Ray CPUs held by the server actor
=============================  ===========================  ===============================================
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["ENGINE_DEFAULTS", "ROLLOUT_NAME", "engine_options"]

#: ``actor_rollout_ref.rollout.name`` of this backend (verl 0.9.1 registers no rollout called ``hf``)
ROLLOUT_NAME = "hf"

#: ``rollout.engine_kwargs.hf`` keys and their defaults (None: computed, see :func:`engine_options`)
ENGINE_DEFAULTS: dict[str, Any] = {
    "max_batch_size": None,  # min(max_num_seqs, 64)
    "batch_wait_ms": 50.0,
    "batch_max_wait_ms": 300.0,
    "num_threads": None,  # min(4, os.cpu_count())
    "attn_implementation": "eager",
    "audio_attn_implementation": "sdpa",
    "dtype": "float32",
    "num_cpus": None,
}


def _get(config: Any, key: str, default: Any = None) -> Any:
    """``config[key]`` of a dict, an OmegaConf node or a dataclass, else ``default``."""
    if isinstance(config, dict):
        return config.get(key, default)
    getter = getattr(config, "get", None)
    if callable(getter):
        try:
            return getter(key, default)
        except Exception:
            pass
    return getattr(config, key, default)


def engine_options(config: Any) -> dict[str, Any]:
    """``rollout.engine_kwargs.hf`` merged over :data:`ENGINE_DEFAULTS` (unknown keys refused)."""
    engine_kwargs = _get(config, "engine_kwargs", None) or {}
    given = dict(_get(engine_kwargs, ROLLOUT_NAME, None) or {})
    unknown = sorted(set(given) - set(ENGINE_DEFAULTS))
    if unknown:
        raise ValueError(
            f"unknown rollout.engine_kwargs.{ROLLOUT_NAME} keys {unknown}; known: {sorted(ENGINE_DEFAULTS)}"
        )
    options = {**ENGINE_DEFAULTS, **{k: v for k, v in given.items() if v is not None}}
    if options["max_batch_size"] is None:
        options["max_batch_size"] = max(1, min(int(_get(config, "max_num_seqs", 64) or 64), 64))
    if options["num_threads"] is None:
        options["num_threads"] = max(1, min(4, os.cpu_count() or 1))
    return options
