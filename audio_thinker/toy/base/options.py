"""The hearing base's options and its TRUE-answer targets (pure: standard library only).

See :mod:`audio_thinker.toy.base` for the design. Unlike the warm-start's targets
(:mod:`audio_thinker.toy.warmstart.targets`), these carry the GOLD answer, in both response formats.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from audio_thinker.rewards.parsing import ResponseMode
from audio_thinker.toy.warmstart.targets import END_OF_TURN, question_kind

__all__ = [
    "BaseOptions", "DEFAULT_OPTIONS", "FORMAT_VERSION", "RL_DATA_SEED", "SCALED_OPTIONS", "Target",
    "base_rationale", "build_base_target", "response_text",
]

#: Bumped when the meaning of the options or the target format changes (old outputs are rebuilt).
FORMAT_VERSION = 1
#: The seed of the RL train/val clips (``toy.synthetic_data`` is generated with it): the
#: pre-training split must never use it, the evaluation uses its validation split.
RL_DATA_SEED = 0


@dataclass(frozen=True)
class BaseOptions:
    """Every knob of a base build (all of them are recorded in the manifest).

    Data: ``clips`` pre-training clips of the synthetic tasks drawn with ``pretrain_seed`` (split
    ``train``; never :data:`RL_DATA_SEED`), synthesized in memory. Model: the tiny Qwen2-Audio of
    :mod:`audio_thinker.toy.tiny` initialised with ``seed``, its text model resized to ``hidden_size``
    x ``num_layers`` (``hidden_size // 32`` heads of 32, one KV head) with ``intermediate_size``.
    Training: ``steps`` AdamW steps of ``batch_size`` (clip, target) pairs; the language model at
    ``lr``, the audio projector at ``projector_lr``, the audio encoder at ``encoder_lr`` (0: frozen,
    its outputs computed once per clip); linear warm-up over ``warmup_fraction`` then linear decay to
    10 %. ``think_fraction`` of the targets are THINK. Evaluation: ``eval_clips`` clips of the RL
    data's validation split (seed :data:`RL_DATA_SEED`), scored by choice log-likelihood.
    """

    seed: int = 0
    pretrain_seed: int = 1000
    clips: int = 2000
    hidden_size: int = 64
    num_layers: int = 2
    intermediate_size: int = 128
    steps: int = 1000
    batch_size: int = 16
    lr: float = 3e-3
    projector_lr: float = 3e-3
    encoder_lr: float = 1e-3
    warmup_fraction: float = 0.05
    weight_decay: float = 0.0
    think_fraction: float = 0.5
    eval_clips: int = 800

    def __post_init__(self) -> None:
        positive = {"clips": self.clips, "hidden_size": self.hidden_size, "num_layers": self.num_layers,
                    "intermediate_size": self.intermediate_size, "steps": self.steps,
                    "batch_size": self.batch_size, "lr": self.lr, "eval_clips": self.eval_clips}
        for name, value in positive.items():
            if not value > 0:
                raise ValueError(f"{name} must be positive, got {value!r}")
        if self.hidden_size % 32:
            raise ValueError(f"hidden_size must be a multiple of 32 (heads of 32), got {self.hidden_size}")
        if self.projector_lr < 0 or self.encoder_lr < 0 or self.weight_decay < 0:
            raise ValueError("projector_lr, encoder_lr and weight_decay must be >= 0 (0 freezes)")
        if self.pretrain_seed == RL_DATA_SEED or self.pretrain_seed < 0:
            raise ValueError(f"pretrain_seed must be >= 0 and differ from the RL data seed {RL_DATA_SEED} "
                             f"(the pre-training split never holds RL clips), got {self.pretrain_seed}")
        if not 0.0 <= self.think_fraction <= 1.0:
            raise ValueError(f"think_fraction must be in [0, 1], got {self.think_fraction!r}")
        if not 0.0 <= self.warmup_fraction < 1.0:
            raise ValueError(f"warmup_fraction must be in [0, 1), got {self.warmup_fraction!r}")

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any]) -> BaseOptions:
        """Build from keyword options, naming any unknown key."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise TypeError(f"unknown base-model options {unknown}: use {sorted(known)}")
        return cls(**options)

    def replace(self, **changes: Any) -> BaseOptions:
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


DEFAULT_OPTIONS = BaseOptions()
#: The scaled-down build the rebuild test runs (same recipe, fewer clips and steps; skill appears only
#: after ~450 steps of 16, so it takes ~2 minutes: slow tier).
SCALED_OPTIONS = BaseOptions(clips=800, steps=700, batch_size=16, eval_clips=160)


@dataclass(frozen=True)
class Target:
    """One supervised response: its text (ending in :data:`END_OF_TURN`), mode and answer."""

    text: str
    mode: ResponseMode
    choice: str


def base_rationale(info: Mapping[str, Any], answer: str) -> str:
    """A template rationale naming the question type and ending in ``answer``.

    Kept to about 20 tokens of the tiny tokenizer so that a THINK response fits the embedded
    default's 48-token response budget (the four-part rationale of
    :func:`audio_thinker.data.template_cot.template_rationale` takes 60-85 tokens there).

    >>> base_rationale({"task": "pitch_high_low"}, "low")
    'The question is about pitch high low. The audio matches low.'
    """
    return f"The question is about {question_kind(info)}. The audio matches {answer}."


def response_text(info: Mapping[str, Any], answer: str, *, think: bool) -> str:
    """The response answering ``answer`` in the THINK or NO-THINK format, end-of-turn included.

    >>> response_text({"task": "louder_half"}, "the first half", think=False)
    '<answer>the first half</answer><|im_end|>'
    """
    tail = f"<answer>{answer}</answer>{END_OF_TURN}"
    return f"<think>{base_rationale(info, answer)}</think>{tail}" if think else tail


def build_base_target(info: Mapping[str, Any], rng: random.Random, *, think_fraction: float) -> Target:
    """A TRUE-answer target for the row whose ``extra_info`` is ``info`` (THINK with probability
    ``think_fraction``).

    >>> t = build_base_target({"choices": ["high", "low"], "answer": "low", "task": "pitch"}, random.Random(0),
    ...                       think_fraction=1.0)
    >>> t.mode.value, t.text
    ('think', '<think>The question is about pitch. The audio matches low.</think><answer>low</answer><|im_end|>')
    """
    answer = str(info["answer"])
    if answer not in [str(c) for c in info["choices"]]:
        raise ValueError(f"answer {answer!r} is not one of the choices {list(info['choices'])!r}")
    think = rng.random() < think_fraction
    mode = ResponseMode.THINK if think else ResponseMode.NO_THINK
    return Target(response_text(info, answer, think=think), mode, answer)
