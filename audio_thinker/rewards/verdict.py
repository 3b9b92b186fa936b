"""The judge's contract types, shared by the reward manager and the judge pool (standard library only).

* :class:`GenerationParams`: how the judge writes its verdict (one short line after the prompt's cue).
* :class:`JudgeVerdict`: the verdicts of one THINK response (``None`` = that judgement failed).
* :class:`JudgeClient`: the seam the reward manager calls per THINK response; the judge pool's
  ``reward_workers.pool.PoolJudgeClient`` implements it.

They live in the pure core so that ``audio_thinker`` never needs ``reward_workers`` to name them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, TypedDict

__all__ = ["GenerationParams", "JudgeClient", "JudgeVerdict"]


@dataclass(frozen=True)
class GenerationParams:
    """How the judge writes its verdict (``audio_thinker.judge.max_new_tokens`` / ``temperature``)."""

    #: new tokens the judge may write (a verdict is one short line)
    max_new_tokens: int = 8
    #: 0 = greedy
    temperature: float = 0.0
    #: the verdict is the first line: generation may stop at a newline
    stop: tuple[str, ...] = ("\n",)


class JudgeVerdict(TypedDict):
    """What a judge client returns for one THINK response (``None`` = that judgement failed)."""

    #: 1 (the answer follows from the reasoning) / 0; see ``judge_parsing.parse_consistency``
    consistency: int | None
    #: think quality in [0, 1]; see ``judge_parsing.parse_quality``
    quality: float | None


class JudgeClient(Protocol):
    """Scores one THINK response; never raises on a judge failure (the verdict is ``None`` instead)."""

    async def judge(
        self, *, question: str, choices: Sequence[str], think: str, answer: str
    ) -> JudgeVerdict: ...
