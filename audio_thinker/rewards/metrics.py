"""Step metrics of the Audio-Thinker reward: what one training step's responses did and earned.

:func:`compute_step_metrics` turns the whole step's :class:`~audio_thinker.rewards.combine.RewardBreakdown`
(every prompt x every rollout, padding excluded) plus each response's difficulty and length into
flat ``{name: float}`` metrics for verl's step ``metrics`` dict. Every name starts with ``prefix``
(``audio_thinker/`` by default):

=====================================  ==========================================================
``reward/overall``                      mean overall reward R (responses that got one: masked
                                        responses excluded, as for every ``reward/*`` mean)
``reward/accuracy_term``                mean R_a (ATAR, or accuracy 1/0 in ``accuracy`` mode)
``reward/consistency``                  mean R_c (an unparseable judgement counts 0)
``reward/consistency_gated``            mean R_c' (R_c for correct answers, else 0)
``reward/format``                       mean R_f
``reward/think_quality``                mean R_t (an unparseable judgement counts 0)
``think_ratio``                         lambda: share of responses counted as THINK (malformed
                                        responses containing ``<think>`` included)
``gamma_think`` / ``gamma_nothink``     the annealed soft-penalty factors g_t / g_n
``format_failure_rate``                 share of MALFORMED responses
``accuracy``                            share of correct responses
``accuracy/think``, ``accuracy/no_think``  accuracy within each well-formed mode
``judge/{consistency,quality}_failures``  judgements without a verdict (unparseable + unavailable)
``judge/{consistency,quality}_unparseable``  the judge answered, not with an allowed value
                                        (counted as the worst verdict)
``judge/{consistency,quality}_unavailable``  no answer after the retries (the response is masked)
``judge/unparseable_fraction``          unparseable judgements / judgements asked for (both kinds)
``judge/{consistency,quality}_judged``  THINK responses sent to each judge
``masked_responses``                    responses masked out of the policy loss (no reward)
``masked_fraction``                     masked responses / N
``think_rate``                          share of well-formed THINK responses
``mode_rate/{think,no_think,malformed}``  share of each mode
``think_rate/difficulty/{d}``           THINK share among responses to prompts of difficulty d
``accuracy/difficulty/{d}``             accuracy among responses to prompts of difficulty d
``responses/difficulty/{d}``            number of responses of difficulty d
``response_length/mean``                mean response length in tokens
``response_length/{mode}/mean``         mean response length within each mode
``responses``                           number of responses scored (N, masked ones included)
=====================================  ==========================================================

A rate over an empty group (e.g. ``accuracy/think`` when nobody thought) is NaN, so loggers show
"no data" instead of a fake 0. Responses without a difficulty are grouped under ``unknown``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from audio_thinker.rewards.combine import RewardBreakdown, masked_mean
from audio_thinker.rewards.parsing import ResponseMode

#: difficulty label used for responses whose row has none
UNKNOWN_DIFFICULTY = "unknown"


def _difficulty_labels(difficulties: Sequence[str | None], n: int) -> np.ndarray:
    if len(difficulties) != n:
        raise ValueError(f"{n} responses but {len(difficulties)} difficulties")
    labels = [str(d).strip() if d is not None else "" for d in difficulties]
    return np.array([label or UNKNOWN_DIFFICULTY for label in labels], dtype=object)


def compute_step_metrics(
    breakdown: RewardBreakdown,
    *,
    difficulties: Sequence[str | None],
    response_lengths: Sequence[int] | np.ndarray,
    prefix: str = "audio_thinker/",
) -> dict[str, float]:
    """Metrics of one step's rewards; ``difficulties[i]`` / ``response_lengths[i]`` belong to response i.

    >>> from audio_thinker.rewards.combine import RewardConfig, RewardMode, compute_rewards, score_response
    >>> texts = ["<think>up</think><answer>high</answer>", "<answer>low</answer>", "high"]
    >>> scores = [score_response(t, gold="high", choices=["high", "low"]) for t in texts]
    >>> breakdown = compute_rewards(
    ...     parsed=[s.parsed for s in scores], is_correct=[s.correct for s in scores],
    ...     step=1, total_steps=10, config=RewardConfig(mode=RewardMode.ATAR))
    >>> m = compute_step_metrics(breakdown, difficulties=["easy", "easy", None], response_lengths=[9, 4, 1])
    >>> m["audio_thinker/think_rate"], m["audio_thinker/think_rate/difficulty/easy"]
    (0.3333333333333333, 0.5)
    >>> m["audio_thinker/response_length/think/mean"], round(m["audio_thinker/format_failure_rate"], 4)
    (9.0, 0.3333)
    >>> m["audio_thinker/responses/difficulty/unknown"]
    1.0
    """
    n = breakdown.overall.size
    lengths = np.asarray(response_lengths, dtype=np.float64)
    if lengths.shape != (n,):
        raise ValueError(f"{n} responses but response_lengths has shape {lengths.shape}")
    labels = _difficulty_labels(difficulties, n)
    modes = np.array([m.value for m in breakdown.modes], dtype=object)
    think = modes == ResponseMode.THINK.value

    out: dict[str, float] = dict(breakdown.metrics(prefix=prefix))
    extra: dict[str, float] = {
        "think_rate": float(think.mean()),
        "response_length/mean": float(lengths.mean()),
        "responses": float(n),
    }
    for mode in ResponseMode:
        in_mode = modes == mode.value
        extra[f"mode_rate/{mode.value}"] = float(in_mode.mean())
        extra[f"response_length/{mode.value}/mean"] = masked_mean(lengths, in_mode)
    for label in sorted(set(labels.tolist())):
        in_group = labels == label
        extra[f"think_rate/difficulty/{label}"] = float(think[in_group].mean())
        extra[f"accuracy/difficulty/{label}"] = float(breakdown.is_correct[in_group].mean())
        extra[f"responses/difficulty/{label}"] = float(in_group.sum())
    out.update({prefix + key: value for key, value in extra.items()})
    return out
