"""The judge pool's core: batching, load balancing, retries, restarts, dedup and step metrics.

Pure asyncio over a list of :class:`~reward_workers.backend.JudgeWorker` objects, so every
behaviour is testable in-process with fake workers; :mod:`reward_workers.pool` only hosts a
:class:`JudgeRouter` in a Ray actor.

Why it is built this way
------------------------
* **Scores arrive one response at a time.** verl's reward loop scores each trajectory as soon as
  its rollout ends (``RewardLoopWorker`` actors), so judge requests trickle in during generation.
  :meth:`JudgeRouter.judge` is awaited per THINK response; the router turns the trickle into
  batches and the judging overlaps with the rest of rollout. Only the judging of the last
  responses is not hidden behind generation: that is ``judge/wait_s``.
* **Pull-based per-worker batching = least-outstanding balancing.** Requests wait in one shared
  queue. Each worker has a dispatcher that, whenever the worker has a free call slot
  (``max_concurrent_calls``, 1 unless the worker says otherwise), takes up to ``batch_size``
  requests, after waiting at most ``batch_wait_s`` since the oldest one arrived for more to join.
  A busy or dead worker takes nothing, so work always goes to a worker with the fewest calls
  outstanding; when several are idle the queue is split evenly between them
  (``ceil(queued / idle)`` each) instead of the first one taking everything.
* **Per-request deadline, bounded retries, another worker if possible.** Every call carries
  ``timeout_s`` to the worker and is also cut off by the router ``grace_s`` later (a worker that
  ignores its deadline cannot stall the step). A request whose call failed (timeout, dead worker,
  backend error) is queued again, at most ``max_retries`` times, and avoids the workers it already
  failed on while another live worker exists. A request that waited ``timeout_s`` in the queue
  while *no* worker was alive fails its attempt. After the last attempt its result is ``None``.
* **Dead workers are restarted in the background and routed around meanwhile.** A
  :class:`~reward_workers.backend.JudgeWorkerDead` takes the worker out of rotation and starts a
  restart loop (``worker.restart()``, exponential back-off between failed tries); the worker takes
  work again once it is back. Workers may define an optional ``async start()`` (e.g. load a model
  and wait for it): :meth:`JudgeRouter.start` awaits it, and a worker whose start fails begins
  dead. Workers may define ``max_concurrent_calls`` (an int attribute) to get several calls at
  once (an HTTP endpoint, a vLLM engine with continuous batching).
* **Identical requests within a step are generated once.** ``(kind, prompt)`` is the key (the
  prompt embeds question, choices, think, answer and the template version): the first request
  creates the generation, later identical ones await the same result. Successful results stay
  cached until :meth:`JudgeRouter.collect_metrics` ends the step; a failed one is dropped at once
  so a later identical request gets a fresh try. Waiters are shielded: one caller giving up does
  not cancel the generation the others share.
* **Never raises for judge failures.** :meth:`JudgeRouter.judge` returns ``None`` for every
  judgement it could not obtain (call failure or unparseable verdict); the trainer replaces it with
  the batch mean (:func:`audio_thinker.rewards.combine.compute_rewards`).
* **Only the continuation is parsed.** Prompts come from :mod:`audio_thinker.rewards.judge_prompts`
  (untrusted text fenced), verdicts from :mod:`audio_thinker.rewards.judge_parsing` applied to the
  worker's continuation only: think text that imitates the template cannot become a verdict.

Metrics of one step (:meth:`JudgeRouter.collect_metrics`, all floats, ``judge/`` prefix):
``think_responses`` (judge calls), ``judged_fraction`` (responses with every verdict / think
responses), ``requests`` (judgements asked for), ``unique_requests`` / ``dedup_hits``, ``calls``
and ``batch_size_mean`` (worker calls), ``failures`` (judgements returned as ``None``),
``call_failures`` (unique requests that failed every attempt), ``unparseable``, ``retries``,
``timeouts``, ``worker_errors`` (backend errors), ``worker_deaths``, ``worker_restarts``,
``restart_failures``, ``workers_alive``, ``latency_p50_s`` / ``latency_p95_s`` / ``latency_max_s``
(successful unique requests, queueing and retries included), ``consistency_mean`` /
``quality_mean`` (successful verdicts), ``wait_s`` (last verdict returned minus last THINK response
submitted: judge time not hidden behind generation), ``busy_s`` (wall time with at least one worker
call in flight), ``worker_busy_s`` (sum over calls), ``internal_errors``. Means and percentiles
are NaN when the step had no data (loggers show a gap, not a fake 0).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypedDict

from audio_thinker.rewards.judge_parsing import parse_consistency, parse_quality
from audio_thinker.rewards.judge_prompts import TEMPLATES, JudgeKind, build_judge_prompt
from reward_workers.backend import (
    GenerationParams,
    JudgeBackendError,
    JudgeError,
    JudgeTimeout,
    JudgeWorker,
    JudgeWorkerDead,
)

__all__ = ["JudgeRouter", "JudgeVerdict", "StepStats", "percentile"]

logger = logging.getLogger(__name__)

#: metric-name prefix of every router metric
PREFIX = "judge/"
#: generation settings when none are given (GenerationParams' defaults: greedy, 8 tokens, one line)
DEFAULT_PARAMS = GenerationParams()


class JudgeVerdict(TypedDict):
    """One THINK response's verdicts (``None`` = failed); the same shape as
    :class:`audio_thinker.verl_ext.reward_manager.JudgeVerdict` (not imported: that module loads verl)."""

    consistency: int | None
    quality: float | None


_PARSERS: dict[JudgeKind, Callable[[str], int | float | None]] = {
    JudgeKind.CONSISTENCY: parse_consistency,
    JudgeKind.QUALITY: parse_quality,
}


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) with linear interpolation (numpy's default); NaN if empty.

    >>> percentile([1.0, 2.0, 3.0, 4.0], 50), percentile([5.0], 95), percentile(range(1, 21), 95)
    (2.5, 5.0, 19.05)
    """
    data = sorted(float(v) for v in values)
    if not data:
        return math.nan
    position = (len(data) - 1) * min(max(q, 0.0), 100.0) / 100.0
    low = math.floor(position)
    high = min(low + 1, len(data) - 1)
    return data[low] + (data[high] - data[low]) * (position - low)


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan


