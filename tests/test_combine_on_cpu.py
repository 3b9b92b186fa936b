"""The overall reward: components, the correct-only rule, judge failures (worst verdict / masked) and modes."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audio_thinker.config import ConfigError, load_config
from audio_thinker.rewards.atar import soft_penalty_factors
from audio_thinker.rewards.combine import (
    RewardConfig,
    RewardMode,
    RewardWeights,
    compute_rewards,
    score_response,
)
from audio_thinker.rewards.parsing import parse_response
from audio_thinker.rewards.verdict import JudgeFailure

UNPARSEABLE, UNAVAILABLE = JudgeFailure.UNPARSEABLE, JudgeFailure.UNAVAILABLE

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


def honest(value):
    """A judgement as the design reads it: unparseable -> the worst verdict 0, unavailable -> None."""
    if value is None or value == "unavailable":
        return None
    return 0.0 if value == "unparseable" else float(value)


def reference(parsed, correct, consistency, quality, step, total, w=RewardWeights()):
    """Straight from DESIGN.md section 3, one response at a time (NaN: masked, no reward)."""
    n = len(parsed)
    think_flags = [p.counts_as_think for p in parsed]
    lam = sum(think_flags) / n
    g_t, g_n = soft_penalty_factors(lam, step, total)
    judged = [p.mode.value == "think" for p in parsed]
    masked = [judged[i] and (honest(consistency[i]) is None or honest(quality[i]) is None) for i in range(n)]
    think_q = [honest(quality[i]) for i in range(n) if judged[i] and not masked[i]]
    mean_think_q = sum(think_q) / len(think_q) if think_q else 0.0
    out = []
    for i, p in enumerate(parsed):
        if masked[i]:
            out.append(math.nan)
            continue
        c = correct[i]
        if think_flags[i]:
            r_a = g_t if c else -(1 - g_t)
        else:
            r_a = 2 * g_n if c else -g_n - 2 * (1 - g_n)
        if p.mode.value == "think":
            r_c, r_t = honest(consistency[i]), honest(quality[i])
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


def test_unparseable_counts_as_the_worst_verdict_and_unavailable_masks_the_response():
    responses = ["<think>a</think><answer>high</answer>"] * 4 + ["<answer>high</answer>"]
    parsed, correct = batch(responses)
    consistency = [1, UNPARSEABLE, 0, None, None]
    quality = [0.2, 0.6, UNPARSEABLE, 0.9, None]
    out = compute_rewards(parsed=parsed, is_correct=correct, consistency=consistency, quality=quality, step=0, total_steps=5, config=FULL)
    assert out.masked.tolist() == [False, False, False, True, False]
    np.testing.assert_allclose(out.consistency, [1, 0, 0, np.nan, 1])
    # NO-THINK: the mean R_t of the THINK responses that were not masked, the unparseable one at 0
    np.testing.assert_allclose(out.think_quality, [0.2, 0.6, 0, np.nan, 0.8 / 3])
    assert np.isnan(out.overall[3]) and np.isfinite(np.delete(out.overall, 3)).all()
    assert (out.consistency_unparseable, out.consistency_unavailable) == (1, 1)
    assert (out.quality_unparseable, out.quality_unavailable) == (1, 0)
    assert out.consistency_failures == 2 and out.quality_failures == 1
    np.testing.assert_allclose(out.overall, reference(parsed, correct, consistency, quality, 0, 5))
    # the masked response still counts for lambda: whether it thought does not depend on the judge
    assert out.think_ratio == 4 / 5


def test_a_failed_judgement_no_longer_pays_more_than_an_honest_low_verdict():
    """The regression: with the old batch-mean fill, breaking the judge turned 1.6 into 2.8."""
    parsed, correct = batch(["<think>a</think><answer>high</answer>"] * 2)
    def score(consistency, quality):  # p = 1: base values, R_a = 1 for a correct THINK response
        return compute_rewards(parsed=parsed, is_correct=correct, consistency=[consistency, 1],
                               quality=[quality, 0.8], step=5, total_steps=5, config=FULL)

    assert score(0, 0.1).overall[0] == pytest.approx(1.6)
    assert score(1, 0.8).overall[1] == pytest.approx(2.8)  # what the old fill paid a failure
    assert score(UNPARSEABLE, UNPARSEABLE).overall[0] == pytest.approx(1.5)
    masked = score(None, None)
    assert masked.masked.tolist() == [True, False] and math.isnan(masked.overall[0])


def test_every_judgement_failing_never_raises():
    parsed, correct = batch(RESPONSES)
    n = len(parsed)
    for failure in (None, UNAVAILABLE, "unavailable"):
        out = compute_rewards(parsed=parsed, is_correct=correct, consistency=[failure] * n,
                              quality=[failure] * n, step=0, total_steps=5, config=FULL)
        assert out.masked.tolist() == [True, True, False, False, False, False]
        np.testing.assert_allclose(out.think_quality[2:], 0.0)  # NO-THINK: no THINK response to average
        m = out.metrics()
        assert m["audio_thinker/masked_responses"] == 2 and m["audio_thinker/masked_fraction"] == 2 / 6
        assert m["audio_thinker/judge/consistency_unavailable"] == 2
    for omitted in (dict(), dict(consistency=None, quality=None)):  # no judge columns at all
        out = compute_rewards(parsed=parsed, is_correct=correct, step=0, total_steps=5, config=FULL, **omitted)
        assert out.masked.sum() == 2 and out.consistency_unavailable == out.quality_unavailable == 2
    out = compute_rewards(parsed=parsed, is_correct=correct, consistency=[UNPARSEABLE] * n,
                          quality=["unparseable"] * n, step=0, total_steps=5, config=FULL)
    assert not out.masked.any() and np.isfinite(out.overall).all()
    assert out.consistency[:2].tolist() == [0, 0] and out.think_quality.tolist() == [0] * 6
    # a step of THINK responses only, every judgement unavailable: nothing to reward, nothing raises
    only_think, all_correct = batch(["<think>a</think><answer>high</answer>"] * 3)
    out = compute_rewards(parsed=only_think, is_correct=all_correct, consistency=[None] * 3, quality=[None] * 3,
                          step=0, total_steps=5, config=FULL)
    m = out.metrics()
    assert out.masked.all() and m["audio_thinker/masked_fraction"] == 1.0
    assert math.isnan(m["audio_thinker/reward/overall"]) and m["audio_thinker/think_ratio"] == 1.0


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
        (dict(quality=["timeout"] * 6), "neither a verdict nor one of"),
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
    # reward means are over the responses that got a reward: the masked one is left out
    assert m["audio_thinker/reward/overall"] == pytest.approx(np.delete(out.overall, 1).mean())
    assert all(isinstance(v, float) for v in m.values())
    only_no_think = compute_rewards(parsed=[parse_response("<answer>high</answer>")], is_correct=[True], step=0, total_steps=1, config=FULL)
    assert math.isnan(only_no_think.metrics()["audio_thinker/accuracy/think"])
    assert math.isnan(only_no_think.metrics()["audio_thinker/judge/unparseable_fraction"])


def test_metrics_count_unparseable_and_unavailable_judgements_and_masked_responses():
    parsed, correct = batch(["<think>a</think><answer>high</answer>"] * 4 + ["<answer>high</answer>"])
    out = compute_rewards(parsed=parsed, is_correct=correct, consistency=[UNPARSEABLE, 1, None, 1, None],
                          quality=[0.5, UNPARSEABLE, 0.5, None, None], step=3, total_steps=10, config=FULL)
    m = {k.removeprefix("audio_thinker/"): v for k, v in out.metrics().items()}
    assert m["judge/consistency_unparseable"] == 1 and m["judge/quality_unparseable"] == 1
    assert m["judge/consistency_unavailable"] == 1 and m["judge/quality_unavailable"] == 1
    assert m["judge/consistency_failures"] == 2 and m["judge/quality_failures"] == 2
    assert m["judge/unparseable_fraction"] == 2 / 8  # 4 THINK responses x 2 kinds asked for
    assert m["masked_responses"] == 2 and m["masked_fraction"] == 2 / 5  # rows 2 and 3
    assert out.masked.tolist() == [False, False, True, True, False]
    in_atar_cr = compute_rewards(parsed=parsed, is_correct=correct, consistency=[UNPARSEABLE, 1, None, 1, None],
                                 quality=[0.5, UNPARSEABLE, 0.5, None, None], step=3, total_steps=10,
                                 config=RewardConfig(mode=RewardMode.ATAR_CR))
    # a kind the mode does not use is neither counted nor masks
    assert in_atar_cr.masked.tolist() == [False, False, True, False, False]
    assert in_atar_cr.quality_failures == 0 and in_atar_cr.quality_judged == 0


def test_the_removed_fallback_key_says_what_replaced_it():
    with pytest.raises(ConfigError, match=r"reward.fallback_if_all_fail was removed: .*worst verdict.*masks"):
        load_config({"reward": {"fallback_if_all_fail": 0.0}})


response_strategy = st.sampled_from(RESPONSES + ["<think>x</think><answer>low</answer>", "<answer>high</answer><|im_end|>"])
QUALITIES = [i / 10 for i in range(11)]
#: no per-example deadline: the examples take milliseconds, but a loaded machine can stall one
NO_DEADLINE = settings(deadline=None)
consistency_strategy = st.one_of(st.none(), st.just(UNPARSEABLE), st.sampled_from([0, 1]))
quality_strategy = st.one_of(st.none(), st.just(UNPARSEABLE), st.sampled_from(QUALITIES))


@NO_DEADLINE
@given(
    st.lists(st.tuples(response_strategy, consistency_strategy, quality_strategy), min_size=1, max_size=24),
    st.integers(min_value=0, max_value=30),
)
def test_matches_reference_on_random_batches(rows, step):
    responses, consistency, quality = map(list, zip(*rows))
    parsed, correct = batch(responses)
    out = compute_rewards(parsed=parsed, is_correct=correct, consistency=consistency, quality=quality, step=step, total_steps=20, config=FULL)
    np.testing.assert_allclose(out.overall, reference(parsed, correct, consistency, quality, step, 20), atol=1e-12)


@NO_DEADLINE
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


THINK_STRATEGY = st.sampled_from(["<think>it rises</think><answer>high</answer>", "<think>x</think><answer>low</answer>"])


@NO_DEADLINE
@given(
    st.lists(st.tuples(response_strategy, consistency_strategy, quality_strategy), min_size=0, max_size=16),
    THINK_STRATEGY,
    st.sampled_from([(True, False), (False, True), (True, True)]),
    st.sampled_from([0, 1]),
    st.sampled_from(QUALITIES),
    st.integers(min_value=0, max_value=30),
    st.sampled_from([RewardMode.ATAR_CR_TR, RewardMode.ATAR_CR]),
    st.booleans(),
)
def test_breaking_the_judge_never_pays_more_than_an_honest_verdict(
    rows, target, broken, consistency, quality, step, mode, balance
):
    """A THINK response whose judgement is unparseable scores exactly what the worst honest verdict
    (R_c = 0, R_t = 0) scores, so never more than an honest low verdict (R_c = 0, R_t = 0.1) or any
    other; every other response of the batch scores the same either way."""
    responses, consistencies, qualities = (list(c) for c in zip(*rows)) if rows else ([], [], [])
    parsed, correct = batch([target] + responses)
    config = RewardConfig(mode=mode, balance=balance)

    def score(c, q):
        return compute_rewards(parsed=parsed, is_correct=correct, consistency=[c] + consistencies,
                               quality=[q] + qualities, step=step, total_steps=20, config=config)

    broken_c, broken_q = broken
    judge_broken = score(UNPARSEABLE if broken_c else consistency, UNPARSEABLE if broken_q else quality)
    worst = score(0 if broken_c else consistency, 0.0 if broken_q else quality)
    np.testing.assert_array_equal(judge_broken.overall, worst.overall)  # NaN (masked) rows included
    assert not judge_broken.masked[0]
    # an honest low verdict on the broken kinds: R_c = 0, R_t = 0.1
    low = score(0 if broken_c else consistency, 0.1 if broken_q else quality)
    assert judge_broken.overall[0] <= low.overall[0]
    if broken_q and mode.uses_quality:
        assert judge_broken.overall[0] < low.overall[0]
    for c in (0, 1) if broken_c else (consistency,):  # and every other honest verdict
        for q in QUALITIES if broken_q else (quality,):
            assert judge_broken.overall[0] <= score(c, q).overall[0] + 1e-12
