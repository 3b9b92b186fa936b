"""The batch-level ATAR trainer hook on a synthetic step, through a real TransferQueue (local Ray).

A step is written into TransferQueue the way verl's agent loop writes it (``{uid}_{session}_{index}``
keys, ``extra_fields["reward_extra_info"]`` from the reward manager), padded with verl's own
``upsample_batch_to_divisible_size``, and then ``AudioThinkerTrainer._compute_advantage`` runs on a
trainer built without its heavy ``__init__``. The rewards it writes must equal the pure core's,
and the advantages verl's GRPO on those rewards.
"""

import doctest
import math
import uuid

import numpy as np
import pytest
import ray
import torch
import transfer_queue as tq
from omegaconf import OmegaConf
from transfer_queue import KVBatchMeta
from verl.trainer.ppo.core_algos import compute_grpo_outcome_advantage
from verl.trainer.ppo.padding_utils import upsample_batch_to_divisible_size
from verl.utils.tensordict_utils import list_of_dict_to_tensordict

import audio_thinker.rewards.metrics as metrics_module
from audio_thinker.config import load_config
from audio_thinker.main_grpo import TRAINER_MODE
from audio_thinker.rewards.combine import compute_rewards, score_response
from audio_thinker.rewards.verdict import JudgeFailure
from audio_thinker.verl_ext.reward_manager import (
    build_response_info,
    judge_info,
    judgements_from_info,
)
from audio_thinker.verl_ext.trainer import MASKED_UID_PREFIX, TRAINER_NAME, AudioThinkerTrainer, select_step_rows

EOS = 99
CHOICES = ["high", "low"]
TC, TW = "<think>it rises</think><answer>high</answer>", "<think>it falls</think><answer>low</answer>"
NC, NW = "<answer>high</answer>", "<answer>low</answer>"
MT, MN = "<think>hmm</think>", "high"  # malformed: with / without <think>
# 4 prompts x 4 rollouts; per-group think ratios 1, 0, 1/2, 1/4 vs. 7/16 over the step
GROUPS = [
    ("easy", [TC, TC, TW, MT]),
    ("easy", [NC, NC, NW, MN]),
    ("hard", [TC, TW, NC, NW]),
    ("medium", [NC, NW, TC, NC]),
]
N_ROLLOUT = 4
KINDS = ("consistency", "quality")
UNPARSEABLE = JudgeFailure.UNPARSEABLE


@pytest.fixture(scope="module")
def transfer_queue():
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    tq.init(OmegaConf.create({"backend": {"SimpleStorage": {"num_data_storage_units": 1}}}))
    yield tq
    if started:
        tq.close()
        ray.shutdown()


def make_trainer(*, mode="atar", step=3, total=10, anneal=None):
    trainer = object.__new__(AudioThinkerTrainer)
    trainer.config = OmegaConf.create({
        "algorithm": {"adv_estimator": "grpo", "use_kl_in_reward": False, "gamma": 1.0, "lam": 1.0,
                      "norm_adv_by_std_in_grpo": True},
        "actor_rollout_ref": {"rollout": {"n": N_ROLLOUT}},
        "audio_thinker": {"reward": {"mode": mode, "anneal_steps": anneal}},
    })
    trainer.global_steps, trainer.total_training_steps = step, total
    return trainer


