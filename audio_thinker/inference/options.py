"""Decoding and engine settings shared by every generator (pure dataclasses, no heavy imports)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GenerationOptions:
    """Decoding settings shared by both backends (vLLM's names and semantics); ``generation.*`` of
    ``python -m audio_thinker.evaluate``.

    >>> GenerationOptions().greedy, GenerationOptions(temperature=0.7).greedy
    (True, False)
    """

    #: new tokens per response
    max_new_tokens: int = 512
    #: 0 = greedy (default); > 0 samples
    temperature: float = 0.0
    top_p: float = 1.0
    #: <= 0: disabled
    top_k: int = -1
    seed: int = 0
    #: prompts per generation call (the CPU batch; the vLLM submission chunk)
    batch_size: int = 8

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0 = greedy), got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must lie in (0, 1], got {self.top_p}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")

    @property
    def greedy(self) -> bool:
        return self.temperature < 1e-5


@dataclass(frozen=True)
class VLLMOptions:
    """Engine settings of the offline engine (``vllm.LLM`` keyword arguments of the same names);
    checked by :func:`audio_thinker.inference.vllm.engine_kwargs`."""

    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.85
    max_model_len: int = 8192
    max_num_seqs: int = 64
    dtype: str = "bfloat16"
    enforce_eager: bool = False