@dataclass
class StepStats:
    """Counters of one step; :meth:`summary` turns them into the ``judge/...`` metrics."""

    think_responses: int = 0
    judged_responses: int = 0
    requests: int = 0
    unique_requests: int = 0
    dedup_hits: int = 0
    calls: int = 0
    call_prompts: int = 0
    failures: int = 0
    call_failures: int = 0
    unparseable: int = 0
    retries: int = 0
    timeouts: int = 0
    worker_errors: int = 0
    worker_deaths: int = 0
    worker_restarts: int = 0
    restart_failures: int = 0
    internal_errors: int = 0
    latencies: list[float] = field(default_factory=list)
    consistency: list[float] = field(default_factory=list)
    quality: list[float] = field(default_factory=list)
    #: wall-clock time (time.time) of the last THINK response submitted / the last verdict returned
    last_submitted: float | None = None
    last_done: float | None = None
    busy_s: float = 0.0
    worker_busy_s: float = 0.0

    def summary(self, *, workers_alive: int) -> dict[str, float]:
        """The step's metrics (see the module docstring for each name)."""
        wait = 0.0
        if self.last_submitted is not None and self.last_done is not None:
            wait = max(0.0, self.last_done - self.last_submitted)
        values = {
            "think_responses": self.think_responses,
            "judged_fraction": (self.judged_responses / self.think_responses
                                if self.think_responses else math.nan),
            "requests": self.requests, "unique_requests": self.unique_requests, "dedup_hits": self.dedup_hits,
            "calls": self.calls,
            "batch_size_mean": self.call_prompts / self.calls if self.calls else math.nan,
            "failures": self.failures, "call_failures": self.call_failures, "unparseable": self.unparseable,
            "retries": self.retries, "timeouts": self.timeouts, "worker_errors": self.worker_errors,
            "worker_deaths": self.worker_deaths, "worker_restarts": self.worker_restarts,
            "restart_failures": self.restart_failures, "workers_alive": workers_alive,
            "latency_p50_s": percentile(self.latencies, 50), "latency_p95_s": percentile(self.latencies, 95),
            "latency_max_s": max(self.latencies) if self.latencies else math.nan,
            "consistency_mean": _mean(self.consistency), "quality_mean": _mean(self.quality),
            "wait_s": wait, "busy_s": self.busy_s, "worker_busy_s": self.worker_busy_s,
            "internal_errors": self.internal_errors,
        }
        return {PREFIX + name: float(value) for name, value in values.items()}


