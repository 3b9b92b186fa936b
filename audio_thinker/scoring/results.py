"""The ``results.json`` of one evaluation run (one model, one benchmark, one prompt mode).

:func:`build_results` makes the whole dict from the run's description, its records and its load
report; :func:`write_results` writes it (strict JSON: no NaN); :func:`results_markdown` renders
it. :mod:`audio_thinker.evaluate.compare` reads only ``run`` and ``headline``.

Shape (``version`` 1); accuracies and rates are fractions of 1, ``None`` where there is no data::

    {
      "version": 1,
      "run": {"label": str,              # the model's row label in comparisons (required)
              "benchmark": str,          # mmau | mmar | air-bench-foundation | synthetic (required)
              "benchmark_version": str | None,   # e.g. the MMAU test-mini release
              "prompt_mode": str,        # adaptive | think | direct (required)
              "model": str, ...},        # anything else the CLI wants to keep (JSON values)
      "n_records": int,
      "overall": Accuracy.to_dict(),     # n_items, n_correct, n_missing, n_unparsed, n_official,
                                         # official, ours
      "training_rule": {"n_items": int, "n_correct": int, "accuracy": float | None},
      "headline": {key: {"official": float | None, "ours": float | None, "n_items": int}},
                                         # tables.headline: MMAU sound/music/speech/avg, MMAR the
                                         # 7 modalities + avg, AIR speech/sound/music/avg, synthetic avg
      "tables": [Table.to_dict(), ...],  # tables.benchmark_tables: {title, columns, rows, notes}
      "think": think_report(records, "difficulty"),
      "think_by": {field: think_report(records, field)},   # the benchmark's other main fields
      "load_report": {...}               # LoadReport.to_dict() of the items evaluated
    }
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from audio_thinker.data.benchmarks import AIR_BENCH, MMAR, MMAU
from audio_thinker.scoring.items import SYNTHETIC
from audio_thinker.scoring.records import EvalRecord
from audio_thinker.scoring.tables import Table, benchmark_tables, headline, overall, single_benchmark
from audio_thinker.scoring.thinking import think_report, think_table

RESULTS_VERSION = 1
RESULTS_FILE = "results.json"
#: run keys :func:`build_results` requires (non-empty strings)
REQUIRED_RUN_KEYS: tuple[str, ...] = ("label", "benchmark", "prompt_mode")
#: grouping fields with their own think report in ``think_by``
THINK_BY: dict[str, tuple[str, ...]] = {
    MMAU: ("task",), MMAR: ("modality", "category"), AIR_BENCH: ("task_name",), SYNTHETIC: ("task",),
}


def check_run_info(run_info: Mapping[str, Any]) -> dict[str, Any]:
    """``run_info`` as a dict, with ``benchmark_version`` defaulted to None; ValueError if a key is bad."""
    if not isinstance(run_info, Mapping):
        raise ValueError(f"run info must be a mapping, got {type(run_info).__name__}")
    bad = [k for k in REQUIRED_RUN_KEYS if not isinstance(run_info.get(k), str) or not run_info[k].strip()]
    if bad:
        raise ValueError(f"run info needs non-empty strings for {bad} (got {dict(run_info)!r})")
    return {"benchmark_version": None, **run_info}


def build_results(
    run_info: Mapping[str, Any], records: Sequence[EvalRecord], load_report: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The whole ``results.json`` dict of a run (see the module docstring)."""
    run = check_run_info(run_info)
    records = list(records)
    benchmark = single_benchmark(records, run["benchmark"])
    n_reward = sum(r.reward_correct for r in records)
    return {
        "version": RESULTS_VERSION,
        "run": run,
        "n_records": len(records),
        "overall": overall(records).to_dict(),
        "training_rule": {"n_items": len(records), "n_correct": n_reward,
                          "accuracy": n_reward / len(records) if records else None},
        "headline": headline(records, benchmark=benchmark),
        "tables": [t.to_dict() for t in benchmark_tables(records, benchmark=benchmark)],
        "think": think_report(records, "difficulty"),
        "think_by": {name: think_report(records, name) for name in THINK_BY[benchmark]},
        "load_report": dict(load_report or {}),
    }


def write_results(run_dir: str | os.PathLike[str], results: Mapping[str, Any]) -> Path:
    """Write ``results`` to ``run_dir/results.json`` (strict JSON; the folder is created)."""
    path = Path(run_dir) / RESULTS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def results_markdown(results: Mapping[str, Any]) -> str:
    """A run's results as Markdown: a header line, every table, then the think-rate table."""
    run = results["run"]
    acc = results["overall"]
    version = f" {run['benchmark_version']}" if run.get("benchmark_version") else ""
    head = [
        f"## {run['label']}: {run['benchmark']}{version} ({run['prompt_mode']} prompt)",
        "",
        f"{acc['n_items']} items, {acc['n_correct']} correct, {acc['n_missing']} missing, "
        f"{acc['n_unparsed']} unparsed; official {_pct(acc['official'])}, ours {_pct(acc['ours'])}.",
    ]
    parts = ["\n".join(head)]
    parts += [Table.from_dict(t).to_markdown() for t in results["tables"]]
    parts.append(think_table(results["think"]).to_markdown())
    return "\n\n".join(parts) + "\n"


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f}%"
