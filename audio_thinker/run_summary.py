"""What a training run did, from its metric files: the summary ``main_grpo`` prints at the end.

verl's ``file`` logger writes one JSON object per logged step (``{"step": N, "data": {...}}``)
and truncates its file when it is opened, so ``main_grpo`` gives every launch of a run its own
file, ``{run_dir}/metrics/{timestamp}.jsonl`` (:func:`new_metrics_file`); a resumed run adds a
file instead of erasing the first one. :func:`load_history` merges them (later files win for a
step logged twice) and :func:`summarize` / :func:`format_summary` turn the history into the few
figures that say whether training is doing what it should::

    reward, accuracy, think rate          first step -> last step (and the mean of the last 5)
    think rate / accuracy per difficulty  at the last step
    lambda (think ratio), gammas          the ATAR state at the last step
    validation accuracy                   first -> last validation
    step time                             mean seconds per stage, tokens/s

Pure: no verl, no Ray; the benchmarks read the same files.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "METRICS_DIRNAME", "STAGES", "RunSummary", "format_summary", "load_history", "metric_files",
    "new_metrics_file", "series", "summarize",
]

#: sub-folder of the run directory that holds the metric files
METRICS_DIRNAME = "metrics"
#: (label, verl timing key) of the stages of one step, in order
STAGES = (
    ("generation", "timing_s/gen"),
    ("old log-prob", "timing_s/old_log_prob"),
    ("ref log-prob", "timing_s/ref"),
    ("reward (batch)", "timing_s/reward"),
    ("advantage", "timing_s/adv"),
    ("actor update", "timing_s/update_actor"),
    ("weight sync", "timing_s/update_weights"),
)
P = "audio_thinker/"
#: how many final steps the "recent" column averages
RECENT = 5


def new_metrics_file(run_dir: str | Path, *, now: float | None = None) -> Path:
    """A fresh ``{run_dir}/metrics/{UTC timestamp}.jsonl`` path (the folder is created)."""
    folder = Path(run_dir) / METRICS_DIRNAME
    folder.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(time.time() if now is None else now))
    path = folder / f"{stamp}.jsonl"
    suffix = 1
    while path.exists():
        path = folder / f"{stamp}-{suffix}.jsonl"
        suffix += 1
    return path


def metric_files(run_dir: str | Path) -> list[Path]:
    """The run's metric files, oldest first (names sort by time)."""
    folder = Path(run_dir) / METRICS_DIRNAME
    return sorted(folder.glob("*.jsonl")) if folder.is_dir() else []


def load_history(paths: Iterable[str | Path]) -> dict[int, dict[str, Any]]:
    """``{step: {metric: value}}`` from verl ``file``-logger files; a truncated last line is skipped."""
    history: dict[int, dict[str, Any]] = {}
    for path in paths:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                line = line.strip()
                if not line:
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:  # a run killed mid-write
                    continue
                if not isinstance(record, Mapping) or "step" not in record:
                    continue
                history.setdefault(int(record["step"]), {}).update(record.get("data") or {})
    return dict(sorted(history.items()))


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return None if math.isnan(value) else float(value)


def series(history: Mapping[int, Mapping[str, Any]], key: str) -> list[tuple[int, float]]:
    """``[(step, value)]`` of one metric over the steps that logged a number for it."""
    out = []
    for step, data in history.items():
        value = _number(data.get(key))
        if value is not None:
            out.append((step, value))
    return out


def _mean(values: Iterable[float]) -> float | None:
    values = list(values)
    return sum(values) / len(values) if values else None


@dataclass
class RunSummary:
    """The figures :func:`format_summary` prints (``None``: the run logged no such metric)."""

    first_step: int | None = None
    last_step: int | None = None
    #: metric -> (first, last, mean of the last RECENT steps)
    trend: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    #: difficulty -> (think rate, accuracy, responses) at the last training step
    by_difficulty: dict[str, tuple[float | None, float | None, float | None]] = field(default_factory=dict)
    #: ATAR state at the last training step
    atar: dict[str, float] = field(default_factory=dict)
    #: validation metric -> [(step, value)]
    validation: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    #: stage label -> mean seconds per step
    stage_s: dict[str, float] = field(default_factory=dict)
    step_s: float | None = None
    tokens_per_s: float | None = None
    #: judge pool figures averaged over the training steps (empty without a judge)
    judge: dict[str, float] = field(default_factory=dict)


#: label -> metric key of the trend rows
TREND = (
    ("reward", P + "reward/overall"),
    ("accuracy", P + "accuracy"),
    ("think rate", P + "think_rate"),
    ("format failures", P + "format_failure_rate"),
    ("response tokens", P + "response_length/mean"),
)


