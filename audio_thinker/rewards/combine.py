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
* Judge failure never pays more than an honest verdict
  (:class:`~audio_thinker.rewards.verdict.JudgeFailure`). An *unparseable* judgement (the judge
  answered, but not with an allowed value) counts as the worst verdict, ``R_c = 0`` / ``R_t = 0``,
  everywhere (the NO-THINK mean of ``R_t`` included). An *unavailable* judgement (``None``: no
  answer after the retries) of a kind the mode uses *masks* its THINK response: the response gets
  no reward (``overall`` and its judge terms are NaN, :attr:`RewardBreakdown.masked` is set; the
  trainer keeps it out of the policy loss and out of its GRPO group's statistics) and its verdicts
  enter no mean. It still counts for lambda: whether the policy thought does not depend on the
  judge. Both are counted in the metrics; neither raises.

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
from audio_thinker.rewards.verdict import JudgeFailure, judgement_failure

#: the value an unparseable judgement counts as, for both kinds (the worst verdict: R_c = 0, R_t = 0)
WORST_VERDICT = 0.0


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

    def __post_init__(self) -> None:
        for name in ("consistency", "format", "think_quality"):
            value = getattr(self, name)
            if not np.isfinite(value):  # NaN would make every reward NaN
                raise ValueError(f"{name}={value} must be a finite number (default {_DEFAULT_WEIGHTS[name]})")


_DEFAULT_WEIGHTS = {"consistency": 0.5, "format": 0.5, "think_quality": 1.0}


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
    """Every component, one ``float64[N]`` array each, plus the batch scalars used.

    Rows of :attr:`masked` responses have no reward: ``overall`` and the judge terms are NaN there.
    """

    accuracy: np.ndarray  # R_a
    consistency: np.ndarray  # R_c (an unparseable judgement counts 0; NaN where masked)
    consistency_gated: np.ndarray  # R_c'
    format: np.ndarray  # R_f
    think_quality: np.ndarray  # R_t (an unparseable judgement counts 0; NaN where masked)
    overall: np.ndarray  # R (NaN where masked)
    is_think: np.ndarray  # bool[N], the mode used for lambda
    is_correct: np.ndarray  # bool[N]
    masked: np.ndarray  # bool[N]: THINK responses with an unavailable judgement (no reward this step)
    modes: tuple[ResponseMode, ...]
    think_ratio: float
    g_think: float
    g_nothink: float
    consistency_unparseable: int
    consistency_unavailable: int
    quality_unparseable: int
    quality_unavailable: int
    consistency_judged: int
    quality_judged: int

    @property
    def consistency_failures(self) -> int:
        """Consistency judgements without a verdict (unparseable + unavailable)."""
        return self.consistency_unparseable + self.consistency_unavailable

    @property
    def quality_failures(self) -> int:
        """Think-quality judgements without a verdict (unparseable + unavailable)."""
        return self.quality_unparseable + self.quality_unavailable

    def metrics(self, prefix: str = "audio_thinker/") -> dict[str, float]:
        """Batch means for logging (reward components, lambda, gammas, judge failures, masking).

        The ``reward/*`` means are over the responses that got a reward (masked ones excluded);
        every other rate is over all N responses.
        """
        think = np.array([m is ResponseMode.THINK for m in self.modes])
        no_think = np.array([m is ResponseMode.NO_THINK for m in self.modes])
        rewarded = ~self.masked
        judgements = self.consistency_judged + self.quality_judged
        unparseable = self.consistency_unparseable + self.quality_unparseable
        out = {
            "reward/overall": masked_mean(self.overall, rewarded),
            "reward/accuracy_term": masked_mean(self.accuracy, rewarded),
            "reward/consistency": masked_mean(self.consistency, rewarded),
            "reward/consistency_gated": masked_mean(self.consistency_gated, rewarded),
            "reward/format": masked_mean(self.format, rewarded),
            "reward/think_quality": masked_mean(self.think_quality, rewarded),
            "think_ratio": self.think_ratio,
            "gamma_think": self.g_think,
            "gamma_nothink": self.g_nothink,
            "format_failure_rate": 1.0 - self.format.mean(),
            "accuracy": self.is_correct.mean(),
            "accuracy/think": masked_mean(self.is_correct, think),
            "accuracy/no_think": masked_mean(self.is_correct, no_think),
            "judge/consistency_failures": float(self.consistency_failures),
            "judge/quality_failures": float(self.quality_failures),
            "judge/consistency_unparseable": float(self.consistency_unparseable),
            "judge/quality_unparseable": float(self.quality_unparseable),
            "judge/consistency_unavailable": float(self.consistency_unavailable),
            "judge/quality_unavailable": float(self.quality_unavailable),
            "judge/unparseable_fraction": unparseable / judgements if judgements else float("nan"),
            "judge/consistency_judged": float(self.consistency_judged),
            "judge/quality_judged": float(self.quality_judged),
            "masked_responses": float(self.masked.sum()),
            "masked_fraction": self.masked.mean(),
        }
        return {prefix + k: float(v) for k, v in out.items()}


def masked_mean(values: np.ndarray, mask: np.ndarray) -> float:
    """Mean over ``mask`` (NaN when empty, so loggers show "no data", not a fake 0)."""
    return float(values[mask].mean()) if mask.any() else float("nan")


@dataclass(frozen=True)
class Judgements:
    """One judgement kind over a batch, read by :func:`read_judgements`."""

    #: float64[N]: the verdict; WORST_VERDICT where unparseable; NaN where unavailable or not judged
    values: np.ndarray
    #: bool[N]: judged rows whose judge answered with no allowed value
    unparseable: np.ndarray
    #: bool[N]: judged rows with no answer
    unavailable: np.ndarray


def read_judgements(
    values: Sequence[float | JudgeFailure | None] | None,
    judged: np.ndarray,
    *,
    kind: str,
    allowed: set[float] | None = None,
) -> Judgements:
    """The judgements of the ``judged`` rows, each a verdict, unparseable or unavailable.

    ``values`` omitted: every judged row is unavailable. Entries of rows not judged are ignored.
    A verdict outside [0, 1] (or not in ``allowed``) is a caller bug and raises ``ValueError``.

    >>> j = read_judgements([1, JudgeFailure.UNPARSEABLE, None, "x"], np.array([1, 1, 1, 0], bool),
    ...                     kind="consistency", allowed={0.0, 1.0})
    >>> j.values.tolist()[:2], j.unparseable.tolist(), j.unavailable.tolist()
    ([1.0, 0.0], [False, True, False, False], [False, False, True, False])
    """
    n = judged.size
    if values is None:
        values = [None] * n
    if len(values) != n:
        raise ValueError(f"{kind} judgements: expected {n} entries, got {len(values)}")
    out = np.full(n, np.nan)
    unparseable = np.zeros(n, dtype=bool)
    unavailable = np.zeros(n, dtype=bool)
    for i in np.flatnonzero(judged):
        failure = judgement_failure(values[i])
        if failure is JudgeFailure.UNAVAILABLE:
            unavailable[i] = True
            continue
        if failure is JudgeFailure.UNPARSEABLE:
            unparseable[i] = True
            out[i] = WORST_VERDICT
            continue
        value = float(values[i])
        if allowed is not None and value not in allowed:
            raise ValueError(f"{kind} judgement {value!r} at row {i} is not one of {sorted(allowed)}")
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{kind} judgement {value!r} at row {i} is outside [0, 1]")
        out[i] = value
    return Judgements(values=out, unparseable=unparseable, unavailable=unavailable)


def compute_rewards(
    *,
    parsed: Sequence[ParsedResponse],
    is_correct: Sequence[bool],
    step: int,
    total_steps: int,
    config: RewardConfig,
    consistency: Sequence[int | JudgeFailure | None] | None = None,
    quality: Sequence[float | JudgeFailure | None] | None = None,
) -> RewardBreakdown:
    """Rewards for the whole batch (every prompt x every rollout of the step), as ``config`` says.

    ``consistency[i]`` / ``quality[i]`` are the judgements of THINK responses: a verdict,
    :attr:`JudgeFailure.UNPARSEABLE` (counts as the worst verdict) or ``None`` /
    :attr:`JudgeFailure.UNAVAILABLE` (masks the response; see the module docstring). Entries of
    other responses are ignored and may be ``None``. Omit both when the mode uses no judge.
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

    none = np.zeros(n, dtype=bool)
    c = q = Judgements(values=np.full(n, np.nan), unparseable=none, unavailable=none)
    if mode.uses_consistency:
        c = read_judgements(consistency, judged, kind="consistency", allowed={0.0, 1.0})
    if mode.uses_quality:
        q = read_judgements(quality, judged, kind="quality")
    masked = c.unavailable | q.unavailable
    rewarded_think = judged & ~masked

    r_c = np.zeros(n)
    if mode.uses_consistency:
        r_c[rewarded_think] = c.values[rewarded_think]
        r_c[no_think] = 1.0
    r_c_gated = np.where(correct, r_c, 0.0)

    r_t = np.zeros(n)
    if mode.uses_quality:
        r_t[rewarded_think] = q.values[rewarded_think]
        r_t[no_think] = q.values[rewarded_think].mean() if rewarded_think.any() else 0.0

    r_f = well_formed.astype(np.float64)
    w = config.weights
    overall = r_a * (1.0 + w.consistency * r_c_gated) + w.format * r_f + w.think_quality * r_t
    for term in (r_c, r_c_gated, r_t, overall):
        term[masked] = np.nan
    c_judged = int(judged.sum()) if mode.uses_consistency else 0
    q_judged = int(judged.sum()) if mode.uses_quality else 0
    return RewardBreakdown(
        accuracy=r_a, consistency=r_c, consistency_gated=r_c_gated, format=r_f,
        think_quality=r_t, overall=overall, is_think=think, is_correct=correct, masked=masked,
        modes=modes, think_ratio=lam, g_think=g_t, g_nothink=g_n,
        consistency_unparseable=int(c.unparseable.sum()), consistency_unavailable=int(c.unavailable.sum()),
        quality_unparseable=int(q.unparseable.sum()), quality_unavailable=int(q.unavailable.sum()),
        consistency_judged=c_judged, quality_judged=q_judged,
    )
