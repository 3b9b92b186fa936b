"""The judge's contract types, shared by the reward manager and the judge pool (standard library only).

* :class:`GenerationParams`: how the judge writes its verdict (one short line after the prompt's cue).
* :class:`JudgeFailure`: why a judgement has no verdict, which decides how the reward treats it.
* :class:`JudgeVerdict`: the verdicts of one THINK response.
* :class:`JudgeClient`: the seam the reward manager calls per THINK response; the judge pool's
  ``reward_workers.pool.PoolJudgeClient`` implements it.

They live in the pure core so that ``audio_thinker`` never needs ``reward_workers`` to name them.

A judgement is one of three things, and the reward treats each differently
(:func:`audio_thinker.rewards.combine.compute_rewards`):

* a **verdict** (``1`` / ``0``, a quality in [0, 1]): used as it is;
* :attr:`JudgeFailure.UNPARSEABLE`: the judge answered, but not with an allowed value. It counts
  as the worst verdict (``R_c = 0``, ``R_t = 0``), so output that breaks the judge never pays;
* ``None`` (or :attr:`JudgeFailure.UNAVAILABLE`): no answer arrived (timeout, dead worker,
  backend error after the retries, a failed pool call). The response is masked out of the
  step's policy loss instead of being given an invented score.

>>> judgement_failure(0.7), judgement_failure(JudgeFailure.UNPARSEABLE), judgement_failure(None)
(None, <JudgeFailure.UNPARSEABLE: 'unparseable'>, <JudgeFailure.UNAVAILABLE: 'unavailable'>)
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, TypedDict

__all__ = ["GenerationParams", "JudgeClient", "JudgeFailure", "JudgeVerdict", "judgement_failure"]


@dataclass(frozen=True)
class GenerationParams:
    """How the judge writes its verdict (``audio_thinker.judge.max_new_tokens`` / ``temperature``)."""

    #: new tokens the judge may write (a verdict is one short line)
    max_new_tokens: int = 8
    #: 0 = greedy
    temperature: float = 0.0
    #: the verdict is the first line: generation may stop at a newline
    stop: tuple[str, ...] = ("\n",)


class JudgeFailure(str, enum.Enum):
    """Why a judgement has no verdict; ``.value`` (also ``str()``) is the string stored per response."""

    #: the judge answered, but not with an allowed value: counts as the worst verdict
    UNPARSEABLE = "unparseable"
    #: no answer (timeout, dead worker, backend error after retries): the response is masked
    UNAVAILABLE = "unavailable"

    def __str__(self) -> str:
        return self.value


class JudgeVerdict(TypedDict):
    """What a judge client returns for one THINK response, per judgement kind.

    Each value is the verdict, :attr:`JudgeFailure.UNPARSEABLE`, or ``None`` (no answer arrived).
    A kind the client was not asked for is ``None``.
    """

    #: 1 (the answer follows from the reasoning) / 0; see ``judge_parsing.parse_consistency``
    consistency: int | JudgeFailure | None
    #: think quality in [0, 1]; see ``judge_parsing.parse_quality``
    quality: float | JudgeFailure | None


def judgement_failure(value: object) -> JudgeFailure | None:
    """Why ``value`` (one judgement) is not a verdict, or ``None`` when it is one.

    ``None`` is an unavailable judgement; a :class:`JudgeFailure` or its string value is itself.
    Anything else is a verdict (its range is checked where it is used).
    """
    if value is None:
        return JudgeFailure.UNAVAILABLE
    if isinstance(value, JudgeFailure):
        return value
    if isinstance(value, str):
        try:
            return JudgeFailure(value)
        except ValueError:
            raise ValueError(
                f"judgement {value!r} is neither a verdict nor one of "
                f"{[f.value for f in JudgeFailure]}") from None
    return None


class JudgeClient(Protocol):
    """Scores one THINK response; never raises on a judge failure (see :class:`JudgeVerdict`)."""

    async def judge(
        self, *, question: str, choices: Sequence[str], think: str, answer: str
    ) -> JudgeVerdict: ...
