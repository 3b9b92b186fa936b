"""The judge pool's request queue: per-worker batching, calls with deadlines, dead-worker restarts.

:class:`Dispatcher` is the half of :class:`~reward_workers.router.JudgeRouter` that talks to the
workers; the router adds judge prompts, dedup, retries and the step metrics on top. Pure asyncio
over :class:`~reward_workers.backend.JudgeWorker` objects (testable with fake workers).

* **Pull-based per-worker batching = least-outstanding balancing.** Requests wait in one shared
  queue. Each worker has a dispatcher task that, whenever the worker has a free call slot
  (``max_concurrent_calls``, 1 unless the worker says otherwise), takes up to ``batch_size``
  requests, after waiting at most ``batch_wait_s`` since the oldest one arrived for more to join.
  A busy or dead worker takes nothing, so work always goes to a worker with the fewest calls
  outstanding; when several are idle the queue is split evenly between them
  (``ceil(queued / idle)`` each) instead of the first one taking everything.
* **Deadlines.** Every call carries ``timeout_s`` to the worker and is also cut off ``grace_s``
  later (a worker that ignores its deadline cannot stall the step). One attempt
  (:meth:`Dispatcher.submit`) avoids the workers it already failed on while another live worker
  exists; an attempt that waited ``timeout_s`` in the queue while *no* worker was alive fails.
* **Dead workers are restarted in the background and routed around meanwhile.** A
  :class:`~reward_workers.backend.JudgeWorkerDead` takes the worker out of rotation and starts a
  restart loop (``worker.restart()``, exponential back-off between failed tries); the worker takes
  work again once it is back. Workers may define an optional ``async start()`` (e.g. load a model
  and wait for it): :meth:`Dispatcher.start` awaits it, and a worker whose start fails begins
  dead. Workers may define ``max_concurrent_calls`` (an int attribute) to get several calls at
  once (an HTTP endpoint, a vLLM engine with continuous batching).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from reward_workers.backend import (
    GenerationParams,
    JudgeBackendError,
    JudgeError,
    JudgeTimeout,
    JudgeWorker,
    JudgeWorkerDead,
    check_continuations,
)
from reward_workers.metrics import StepStats

__all__ = ["Dispatcher"]

logger = logging.getLogger(__name__)


class _Slot:
    """A worker as the dispatcher tracks it."""

    def __init__(self, worker: JudgeWorker, index: int):
        self.worker = worker
        self.name = str(getattr(worker, "name", "") or f"worker-{index}")
        self.max_calls = max(1, int(getattr(worker, "max_concurrent_calls", 1) or 1))
        self.calls = 0
        self.alive = True
        self.prompts_sent = 0
        self.restarting: asyncio.Task | None = None

    @property
    def free(self) -> bool:
        return self.alive and self.calls < self.max_calls


@dataclass(eq=False)
class _Pending:
    """One attempt of one prompt, queued or in a worker call."""

    prompt: str
    future: asyncio.Future
    avoid: frozenset[str]
    enqueued_at: float
    worker: str | None = None


class Dispatcher:
    """Sends prompts to workers in batches; see the module docstring. Use from one asyncio loop.

    ``stats``: the current step's counters (calls, busy time, deaths, restarts are counted here);
    :meth:`new_step` swaps in fresh ones.
    """

    def __init__(
        self,
        workers: Sequence[JudgeWorker],
        *,
        params: GenerationParams,
        batch_size: int,
        batch_wait_s: float,
        timeout_s: float,
        grace_s: float,
        start_timeout_s: float,
        restart_backoff_s: float,
        max_restart_backoff_s: float,
        clock: Callable[[], float] = time.monotonic,
    ):
        if not workers:
            raise ValueError("a judge router needs at least one worker")
        self._slots = [_Slot(worker, i) for i, worker in enumerate(workers)]
        names = [slot.name for slot in self._slots]
        if len(set(names)) != len(names):
            raise ValueError(f"judge worker names must be unique: {names}")
        self.params = params
        self.batch_size = int(batch_size)
        self.batch_wait_s = float(batch_wait_s)
        self.timeout_s = float(timeout_s)
        self.grace_s = float(grace_s)
        self.start_timeout_s = float(start_timeout_s)
        self.restart_backoff_s = float(restart_backoff_s)
        self.max_restart_backoff_s = float(max_restart_backoff_s)
        self.stats = StepStats()
        self.closed = False
        self._clock = clock
        self._queue: deque[_Pending] = deque()
        self._changed: asyncio.Event | None = None
        self._tasks: set[asyncio.Task] = set()
        self._active_calls = 0
        self._busy_since = 0.0
        self._running = False

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def workers(self) -> list[JudgeWorker]:
        return [slot.worker for slot in self._slots]

    def workers_alive(self) -> int:
        return sum(slot.alive for slot in self._slots)

    def worker_states(self) -> list[dict[str, Any]]:
        """Per worker: name, alive, calls in flight, prompts sent so far, restarting."""
        return [
            {"name": s.name, "alive": s.alive, "calls": s.calls, "prompts_sent": s.prompts_sent,
             "restarting": s.restarting is not None and not s.restarting.done()}
            for s in self._slots
        ]

    async def start(self) -> None:
        """Start every worker that has an ``async start()`` (concurrently); failed ones begin dead."""
        if self._running:
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
        self.ensure_running()

    def ensure_running(self) -> None:
        """Start the per-worker dispatcher tasks (once; workers are used as they are)."""
        if self._running or self.closed:
            return
        self._running = True
        self._changed = asyncio.Event()
        for slot in self._slots:
            self.spawn(self._dispatch_loop(slot))

    def spawn(self, coroutine: Coroutine[Any, Any, Any]) -> asyncio.Task:
        """A task that :meth:`close` cancels."""
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def close(self) -> None:
        """Stop dispatching, fail what is queued, close every worker (errors ignored)."""
        if self.closed:
            return
        self.closed = True
        self._wake()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        while self._queue:
            pending = self._queue.popleft()
            if not pending.future.done():
                pending.future.set_exception(JudgeError("judge router closed"))
        await asyncio.gather(*(slot.worker.close() for slot in self._slots), return_exceptions=True)

    def new_step(self) -> StepStats:
        """The finished step's counters (busy time up to now included); fresh ones from here on."""
        now = self._clock()
        stats, self.stats = self.stats, StepStats()
        if self._active_calls:
            stats.busy_s += now - self._busy_since
            self._busy_since = now
        return stats

    # -- one attempt ---------------------------------------------------------------------------

    async def submit(self, prompt: str, failed_on: set[str]) -> str:
        """The continuation of ``prompt`` from one worker call; raises a :class:`JudgeError`.

        Avoids the workers named in ``failed_on`` while another one is alive, and adds the
        worker to it when the call fails.
        """
        loop = asyncio.get_running_loop()
        pending = _Pending(prompt, loop.create_future(), frozenset(failed_on), self._clock())
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

    # -- dispatch: per-worker batching and calls -----------------------------------------------

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
        while not self.closed:
            eligible = self._eligible(slot) if slot.free else []
            if not eligible:
                await self._wait_change()
                continue
            # short window for more requests to join, counted from the oldest one's arrival
            while len(eligible) < self.batch_size and not self.closed:
                remaining = eligible[0].enqueued_at + self.batch_wait_s - self._clock()
                if remaining <= 0:
                    break
                await self._wait_change(remaining)
                eligible = self._eligible(slot) if slot.free else []
                if not eligible:
                    break
            if self.closed or not eligible or not slot.free:
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
            self.spawn(self._call(slot, batch))

    async def _call(self, slot: _Slot, batch: list[_Pending]) -> None:
        stats = self.stats
        stats.calls += 1
        stats.call_prompts += len(batch)
        started = self._clock()
        if self._active_calls == 0:
            self._busy_since = started
        self._active_calls += 1
        error: JudgeError | None = None
        texts: list[str] = []
        try:
            texts = check_continuations(await asyncio.wait_for(
                slot.worker.complete([p.prompt for p in batch], self.params, timeout_s=self.timeout_s),
                self.timeout_s + self.grace_s,
            ), len(batch), worker=slot.name)
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
            self.stats.worker_busy_s += now - started
            if self._active_calls == 0:
                self.stats.busy_s += now - self._busy_since
            for i, pending in enumerate(batch):
                if pending.future.done():
                    continue
                if error is None:
                    pending.future.set_result(texts[i])
                else:
                    pending.future.set_exception(error)
            self._wake()

    # -- dead workers --------------------------------------------------------------------------

    def _mark_dead(self, slot: _Slot, error: BaseException) -> None:
        if not slot.alive or self.closed:
            return
        slot.alive = False
        self.stats.worker_deaths += 1
        logger.warning("judge worker %s is dead (%s); restarting it, routing around it meanwhile",
                       slot.name, error)
        if slot.restarting is None or slot.restarting.done():
            slot.restarting = self.spawn(self._restart_loop(slot))
        self._wake()

    async def _restart_loop(self, slot: _Slot) -> None:
        delay = self.restart_backoff_s
        while not self.closed:
            try:
                await asyncio.wait_for(slot.worker.restart(), self.start_timeout_s)
            except asyncio.CancelledError:
                raise
            except BaseException as error:  # noqa: BLE001 - keep trying; counted and logged
                self.stats.restart_failures += 1
                logger.warning("restarting judge worker %s failed (%r); next try in %.1f s",
                               slot.name, error, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2.0, self.max_restart_backoff_s)
                continue
            slot.alive = True
            self.stats.worker_restarts += 1
            logger.info("judge worker %s restarted", slot.name)
            self._wake()
            return
