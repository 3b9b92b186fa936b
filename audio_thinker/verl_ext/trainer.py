"""verl's synchronous V1 trainer plus the batch-level Audio-Thinker reward (``trainer.v1.trainer_mode``).

verl's reward loop scores responses one at a time (:mod:`audio_thinker.verl_ext.reward_manager`),
but ATAR needs the whole step: lambda is the share of THINK responses among *every* prompt x
rollout of the step. :class:`AudioThinkerTrainer` is verl's ``PPOTrainerSync`` with one hook
overridden for the method, ``_compute_advantage``, which runs after rollout, rule rewards and
log-probs (``_init_resource_pool_mgr`` only swaps in CPU pools and workers when ``trainer.device=cpu``):

1. read each row's ``extra_fields`` (and ``responses`` for lengths) from TransferQueue; the agent
   loop stores the reward manager's ``reward_extra_info`` there (``extra_fields["reward_extra_info"]``;
   a colocated reward model writes the same keys as top-level fields instead, read as a fallback);
2. drop verl's padding rows (tag ``is_padding``) and keep one row per session
   (``{uid}_{session}_{index}``: the highest index, as verl's GRPO does for multi-output loops);
3. compute lambda, the annealed gammas (step ``self.global_steps``, horizon
   ``audio_thinker.reward.anneal_steps`` or ``trainer.total_training_steps``), ATAR and the overall
   reward with the pure core (:func:`~audio_thinker.rewards.combine.compute_rewards`), judgements
   from the ``judge_*`` columns when present
   (:func:`~audio_thinker.verl_ext.reward_manager.judgements_from_info`);
4. write ``rm_scores`` back (one jagged row per sample, the reward at the last response token,
   zeros elsewhere: the layout verl's agent loop and ``_compute_reward_colocate`` use), and move
   masked responses into a GRPO group of their own (below);
5. add the step metrics (:func:`~audio_thinker.rewards.metrics.compute_step_metrics`), then call
   verl's own ``_compute_advantage``, whose GRPO estimator groups by prompt ``uid``.

Masked responses (a THINK response whose judgement was *unavailable*: no judge answer after the
retries; docs/reward.md, "When a judgement fails") get no reward this step and must not move the
policy. Every row of a masked session gets all-zero ``rm_scores`` and its ``uid`` field is replaced
by one fresh per-step uid ``masked<hex>`` that no prompt has (the keys, which verl uses for
sessions and the replay buffer, are unchanged). verl's GRPO estimator then computes each prompt's
mean and std over its honestly scored responses only, and the masked responses form a group of
zeros whose advantage is exactly 0 (a lone one: ``(0 - 0) / (1 + eps)``), so their policy-gradient
term is exactly 0. This is how verl's own padding rows are kept out of GRPO. Their
``response_mask`` is deliberately kept: zeroing it would also drop them from the KL-to-reference
term and the token-mean normaliser, but a mini-batch whose every response is masked (a judge
outage under ``prompt_mode=think``) would then make verl's token-mean loss 0/0 (NaN). The KL term
does not depend on any reward, so keeping it invents no score.

Padding rows: verl's ``upsample_batch_to_divisible_size`` appends rows that copy row 0's fields
(its ``extra_fields`` included, so counting them would double-count row 0 in lambda), all
share one fresh uid ``pad<hex>`` that no real prompt has, and have ``response_mask`` 0. They are
excluded from every statistic and get all-zero ``rm_scores``: their GRPO group is all zeros, so
their advantage is 0, and no real group sees them.

Trainer mode: verl compares ``self.trainer_mode`` with ``"sync"`` in several places (replay
buffer class, dataloader refill, checkpointed TransferQueue state, prompt submission) and reads
``trainer.v1.<mode>`` for ``parameter_sync_step``. Registered as ``audio_thinker_sync``, those
branches would take their async paths. ``trainer_mode`` is therefore a property that always reads
``"sync"`` (the configured name is kept in :attr:`AudioThinkerTrainer.configured_trainer_mode`),
so every branch behaves exactly as in ``PPOTrainerSync`` and ``trainer.v1.sync`` is the section read.
The registry lookup itself (``get_trainer_cls(config.trainer.v1.trainer_mode)`` in verl's task
runner) needs this module imported in the task-runner process first (plugin or
``VERL_USE_EXTERNAL_MODULES``).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import ray
import torch
import transfer_queue as tq
from transfer_queue import KVBatchMeta
from verl.trainer.ppo.v1.trainer_base import register_trainer
from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync
from verl.utils import tensordict_utils as tu
from verl.utils.profiler import marked_timer

from audio_thinker.backends.cpu import trainer_uses_cpu
from audio_thinker.config import AudioThinkerConfig, anneal_steps, load_config
from audio_thinker.rewards.combine import RewardBreakdown, RewardMode, compute_rewards
from audio_thinker.rewards.metrics import compute_step_metrics
from audio_thinker.scoring.thinking import think_metrics
from audio_thinker.verl_ext.reward_manager import (
    CONSISTENCY_FAILURE_KEY,
    CONSISTENCY_KEY,
    QUALITY_FAILURE_KEY,
    QUALITY_KEY,
    ResponseInfo,
    judgements_from_info,
    parsed_from_info,
)

logger = logging.getLogger(__name__)

#: ``trainer.v1.trainer_mode`` that selects this trainer
TRAINER_NAME = "audio_thinker_sync"
#: the verl mode whose branches this trainer takes
VERL_MODE = "sync"
#: ResponseInfo keys the batch-level reward reads (also looked up as top-level TQ fields)
INFO_FIELDS = ("acc", "mode", "has_think_tag", "difficulty", CONSISTENCY_KEY, QUALITY_KEY,
               CONSISTENCY_FAILURE_KEY, QUALITY_FAILURE_KEY)
#: prefix of the per-step uid that puts masked responses in a GRPO group of their own
MASKED_UID_PREFIX = "masked"
METRIC_PREFIX = "audio_thinker/"
#: verl timer name of the batch-level reward (``timing_s/reward``)
REWARD_TIMER = "reward"
#: seconds the trainer waits for the judge pool's step metrics
JUDGE_METRICS_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class StepRows:
    """Which rows of a step's batch are scored.

    ``final_rows[j]`` is the row of session j whose reward is computed (its ``infos[j]``);
    ``session_of_row[i]`` is row i's session index, or -1 for padding rows.
    """

    final_rows: list[int]
    session_of_row: list[int]
    infos: list[Mapping[str, Any]]


def _as_list(value: Any) -> list:
    """A TransferQueue non-tensor column (LinkedList / NonTensorStack / numpy) as a list."""
    return value.tolist() if hasattr(value, "tolist") else list(value)


def _session_key(key: str) -> tuple[str, int]:
    """``{uid}_{session}_{index}`` -> (``{uid}_{session}``, index); other keys are their own session."""
    parts = key.rsplit("_", 2)
    if len(parts) == 3 and parts[2].isdigit():
        return f"{parts[0]}_{parts[1]}", int(parts[2])
    return key, 0


def select_step_rows(
    keys: Sequence[str], tags: Sequence[Mapping], infos: Sequence[Mapping | None]
) -> StepRows:
    """Group non-padding rows into sessions and pick each session's final output."""
    sessions: dict[str, tuple[int, int]] = {}  # session key -> (index, row)
    row_session: list[str | None] = []
    for row, (key, tag) in enumerate(zip(keys, tags, strict=True)):
        if tag.get("is_padding", False):
            row_session.append(None)
            continue
        session, index = _session_key(key)
        row_session.append(session)
        if session not in sessions or sessions[session][0] < index:
            sessions[session] = (index, row)
    if not sessions:
        raise ValueError("the step has no non-padding rows to reward")
    order = {session: j for j, session in enumerate(sessions)}
    final_rows = [row for _, row in sessions.values()]
    missing = [keys[row] for row in final_rows if not infos[row] or "mode" not in infos[row]]
    if missing:
        raise RuntimeError(
            f"{len(missing)} responses (e.g. {missing[0]}) carry no audio_thinker reward_extra_info: set "
            "reward.reward_manager to audio_thinker.verl_ext.reward_manager.AudioThinkerRewardManager"
        )
    return StepRows(
        final_rows=final_rows,
        session_of_row=[-1 if s is None else order[s] for s in row_session],
        infos=[infos[row] for row in final_rows],
    )