def write_step(judge=None, pad_to=6, groups=GROUPS):
    """Put the synthetic step into TransferQueue as the agent loop does; pad as _balance_batch does."""
    keys, fields, tags, texts, uids = [], [], [], [], []
    for g, (difficulty, responses) in enumerate(groups):
        uid = str(uuid.uuid4())
        for s, text in enumerate(responses):
            score = score_response(text, gold="high", choices=CHOICES)
            info = dict(build_response_info(score, response_tokens=len(text),
                                            extra_info={"difficulty": difficulty}))
            if judge is not None:
                info.update(judge(g, s, score.parsed))
            length = 3 + len(text) % 5  # varied response lengths
            response_mask = torch.ones(length, dtype=torch.int64)
            rm_scores = torch.zeros(length)
            rm_scores[-1] = info["acc"]  # the provisional score the reward loop wrote
            prompts = torch.full((4,), 7, dtype=torch.int64)
            fields.append({
                "uid": uid, "prompts": prompts, "responses": torch.full((length,), 5, dtype=torch.int64),
                "input_ids": torch.cat([prompts, torch.full((length,), 5)]),
                "attention_mask": torch.ones(4 + length, dtype=torch.int64), "response_mask": response_mask,
                "rm_scores": rm_scores, "num_turns": 2,
                "extra_fields": {"reward_extra_info": info, "min_global_steps": 3, "max_global_steps": 3},
            })
            keys.append(f"{uid}_{s}_0")
            tags.append({"status": "success", "prompt_len": 4, "response_len": length, "seq_len": 4 + length,
                         "global_steps": 3, "min_global_steps": 3, "max_global_steps": 3})
            texts.append(text)
            uids.append(uid)
    tq.kv_batch_put(keys=keys, partition_id="train", fields=list_of_dict_to_tensordict(fields), tags=tags)
    batch = KVBatchMeta(partition_id="train", keys=keys, tags=tags)
    batch = upsample_batch_to_divisible_size(batch, pad_to, EOS)
    return batch, texts, uids


def expected_rewards(texts, *, mode="atar", step=3, total=10, consistency=None, quality=None):
    scores = [score_response(t, gold="high", choices=CHOICES) for t in texts]
    config = load_config({"reward": {"mode": mode}}).reward
    return compute_rewards(parsed=[s.parsed for s in scores], is_correct=[s.correct for s in scores],
                           step=step, total_steps=total, config=config,
                           consistency=consistency, quality=quality)


def read(batch, field):
    data = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id,
                           select_fields=[field, "response_mask"])
    return data[field].to_padded_tensor(0.0), data["response_mask"].to_padded_tensor(0)


def run_step(trainer, batch, *, uids=None):
    """``_compute_advantage`` on ``batch``; ``uids``: also return the rows' uid field afterwards."""
    metrics = {}
    trainer._compute_advantage(batch, metrics)
    tq_rm, response_mask = read(batch, "rm_scores")
    advantages, _ = read(batch, "advantages")
    if uids is not None:
        data = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=["uid"])
        uids.extend(list(data["uid"]))
    tq.kv_clear(keys=batch.keys, partition_id=batch.partition_id)
    return metrics, tq_rm, response_mask, advantages


def judged(verdicts):
    """A ``judge`` for :func:`write_step`: ``verdicts[(g, s)]`` for THINK responses (default 1 / 0.5),
    stored the way the reward manager stores them."""
    def judge(g, s, parsed):
        if parsed.mode.value != "think":
            return judge_info(None, KINDS)
        return judge_info(verdicts.get((g, s), {"consistency": 1, "quality": 0.5}), KINDS)
    return judge


def step_judgements(batch, n_real):
    """The judgements of the real rows, as the trainer reads them back from TransferQueue."""
    data = tq.kv_batch_get(keys=batch.keys[:n_real], partition_id="train", select_fields=["extra_fields"])
    infos = [f["reward_extra_info"] for f in list(data["extra_fields"])]
    return ([judgements_from_info(i, "consistency") for i in infos],
            [judgements_from_info(i, "quality") for i in infos])


