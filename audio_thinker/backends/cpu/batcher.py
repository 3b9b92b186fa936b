"""Collect concurrent asyncio requests into batches and run each batch on one worker thread.

Pure asyncio (no Ray, no verl, no torch): :class:`RequestBatcher` is how the ``hf`` rollout server
turns the agent loop's one-request-at-a-time calls into batches for
:class:`~audio_thinker.backends.cpu.generator.BatchedGenerator`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["RequestBatcher"]


@dataclass
class _Pending:
    request: Any
    future: asyncio.Future


class RequestBatcher:
    """Collect concurrent requests into batches and run each batch off the event loop.

    ``submit`` queues a request and awaits its result. A single loop task takes the first
    waiting request, then keeps taking requests while they arrive less than ``max_wait_s`` apart,
    up to ``max_batch_size`` requests or ``max_total_wait_s`` after the first; the batch then runs
    as ``run_batch(requests) -> results`` on ``executor`` (one thread: batches never overlap, and
    whoever else uses that executor, e.g. weight loading, is serialised with them). Requests
    queued while a batch runs form the next batch. If a batch raises, its requests are retried
    one by one so a single bad request fails alone.
    """

    def __init__(
        self,
        run_batch: Callable[[list[Any]], list[Any]],
        *,
        executor: Executor,
        max_batch_size: int = 32,
        max_wait_s: float = 0.01,
        max_total_wait_s: float = 0.1,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be >= 1")
        self.run_batch = run_batch
        self.executor = executor
        self.max_batch_size = int(max_batch_size)
        self.max_wait_s = float(max_wait_s)
        self.max_total_wait_s = float(max_total_wait_s)
        self.batch_sizes: list[int] = []  # history, for metrics/tests
        self._queue: asyncio.Queue[_Pending] | None = None
        self._task: asyncio.Task | None = None
        self._running = 0

    def _ensure_started(self) -> asyncio.Queue:
        if self._task is None or self._task.done():
            self._queue = asyncio.Queue()
            self._task = asyncio.get_running_loop().create_task(self._loop())
        return self._queue

    async def submit(self, request: Any) -> Any:
        queue = self._ensure_started()
        future = asyncio.get_running_loop().create_future()
        queue.put_nowait(_Pending(request, future))
        return await future

    def drain_pending(self) -> list[tuple[Any, asyncio.Future]]:
        """Remove and return every queued (not yet running) request with its caller's future."""
        out = []
        while self._queue is not None and not self._queue.empty():
            item = self._queue.get_nowait()
            if not item.future.done():
                out.append((item.request, item.future))
        return out

    async def wait_idle(self, poll_s: float = 0.005) -> None:
        while self._running:
            await asyncio.sleep(poll_s)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
            self._task = None

    async def _collect(self) -> list[_Pending]:
        loop = asyncio.get_running_loop()
        batch = [await self._queue.get()]
        first = loop.time()
        while len(batch) < self.max_batch_size:
            if not self._queue.empty():
                batch.append(self._queue.get_nowait())
                continue
            timeout = min(self.max_wait_s, first + self.max_total_wait_s - loop.time())
            if timeout <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), timeout))
            except TimeoutError:
                break
        return [p for p in batch if not p.future.done()]  # drop cancelled callers

    async def _run(self, requests: list[Any]) -> list[Any]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, self.run_batch, requests)

    async def _loop(self) -> None:
        while True:
            try:
                batch = await self._collect()
            except RuntimeError as e:  # the event loop is shutting down (e.g. the actor exits)
                if "loop is closed" in str(e) or "no running event loop" in str(e):
                    return
                raise
            if not batch:
                continue
            self._running += 1
            try:
                self.batch_sizes.append(len(batch))
                try:
                    results = await self._run([p.request for p in batch])
                    if len(results) != len(batch):
                        raise RuntimeError(f"{len(results)} results for {len(batch)} requests")
                    pairs = list(zip(batch, results))
                except Exception as batch_error:  # isolate the failing request(s)
                    if len(batch) == 1:
                        if not batch[0].future.done():
                            batch[0].future.set_exception(batch_error)
                        continue
                    logger.warning(
                        "hf rollout: batch of %d failed (%r); retrying one by one", len(batch), batch_error
                    )
                    pairs = []
                    for p in batch:
                        try:
                            pairs.append((p, (await self._run([p.request]))[0]))
                        except Exception as e:
                            if not p.future.done():
                                p.future.set_exception(e)
                for p, result in pairs:
                    if not p.future.done():
                        p.future.set_result(result)
            finally:
                self._running -= 1
