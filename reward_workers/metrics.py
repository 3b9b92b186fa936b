"""The judge pool's step metrics: counters of one step and their ``judge/...`` summary.

Metrics of one step (:meth:`reward_workers.router.JudgeRouter.collect_metrics`, all floats,
``judge/`` prefix): ``think_responses`` (judge calls), ``judged_fraction`` (responses with every
verdict / think responses), ``requests`` (judgements asked for), ``unique_requests`` /
``dedup_hits``, ``calls`` and ``batch_size_mean`` (worker calls), ``failures`` (judgements
returned without a verdict: ``unparseable`` + ``unavailable``), ``unparseable`` (a continuation
arrived but holds no allowed verdict; returned as ``JudgeFailure.UNPARSEABLE``), ``unavailable``
(no continuation after the retries, or an internal error; returned as ``None``), ``call_failures``
(unique requests that failed every attempt), ``retries``, ``timeouts``, ``worker_errors`` (backend
errors), ``worker_deaths``, ``worker_restarts``, ``restart_failures``, ``workers_alive``, ``latency_p50_s`` /
``latency_p95_s`` / ``latency_max_s`` (successful unique requests, queueing and retries
included), ``consistency_mean`` / ``quality_mean`` (successful verdicts), ``wait_s`` (last verdict
returned minus last THINK response submitted: judge time not hidden behind generation),
``busy_s`` (wall time with at least one worker call in flight), ``worker_busy_s`` (sum over
calls), ``internal_errors``. Means and percentiles are NaN when the step had no data (loggers show
a gap, not a fake 0).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["PREFIX", "StepStats", "percentile"]

#: metric-name prefix of every router metric
PREFIX = "judge/"


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
    unavailable: int = 0
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
            "unavailable": self.unavailable,
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