def policy_loss_gradient(advantages, response_mask):
    """verl's PPO clipped policy loss (token-mean) and its gradient w.r.t. each token's log-prob."""
    from verl.trainer.ppo.core_algos import get_policy_loss_fn
    from verl.workers.config.actor import ActorConfig

    config = ActorConfig(strategy="fsdp", ppo_mini_batch_size=4, rollout_n=1, ppo_micro_batch_size_per_gpu=1)
    generator = torch.Generator().manual_seed(0)
    old_log_prob = -torch.rand(advantages.shape, generator=generator)
    log_prob = (old_log_prob + 0.3 * torch.randn(advantages.shape, generator=generator)).requires_grad_(True)
    loss, _ = get_policy_loss_fn("vanilla")(
        old_log_prob=old_log_prob, log_prob=log_prob, advantages=advantages, response_mask=response_mask.bool(),
        loss_agg_mode="token-mean", config=config, rollout_is_weights=None,
    )
    loss.backward()
    return loss, log_prob.grad


def test_rewards_equal_the_pure_core_and_advantages_equal_verls_grpo(transfer_queue):
    batch, texts, uids = write_step()
    n_real = len(texts)
    assert len(batch) == 18 and sum(t.get("is_padding", False) for t in batch.tags) == 2
    metrics, rm, response_mask, advantages = run_step(make_trainer(), batch)

    expected = expected_rewards(texts)
    lengths = response_mask.sum(dim=1)
    for i in range(n_real):  # the reward sits on the last response token, zeros elsewhere
        assert rm[i, lengths[i] - 1].item() == np.float32(expected.overall[i])
        assert torch.count_nonzero(rm[i, : lengths[i] - 1]) == 0
    assert torch.count_nonzero(rm[n_real:]) == 0  # padding rows: all zero

    pad_uid = batch.keys[-1].rsplit("_", 2)[0]
    index = np.array(uids + [pad_uid] * (len(batch) - n_real), dtype=object)
    want, _ = compute_grpo_outcome_advantage(
        token_level_rewards=rm, response_mask=response_mask.float(), index=index, norm_adv_by_std_in_grpo=True
    )
    torch.testing.assert_close(advantages, want)
    assert torch.count_nonzero(advantages[n_real:]) == 0
    assert metrics["audio_thinker/padding_rows"] == 2.0


def test_lambda_is_computed_over_the_whole_step_without_padding(transfer_queue):
    batch, texts, _ = write_step()
    metrics, rm, response_mask, _ = run_step(make_trainer(), batch)
    written = rm.sum(dim=1)[: len(texts)].numpy()

    think = [score_response(t, gold="high", choices=CHOICES).parsed.counts_as_think for t in texts]
    assert metrics["audio_thinker/think_ratio"] == sum(think) / 16 == 7 / 16
    # padding rows copy row 0 (think): counting them would give 9/18
    assert metrics["audio_thinker/think_ratio"] != (sum(think) + 2) / 18
    per_group = np.concatenate([
        expected_rewards(texts[g * N_ROLLOUT:(g + 1) * N_ROLLOUT]).overall for g in range(len(GROUPS))
    ])
    np.testing.assert_array_equal(written, expected_rewards(texts).overall.astype(np.float32))
    assert not np.allclose(written, per_group.astype(np.float32))


def test_annealing_uses_the_trainer_step_and_horizon(transfer_queue):
    for step, total, anneal in [(1, 10, None), (10, 10, None), (25, 10, None), (5, 1000, 20)]:
        batch, texts, _ = write_step()
        metrics, rm, _, _ = run_step(make_trainer(step=step, total=total, anneal=anneal), batch)
        horizon = anneal or total
        want = expected_rewards(texts, step=step, total=horizon)
        np.testing.assert_array_equal(rm.sum(dim=1)[: len(texts)].numpy(), want.overall.astype(np.float32))
        assert math.isclose(metrics["audio_thinker/gamma_think"], want.g_think)
        if step >= horizon:  # p = 1: base values
            assert metrics["audio_thinker/gamma_think"] == metrics["audio_thinker/gamma_nothink"] == 1.0


