"""The overall reward: components, fills, the correct-only rule, fallbacks and modes."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from audio_thinker.rewards.atar import soft_penalty_factors
from audio_thinker.rewards.combine import (
    RewardConfig,
    RewardMode,
    RewardWeights,
    compute_rewards,
    score_response,
)
from audio_thinker.rewards.parsing import parse_response

#: every reward term (the paper's full Audio-Thinker reward)
FULL = RewardConfig(mode=RewardMode.ATAR_CR_TR)
CHOICES = ["high", "low"]
RESPONSES = [
    "<think>it rises</think><answer>high</answer>",  # think, correct
    "<think>it falls</think><answer>low</answer>",  # think, wrong
    "<answer>high</answer>",  # no-think, correct
    "<answer>low</answer>",  # no-think, wrong
    "<think>hmm</think>",  # malformed, counts as think
    "high",  # malformed, counts as no-think
]


def batch(responses=RESPONSES, gold="high"):
    scores = [score_response(r, gold=gold, choices=CHOICES) for r in responses]
    return [s.parsed for s in scores], [s.correct for s in scores]


def reference(parsed, correct, consistency, quality, step, total, w=RewardWeights()):
    """Straight from DESIGN.md section 3, one response at a time."""
    n = len(parsed)
    think_flags = [p.counts_as_think for p in parsed]
    lam = sum(think_flags) / n
    g_t, g_n = soft_penalty_factors(lam, step, total)
    ok_c = [consistency[i] for i in range(n) if parsed[i].mode.value == "think" and consistency[i] is not None]
    ok_q = [quality[i] for i in range(n) if parsed[i].mode.value == "think" and quality[i] is not None]
    fill_c = sum(ok_c) / len(ok_c) if ok_c else 0.0
    fill_q = sum(ok_q) / len(ok_q) if ok_q else 0.0
    think_q = []
    for i in range(n):
        if parsed[i].mode.value == "think":
            think_q.append(quality[i] if quality[i] is not None else fill_q)
    mean_think_q = sum(think_q) / len(think_q) if think_q else 0.0
    out = []
    for i, p in enumerate(parsed):
        c = correct[i]
        if think_flags[i]:
            r_a = g_t if c else -(1 - g_t)
        else:
            r_a = 2 * g_n if c else -g_n - 2 * (1 - g_n)
        if p.mode.value == "think":
            r_c = consistency[i] if consistency[i] is not None else fill_c
            r_t = quality[i] if quality[i] is not None else fill_q
        elif p.mode.value == "no_think":
            r_c, r_t = 1.0, mean_think_q
        else:
            r_c, r_t = 0.0, 0.0
        r_c_prime = r_c if c else 0.0
        r_f = 1.0 if p.well_formed else 0.0
        out.append(r_a * (1 + w.consistency * r_c_prime) + w.format * r_f + w.think_quality * r_t)
    return out


def test_components_of_a_mixed_batch():
    parsed, correct = batch()
    assert correct == [True, False, True, False, False, False]
    consistency = [1, 0, None, None, None, None]
    quality = [0.8, 0.4, None, None, None, None]
    out = compute_rewards(parsed=parsed, is_correct=correct, consistency=consistency, quality=quality, step=3, total_steps=10, config=FULL)
    assert out.think_ratio == pytest.approx(3 / 6)
    assert out.format.tolist() == [1, 1, 1, 1, 0, 0]
    assert out.consistency.tolist() == [1, 0, 1, 1, 0, 0]
    assert out.consistency_gated.tolist() == [1, 0, 1, 0, 0, 0]  # correct-only rule
    np.testing.assert_allclose(out.think_quality, [0.8, 0.4, 0.6, 0.6, 0, 0])  # no-think: mean of think
    np.testing.assert_allclose(out.overall, reference(parsed, correct, consistency, quality, 3, 10))
    assert out.consistency_failures == 0 and out.quality_failures == 0
    assert out.consistency_judged == 2 and out.quality_judged == 2


def test_judge_failures_take_the_batch_mean_of_successes():
    responses = ["<think>a</think><answer>high</answer>"] * 4 + ["<answer>high</answer>"]
    parsed, correct = batch(responses)
    consistency = [1, None, 0, 1, None]
    quality = [0.2, 0.6, None, None, None]
    out = compute_rewards(parsed=parsed, is_correct=correct, consistency=consistency, quality=quality, step=0, total_steps=5, config=FULL)
    np.testing.assert_allclose(out.consistency, [1, 2 / 3, 0, 1, 1])
    np.testing.assert_allclose(out.think_quality, [0.2, 0.6, 0.4, 0.4, 0.4])
    assert out.consistency_failures == 1 and out.quality_failures == 2
    np.testing.assert_allclose(out.overall, reference(parsed, correct, consistency, quality, 0, 5))


def test_all_judgements_failed_uses_the_configured_fallback():
    parsed, correct = batch(["<think>a</think><answer>high</answer>"] * 2)
    out = compute_rewards(
        parsed=parsed, is_correct=correct, consistency=[None, None], quality=None,
        step=0, total_steps=5, config=RewardConfig(mode=RewardMode.ATAR_CR_TR, fallback_if_all_fail=0.5),
    )
    assert out.consistency.tolist() == [0.5, 0.5] and out.think_quality.tolist() == [0.5, 0.5]
    assert out.consistency_failures == 2 and out.quality_failures == 2


def test_no_think_batch_gets_zero_think_quality_and_needs_no_judge():
    parsed, correct = batch(["<answer>high</answer>", "<answer>low</answer>"])
    out = compute_rewards(parsed=parsed, is_correct=correct, step=0, total_steps=5, config=FULL)
    assert out.think_quality.tolist() == [0, 0]
    assert out.consistency.tolist() == [1, 1] and out.consistency_gated.tolist() == [1, 0]
    assert out.consistency_judged == 0 and out.consistency_failures == 0


def test_judge_values_of_non_think_rows_are_ignored():
    parsed, correct = batch()
    a = compute_rewards(parsed=parsed, is_correct=correct, consistency=[1, 0, 0, 0, 1, 1], quality=[0.8, 0.4, 1, 1, 1, 1], step=3, total_steps=10, config=FULL)
    b = compute_rewards(parsed=parsed, is_correct=correct, consistency=[1, 0] + [None] * 4, quality=[0.8, 0.4] + [None] * 4, step=3, total_steps=10, config=FULL)
    np.testing.assert_array_equal(a.overall, b.overall)


@pytest.mark.parametrize(
    ("mode", "uses_c", "uses_t"),
    [("accuracy", False, False), ("atar", False, False), ("atar_cr", True, False), ("atar_cr_tr", True, True)],
)
def test_modes(mode, uses_c, uses_t):
    parsed, correct = batch()
    out = compute_rewards(
        parsed=parsed, is_correct=correct, consistency=[0, 0, None, None, None, None],
        quality=[1.0, 1.0, None, None, None, None], step=0, total_steps=10, config=RewardConfig(mode=RewardMode(mode)),
    )
    assert bool(out.consistency_gated.any()) is uses_c
    assert bool(out.think_quality.any()) is uses_t
    if mode == "accuracy":
        assert out.accuracy.tolist() == [1, 0, 1, 0, 0, 0]
        assert out.overall.tolist() == [1.5, 0.5, 1.5, 0.5, 0, 0]
        assert out.g_think == out.g_nothink == 1.0


def test_static_atar_and_weights():
    parsed, correct = batch()
    out = compute_rewards(
        parsed=parsed, is_correct=correct, step=0, total_steps=10,
        config=RewardConfig(mode=RewardMode.ATAR, balance=False, weights=RewardWeights(format=2.0)),
    )
    assert out.accuracy.tolist() == [1, 0, 2, -1, 0, -1]
    assert out.overall.tolist() == [3, 2, 4, 1, 0, -1]


def test_malformed_is_incorrect_even_if_flagged_correct():
    parsed = [parse_response("high")]
    out = compute_rewards(parsed=parsed, is_correct=[True], step=0, total_steps=1, config=RewardConfig(mode="accuracy"))
    assert out.is_correct.tolist() == [False] and out.overall.tolist() == [0.0]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(parsed=[], is_correct=[]), "empty batch"),
        (dict(is_correct=[True]), "correctness flags"),
        (dict(consistency=[1]), "expected 6 entries"),
        (dict(consistency=[0.5] * 6), "not one of"),
        (dict(quality=[1.5] * 6), r"outside \[0, 1\]"),
    ],
)
def test_bad_inputs(kwargs, message):
    parsed, correct = batch()
    args = dict(parsed=parsed, is_correct=correct, step=0, total_steps=1, config=FULL) | kwargs
    with pytest.raises(ValueError, match=message):
        compute_rewards(**args)


def test_metrics():
    parsed, correct = batch()
    out = compute_rewards(parsed=parsed, is_correct=correct, consistency=[1, None] + [None] * 4, quality=[0.5, 0.5] + [None] * 4, step=3, total_steps=10, config=FULL)
    m = out.metrics()
    assert m["audio_thinker/think_ratio"] == 0.5
    assert m["audio_thinker/format_failure_rate"] == pytest.approx(2 / 6)
    assert m["audio_thinker/accuracy/think"] == 0.5 and m["audio_thinker/accuracy/no_think"] == 0.5
    assert m["audio_thinker/judge/consistency_failures"] == 1.0
    assert m["audio_thinker/reward/overall"] == pytest.approx(out.overall.mean())
    assert all(isinstance(v, float) for v in m.values())
    only_no_think = compute_rewards(parsed=[parse_response("<answer>high</answer>")], is_correct=[True], step=0, total_steps=1, config=FULL)
    assert math.isnan(only_no_think.metrics()["audio_thinker/accuracy/think"])


response_strategy = st.sampled_from(RESPONSES + ["<think>x</think><answer>low</answer>", "<answer>high</answer><|im_end|>"])


@given(
    st.lists(st.tuples(response_strategy, st.one_of(st.none(), st.sampled_from([0, 1])), st.one_of(st.none(), st.sampled_from([i / 10 for i in range(11)]))), min_size=1, max_size=24),
    st.integers(min_value=0, max_value=30),
)
def test_matches_reference_on_random_batches(rows, step):
    responses, consistency, quality = map(list, zip(*rows))
    parsed, correct = batch(responses)
    out = compute_rewards(parsed=parsed, is_correct=correct, consistency=consistency, quality=quality, step=step, total_steps=20, config=FULL)
    np.testing.assert_allclose(out.overall, reference(parsed, correct, consistency, quality, step, 20), atol=1e-12)


@given(st.lists(response_strategy, min_size=1, max_size=16), st.integers(min_value=0, max_value=30))
def test_batch_order_does_not_change_per_response_rewards(responses, step):
    """Layout invariance: permuting the batch permutes the rewards and nothing else."""
    parsed, correct = batch(responses)
    n = len(parsed)
    perm = np.random.default_rng(n + step).permutation(n)
    quality = [0.5 if p.mode.value == "think" else None for p in parsed]
    a = compute_rewards(parsed=parsed, is_correct=correct, quality=quality, consistency=[1] * n, step=step, total_steps=20, config=FULL)
    b = compute_rewards(
        parsed=[parsed[i] for i in perm], is_correct=[correct[i] for i in perm],
        quality=[quality[i] for i in perm], consistency=[1] * n, step=step, total_steps=20, config=FULL,
    )
    np.testing.assert_allclose(a.overall[perm], b.overall)
