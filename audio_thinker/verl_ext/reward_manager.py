"""Per-response rule rewards in verl's V1 reward loop (``reward.reward_manager``).

verl's reward loop scores one trajectory at a time, while rollout is still running: the agent
loop sends each finished response to a ``RewardLoopWorker`` actor, which calls
:meth:`AudioThinkerRewardManager.run_single`. No reward manager sees the whole step, so the
batch-level part of the reward (lambda, the annealed gammas, ATAR, the overall R) is computed
later by :class:`audio_thinker.verl_ext.trainer.AudioThinkerTrainer`. This manager does the
per-response work and hands the trainer everything it needs in ``reward_extra_info``.

Selected in ``conf/audio_thinker_grpo.yaml`` (``source: importlib``, class
``AudioThinkerRewardManager``); also registered with verl's registry as ``audio_thinker``
(``reward.reward_manager.source=register reward.reward_manager.name=audio_thinker`` once this
module has been imported in the reward workers).

Per response:

1. decode the valid response tokens with ``skip_special_tokens=False`` (``<think>``/``<answer>``
   survive even when a tokenizer marks them special), after dropping trailing pad tokens, and
   strip trailing end-of-sequence tokens (Qwen's ``<|im_end|>``/``<|endoftext|>`` and the
   tokenizer's own eos/pad strings);
2. parse and check the answer with the pure core (:func:`~audio_thinker.rewards.combine.score_response`)
   against ``reward_model.ground_truth`` and ``extra_info.choices``;
3. return ``{"reward_score": acc, "reward_extra_info": ResponseInfo}``.

``reward_score`` is provisional: correctness 1/0. verl writes it as ``rm_scores`` (validation
reports it as ``reward`` and ``acc`` is verl's core validation metric); the trainer overwrites
``rm_scores`` of training steps with the batch-level reward before GRPO.

Judges (consistency R_c, think quality R_t) join through one seam,
:attr:`AudioThinkerRewardManager.judge_client` (a :class:`~audio_thinker.rewards.verdict.JudgeClient`).
When ``audio_thinker.reward.mode`` uses a judge (``atar_cr`` / ``atar_cr_tr``) it is a
:class:`reward_workers.pool.PoolJudgeClient`, which sends each THINK response to the job's judge
pool (a named Ray actor the trainer creates); NO-THINK and malformed responses make no judge call.
The verdicts are added as ``judge_consistency`` / ``judge_quality`` (a number, or ``None`` when there
is none) and the reason a verdict is missing as ``judge_consistency_failure`` /
``judge_quality_failure`` (``""``, ``"unparseable"`` or ``"unavailable"``; two columns because verl
averages numeric ``reward_extra_info`` columns in validation and a column mixing numbers and strings
would break it). A judge call that raises makes the mode's judgements unavailable. The trainer
rebuilds each judgement with :func:`judgements_from_info`: an unparseable one counts as the worst
verdict, an unavailable one masks the response out of the step's loss (docs/reward.md).
Without a judge those keys are absent and every THINK response's judgements count as unavailable.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, TypedDict

from verl import DataProto
from verl.experimental.reward_loop.reward_manager import register
from verl.experimental.reward_loop.reward_manager.base import RewardManagerBase
from verl.experimental.reward_loop.reward_manager.registry import REWARD_MANAGER

from audio_thinker.config import load_config
from audio_thinker.rewards.combine import RuleScore, score_response
from audio_thinker.rewards.parsing import DEFAULT_EOS_TOKENS, ParsedResponse, ResponseMode, strip_eos
from audio_thinker.data.rows import to_plain
from audio_thinker.rewards.verdict import JudgeClient, JudgeFailure, judgement_failure

logger = logging.getLogger(__name__)

#: name in verl's reward-manager registry
REGISTERED_NAME = "audio_thinker"

#: reward_extra_info keys holding the judges' verdicts (present only when a judge client is set)
CONSISTENCY_KEY = "judge_consistency"
QUALITY_KEY = "judge_quality"
#: reward_extra_info keys holding why a verdict is missing: "" | "unparseable" | "unavailable"
CONSISTENCY_FAILURE_KEY = "judge_consistency_failure"
QUALITY_FAILURE_KEY = "judge_quality_failure"
#: judgement kind -> (verdict key, failure key)
JUDGE_KEYS = {"consistency": (CONSISTENCY_KEY, CONSISTENCY_FAILURE_KEY),
              "quality": (QUALITY_KEY, QUALITY_FAILURE_KEY)}


class ResponseInfo(TypedDict, total=False):
    """``reward_extra_info`` of one response: JSON-able scalars only (verl stacks them with np.array)."""

    #: correctness 1.0 / 0.0 (malformed: 0.0); verl's core validation metric is named ``acc``
    acc: float
    #: format reward R_f: 1.0 for THINK / NO-THINK, 0.0 for MALFORMED
    format: float
    #: "think" | "no_think" | "malformed"
    mode: str
    #: counts as THINK for lambda (THINK, or MALFORMED containing ``<think>``)
    counts_as_think: bool
    #: the stripped response contains ``<think>`` (rebuilds the parse in the trainer)
    has_think_tag: bool
    #: extracted answer ("" when malformed)
    answer: str
    #: characters of the think block (0 when there is none)
    think_chars: int
    #: valid response tokens scored
    response_tokens: int
    #: ``extra_info.difficulty`` / ``extra_info.task`` of the row ("" when absent)
    difficulty: str
    task: str
    #: consistency verdict 1/0 for THINK responses, None otherwise or without a verdict (judge only)
    judge_consistency: int | None
    #: think-quality verdict in [0, 1] for THINK responses, None otherwise or without a verdict (judge only)
    judge_quality: float | None
    #: why a THINK response's consistency verdict is missing: "unparseable" | "unavailable"; "" otherwise
    judge_consistency_failure: str
    #: why a THINK response's think-quality verdict is missing: "unparseable" | "unavailable"; "" otherwise
    judge_quality_failure: str


def eos_strings(tokenizer: Any) -> tuple[str, ...]:
    """Qwen's end-of-sequence strings plus the tokenizer's own eos and pad tokens."""
    extra = [getattr(tokenizer, "eos_token", None), getattr(tokenizer, "pad_token", None)]
    return tuple(dict.fromkeys([*DEFAULT_EOS_TOKENS, *(t for t in extra if t)]))


def decode_response(tokenizer: Any, response_ids: Sequence[int]) -> str:
    """Decode valid response ids keeping special tokens; trailing pad and eos tokens removed."""
    ids = [int(i) for i in response_ids]
    pad = getattr(tokenizer, "pad_token_id", None)
    while ids and pad is not None and ids[-1] == pad:
        ids.pop()
    text = tokenizer.decode(ids, skip_special_tokens=False)
    return strip_eos(text, eos_strings(tokenizer))


def build_response_info(
    score: RuleScore, *, response_tokens: int, extra_info: Mapping[str, Any]
) -> ResponseInfo:
    """The ``reward_extra_info`` of one scored response."""
    parsed = score.parsed
    return ResponseInfo(
        acc=1.0 if score.correct else 0.0,
        format=score.format_reward,
        mode=parsed.mode.value,
        counts_as_think=parsed.counts_as_think,
        has_think_tag=parsed.has_think_tag,
        answer=parsed.answer or "",
        think_chars=len(parsed.think or ""),
        response_tokens=int(response_tokens),
        difficulty=str(extra_info.get("difficulty") or ""),
        task=str(extra_info.get("task") or ""),
    )


def parsed_from_info(info: Mapping[str, Any]) -> ParsedResponse:
    """Rebuild the parse the batch-level reward needs (mode, think-tag flag, answer) from a ResponseInfo."""
    return ParsedResponse(
        mode=ResponseMode(info["mode"]),
        think=None,
        answer=info.get("answer") or None,
        has_think_tag=bool(info["has_think_tag"]),
    )


def judge_info(verdict: Mapping[str, Any] | None, kinds: Sequence[str]) -> dict[str, Any]:
    """The judge columns of one response's ResponseInfo from its client verdict.

    ``verdict`` None: the response needed no judge (every column empty); ``kinds``: the judgement
    kinds the reward mode uses (a kind it does not use gets empty columns).

    >>> info = judge_info({"consistency": 1, "quality": JudgeFailure.UNPARSEABLE}, ["consistency", "quality"])
    >>> info["judge_consistency"], info["judge_consistency_failure"]
    (1, '')
    >>> info["judge_quality"], info["judge_quality_failure"]
    (None, 'unparseable')
    """
    out: dict[str, Any] = {}
    for kind, (value_key, failure_key) in JUDGE_KEYS.items():
        value = None if verdict is None else verdict.get(kind)
        failure = judgement_failure(value) if verdict is not None and kind in kinds else None
        out[value_key] = None if failure is not None or isinstance(value, str) else value
        out[failure_key] = "" if failure is None else failure.value
    return out


def judgements_from_info(info: Mapping[str, Any], kind: str) -> int | float | JudgeFailure | None:
    """The ``kind`` judgement of a ResponseInfo as the pure core reads it (see :func:`judge_info`).

    >>> judgements_from_info({"judge_quality": None, "judge_quality_failure": "unparseable"}, "quality")
    <JudgeFailure.UNPARSEABLE: 'unparseable'>
    >>> judgements_from_info({"judge_quality": 0.4, "judge_quality_failure": ""}, "quality")
    0.4
    """
    value_key, failure_key = JUDGE_KEYS[kind]
    failure = info.get(failure_key) or ""
    return JudgeFailure(failure) if failure else info.get(value_key)


def _register_once(cls: type) -> type:
    """verl's ``@register``, tolerant of this module being executed twice.

    verl's ``file://`` module loading re-executes a module under a new name, which would make
    ``register`` reject the second class object; the first registration is kept instead.
    """
    existing = REWARD_MANAGER.get(REGISTERED_NAME)
    if existing is not None and existing.__qualname__ == cls.__qualname__:
        return cls
    return register(REGISTERED_NAME)(cls)


@_register_once
class AudioThinkerRewardManager(RewardManagerBase):
    """Rule rewards of one response (parse, format, correctness); see the module docstring."""

    #: the LLM-judge seam: set to a :class:`JudgeClient` once the judge pool exists; None = no judge
    judge_client: JudgeClient | None = None

    def __init__(self, config, tokenizer, compute_score=None, reward_router_address=None,
                 reward_model_tokenizer=None, **kwargs: Any):
        super().__init__(config, tokenizer, compute_score)
        section = config.get("audio_thinker") if config is not None else None
        self.audio_thinker_config = load_config(section)
        self.lettered = self.audio_thinker_config.reward.lettered_choices
        mode = self.audio_thinker_config.reward.mode
        #: the judgement kinds the reward mode uses
        self.judge_kinds = tuple(kind for kind, used in (("consistency", mode.uses_consistency),
                                                         ("quality", mode.uses_quality)) if used)
        if self.audio_thinker_config.reward.mode.uses_judge and self.judge_client is None:
            from reward_workers.pool import PoolJudgeClient, default_deadline_s

            self.judge_client = PoolJudgeClient(deadline_s=default_deadline_s(self.audio_thinker_config.judge))
        self.reward_router_address = reward_router_address
        self.reward_model_tokenizer = reward_model_tokenizer

    async def run_single(self, data: DataProto) -> dict:
        """Score the last sequence of ``data`` (one trajectory); see the module docstring."""
        item = data[-1:][0]  # multi-output agent loops: the final output carries the reward
        response_ids = item.batch["responses"]
        response_length = response_ids.shape[-1]
        valid_length = int(item.batch["attention_mask"][-response_length:].sum())
        valid_ids = response_ids[:valid_length].tolist()

        extra_info = to_plain(item.non_tensor_batch.get("extra_info", None)) or {}
        ground_truth = to_plain(item.non_tensor_batch["reward_model"])["ground_truth"]
        choices = [str(c) for c in (to_plain(extra_info.get("choices")) or [])]

        # Decoding and parsing take microseconds for a few hundred tokens: no executor needed.
        text = decode_response(self.tokenizer, valid_ids)
        score = score_response(text, gold=str(ground_truth), choices=choices, lettered=self.lettered)
        info = build_response_info(score, response_tokens=len(valid_ids), extra_info=extra_info)
        if self.judge_client is not None:
            info.update(await self._judge(score.parsed, question=str(extra_info.get("question") or ""),
                                          choices=choices))
        return {"reward_score": info["acc"], "reward_extra_info": dict(info)}

    async def _judge(self, parsed: ParsedResponse, *, question: str, choices: Sequence[str] = ()) -> dict[str, Any]:
        """The judge columns of a response (:func:`judge_info`); only THINK responses are judged."""
        if parsed.mode is not ResponseMode.THINK:
            return judge_info(None, self.judge_kinds)
        try:
            verdict = await self.judge_client.judge(
                question=question, choices=list(choices), think=parsed.think, answer=parsed.answer
            )
        except Exception:  # a judge failure must never fail the step: counted by the trainer
            logger.exception("judge call failed; this response's judgements are unavailable (masked)")
            verdict = {}
        return judge_info(verdict, self.judge_kinds)
