"""ATAR: the adaptive think accuracy reward, balanced over the batch and annealed (DESIGN.md s.3).

Base values: think+correct ``+1``, think+wrong ``0``, no-think+correct ``+2``, no-think+wrong
``-1``. With ``lambda`` the share of THINK responses among the whole batch (all prompts x all
rollouts of a step) and ``p = min(step / T, 1)``::

    g_t = exp(-lambda * (1 - p))          g_n = exp(-(1 - lambda) * (1 - p))
    think,    correct:  g_t               think,    wrong:  -(1 - g_t)
    no-think, correct:  2 g_n             no-think, wrong:  -g_n - 2 (1 - g_n)

The over-represented mode gets the smaller gamma, so its rewards shrink (and its penalties grow)
early in training; at ``p = 1`` both gammas are 1 and the rewards equal the base values.

>>> atar_rewards([True, False], [True, True], step=10, total_steps=10).tolist()
[1.0, 2.0]
>>> g_t, g_n = soft_penalty_factors(0.75, step=0, total_steps=100)
>>> round(g_t, 4), round(g_n, 4)
(0.4724, 0.7788)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

#: (think, correct) -> base reward
BASE_VALUES: dict[tuple[bool, bool], float] = {
    (True, True): 1.0,
    (True, False): 0.0,
    (False, True): 2.0,
    (False, False): -1.0,
}


def annealing_progress(step: int, total_steps: int) -> float:
    """``p = min(step / T, 1)``; steps beyond ``T`` clamp to 1.

    >>> annealing_progress(5, 10), annealing_progress(50, 10)
    (0.5, 1.0)
    """
    if total_steps <= 0:
        raise ValueError(f"total_steps must be positive, got {total_steps}")
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    return min(step / total_steps, 1.0)


def soft_penalty_factors(think_ratio: float, step: int, total_steps: int) -> tuple[float, float]:
    """The annealed soft-penalty factors ``(g_think, g_nothink)`` for think ratio ``lambda``."""
    if not 0.0 <= think_ratio <= 1.0 or math.isnan(think_ratio):
        raise ValueError(f"think_ratio must lie in [0, 1], got {think_ratio}")
    remaining = 1.0 - annealing_progress(step, total_steps)
    return math.exp(-think_ratio * remaining), math.exp(-(1.0 - think_ratio) * remaining)


def _as_flags(name: str, values: Sequence[bool] | np.ndarray) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one entry per response), got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name} is empty: ATAR needs the whole batch of responses (N >= 1)")
    if array.dtype != np.bool_:
        if not np.isin(array, (0, 1)).all():
            raise ValueError(f"{name} must hold booleans, got {array.tolist()[:8]}...")
        array = array.astype(bool)
    return array


def _check_pair(is_think: Sequence[bool], is_correct: Sequence[bool]) -> tuple[np.ndarray, np.ndarray]:
    think = _as_flags("is_think", is_think)
    correct = _as_flags("is_correct", is_correct)
    if think.shape != correct.shape:
        raise ValueError(f"is_think has {think.size} entries but is_correct has {correct.size}")
    return think, correct


def think_ratio(is_think: Sequence[bool] | np.ndarray) -> float:
    """``lambda``: the share of True in ``is_think`` (the whole batch)."""
    return float(_as_flags("is_think", is_think).mean())


def atar_from_factors(
    think: np.ndarray, correct: np.ndarray, *, g_think: float, g_nothink: float
) -> np.ndarray:
    """ATAR for boolean arrays given the factors; ``float64[N]``."""
    return np.select(
        [think & correct, think & ~correct, ~think & correct],
        [g_think, g_think - 1.0, 2.0 * g_nothink],
        default=-g_nothink - 2.0 * (1.0 - g_nothink),
    ).astype(np.float64)


def atar_rewards(
    is_think: Sequence[bool] | np.ndarray,
    is_correct: Sequence[bool] | np.ndarray,
    *,
    step: int,
    total_steps: int,
) -> np.ndarray:
    """Batch-balanced, annealed ATAR for every response of the batch; ``float64[N]``.

    ``is_think[i]`` is response i's mode for the think ratio (malformed responses count as THINK
    when they contain ``<think>``); ``is_correct[i]`` its correctness (malformed: False).
    """
    think, correct = _check_pair(is_think, is_correct)
    g_t, g_n = soft_penalty_factors(float(think.mean()), step, total_steps)
    return atar_from_factors(think, correct, g_think=g_t, g_nothink=g_n)


def static_atar_rewards(
    is_think: Sequence[bool] | np.ndarray, is_correct: Sequence[bool] | np.ndarray
) -> np.ndarray:
    """Ablation: ATAR base values with no balancing and no annealing; ``float64[N]``.

    >>> static_atar_rewards([True, True, False, False], [True, False, True, False]).tolist()
    [1.0, 0.0, 2.0, -1.0]
    """
    think, correct = _check_pair(is_think, is_correct)
    return atar_from_factors(think, correct, g_think=1.0, g_nothink=1.0)


def accuracy_rewards(is_correct: Sequence[bool] | np.ndarray) -> np.ndarray:
    """Ablation (GRPO baseline rows): 1 for correct, 0 for wrong; ``float64[N]``."""
    return _as_flags("is_correct", is_correct).astype(np.float64)
