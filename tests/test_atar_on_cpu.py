"""ATAR on a grid of (lambda, step, T), its limits, and its properties."""

import itertools
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from audio_thinker.rewards.atar import (
    BASE_VALUES,
    accuracy_rewards,
    annealing_progress,
    atar_rewards,
    soft_penalty_factors,
    static_atar_rewards,
    think_ratio,
)


def reference_atar(think, correct, step, total):
    """Loop version written straight from DESIGN.md section 3."""
    lam = sum(think) / len(think)
    p = min(step / total, 1.0)
    g_t = math.exp(-lam * (1 - p))
    g_n = math.exp(-(1 - lam) * (1 - p))
    out = []
    for t, c in zip(think, correct):
        if t and c:
            out.append(g_t)
        elif t:
            out.append(-(1 - g_t))
        elif c:
            out.append(2 * g_n)
        else:
            out.append(-g_n - 2 * (1 - g_n))
    return out


def batch_with_ratio(n_think, n_total):
    """A batch with every (mode, correctness) cell present where possible."""
    think = [i < n_think for i in range(n_total)]
    correct = [i % 2 == 0 for i in range(n_total)]
    return think, correct


@pytest.mark.parametrize(
    ("n_think", "step", "total"),
    list(itertools.product([0, 1, 4, 8, 12, 15, 16], [0, 1, 50, 99, 100, 101, 10_000], [1, 100])),
)
def test_grid_matches_reference(n_think, step, total):
    think, correct = batch_with_ratio(n_think, 16)
    expected = reference_atar(think, correct, step, total)
    got = atar_rewards(think, correct, step=step, total_steps=total)
    assert got.dtype == np.float64 and got.shape == (16,)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("lam", [0.0, 0.25, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("step", [100, 101, 5000])
def test_at_or_after_T_equals_base_values(lam, step):
    g_t, g_n = soft_penalty_factors(lam, step=step, total_steps=100)
    assert g_t == 1.0 and g_n == 1.0
    think = [True, True, False, False]
    correct = [True, False, True, False]
    got = atar_rewards(think, correct, step=step, total_steps=100)
    assert got.tolist() == [BASE_VALUES[k] for k in zip(think, correct)]
    assert got.tolist() == static_atar_rewards(think, correct).tolist()


def test_step_zero_has_full_penalty():
    g_t, g_n = soft_penalty_factors(0.3, step=0, total_steps=10)
    assert g_t == pytest.approx(math.exp(-0.3)) and g_n == pytest.approx(math.exp(-0.7))


def test_all_think_batch_penalises_think_only():
    think = [True] * 4
    correct = [True, False, True, False]
    g_t, g_n = soft_penalty_factors(1.0, step=0, total_steps=10)
    assert g_n == 1.0 and g_t == pytest.approx(math.exp(-1))
    got = atar_rewards(think, correct, step=0, total_steps=10)
    np.testing.assert_allclose(got, [g_t, g_t - 1, g_t, g_t - 1])


def test_all_no_think_batch_penalises_no_think_only():
    think = [False] * 4
    correct = [True, False, True, False]
    g_t, g_n = soft_penalty_factors(0.0, step=0, total_steps=10)
    assert g_t == 1.0 and g_n == pytest.approx(math.exp(-1))
    got = atar_rewards(think, correct, step=0, total_steps=10)
    np.testing.assert_allclose(got, [2 * g_n, -g_n - 2 * (1 - g_n)] * 2)


def test_empty_batch_is_a_clear_error():
    with pytest.raises(ValueError, match="empty"):
        atar_rewards([], [], step=0, total_steps=10)
    with pytest.raises(ValueError, match="empty"):
        think_ratio([])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"step": 0, "total_steps": 0}, "total_steps must be positive"),
        ({"step": -1, "total_steps": 10}, "step must be >= 0"),
    ],
)
def test_bad_schedule(kwargs, message):
    with pytest.raises(ValueError, match=message):
        atar_rewards([True], [True], **kwargs)


