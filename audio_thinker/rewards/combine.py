"""The overall Audio-Thinker reward and its components for one batch (DESIGN.md section 3).

For response i of the N responses of a step::

    R = R_a * (1 + w_c * R_c') + w_f * R_f + w_t * R_t        (w_c = 0.5, w_f = 0.5, w_t = 1)

* ``R_f``: 1 for THINK / NO-THINK, 0 for MALFORMED.
* ``R_a``: ATAR (batch-balanced and annealed; static base values when ``balance=False``), or
  plain accuracy 1/0 in ``accuracy`` mode.
* ``R_c``: the consistency judge's 1/0 for THINK responses; 1 for NO-THINK; 0 for MALFORMED.
  ``R_c' = R_c`` if the answer is correct else 0.
* ``R_t``: the think-quality judge's score for THINK responses; NO-THINK responses get the mean
  ``R_t`` of the batch's THINK responses (0 if none); MALFORMED responses get 0.
* A failed judgement (``None``: timeout, crash, unparseable) takes the batch mean of the
  successful judgements of the same kind (``fallback_if_all_fail`` when none succeeded) and is
  counted in the metrics.

Reward modes (paper Table 1 ablations): ``accuracy`` (R_a = accuracy, no judge terms), ``atar``,
``atar_cr`` (+ consistency), ``atar_cr_tr`` (+ consistency + think quality). Terms a mode does
not use are 0, so the formula above holds in every mode.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from audio_thinker.rewards.accuracy import is_correct as _is_correct
from audio_thinker.rewards.atar import (
    accuracy_rewards,
    atar_from_factors,
    soft_penalty_factors,
)
from audio_thinker.rewards.parsing import ParsedResponse, ResponseMode, parse_response


class RewardMode(str, enum.Enum):
    """Which reward terms are active; ``.value`` (also ``str()``) is the config string."""

    ACCURACY = "accuracy"
    ATAR = "atar"
    ATAR_CR = "atar_cr"
    ATAR_CR_TR = "atar_cr_tr"

    def __str__(self) -> str:
        return self.value

    @property
    def uses_consistency(self) -> bool:
        return self in (RewardMode.ATAR_CR, RewardMode.ATAR_CR_TR)

    @property
    def uses_quality(self) -> bool:
        return self is RewardMode.ATAR_CR_TR

    @property
    def uses_judge(self) -> bool:
        return self.uses_consistency or self.uses_quality


@dataclass(frozen=True)
class RewardWeights:
    """Weights of the overall reward: ``R = R_a (1 + consistency R_c') + format R_f + think_quality R_t``."""

    consistency: float = 0.5
    format: float = 0.5
    think_quality: float = 1.0


@dataclass(frozen=True)
class RewardConfig:
    """How a batch is rewarded; also the ``audio_thinker.reward`` config section (its schema and docs).

    ``mode`` may be given as its string; it is stored as a :class:`RewardMode`.
    """

    #: which terms are active: accuracy | atar | atar_cr | atar_cr_tr (paper Table 1 rows)
    mode: RewardMode = RewardMode.ATAR
    #: false: static ATAR (base values, no batch balancing, no annealing)
    balance: bool = True
    #: annealing horizon T; null = trainer.total_training_steps (read by the trainer)
    anneal_steps: int | None = None
    #: the prompt lists options as A, B, ...: a bare letter then names an option (read by the
    #: reward manager when it scores a response)
    lettered_choices: bool = False
    #: value used for a judgement kind when every judgement of that kind failed in a batch
    fallback_if_all_fail: float = 0.0
    #: w_c, w_f, w_t in R = R_a (1 + w_c R_c') + w_f R_f + w_t R_t (keys consistency, format, think_quality)
    weights: RewardWeights = field(default_factory=RewardWeights)

    def __post_init__(self) -> None:
        object.__setattr__(self, "mode", RewardMode(self.mode))


@dataclass(frozen=True)
class RuleScore:
    """The per-response, judge-free part of the reward."""

    parsed: ParsedResponse
    correct: bool

    @property
    def format_reward(self) -> float:
        return 1.0 if self.parsed.well_formed else 0.0


def score_response(
    text: str, *, gold: str, choices: Sequence[str], lettered: bool = False
) -> RuleScore:
    """Parse one response and check its answer; malformed responses are incorrect.

    >>> score_response("<answer>high</answer>", gold="high", choices=["high", "low"]).correct
    True
    """
    parsed = parse_response(text)
    correct = parsed.well_formed and _is_correct(
        parsed.answer, gold=gold, choices=choices, lettered=lettered
    )
    return RuleScore(parsed=parsed, correct=correct)


@dataclass(frozen=True)
class RewardBreakdown:
    """Every component, one ``float64[N]`` array each, plus the batch scalars used."""

    accuracy: np.ndarray  # R_a
    consistency: np.ndarray  # R_c, after the failure fallback
    consistency_gated: np.ndarray  # R_c'
    format: np.ndarray  # R_f
    think_quality: np.ndarray  # R_t
    overall: np.ndarray  # R
    is_think: np.ndarray  # bool[N], the mode used for lambda
    is_correct: np.ndarray  # bool[N]
    modes: tuple[ResponseMode, ...]
    think_ratio: float
    g_think: float
    g_nothink: float
    consistency_failures: int
    quality_failures: int
    consistency_judged: int
    quality_judged: int

    def metrics(self, prefix: str = "audio_thinker/") -> dict[str, float]:
        """Batch means for logging (reward components, lambda, gammas, judge failures)."""
        think = np.array([m is ResponseMode.THINK for m in self.modes])
        no_think = np.array([m is ResponseMode.NO_THINK for m in self.modes])
        out = {
            "reward/overall": self.overall.mean(),
            "reward/accuracy_term": self.accuracy.mean(),
            "reward/consistency": self.consistency.mean(),
            "reward/consistency_gated": self.consistency_gated.mean(),
            "reward/format": self.format.mean(),
            "reward/think_quality": self.think_quality.mean(),
            "think_ratio": self.think_ratio,
            "gamma_think": self.g_think,
            "gamma_nothink": self.g_nothink,
            "format_failure_rate": 1.0 - self.format.mean(),
            "accuracy": self.is_correct.mean(),
            "accuracy/think": masked_mean(self.is_correct, think),
            "accuracy/no_think": masked_mean(self.is_correct, no_think),
            "judge/consistency_failures": float(self.consistency_failures),
            "judge/quality_failures": float(self.quality_failures),
            "judge/consistency_judged": float(self.consistency_judged),
            "judge/quality_judged": float(self.quality_judged),
        }
        return {prefix + k: float(v) for k, v in out.items()}


def masked_mean(values: np.ndarray, mask: np.ndarray) -> float:
    """Mean over ``mask`` (NaN when empty, so loggers show "no data", not a fake 0)."""
    return float(values[mask].mean()) if mask.any() else float("nan")


def _fill_judgements(
    values: Sequence[float | None] | None,
    judged: np.ndarray,
    *,
    kind: str,
    allowed: set[float] | None,
    fallback_if_all_fail: float,
) -> tuple[np.ndarray, int, int]:
    """Judge values for the judged rows with failures (None) replaced by the successes' mean.

    Returns ``(filled float64[N] (0 where not judged), failures, judged count)``.
    """
    n = judged.size
    if values is None:
        values = [None] * n
    if len(values) != n:
        raise ValueError(f"{kind} judgements: expected {n} entries, got {len(values)}")
    raw = np.full(n, np.nan)
    for i in np.flatnonzero(judged):
        value = values[i]
        if value is None:
            continue
        value = float(value)
        if allowed is not None and value not in allowed:
            raise ValueError(f"{kind} judgement {value!r} at row {i} is not one of {sorted(allowed)}")
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{kind} judgement {value!r} at row {i} is outside [0, 1]")
        raw[i] = value
    ok = judged & ~np.isnan(raw)
    failures = int(judged.sum() - ok.sum())
    fill = raw[ok].mean() if ok.any() else fallback_if_all_fail
    filled = np.where(judged, np.where(ok, raw, fill), 0.0)
    return filled, failures, int(judged.sum())


def compute_rewards(
    *,
    parsed: Sequence[ParsedResponse],
    is_correct: Sequence[bool],
    step: int,
    total_steps: int,
    config: RewardConfig,
    consistency: Sequence[int | None] | None = None,
    quality: Sequence[float | None] | None = None,
) -> RewardBreakdown:
    """Rewards for the whole batch (every prompt x every rollout of the step), as ``config`` says.

    ``consistency[i]`` / ``quality[i]`` are the judge verdicts for THINK responses (``None`` =
    failed); entries of other responses are ignored and may be ``None``. Omit both when the
    mode uses no judge.
    """
    n = len(parsed)
    if n == 0:
        raise ValueError("empty batch: rewards need at least one response")
    if len(is_correct) != n:
        raise ValueError(f"{n} parsed responses but {len(is_correct)} correctness flags")
    modes = tuple(p.mode for p in parsed)
    think = np.array([p.counts_as_think for p in parsed], dtype=bool)
    well_formed = np.array([p.well_formed for p in parsed], dtype=bool)
    correct = np.asarray(is_correct, dtype=bool) & well_formed
    judged = np.array([m is ResponseMode.THINK for m in modes], dtype=bool)
    no_think = np.array([m is ResponseMode.NO_THINK for m in modes], dtype=bool)
    lam = float(think.mean())

    mode = config.mode
    if mode is RewardMode.ACCURACY:
        g_t = g_n = 1.0
        r_a = accuracy_rewards(correct)
    else:
        g_t, g_n = soft_penalty_factors(lam, step, total_steps) if config.balance else (1.0, 1.0)
        r_a = atar_from_factors(think, correct, g_think=g_t, g_nothink=g_n)

    r_c, c_fail, c_judged = np.zeros(n), 0, 0
    if mode.uses_consistency:
        r_c, c_fail, c_judged = _fill_judgements(
            consistency, judged, kind="consistency", allowed={0.0, 1.0},
            fallback_if_all_fail=config.fallback_if_all_fail,
        )
        r_c[no_think] = 1.0
    r_c_gated = np.where(correct, r_c, 0.0)

    r_t, q_fail, q_judged = np.zeros(n), 0, 0
    if mode.uses_quality:
        r_t, q_fail, q_judged = _fill_judgements(
            quality, judged, kind="quality", allowed=None,
            fallback_if_all_fail=config.fallback_if_all_fail,
        )
        r_t[no_think] = r_t[judged].mean() if judged.any() else 0.0

    r_f = well_formed.astype(np.float64)
    w = config.weights
    overall = r_a * (1.0 + w.consistency * r_c_gated) + w.format * r_f + w.think_quality * r_t
    return RewardBreakdown(
        accuracy=r_a, consistency=r_c, consistency_gated=r_c_gated, format=r_f,
        think_quality=r_t, overall=overall, is_think=think, is_correct=correct, modes=modes,
        think_ratio=lam, g_think=g_t, g_nothink=g_n, consistency_failures=c_fail,
        quality_failures=q_fail, consistency_judged=c_judged, quality_judged=q_judged,
    )