def test_judge_verdicts_are_read_from_reward_extra_info(transfer_queue):
    def judge(g, s, parsed):
        if parsed.mode.value != "think":
            return judge_info(None, KINDS)
        outcome = (g + s) % 3  # 0: no answer, 1: unparseable consistency, 2: both verdicts
        verdict = {"consistency": [None, UNPARSEABLE, s % 2][outcome],
                   "quality": None if outcome == 0 else 0.1 * (s + 1)}
        return judge_info(verdict, KINDS)

    batch, texts, _ = write_step(judge=judge)
    consistency, quality = step_judgements(batch, len(texts))
    metrics, rm, _, _ = run_step(make_trainer(mode="atar_cr_tr"), batch)
    want = expected_rewards(texts, mode="atar_cr_tr", consistency=consistency, quality=quality)
    assert want.masked.any() and want.consistency_unparseable > 0
    # masked responses: no reward written (zeros); every other one the pure core's
    written = np.where(want.masked, 0.0, want.overall).astype(np.float32)
    np.testing.assert_array_equal(rm.sum(dim=1)[: len(texts)].numpy(), written)
    assert metrics["audio_thinker/judge/consistency_failures"] == want.consistency_failures > 0
    assert metrics["audio_thinker/judge/consistency_unparseable"] == want.consistency_unparseable
    assert metrics["audio_thinker/judge/consistency_unavailable"] == want.consistency_unavailable
    assert metrics["audio_thinker/masked_responses"] == want.masked.sum()


def test_a_masked_response_has_zero_advantage_and_leaves_its_group_statistics_alone(transfer_queue):
    """An unavailable judgement: advantage exactly 0, no policy-gradient contribution, and the other
    responses' advantages are verl's GRPO over the honestly scored responses only."""
    unavailable = {"consistency": None, "quality": 0.5}
    verdicts = {(0, 1): unavailable, (2, 0): {"consistency": 1, "quality": None},
                (0, 2): {"consistency": UNPARSEABLE, "quality": UNPARSEABLE}}  # unparseable: scored, not masked
    batch, texts, uids = write_step(judge=judged(verdicts))
    n_real = len(texts)
    consistency, quality = step_judgements(batch, n_real)
    uids_after = []
    metrics, rm, response_mask, advantages = run_step(make_trainer(mode="atar_cr_tr"), batch, uids=uids_after)

    want = expected_rewards(texts, mode="atar_cr_tr", consistency=consistency, quality=quality)
    masked = [1, 8]  # (group 0, rollout 1) and (group 2, rollout 0)
    assert np.flatnonzero(want.masked).tolist() == masked
    assert metrics["audio_thinker/masked_responses"] == 2 and metrics["audio_thinker/masked_fraction"] == 2 / 16
    assert metrics["audio_thinker/judge/consistency_unparseable"] == 1
    assert torch.count_nonzero(rm[masked]) == 0 and torch.count_nonzero(advantages[masked]) == 0
    # kept in the loss mask (so a fully masked mini-batch never divides by zero tokens) ...
    assert torch.equal(response_mask[masked].sum(dim=1), torch.tensor([3 + len(texts[i]) % 5 for i in masked]))
    # ... in a GRPO group of their own; the keys (sessions, replay buffer) are unchanged
    assert {uids_after[i] for i in masked} == {uids_after[masked[0]]}
    assert uids_after[masked[0]].startswith(MASKED_UID_PREFIX)
    assert [u for i, u in enumerate(uids_after[:n_real]) if i not in masked] == \
        [u for i, u in enumerate(uids) if i not in masked]

    honest = [i for i in range(n_real) if i not in masked]
    grpo, _ = compute_grpo_outcome_advantage(
        token_level_rewards=rm[honest], response_mask=response_mask[honest].float(),
        index=np.array([uids[i] for i in honest], dtype=object), norm_adv_by_std_in_grpo=True,
    )
    torch.testing.assert_close(advantages[honest], grpo)
    # (counting the masked responses in their groups, even at reward 0, would have moved the others)
    with_masked, _ = compute_grpo_outcome_advantage(
        token_level_rewards=rm[:n_real], response_mask=response_mask[:n_real].float(),
        index=np.array(uids, dtype=object), norm_adv_by_std_in_grpo=True,
    )
    assert not torch.allclose(with_masked[honest], grpo)

    loss, grad = policy_loss_gradient(advantages, response_mask)
    assert torch.isfinite(loss) and torch.count_nonzero(grad[masked]) == 0
    assert all(torch.count_nonzero(grad[i]) > 0 for i in honest if advantages[i].abs().sum() > 0)