def compute_step_rewards(
    infos: Sequence[Mapping[str, Any]], *, cfg: AudioThinkerConfig, step: int, total_steps: int
) -> RewardBreakdown:
    """The pure core's batch-level reward for one step's ResponseInfos (one per session)."""
    parsed = [parsed_from_info(info) for info in infos]
    correct = [bool(info["acc"]) for info in infos]
    return compute_rewards(
        parsed=parsed,
        is_correct=correct,
        step=step,
        total_steps=anneal_steps(cfg, total_steps),
        config=cfg.reward,
        consistency=[judgements_from_info(info, "consistency") for info in infos],
        quality=[judgements_from_info(info, "quality") for info in infos],
    )


def build_rm_scores(row_rewards: Sequence[float], response_lengths: Sequence[int]) -> torch.Tensor:
    """Jagged ``rm_scores``: row i has ``response_lengths[i]`` zeros with its reward on the last one."""
    rows = []
    for reward, length in zip(row_rewards, response_lengths, strict=True):
        row = torch.zeros(int(length), dtype=torch.float32)
        if length > 0:
            row[-1] = float(reward)
        rows.append(row)
    return torch.nested.as_nested_tensor(rows, layout=torch.jagged)


def masked_row_uids(uids: Sequence[Any], masked_rows: Sequence[bool]) -> list[str]:
    """Each row's GRPO uid, the masked rows' replaced by one fresh uid no prompt has."""
    masked_uid = f"{MASKED_UID_PREFIX}{uuid.uuid4().hex}"
    return [masked_uid if masked else str(uid) for uid, masked in zip(uids, masked_rows, strict=True)]