#: label -> metric key (after the ``audio_thinker/`` prefix) of the judge line, means per step
JUDGE = (
    ("requests", "judge/requests"),
    ("failures", "judge/failures"),
    ("timeouts", "judge/timeouts"),
    ("judged fraction", "judge/judged_fraction"),
    ("mean R_c", "judge/consistency_mean"),
    ("mean R_t", "judge/quality_mean"),
    ("latency p50 s", "judge/latency_p50_s"),
    ("latency p95 s", "judge/latency_p95_s"),
    ("waited s", "judge/wait_s"),
)


def summarize(history: Mapping[int, Mapping[str, Any]]) -> RunSummary:
    """The figures of :class:`RunSummary` from a :func:`load_history` history."""
    summary = RunSummary()
    train_steps = [s for s, d in history.items() if _number(d.get(P + "reward/overall")) is not None]
    if train_steps:
        summary.first_step, summary.last_step = train_steps[0], train_steps[-1]
    for label, key in TREND:
        values = series(history, key)
        if values:
            recent = _mean(v for _, v in values[-RECENT:])
            summary.trend[label] = (values[0][1], values[-1][1], recent if recent is not None else math.nan)
    if train_steps:
        last = history[train_steps[-1]]
        think_prefix = P + "think_rate/difficulty/"
        for key in sorted(k for k in last if k.startswith(think_prefix)):
            difficulty = key[len(think_prefix):]
            summary.by_difficulty[difficulty] = (
                _number(last.get(key)),
                _number(last.get(P + f"accuracy/difficulty/{difficulty}")),
                _number(last.get(P + f"responses/difficulty/{difficulty}")),
            )
        for label, key in (("lambda (think ratio)", P + "think_ratio"), ("gamma think", P + "gamma_think"),
                           ("gamma no-think", P + "gamma_nothink")):
            value = _number(last.get(key))
            if value is not None:
                summary.atar[label] = value
    val_keys = sorted({k for d in history.values() for k in d if k.startswith("val-core/")})
    for key in val_keys:
        summary.validation[key] = series(history, key)
    for label, key in STAGES:
        mean = _mean(v for _, v in series(history, key))
        if mean is not None:
            summary.stage_s[label] = mean
    for label, key in JUDGE:
        mean = _mean(v for _, v in series(history, P + key))
        if mean is not None:
            summary.judge[label] = mean
    summary.step_s = _mean(v for _, v in series(history, "timing_s/step"))
    summary.tokens_per_s = _mean(v for _, v in series(history, "perf/throughput"))
    return summary


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def format_summary(summary: RunSummary, *, title: str = "run", checkpoint: str | None = None,
                   metric_paths: Iterable[str | Path] = ()) -> str:
    """A short plain-text report of ``summary``."""
    lines = [f"== audio-thinker summary: {title} =="]
    if summary.last_step is None:
        lines.append("no training step was logged")
    else:
        lines.append(f"training steps logged: {summary.first_step}..{summary.last_step}")
        lines.append(f"{'':22}{'first':>9}{'last':>9}{'last ' + str(RECENT):>9}")
        for label, (first, last, recent) in summary.trend.items():
            lines.append(f"{label:22}{_fmt(first):>9}{_fmt(last):>9}{_fmt(recent):>9}")
    if summary.by_difficulty:
        lines.append("by difficulty (last step): think rate / accuracy / responses")
        for difficulty, (think, acc, n) in summary.by_difficulty.items():
            lines.append(f"  {difficulty:10} {_fmt(think):>7} {_fmt(acc):>7} {_fmt(n, 0):>5}")
    if summary.atar:
        lines.append("ATAR (last step): " + ", ".join(f"{k} {_fmt(v)}" for k, v in summary.atar.items()))
    for key, values in summary.validation.items():
        if values:
            (s0, v0), (s1, v1) = values[0], values[-1]
            lines.append(f"validation {key}: step {s0} {_fmt(v0)} -> step {s1} {_fmt(v1)}")
    if summary.judge:
        lines.append("judge (mean per step): " + ", ".join(
            f"{label} {_fmt(value, 0 if label in ('requests', 'failures', 'timeouts') else 3)}"
            for label, value in summary.judge.items()))
    if summary.step_s is not None:
        stages = ", ".join(f"{label} {seconds:.2f}" for label, seconds in summary.stage_s.items())
        lines.append(f"step time: {summary.step_s:.2f} s mean ({stages})")
    if summary.tokens_per_s is not None:
        lines.append(f"throughput: {summary.tokens_per_s:.0f} tokens/s (prompt + response)")
    if checkpoint:
        lines.append(f"checkpoint: {checkpoint}")
    paths = [str(p) for p in metric_paths]
    if paths:
        lines.append("metrics: " + ", ".join(paths))
    return "\n".join(lines)