def test_bad_inputs():
    with pytest.raises(ValueError, match="1 entries but is_correct has 2"):
        atar_rewards([True], [True, False], step=0, total_steps=1)
    with pytest.raises(ValueError, match="booleans"):
        atar_rewards([0.5], [True], step=0, total_steps=1)
    with pytest.raises(ValueError, match="1-D"):
        atar_rewards([[True]], [[True]], step=0, total_steps=1)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        soft_penalty_factors(1.5, step=0, total_steps=1)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        soft_penalty_factors(float("nan"), step=0, total_steps=1)


def test_integer_flags_accepted():
    np.testing.assert_array_equal(
        atar_rewards([1, 0], [1, 1], step=1, total_steps=1), atar_rewards([True, False], [True, True], step=1, total_steps=1)
    )


def test_ablation_variants():
    assert accuracy_rewards([True, False, True]).tolist() == [1.0, 0.0, 1.0]
    assert static_atar_rewards([True, True, False, False], [True, False, True, False]).tolist() == [1.0, 0.0, 2.0, -1.0]
    assert annealing_progress(3, 4) == 0.75 and annealing_progress(9, 4) == 1.0


batches = st.integers(min_value=1, max_value=64).flatmap(
    lambda n: st.tuples(st.lists(st.booleans(), min_size=n, max_size=n), st.lists(st.booleans(), min_size=n, max_size=n))
)
schedules = st.tuples(st.integers(min_value=0, max_value=3000), st.integers(min_value=1, max_value=2000))


@given(batches, schedules)
def test_reward_monotone_in_correctness_within_a_mode(batch, schedule):
    think, correct = batch
    step, total = schedule
    rewards = atar_rewards(think, correct, step=step, total_steps=total)
    for mode in (True, False):
        right = [r for r, t, c in zip(rewards, think, correct) if t is mode and c]
        wrong = [r for r, t, c in zip(rewards, think, correct) if t is mode and not c]
        if right and wrong:
            assert min(right) > max(wrong)
    # flipping one wrong answer to right never lowers its reward (lambda is unchanged)
    for i, c in enumerate(correct):
        if not c:
            flipped = list(correct)
            flipped[i] = True
            assert atar_rewards(think, flipped, step=step, total_steps=total)[i] > rewards[i]


@given(batches, st.integers(min_value=1, max_value=2000), st.integers(min_value=0, max_value=5))
def test_at_or_after_T_equals_base(batch, total, extra):
    think, correct = batch
    got = atar_rewards(think, correct, step=total + extra, total_steps=total)
    assert got.tolist() == [BASE_VALUES[(t, c)] for t, c in zip(think, correct)]


@given(batches, schedules)
def test_vectorised_matches_loop(batch, schedule):
    think, correct = batch
    step, total = schedule
    np.testing.assert_allclose(
        atar_rewards(think, correct, step=step, total_steps=total),
        reference_atar(think, correct, step, total),
        atol=1e-12,
    )


@given(
    st.floats(min_value=0.0, max_value=1.0),
    st.floats(min_value=0.0, max_value=1.0),
    st.integers(min_value=0, max_value=999),
)
def test_balancing_lowers_the_over_represented_mode(lam_a, lam_b, step):
    """A higher think ratio lowers every think reward and raises every no-think reward."""
    lo, hi = sorted((lam_a, lam_b))
    total = 1000
    gt_lo, gn_lo = soft_penalty_factors(lo, step, total)
    gt_hi, gn_hi = soft_penalty_factors(hi, step, total)
    assert gt_hi <= gt_lo and gn_hi >= gn_lo
    # and within one batch the over-represented mode gets the smaller factor (harsher)
    g_t, g_n = soft_penalty_factors(hi, step, total)
    if hi > 0.5:
        assert g_t <= g_n
    assert 0.0 < g_t <= 1.0 and 0.0 < g_n <= 1.0


@given(st.integers(min_value=2, max_value=40), schedules)
def test_more_thinking_in_the_batch_lowers_think_rewards(n, schedule):
    step, total = schedule
    few = atar_rewards([True] + [False] * (n - 1), [True] * n, step=step, total_steps=total)[0]
    many = atar_rewards([True] * n, [True] * n, step=step, total_steps=total)[0]
    assert many <= few
    if step < total:
        assert many < few