def test_a_step_never_crashes_when_every_judgement_fails(transfer_queue):
    everything_fails = {(g, s): {"consistency": None, "quality": None} for g in range(4) for s in range(4)}
    batch, texts, _ = write_step(judge=judged(everything_fails))
    metrics, rm, response_mask, advantages = run_step(make_trainer(mode="atar_cr_tr"), batch)
    think = [score_response(t, gold="high", choices=CHOICES).parsed.mode.value == "think" for t in texts]
    assert metrics["audio_thinker/masked_responses"] == sum(think) == 6
    assert torch.count_nonzero(advantages[: len(texts)][torch.tensor(think)]) == 0
    assert metrics["audio_thinker/judge/quality_unavailable"] == 6

    # a step of THINK responses only (prompt_mode=think during a judge outage): everything is masked,
    # and verl's token-mean policy loss stays finite (0), as the loss mask keeps its tokens
    only_think = [("easy", [TC, TW, TC, TW]), ("hard", [TW, TW, TC, TC])]
    batch, texts, _ = write_step(judge=judged(everything_fails), groups=only_think)
    metrics, rm, response_mask, advantages = run_step(make_trainer(mode="atar_cr_tr"), batch)
    assert metrics["audio_thinker/masked_fraction"] == 1.0
    assert math.isnan(metrics["audio_thinker/reward/overall"])
    assert torch.count_nonzero(rm) == 0 and torch.count_nonzero(advantages) == 0
    loss, grad = policy_loss_gradient(advantages, response_mask)
    assert loss.item() == 0.0 and torch.count_nonzero(grad) == 0

    # every judgement unparseable: nothing is masked, every THINK response scores the worst verdict
    unparseable = {key: {"consistency": UNPARSEABLE, "quality": UNPARSEABLE} for key in everything_fails}
    batch, texts, _ = write_step(judge=judged(unparseable))
    metrics, rm, _, _ = run_step(make_trainer(mode="atar_cr_tr"), batch)
    assert metrics["audio_thinker/masked_responses"] == 0
    assert metrics["audio_thinker/judge/unparseable_fraction"] == 1.0
    worst = {key: {"consistency": 0, "quality": 0.0} for key in everything_fails}
    batch, _, _ = write_step(judge=judged(worst))
    _, rm_worst, _, _ = run_step(make_trainer(mode="atar_cr_tr"), batch)
    torch.testing.assert_close(rm[: len(texts)], rm_worst[: len(texts)], rtol=0, atol=0)


@pytest.mark.parametrize("mode", ["accuracy", "atar", "atar_cr"])
def test_every_reward_mode_without_judge(transfer_queue, mode):
    batch, texts, _ = write_step(pad_to=1)
    metrics, rm, _, _ = run_step(make_trainer(mode=mode), batch)
    want = expected_rewards(texts, mode=mode)
    # a judge mode without any judge verdict: every THINK response is masked (no reward written)
    think = [score_response(t, gold="high", choices=CHOICES).parsed.mode.value == "think" for t in texts]
    assert want.masked.tolist() == (think if mode == "atar_cr" else [False] * len(texts))
    assert metrics["audio_thinker/masked_responses"] == want.masked.sum()
    np.testing.assert_array_equal(rm.sum(dim=1).numpy(), np.where(want.masked, 0.0, want.overall).astype(np.float32))


