"""The warm-start's options and its format-only targets (pure: standard library only).

See :mod:`audio_thinker.toy.warmstart` for the design. A target has the adaptive response format
and a uniformly random choice as its answer: the gold answer is never read.
"""

from __future__ import annotations

import dataclasses
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from audio_thinker.prompts import PromptMode
from audio_thinker.rewards.parsing import ResponseMode

__all__ = [
    "DEFAULT_OPTIONS", "END_OF_TURN", "FORMAT_VERSION", "PROMPT_MODE", "THINK_TEMPLATES", "Target",
    "WarmstartOptions", "build_target", "question_kind",
]

#: Bumped when the meaning of the options or the target format changes (old outputs are rebuilt).
FORMAT_VERSION = 1
#: End-of-turn token every target ends with (the generation config stops on it).
END_OF_TURN = "<|im_end|>"
#: The prompt mode whose format is taught (DESIGN.md section 4, appendix A.1).
PROMPT_MODE = PromptMode.ADAPTIVE

#: Generic reasoning sentences for THINK targets: ``{kind}`` is the question type (the row's task
#: name in words); nothing about the answer. Kept short (mostly in-vocabulary words of the tiny
#: tokenizer) so a THINK target fits the embedded default's 48-token response budget.
THINK_TEMPLATES: tuple[str, ...] = (
    "The question is about {kind}. Let me think step by step.",
    "This is a {kind} question. I listen to the audio and compare the options.",
    "I listen for the {kind} in the audio, then choose one of the options.",
)


@dataclass(frozen=True)
class WarmstartOptions:
    """Every knob of a warm-start (all of them are recorded in, and matched against, the marker).

    ``steps`` optimiser steps of ``batch_size`` (row, target) pairs with AdamW at ``lr`` (linear
    warm-up over the first ``warmup_fraction`` of the steps, then linear decay to 10 %).
    ``think_fraction`` of the targets are THINK. After training, ``eval_samples`` responses are
    sampled for each of up to ``eval_rows`` held-out rows at ``eval_temperature`` with at most
    ``eval_max_new_tokens`` new tokens (the embedded default's ``max_response_length``).
    """

    steps: int = 160
    batch_size: int = 16
    lr: float = 1e-2
    think_fraction: float = 0.5
    seed: int = 0
    warmup_fraction: float = 0.1
    weight_decay: float = 0.0
    eval_rows: int = 32
    eval_samples: int = 4
    eval_temperature: float = 1.0
    eval_max_new_tokens: int = 48

    def __post_init__(self) -> None:
        positive = {"steps": self.steps, "batch_size": self.batch_size, "lr": self.lr,
                    "eval_samples": self.eval_samples, "eval_max_new_tokens": self.eval_max_new_tokens}
        for name, value in positive.items():
            if not value > 0:
                raise ValueError(f"{name} must be positive, got {value!r}")
        if not 0.0 <= self.think_fraction <= 1.0:
            raise ValueError(f"think_fraction must be in [0, 1], got {self.think_fraction!r}")
        if not 0.0 <= self.warmup_fraction < 1.0:
            raise ValueError(f"warmup_fraction must be in [0, 1), got {self.warmup_fraction!r}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if self.eval_rows < 0:
            raise ValueError(f"eval_rows must be >= 0, got {self.eval_rows!r}")
        if not self.eval_temperature > 0:
            raise ValueError(f"eval_temperature must be positive, got {self.eval_temperature!r}")

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any]) -> WarmstartOptions:
        """Build from keyword options, naming any unknown key."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise TypeError(f"unknown warm-start options {unknown}: use {sorted(known)}")
        return cls(**options)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


DEFAULT_OPTIONS = WarmstartOptions()


# ----------------------------------------------------------------------------------------------
# Targets
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One supervised response: its text (ending in :data:`END_OF_TURN`), mode and answer."""

    text: str
    mode: ResponseMode
    choice: str


def question_kind(info: Mapping[str, Any]) -> str:
    """The question type named in THINK targets: the row's task in words, else ``audio``.

    >>> question_kind({"task": "count_beeps_noisy"})
    'count beeps noisy'
    >>> question_kind({"task": ""})
    'audio'
    """
    words = re.sub(r"[_\W]+", " ", str(info.get("task") or "")).strip()
    return words or "audio"


def build_target(info: Mapping[str, Any], rng: random.Random, *, think_fraction: float) -> Target:
    """A format-only target for the row whose ``extra_info`` is ``info``.

    The mode is THINK with probability ``think_fraction``; the answer is a uniformly random
    element of ``info["choices"]``: the gold answer is never looked at.

    >>> t = build_target({"choices": ["high", "low"], "task": "pitch"}, random.Random(0), think_fraction=0.0)
    >>> t.text in ("<answer>high</answer><|im_end|>", "<answer>low</answer><|im_end|>")
    True
    """
    choices = [str(c) for c in info["choices"]]
    if not choices:
        raise ValueError("row has no choices")
    think = rng.random() < think_fraction
    template = rng.choice(THINK_TEMPLATES) if think else None
    choice = rng.choice(choices)
    answer = f"<answer>{choice}</answer>"
    if template is None:
        return Target(answer + END_OF_TURN, ResponseMode.NO_THINK, choice)
    thought = template.format(kind=question_kind(info))
    return Target(f"<think>{thought}</think>{answer}{END_OF_TURN}", ResponseMode.THINK, choice)

