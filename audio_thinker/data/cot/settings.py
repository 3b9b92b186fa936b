"""What a CoT run generates with (recorded, checked on resume) and how it runs (free to change)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from audio_thinker.inference.backend import BACKENDS
from audio_thinker.data.prompt_length import DEFAULT_MAX_QUESTION_CHARS
from audio_thinker.inference.options import GenerationOptions, VLLMOptions
from audio_thinker.prompts import CAPTION_TEMPLATE, COT_GENERATION_TEMPLATE, PROMPT_VERSION

FORMAT_VERSION = 1
STAGES = ("all", "captions")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def digest(text: str) -> str:
    """A short digest of ``text`` (templates in the config record, captions in rationale records).

    >>> digest("A beep.")
    'cfdeb688fe7c'
    """
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:12]


@dataclass(frozen=True)
class CotConfig:
    """What decides the generated content; recorded in ``OUT/config.json`` and checked on resume."""

    rows: str
    caption_model: str
    text_model: str
    max_caption_tokens: int = 256
    max_rationale_tokens: int = 512
    #: 0 = greedy (both stages)
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("max_caption_tokens", "max_rationale_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0 = greedy), got {self.temperature}")

    def record(self) -> dict[str, Any]:
        """The JSON record of ``OUT/config.json``: the fields plus the prompt templates' digests."""
        return {
            **asdict(self),
            "format_version": FORMAT_VERSION,
            "prompt_version": PROMPT_VERSION,
            "caption_template_sha": digest(CAPTION_TEMPLATE),
            "cot_template_sha": digest(COT_GENERATION_TEMPLATE),
        }

    def options(self, max_new_tokens: int, batch_size: int) -> GenerationOptions:
        """The decoding options of one stage."""
        return GenerationOptions(max_new_tokens=max_new_tokens, temperature=self.temperature,
                                 top_p=self.top_p, seed=self.seed, batch_size=batch_size)


@dataclass(frozen=True)
class RunOptions:
    """How the run executes (not recorded in the config: changing these is allowed on resume)."""

    backend: str = "auto"
    batch_size: int = 8
    #: torch device of the hf backend; None: cuda when available, else cpu
    device: str | None = None
    #: hf dtype; None: float32 on cpu, bfloat16 on cuda
    dtype: str | None = None
    num_threads: int | None = None
    tensor_parallel_size: int = 1
    caption_tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.85
    max_model_len: int = 8192
    stage: str = "all"
    #: input rows whose question and choices hold more characters are skipped as prompt_too_long
    #: (None: no bound)
    max_question_chars: int | None = DEFAULT_MAX_QUESTION_CHARS

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.stage not in STAGES:
            raise ValueError(f"stage must be one of {', '.join(STAGES)}, got {self.stage!r}")
        if self.max_question_chars is not None and self.max_question_chars < 1:
            raise ValueError(f"max_question_chars must be >= 1 (or None), got {self.max_question_chars}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.tensor_parallel_size < 1 or self.caption_tensor_parallel_size < 1:
            raise ValueError("tensor parallel sizes must be >= 1")

    def vllm_options(self, tensor_parallel_size: int) -> VLLMOptions:
        """The vLLM engine of one stage: ``batch_size`` is also its ``max_num_seqs``."""
        return VLLMOptions(tensor_parallel_size=tensor_parallel_size,
                           gpu_memory_utilization=self.gpu_memory_utilization,
                           max_model_len=self.max_model_len, max_num_seqs=max(self.batch_size, 1),
                           dtype=self.dtype or "bfloat16")


class CotConfigError(ValueError):
    """``OUT`` holds records made with other settings."""


def config_diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """``{key: (old, new)}`` for every key whose value differs (absent keys read as None).

    >>> config_diff({"a": 1, "b": 2}, {"a": 1, "b": 3, "c": 4})
    {'b': (2, 3), 'c': (None, 4)}
    """
    return {k: (old.get(k), new.get(k)) for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)}


def check_model(path: str, *, what: str, flag: str) -> str:
    """``path`` resolved when it is a local folder with a ``config.json``; a Hugging Face hub id
    (``org/name``) that is not a local path is passed on as is; anything else is an error."""
    local = Path(path).expanduser()
    if local.exists():
        if not (local / "config.json").is_file():
            raise FileNotFoundError(f"{flag} {path}: no config.json there; pass a Hugging Face {what} folder")
        return str(local.resolve())
    if _HUB_ID.match(path):
        return path
    raise FileNotFoundError(f"{flag} {path} not found: pass a Hugging Face {what} folder (or a hub id)")
