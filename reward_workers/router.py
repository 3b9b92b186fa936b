"""The judge pool's core: judge prompts, dedup, retries and step metrics over a dispatcher.

Pure asyncio over a list of :class:`~reward_workers.backend.JudgeWorker` objects, so every
behaviour is testable in-process with fake workers; :mod:`reward_workers.pool` only hosts a
:class:`JudgeRouter` in a Ray actor. The queue, per-worker batching, call deadlines and worker
restarts are :mod:`reward_workers.dispatch`; the metric names are :mod:`reward_workers.metrics`.

Why it is built this way
------------------------
* **Scores arrive one response at a time.** verl's reward loop scores each trajectory as soon as
  its rollout ends (``RewardLoopWorker`` actors), so judge requests trickle in during generation.
  :meth:`JudgeRouter.judge` is awaited per THINK response; the router turns the trickle into
  batches and the judging overlaps with the rest of rollout. Only the judging of the last
  responses is not hidden behind generation: that is ``judge/wait_s``.
* **Bounded retries, another worker if possible.** A request whose call failed (timeout, dead
  worker, backend error) is queued again, at most ``max_retries`` times, and avoids the workers it
  already failed on while another live worker exists
  (:meth:`~reward_workers.dispatch.Dispatcher.submit`). After the last
  attempt its result is ``None``: no answer, an infrastructure failure.
* **Identical requests within a step are generated once.** ``(kind, prompt)`` is the key (the
  prompt embeds question, choices, think, answer and the template version): the first request
  creates the generation, later identical ones await the same result. Successful results stay
  cached until :meth:`JudgeRouter.collect_metrics` ends the step; a failed one is dropped at once
  so a later identical request gets a fresh try. Waiters are shielded: one caller giving up does
  not cancel the generation the others share.
* **Never raises for judge failures, and says which failure it was.** :meth:`JudgeRouter.judge`
  returns :attr:`~audio_thinker.rewards.verdict.JudgeFailure.UNPARSEABLE` for a judgement whose
  continuation arrived but holds no allowed verdict (the reward counts it as the worst verdict) and
  ``None`` for one with no continuation after the retries (timeout, dead worker, backend error,
  router closed or an internal error: the reward masks that response out of the step's loss).
  The line is whether a continuation arrived, not why it did not: a backend error the prompt itself
  causes (an endpoint rejecting a too-long prompt) is unavailable too
  (:func:`audio_thinker.rewards.combine.compute_rewards`).
* **Only the continuation is parsed.** Prompts come from :mod:`audio_thinker.rewards.judge_prompts`
  (untrusted text fenced), verdicts from :mod:`audio_thinker.rewards.judge_parsing` applied to the
  worker's continuation only: think text that imitates the template cannot become a verdict.
* **Defaults are the config schema's** (:class:`audio_thinker.config.JudgeSection`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from audio_thinker.config import JudgeSection
from audio_thinker.rewards.judge_parsing import parse_consistency, parse_quality
from audio_thinker.rewards.judge_prompts import TEMPLATES, JudgeKind, build_judge_prompt
from audio_thinker.rewards.verdict import GenerationParams, JudgeFailure, JudgeVerdict
from reward_workers.backend import JudgeError, JudgeTimeout, JudgeWorker, JudgeWorkerDead
from reward_workers.dispatch import Dispatcher
from reward_workers.metrics import StepStats

__all__ = ["JudgeRouter"]

logger = logging.getLogger(__name__)

#: the schema's defaults (one home: audio_thinker.config.JudgeSection)
_DEFAULTS = JudgeSection()

_PARSERS: dict[JudgeKind, Callable[[str], int | float | None]] = {
    JudgeKind.CONSISTENCY: parse_consistency,
    JudgeKind.QUALITY: parse_quality,
}


class JudgeRouter:
    """Routes judge requests to workers; see the module docstring. Use from one asyncio loop."""

    def __init__(
        self,
        workers: Sequence[JudgeWorker],
        *,
        params: GenerationParams | None = None,
        batch_size: int = _DEFAULTS.batch_size,
        batch_wait_s: float = _DEFAULTS.batch_wait_ms / 1000.0,
        timeout_s: float = _DEFAULTS.timeout_s,
        max_retries: int = _DEFAULTS.max_retries,
        prompt_version: str = _DEFAULTS.prompt_version,
        kinds: Iterable[str | JudgeKind] = (JudgeKind.CONSISTENCY, JudgeKind.QUALITY),
        grace_s: float = 5.0,
        start_timeout_s: float = _DEFAULTS.start_timeout_s,
        restart_backoff_s: float = 1.0,
        max_restart_backoff_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ):
        """``params`` default: the schema's ``max_new_tokens`` and ``temperature``."""
        if batch_size < 1 or timeout_s <= 0 or max_retries < 0 or batch_wait_s < 0:
            raise ValueError(
                "batch_size >= 1, timeout_s > 0, max_retries >= 0 and batch_wait_s >= 0 required")
        if params is None:
            params = GenerationParams(max_new_tokens=_DEFAULTS.max_new_tokens,
                                      temperature=_DEFAULTS.temperature)
        self._dispatch = Dispatcher(
            workers, params=params, batch_size=batch_size, batch_wait_s=batch_wait_s, timeout_s=timeout_s,
            grace_s=grace_s, start_timeout_s=start_timeout_s, restart_backoff_s=restart_backoff_s,
            max_restart_backoff_s=max_restart_backoff_s, clock=clock,
        )
        self.max_retries = int(max_retries)
        self.kinds = tuple(dict.fromkeys(JudgeKind(k) for k in kinds))
        if not self.kinds:
            raise ValueError("a judge router needs at least one judgement kind")
        for kind in self.kinds:
            if prompt_version not in TEMPLATES[kind]:
                raise ValueError(f"unknown {kind.value} judge prompt version {prompt_version!r}; "
                                 f"known: {sorted(TEMPLATES[kind])}")
        self.prompt_version = prompt_version
        self._clock = clock
        self._wall = wall_clock
        self._cache: dict[tuple[JudgeKind, str], asyncio.Task] = {}

    @classmethod
    def from_config(cls, workers: Sequence[JudgeWorker], cfg: JudgeSection, **overrides: Any) -> JudgeRouter:
        """A router configured from an ``audio_thinker.judge`` section."""
        options: dict[str, Any] = {
            "params": GenerationParams(max_new_tokens=int(cfg.max_new_tokens),
                                       temperature=float(cfg.temperature)),
            "batch_size": int(cfg.batch_size), "batch_wait_s": float(cfg.batch_wait_ms) / 1000.0,
            "timeout_s": float(cfg.timeout_s), "max_retries": int(cfg.max_retries),
            "prompt_version": str(cfg.prompt_version), "start_timeout_s": float(cfg.start_timeout_s),
        }
        options.update(overrides)
        return cls(workers, **options)

    # -- the dispatcher's settings (read-only) -------------------------------------------------

    @property
    def params(self) -> GenerationParams:
        return self._dispatch.params

    @property
    def batch_size(self) -> int:
        return self._dispatch.batch_size

    @property
    def batch_wait_s(self) -> float:
        return self._dispatch.batch_wait_s

    @property
    def timeout_s(self) -> float:
        return self._dispatch.timeout_s

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def workers(self) -> list[JudgeWorker]:
        return self._dispatch.workers

    async def start(self) -> None:
        """Start every worker that has an ``async start()`` (concurrently); failed ones begin dead.

        Optional: a router that was not started uses its workers as they are.
        """
        await self._dispatch.start()

    async def close(self) -> None:
        """Stop dispatching, fail what is pending, close every worker (errors ignored)."""
        await self._dispatch.close()

    def worker_states(self) -> list[dict[str, Any]]:
        """Per worker: name, alive, calls in flight, prompts sent so far, restarting."""
        return self._dispatch.worker_states()

    # -- the JudgeClient seam ------------------------------------------------------------------

    async def judge(
        self,
        *,
        question: str,
        choices: Sequence[str],
        think: str,
        answer: str,
        submitted_at: float | None = None,
    ) -> JudgeVerdict:
        """Both judgements of one THINK response; never raises.

        Each is the verdict, :attr:`JudgeFailure.UNPARSEABLE` (the judge answered something else)
        or ``None`` (no answer after the retries; also for a kind this router does not request).

        ``submitted_at``: wall-clock time (``time.time()``) the response was handed to the judge
        by the caller (defaults to now); the last one of a step starts ``judge/wait_s``.
        """
        stats = self._dispatch.stats
        submitted = self._wall() if submitted_at is None else float(submitted_at)
        stats.think_responses += 1
        if stats.last_submitted is None or submitted > stats.last_submitted:
            stats.last_submitted = submitted
        verdict: dict[str, Any] = {JudgeKind.CONSISTENCY.value: None, JudgeKind.QUALITY.value: None}
        try:
            prompts = [
                build_judge_prompt(kind, question=str(question), choices=[str(c) for c in choices],
                                   think=str(think), answer=str(answer), version=self.prompt_version)
                for kind in self.kinds
            ]
            texts = await asyncio.gather(
                *(self._request(kind, p, stats) for kind, p in zip(self.kinds, prompts)))
            for kind, text in zip(self.kinds, texts):
                verdict[kind.value] = _verdict(kind, text, stats)
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug or bad input must not fail the step: the verdicts stay None
            stats.internal_errors += 1
            missing = sum(verdict[k.value] is None for k in self.kinds)
            stats.failures += missing
            stats.unavailable += missing
            logger.exception("judge request failed inside the router; returning failed verdicts")
        done = self._wall()
        stats.last_done = done if stats.last_done is None else max(stats.last_done, done)
        if all(isinstance(verdict[k.value], (int, float)) for k in self.kinds):
            stats.judged_responses += 1
        return JudgeVerdict(consistency=verdict["consistency"], quality=verdict["quality"])

    async def request(self, kind: str | JudgeKind, prompt: str) -> str | None:
        """The continuation of one judge prompt (deduplicated, retried); ``None`` when it failed."""
        return await self._request(JudgeKind(kind), prompt, self._dispatch.stats)

    def collect_metrics(self) -> dict[str, float]:
        """The current step's metrics; starts a new step (fresh counters, empty dedup cache).

        Call it once the step's verdicts are in: a request still running counts in the step it
        was submitted in (whose metrics were already collected).
        """
        stats = self._dispatch.new_step()
        self._cache = {}
        return stats.summary(workers_alive=self._dispatch.workers_alive())

    # -- requests: dedup and retries -----------------------------------------------------------

    async def _request(self, kind: JudgeKind, prompt: str, stats: StepStats) -> str | None:
        if self._dispatch.closed:
            stats.requests += 1
            return None
        self._dispatch.ensure_running()
        stats.requests += 1
        key = (kind, prompt)
        cache = self._cache
        task = cache.get(key)
        if task is None:
            stats.unique_requests += 1
            task = self._dispatch.spawn(self._run_unique(kind, prompt, stats))
            cache[key] = task
            task.add_done_callback(lambda done, cache=cache, key=key: _drop_failed(cache, key, done))
        else:
            stats.dedup_hits += 1
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if self._dispatch.closed or task.cancelled():
                return None
            raise

    async def _run_unique(self, kind: JudgeKind, prompt: str, stats: StepStats) -> str | None:
        started = self._clock()
        failed_on: set[str] = set()
        for attempt in range(self.max_retries + 1):
            if self._dispatch.closed:
                break
            if attempt:
                stats.retries += 1
            try:
                text = await self._dispatch.submit(prompt, failed_on)
            except JudgeTimeout:
                stats.timeouts += 1
            except JudgeWorkerDead:
                pass  # counted once per worker as a death
            except JudgeError as error:
                stats.worker_errors += 1
                logger.debug("judge attempt failed: %s", error)
            else:
                stats.latencies.append(self._clock() - started)
                return text
        stats.call_failures += 1
        return None


def _verdict(kind: JudgeKind, text: str | None, stats: StepStats) -> int | float | JudgeFailure | None:
    """One judgement from its continuation (``None``: none arrived), counted in ``stats``."""
    if text is None:
        stats.failures += 1
        stats.unavailable += 1
        return None
    value = _PARSERS[kind](text)
    if value is None:
        stats.failures += 1
        stats.unparseable += 1
        return JudgeFailure.UNPARSEABLE
    (stats.consistency if kind is JudgeKind.CONSISTENCY else stats.quality).append(float(value))
    return value


def _drop_failed(cache: dict, key: tuple, task: asyncio.Task) -> None:
    """Done-callback: forget a failed generation so a later identical request tries again."""
    failed = task.cancelled() or task.exception() is not None or task.result() is None
    if failed and cache.get(key) is task:
        del cache[key]