def validation_think_metrics(infos: Mapping[str, Sequence[Any]], *, prefix: str) -> dict[str, float]:
    """Think-rate metrics of validation responses from verl's ``reward_extra_infos_dict`` (column lists).

    Reads our reward manager's ``mode``, ``acc`` and ``difficulty`` columns; responses without a
    mode (another reward manager's rows) are left out. Same analysis as the evaluation CLI
    (:func:`audio_thinker.scoring.thinking.think_metrics`).
    """
    modes, accs, difficulties = (list(infos.get(key) or []) for key in ("mode", "acc", "difficulty"))
    if not modes:
        return {}
    n = len(modes)
    accs = accs + [0.0] * (n - len(accs))
    difficulties = difficulties + [None] * (n - len(difficulties))
    keep = [i for i, mode in enumerate(modes) if mode is not None]
    return think_metrics([str(modes[i]) for i in keep], [float(accs[i] or 0.0) for i in keep],
                         [difficulties[i] for i in keep], prefix=prefix)


def read_row_infos(data: Any, n: int) -> list[dict | None]:
    """Each row's ResponseInfo from ``extra_fields["reward_extra_info"]``, else from top-level fields."""
    extra = _as_list(data["extra_fields"]) if "extra_fields" in data.keys() else [None] * n
    columns = {key: _as_list(data[key]) for key in INFO_FIELDS if key in data.keys()}
    infos: list[dict | None] = []
    for i in range(n):
        fields = extra[i] if isinstance(extra[i], Mapping) else {}
        info = fields.get("reward_extra_info")
        if not info and "mode" in columns:
            info = {key: values[i] for key, values in columns.items()}
        infos.append(dict(info) if info else None)
    return infos