class _Slot:
    """A worker as the router tracks it."""

    def __init__(self, worker: JudgeWorker, index: int):
        self.worker = worker
        self.name = str(getattr(worker, "name", "") or f"worker-{index}")
        self.max_calls = max(1, int(getattr(worker, "max_concurrent_calls", 1) or 1))
        self.calls = 0
        self.alive = True
        self.prompts_sent = 0
        self.dispatcher: asyncio.Task | None = None
        self.restarting: asyncio.Task | None = None

    @property
    def free(self) -> bool:
        return self.alive and self.calls < self.max_calls


@dataclass(eq=False)
class _Pending:
    """One attempt of one unique request, queued or in a worker call."""

    kind: JudgeKind
    prompt: str
    future: asyncio.Future
    avoid: frozenset[str]
    enqueued_at: float
    worker: str | None = None


class JudgeRouter:
    """Routes judge requests to workers; see the module docstring. Use from one asyncio loop."""

    def __init__(
        self,
        workers: Sequence[JudgeWorker],
        *,
        params: GenerationParams = DEFAULT_PARAMS,
        batch_size: int = 16,
        batch_wait_s: float = 0.005,
        timeout_s: float = 60.0,
        max_retries: int = 2,
        prompt_version: str = "v1",
        kinds: Iterable[str | JudgeKind] = (JudgeKind.CONSISTENCY, JudgeKind.QUALITY),
        grace_s: float = 5.0,
        start_timeout_s: float = 900.0,
        restart_backoff_s: float = 1.0,
        max_restart_backoff_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ):
        if not workers:
            raise ValueError("a judge router needs at least one worker")
        if batch_size < 1 or timeout_s <= 0 or max_retries < 0 or batch_wait_s < 0:
            raise ValueError(
                "batch_size >= 1, timeout_s > 0, max_retries >= 0 and batch_wait_s >= 0 required")
        self._slots = [_Slot(worker, i) for i, worker in enumerate(workers)]
        names = [slot.name for slot in self._slots]
        if len(set(names)) != len(names):
            raise ValueError(f"judge worker names must be unique: {names}")
        self.params = params
        self.batch_size = int(batch_size)
        self.batch_wait_s = float(batch_wait_s)
        self.timeout_s = float(timeout_s)
        self.max_retries = int(max_retries)
        self.kinds = tuple(dict.fromkeys(JudgeKind(k) for k in kinds))
        if not self.kinds:
            raise ValueError("a judge router needs at least one judgement kind")
        for kind in self.kinds:
            if prompt_version not in TEMPLATES[kind]:
                raise ValueError(f"unknown {kind.value} judge prompt version {prompt_version!r}; "
                                 f"known: {sorted(TEMPLATES[kind])}")
        self.prompt_version = prompt_version
        self.grace_s = float(grace_s)
        self.start_timeout_s = float(start_timeout_s)
        self.restart_backoff_s = float(restart_backoff_s)
        self.max_restart_backoff_s = float(max_restart_backoff_s)
        self._clock = clock
        self._wall = wall_clock
        self._queue: deque[_Pending] = deque()
        self._changed: asyncio.Event | None = None
        self._stats = StepStats()
        self._cache: dict[tuple[JudgeKind, str], asyncio.Task] = {}
        self._tasks: set[asyncio.Task] = set()
        self._active_calls = 0
        self._busy_since = 0.0
        self._started = False
        self._closed = False

    @classmethod
    def from_config(cls, workers: Sequence[JudgeWorker], cfg: Any, **overrides: Any) -> JudgeRouter:
        """A router configured from an ``audio_thinker.judge`` section (``JudgeSection``)."""
        options: dict[str, Any] = {
            "params": GenerationParams(max_new_tokens=int(cfg.max_new_tokens),
                                       temperature=float(cfg.temperature)),
            "batch_size": int(cfg.batch_size), "timeout_s": float(cfg.timeout_s),
            "max_retries": int(cfg.max_retries), "prompt_version": str(cfg.prompt_version),
        }
        if getattr(cfg, "batch_wait_ms", None) is not None:
            options["batch_wait_s"] = float(cfg.batch_wait_ms) / 1000.0
        if getattr(cfg, "start_timeout_s", None) is not None:
            options["start_timeout_s"] = float(cfg.start_timeout_s)
        options.update(overrides)
        return cls(workers, **options)

    # ------------------------------------------------------------------------------------------
    # lifecycle
    # ------------------------------------------------------------------------------------------

    @property
    def worker_names(self) -> list[str]:
        return [slot.name for slot in self._slots]

    @property
    def workers(self) -> list[JudgeWorker]:
        return [slot.worker for slot in self._slots]

    async def start(self) -> None:
        """Start every worker that has an ``async start()`` (concurrently); failed ones begin dead.

        Optional: a router that was not started uses its workers as they are.
        """
        if self._started:
            return

        async def start_one(slot: _Slot) -> None:
            starter = getattr(slot.worker, "start", None)
            if starter is None:
                return
            try:
                await asyncio.wait_for(starter(), self.start_timeout_s)
            except asyncio.CancelledError:
                raise
            except BaseException as error:  # noqa: BLE001 - anything a backend raises while starting
                logger.warning("judge worker %s failed to start: %r", slot.name, error)
                self._mark_dead(slot, error)

        await asyncio.gather(*(start_one(slot) for slot in self._slots))
        self._ensure_dispatchers()

    def _ensure_dispatchers(self) -> None:
        if self._started or self._closed:
            return
        self._started = True
        self._changed = asyncio.Event()
        for slot in self._slots:
            slot.dispatcher = self._spawn(self._dispatch_loop(slot))

    def _spawn(self, coroutine: Any) -> asyncio.Task:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def close(self) -> None:
        """Stop dispatching, fail what is pending, close every worker (errors ignored)."""
        if self._closed:
            return
        self._closed = True
        self._wake()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        while self._queue:
            pending = self._queue.popleft()
            if not pending.future.done():
                pending.future.set_exception(JudgeError("judge router closed"))
        await asyncio.gather(*(slot.worker.close() for slot in self._slots), return_exceptions=True)

    def worker_states(self) -> list[dict[str, Any]]:
        """Per worker: name, alive, calls in flight, prompts sent so far, restarting."""
        return [
            {"name": s.name, "alive": s.alive, "calls": s.calls, "prompts_sent": s.prompts_sent,
             "restarting": s.restarting is not None and not s.restarting.done()}
            for s in self._slots
        ]

    # ------------------------------------------------------------------------------------------
    # the JudgeClient seam
    # ------------------------------------------------------------------------------------------

    async def judge(
        self,
        *,
        question: str,
        choices: Sequence[str],
        think: str,
        answer: str,
        submitted_at: float | None = None,
    ) -> JudgeVerdict:
        """Both verdicts of one THINK response (``None`` where a judgement failed); never raises.

        ``submitted_at``: wall-clock time (``time.time()``) the response was handed to the judge
        by the caller (defaults to now); the last one of a step starts ``judge/wait_s``.
        """
        stats = self._stats
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
                value = None if text is None else _PARSERS[kind](text)
                if text is not None and value is None:
                    stats.unparseable += 1
                if value is None:
                    stats.failures += 1
                else:
                    values = stats.consistency if kind is JudgeKind.CONSISTENCY else stats.quality
                    values.append(float(value))
                verdict[kind.value] = value
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug or bad input must not fail the step: the verdicts stay None
            stats.internal_errors += 1
            stats.failures += sum(verdict[k.value] is None for k in self.kinds)
            logger.exception("judge request failed inside the router; returning failed verdicts")
        done = self._wall()
        stats.last_done = done if stats.last_done is None else max(stats.last_done, done)
        if all(verdict[k.value] is not None for k in self.kinds):
            stats.judged_responses += 1
        return JudgeVerdict(consistency=verdict["consistency"], quality=verdict["quality"])

    async def request(self, kind: str | JudgeKind, prompt: str) -> str | None:
        """The continuation of one judge prompt (deduplicated, retried); ``None`` when it failed."""
        return await self._request(JudgeKind(kind), prompt, self._stats)

    def collect_metrics(self) -> dict[str, float]:
        """The current step's metrics; starts a new step (fresh counters, empty dedup cache).

        Call it once the step's verdicts are in: a request still running counts in the step it
        was submitted in (whose metrics were already collected).
        """
        now = self._clock()
        stats, self._stats = self._stats, StepStats()
        if self._active_calls:
            stats.busy_s += now - self._busy_since
            self._busy_since = now
        self._cache = {}
        return stats.summary(workers_alive=sum(slot.alive for slot in self._slots))

    # ------------------------------------------------------------------------------------------
    # requests: dedup, attempts, retries
    # ------------------------------------------------------------------------------------------

    async def _request(self, kind: JudgeKind, prompt: str, stats: StepStats) -> str | None:
        if self._closed:
            stats.requests += 1
            return None
        self._ensure_dispatchers()
        stats.requests += 1
        key = (kind, prompt)
        cache = self._cache
        task = cache.get(key)
        if task is None:
            stats.unique_requests += 1
            task = self._spawn(self._run_unique(kind, prompt, stats))
            cache[key] = task
            task.add_done_callback(lambda done, cache=cache, key=key: _drop_failed(cache, key, done))
        else:
            stats.dedup_hits += 1
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if self._closed or task.cancelled():
                return None
            raise

    async def _run_unique(self, kind: JudgeKind, prompt: str, stats: StepStats) -> str | None:
        started = self._clock()
        failed_on: set[str] = set()
        for attempt in range(self.max_retries + 1):
            if self._closed:
                break
            if attempt:
                stats.retries += 1
            try:
                text = await self._attempt(kind, prompt, failed_on)
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

    async def _attempt(self, kind: JudgeKind, prompt: str, failed_on: set[str]) -> str:
        loop = asyncio.get_running_loop()
        pending = _Pending(kind, prompt, loop.create_future(), frozenset(failed_on), self._clock())
        self._queue.append(pending)
        self._wake()
        try:
            while True:
                done, _ = await asyncio.wait({pending.future}, timeout=self.timeout_s)
                if done:
                    break
                if pending.worker is None and not any(slot.alive for slot in self._slots):
                    self._discard(pending)
                    raise JudgeWorkerDead(f"no judge worker alive for {self.timeout_s:g} s")
            return pending.future.result()
        except JudgeError:
            if pending.worker is not None:
                failed_on.add(pending.worker)
            raise
        finally:
            if not pending.future.done():
                self._discard(pending)
                pending.future.cancel()

    def _discard(self, pending: _Pending) -> None:
        try:
            self._queue.remove(pending)
        except ValueError:
            pass

    # ------------------------------------------------------------------------------------------
    # dispatch: per-worker batching and calls
    # ------------------------------------------------------------------------------------------

    def _wake(self) -> None:
        """Wake every dispatcher waiting for a change (queue, worker state, closing)."""
        if self._changed is not None:
            self._changed.set()
            self._changed = asyncio.Event()

    async def _wait_change(self, timeout: float | None = None) -> None:
        event = self._changed
        assert event is not None
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            pass

    def _eligible(self, slot: _Slot) -> list[_Pending]:
        alive = {s.name for s in self._slots if s.alive}
        return [p for p in self._queue if slot.name not in p.avoid or alive <= p.avoid]

    async def _dispatch_loop(self, slot: _Slot) -> None:
        while not self._closed:
            eligible = self._eligible(slot) if slot.free else []
            if not eligible:
                await self._wait_change()
                continue
            # short window for more requests to join, counted from the oldest one's arrival
            while len(eligible) < self.batch_size and not self._closed:
                remaining = eligible[0].enqueued_at + self.batch_wait_s - self._clock()
                if remaining <= 0:
                    break
                await self._wait_change(remaining)
                eligible = self._eligible(slot) if slot.free else []
                if not eligible:
                    break
            if self._closed or not eligible or not slot.free:
                continue
            idle = sum(s.free for s in self._slots)
            take = min(self.batch_size, max(1, math.ceil(len(eligible) / max(idle, 1))))
            batch = eligible[:take]
            taken = set(map(id, batch))
            self._queue = deque(p for p in self._queue if id(p) not in taken)
            for pending in batch:
                pending.worker = slot.name
            slot.calls += 1
            slot.prompts_sent += len(batch)
            self._spawn(self._call(slot, batch))

    async def _call(self, slot: _Slot, batch: list[_Pending]) -> None:
        stats = self._stats
        stats.calls += 1
        stats.call_prompts += len(batch)
        started = self._clock()
        if self._active_calls == 0:
            self._busy_since = started
        self._active_calls += 1
        error: JudgeError | None = None
        texts: list[str] = []
        try:
            texts = await asyncio.wait_for(
                slot.worker.complete([p.prompt for p in batch], self.params, timeout_s=self.timeout_s),
                self.timeout_s + self.grace_s,
            )
            well_formed = isinstance(texts, list) and len(texts) == len(batch)
            if not well_formed or not all(isinstance(t, str) for t in texts):
                raise JudgeBackendError(f"{slot.name}: expected {len(batch)} strings, got {texts!r:.200}")
        except JudgeWorkerDead as dead:
            error = dead
            self._mark_dead(slot, dead)
        except JudgeError as failure:
            error = failure
        except TimeoutError:
            error = JudgeTimeout(f"{slot.name}: no reply within {self.timeout_s + self.grace_s:g} s")
        except asyncio.CancelledError:
            error = JudgeError("judge router closed")
            raise
        except Exception as failure:  # noqa: BLE001 - a backend bug counts as a backend error
            error = JudgeBackendError(f"{slot.name}: {failure!r}")
        finally:
            now = self._clock()
            slot.calls -= 1
            self._active_calls -= 1
            self._stats.worker_busy_s += now - started
            if self._active_calls == 0:
                self._stats.busy_s += now - self._busy_since
            for i, pending in enumerate(batch):
                if pending.future.done():
                    continue
                if error is None:
                    pending.future.set_result(texts[i])
                else:
                    pending.future.set_exception(error)
            self._wake()

    # ------------------------------------------------------------------------------------------
    # dead workers
    # ------------------------------------------------------------------------------------------

    def _mark_dead(self, slot: _Slot, error: BaseException) -> None:
        if not slot.alive or self._closed:
            return
        slot.alive = False
        self._stats.worker_deaths += 1
        logger.warning("judge worker %s is dead (%s); restarting it, routing around it meanwhile",
                       slot.name, error)
        if slot.restarting is None or slot.restarting.done():
            slot.restarting = self._spawn(self._restart_loop(slot))
        self._wake()

    async def _restart_loop(self, slot: _Slot) -> None:
        delay = self.restart_backoff_s
        while not self._closed:
            try:
                await asyncio.wait_for(slot.worker.restart(), self.start_timeout_s)
            except asyncio.CancelledError:
                raise
            except BaseException as error:  # noqa: BLE001 - keep trying; counted and logged
                self._stats.restart_failures += 1
                logger.warning("restarting judge worker %s failed (%r); next try in %.1f s",
                               slot.name, error, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2.0, self.max_restart_backoff_s)
                continue
            slot.alive = True
            self._stats.worker_restarts += 1
            logger.info("judge worker %s restarted", slot.name)
            self._wake()
            return


def _drop_failed(cache: dict, key: tuple, task: asyncio.Task) -> None:
    """Done-callback: forget a failed generation so a later identical request tries again."""
    failed = task.cancelled() or task.exception() is not None or task.result() is None
    if failed and cache.get(key) is task:
        del cache[key]