def test_step_metrics_are_present(transfer_queue):
    batch, texts, _ = write_step()
    metrics, _, _, _ = run_step(make_trainer(), batch)
    for name in [
        "reward/overall", "reward/accuracy_term", "reward/consistency", "reward/consistency_gated",
        "reward/format", "reward/think_quality", "think_ratio", "gamma_think", "gamma_nothink",
        "format_failure_rate", "accuracy", "accuracy/think", "accuracy/no_think", "think_rate",
        "mode_rate/malformed", "think_rate/difficulty/easy", "think_rate/difficulty/hard",
        "accuracy/difficulty/medium", "response_length/mean", "response_length/think/mean",
        "response_length/no_think/mean", "response_length/malformed/mean", "responses", "padding_rows",
    ]:
        assert isinstance(metrics[f"audio_thinker/{name}"], float), name
    assert metrics["audio_thinker/responses"] == 16.0
    assert metrics["audio_thinker/think_rate/difficulty/easy"] == 3 / 8  # TC TC TW (MT is malformed)
    assert metrics["audio_thinker/format_failure_rate"] == 2 / 16


def test_sessions_with_several_outputs_count_once():
    keys = ["a_0_0", "a_0_1", "a_1_0", "pad9_0_0"]
    tags = [{}, {}, {}, {"is_padding": True}]
    infos = [{"mode": "think"}, {"mode": "no_think"}, {"mode": "think"}, {"mode": "think"}]
    rows = select_step_rows(keys, tags, infos)
    assert rows.final_rows == [1, 2]
    assert rows.session_of_row == [0, 0, 1, -1]
    with pytest.raises(RuntimeError, match="reward_manager"):
        select_step_rows(keys, tags, [None, None, {"mode": "think"}, None])


def test_trainer_keeps_verls_sync_branches():
    """Registered as audio_thinker_sync, verl's own init takes the same branches as PPOTrainerSync."""
    from hydra import compose, initialize_config_dir
    from verl.trainer.ppo.v1 import PPOTrainerSync, get_trainer_cls
    from verl.trainer.ppo.v1.replay_buffer import ReplayBuffer

    from audio_thinker.main_grpo import CONFIG_DIR, CONFIG_NAME

    assert TRAINER_NAME == TRAINER_MODE and get_trainer_cls(TRAINER_MODE) is AudioThinkerTrainer
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
        ours_cfg = compose(config_name=CONFIG_NAME)
        sync_cfg = compose(config_name=CONFIG_NAME, overrides=["trainer.v1.trainer_mode=sync"])
    ours, sync = AudioThinkerTrainer(ours_cfg), PPOTrainerSync(sync_cfg)
    assert ours.configured_trainer_mode == TRAINER_MODE and ours.trainer_mode == sync.trainer_mode == "sync"
    assert type(ours.replay_buffer) is type(sync.replay_buffer) is ReplayBuffer
    assert ours.parameter_sync_step == sync.parameter_sync_step == 1
    assert vars(ours.replay_buffer).keys() == vars(sync.replay_buffer).keys()
    # without the property, verl would take its async branches for an unknown mode name
    assert type(PPOTrainerSync(ours_cfg).replay_buffer) is not ReplayBuffer


def test_metrics_module_doctests():
    result = doctest.testmod(metrics_module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_registers_when_verl_imports_it_as_an_external_module():
    """The task runner resolves trainer_mode by name: this module must load during `import verl`."""
    import os
    import subprocess
    import sys

    code = (
        "import verl; from verl.trainer.ppo.v1 import get_trainer_cls; "
        "from verl.experimental.reward_loop.reward_manager import get_reward_manager_cls; "
        "print(get_trainer_cls('audio_thinker_sync').__name__, get_reward_manager_cls('audio_thinker').__name__)"
    )
    env = dict(os.environ, VERL_USE_EXTERNAL_MODULES="audio_thinker.verl_ext.trainer")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["AudioThinkerTrainer", "AudioThinkerRewardManager"]