@register_trainer(TRAINER_NAME)
class AudioThinkerTrainer(PPOTrainerSync):
    """``PPOTrainerSync`` + the batch-level ATAR reward before verl's GRPO advantage (module docstring)."""

    @property
    def trainer_mode(self) -> str:
        """Always ``"sync"``: verl's sync branches, whatever name selected this class."""
        return VERL_MODE

    @trainer_mode.setter
    def trainer_mode(self, value: str) -> None:
        self.configured_trainer_mode = value

    @property
    def audio_thinker_config(self) -> AudioThinkerConfig:
        """The validated ``audio_thinker`` section (loaded once)."""
        cfg = self.__dict__.get("_audio_thinker_config")
        if cfg is None:
            cfg = self._audio_thinker_config = load_config(self.config.get("audio_thinker"))
        return cfg

    def _build_replay_buffer(self):
        """verl's replay buffer, polled every ``audio_thinker.replay_poll_interval_s`` (verl: a fixed 2 s).

        The sync trainer waits for a step's rollouts by polling; with 2 s the generation stage of a
        short step is rounded up to the next multiple of 2 s.
        """
        buffer = super()._build_replay_buffer()
        if hasattr(buffer, "poll_interval"):
            buffer.poll_interval = float(self.audio_thinker_config.replay_poll_interval_s)
        return buffer

    def _init_resource_pool_mgr(self) -> None:
        """The judge pool first (judges on their own GPUs are placed before verl's pools claim any),
        then verl's pools and workers; CPU ones when ``trainer.device=cpu`` (audio_thinker.backends.cpu)."""
        self._start_judge_pool()
        super()._init_resource_pool_mgr()
        if trainer_uses_cpu(self.config):
            from audio_thinker.backends.cpu.trainer import use_cpu_resources

            use_cpu_resources(self)

    # ------------------------------------------------------------------------------ judge pool
    def _start_judge_pool(self) -> None:
        """Create the job's judge pool (a named Ray actor the reward workers reach) when the reward
        mode uses a judge; the pool's workers are started before training begins."""
        self.judge_pool = None
        cfg = self.audio_thinker_config
        mode = RewardMode(cfg.reward.mode)
        if not mode.uses_judge:
            return
        from reward_workers.pool import get_or_create_judge_pool

        kinds = [kind for kind, used in (("consistency", mode.uses_consistency), ("quality", mode.uses_quality))
                 if used]
        started = time.perf_counter()
        self.judge_pool = get_or_create_judge_pool(cfg.judge, kinds=kinds)
        logger.info("judge pool (%s, %d worker(s), %s) ready in %.1f s", cfg.judge.backend, cfg.judge.num_workers,
                    "+".join(kinds), time.perf_counter() - started)

    def _judge_metrics(self, prefix: str) -> dict[str, float]:
        """The judge pool's metrics since the last call (this also starts the pool's next step)."""
        pool = self.__dict__.get("judge_pool")
        if pool is None:
            return {}
        try:
            values = ray.get(pool.collect_metrics.remote(), timeout=JUDGE_METRICS_TIMEOUT_S)
        except Exception as error:  # metrics must never fail the step
            logger.warning("judge metrics unavailable this step: %r", error)
            return {prefix + "judge/metrics_unavailable": 1.0}
        return {prefix + key: float(value) for key, value in values.items()
                if isinstance(value, (int, float)) and not isinstance(value, bool)}

    def _validate(self, *args: Any, **kwargs: Any) -> dict[str, float]:
        """verl's validation; the judge calls it made are reported as validation metrics, so they do not
        count towards the next training step."""
        metrics = super()._validate(*args, **kwargs)
        if metrics is not None:
            metrics.update(self._judge_metrics("val-aux/" + METRIC_PREFIX))
        return metrics

    def _val_metrics_update(self, data_sources, sample_uids, reward_extra_infos_dict, sample_turns,
                            *args: Any, **kwargs: Any) -> dict[str, float]:
        """verl's validation metrics plus ours (:func:`validation_think_metrics`): think rate overall and by
        difficulty, accuracy by mode, under ``val-aux/audio_thinker/`` (the evaluation CLI's analysis)."""
        metrics = super()._val_metrics_update(
            data_sources, sample_uids, reward_extra_infos_dict, sample_turns, *args, **kwargs
        )
        metrics.update(validation_think_metrics(reward_extra_infos_dict, prefix="val-aux/" + METRIC_PREFIX))
        return metrics

    def _compute_advantage(self, batch: KVBatchMeta, metrics: dict) -> KVBatchMeta:
        """Write the batch-level reward as ``rm_scores``, then let verl compute GRPO advantages.

        Timed as ``timing_s/reward`` (nested in verl's ``timing_s/adv``); the per-response rule
        scores run earlier, inside the rollout (verl's reward loop, ``timing_s/gen``).
        """
        timing_raw = self.__dict__.get("timing_raw")
        if timing_raw is None:
            self._write_step_rewards(batch, metrics)
        else:
            with marked_timer(REWARD_TIMER, timing_raw):
                self._write_step_rewards(batch, metrics)
        metrics.update(self._judge_metrics(METRIC_PREFIX))
        return super()._compute_advantage(batch, metrics)

    def _write_step_rewards(self, batch: KVBatchMeta, metrics: dict) -> RewardBreakdown:
        """Steps 1-4 of the module docstring; returns the step's breakdown (one entry per session)."""
        select = ["responses", "extra_fields", *INFO_FIELDS]
        data = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=select)
        lengths = data["responses"].offsets().diff().tolist()
        rows = select_step_rows(batch.keys, batch.tags, read_row_infos(data, len(batch.keys)))
        cfg = self.audio_thinker_config
        self._warn_if_judge_missing(cfg, rows.infos)
        breakdown = compute_step_rewards(
            rows.infos, cfg=cfg, step=int(self.global_steps), total_steps=self.total_training_steps
        )

        masked_rows = [s >= 0 and bool(breakdown.masked[s]) for s in rows.session_of_row]
        row_rewards = [0.0 if s < 0 or masked else float(breakdown.overall[s])
                       for s, masked in zip(rows.session_of_row, masked_rows)]
        fields: dict[str, Any] = {"rm_scores": build_rm_scores(row_rewards, lengths)}
        if any(masked_rows):  # a GRPO group of their own (module docstring)
            uids = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=["uid"])
            fields["uid"] = masked_row_uids(_as_list(uids["uid"]), masked_rows)
        tq.kv_batch_put(keys=batch.keys, partition_id=batch.partition_id, fields=tu.get_tensordict(fields))

        metrics.update(
            compute_step_metrics(
                breakdown,
                difficulties=[info.get("difficulty") for info in rows.infos],
                response_lengths=[lengths[row] for row in rows.final_rows],
                prefix=METRIC_PREFIX,
            )
        )
        metrics[METRIC_PREFIX + "padding_rows"] = float(sum(s < 0 for s in rows.session_of_row))
        return breakdown

    def _warn_if_judge_missing(self, cfg: AudioThinkerConfig, infos: Sequence[ResponseInfo]) -> None:
        """A judge mode with no judge columns at all: every judgement is unavailable (warn once)."""
        if not RewardMode(cfg.reward.mode).uses_judge or self.__dict__.get("_judge_warned"):
            return
        if not any(CONSISTENCY_KEY in info or QUALITY_KEY in info for info in infos):
            self._judge_warned = True
            logger.warning(
                "audio_thinker.reward.mode=%s uses judges but no response carries judge verdicts: every "
                "judgement counts as unavailable and every THINK response is masked out of the loss. "
                "Set a judge client or use reward.mode=atar.", cfg.reward.mode,
            )
