"""What evaluation runs on: benchmark items from any supported source, with a load report.

:func:`load_eval_items` reads one of the official benchmarks (:mod:`audio_thinker.data.benchmarks`:
MMAU, MMAR, AIR-Bench foundation) or the project's synthetic set (a parquet file of the training
row schema, :mod:`audio_thinker.data.rows`, e.g. ``data/synthetic/val.parquet``) into
:class:`~audio_thinker.data.benchmarks.BenchmarkItem` records. Every row ends up either as an item
or as an excluded problem of the :class:`~audio_thinker.data.benchmarks.LoadReport`; audio files
are always checked, so a missing clip is known (and reported) before generation starts, and so
is a question over the loaders' character bound (``prompt_too_long``, kept: evaluation counts its
prompt tokens and records it missing when over ``max_prompt_length``).

Synthetic items: id ``{split}-{index:06d}``, groups ``task`` and ``difficulty``, and as ``row`` a
flat record (``id``, ``audio_path``, ``question``, ``choices``, ``answer``, ``task``,
``difficulty``) that the MMAU-style prediction file extends with ``model_output``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from audio_thinker.data.prompt_length import DEFAULT_MAX_QUESTION_CHARS
from audio_thinker.data.benchmarks import (
    BENCHMARKS,
    BenchmarkItem,
    LoadReport,
    Problem,
    canonical_name,
    flag_long_question,
    load_benchmark,
)

SYNTHETIC = "synthetic"
#: every benchmark name :func:`load_eval_items` accepts
EVAL_BENCHMARKS: tuple[str, ...] = (*BENCHMARKS, SYNTHETIC)
#: grouping fields of synthetic items
SYNTHETIC_GROUP_FIELDS: tuple[str, ...] = ("task", "difficulty")


def eval_benchmark_name(name: str) -> str:
    """Canonical name of ``name`` among :data:`EVAL_BENCHMARKS` (aliases as in the loaders).

    >>> eval_benchmark_name("Synthetic"), eval_benchmark_name("air_bench")
    ('synthetic', 'air-bench-foundation')
    """
    if name.strip().lower() == SYNTHETIC:
        return SYNTHETIC
    try:
        return canonical_name(name)
    except ValueError:
        raise ValueError(f"unknown benchmark {name!r}; known: {', '.join(EVAL_BENCHMARKS)}") from None


def _synthetic_item(index: int, row: Mapping[str, Any]) -> BenchmarkItem:
    info = row.get("extra_info")
    if not isinstance(info, Mapping):
        raise ValueError("no extra_info mapping (not a row of the training schema)")
    missing = [k for k in ("question", "choices", "answer") if info.get(k) is None]
    if missing:
        raise ValueError(f"extra_info lacks {missing}")
    audios = list(row.get("audios") if row.get("audios") is not None else [])
    if len(audios) != 1:
        raise ValueError(f"expected exactly one audio path, got {len(audios)}")
    choices = tuple(str(c) for c in info["choices"])
    if len(choices) < 2:
        raise ValueError(f"fewer than two choices: {list(choices)!r}")
    split = str(info.get("split") or "eval")
    item_index = info.get("index")
    item_id = f"{split}-{int(item_index if item_index is not None else index):06d}"
    groups = {k: str(info[k]) for k in SYNTHETIC_GROUP_FIELDS if info.get(k) not in (None, "")}
    flat = {
        "id": item_id,
        "audio_path": str(audios[0]),
        "question": str(info["question"]),
        "choices": list(choices),
        "answer": str(info["answer"]),
        **groups,
    }
    return BenchmarkItem(SYNTHETIC, item_id, str(audios[0]), str(info["question"]), choices,
                         str(info["answer"]), groups, row=flat)


def load_synthetic(path: str | os.PathLike[str], *, check_audio: bool = True) -> tuple[list[BenchmarkItem], LoadReport]:
    """Items of a parquet file of the training row schema (the synthetic set's ``val.parquet``)."""
    import pandas as pd

    meta = Path(path)
    if not meta.is_file():
        raise FileNotFoundError(
            f"{meta} does not exist: build the synthetic set with `python -m audio_thinker.data.synthetic "
            f"--out {meta.parent}` (or run `make demo` once)"
        )
    frame = pd.read_parquet(meta)
    report = LoadReport(SYNTHETIC, str(meta), str(meta.parent.absolute()), audio_checked=check_audio)
    items: list[BenchmarkItem] = []
    seen: set[str] = set()
    for index, row in enumerate(frame.to_dict(orient="records")):
        report.n_rows += 1
        where = f"row {index}"
        try:
            item = _synthetic_item(index, row)
        except (ValueError, TypeError) as error:
            report.problems.append(Problem("malformed_row", None, where, str(error)))
            continue
        if item.item_id in seen:
            report.problems.append(Problem("duplicate_id", item.item_id, where, "id already used"))
            continue
        if item.answer not in item.choices:
            report.problems.append(Problem("answer_not_in_choices", item.item_id, where,
                                           f"answer {item.answer!r} not in {list(item.choices)!r}"))
            continue
        if check_audio and not os.path.exists(item.audio_path):
            report.problems.append(Problem("missing_audio", item.item_id, where, item.audio_path))
        flag_long_question(item, where, report, DEFAULT_MAX_QUESTION_CHARS)
        seen.add(item.item_id)
        items.append(item)
    report.n_items = len(items)
    return items, report


def load_eval_items(
    name: str, meta: str | os.PathLike[str], audio_root: str | os.PathLike[str] | None = None,
    *, check_audio: bool = True, limit: int | None = None,
) -> tuple[list[BenchmarkItem], LoadReport]:
    """Items of benchmark ``name`` from ``meta`` (first ``limit`` items when set) and the load report.

    ``limit`` keeps the report's problems of the kept items only (and of excluded rows), so the
    counts describe what is evaluated.
    """
    benchmark = eval_benchmark_name(name)
    if benchmark == SYNTHETIC:
        items, report = load_synthetic(meta, check_audio=check_audio)
    else:
        if not Path(meta).is_file():
            raise FileNotFoundError(f"{benchmark} metadata file {meta} does not exist")
        items, report = load_benchmark(benchmark, meta, audio_root, check_audio=check_audio)
    if limit is not None:
        if limit <= 0:
            raise ValueError(f"limit must be positive, got {limit}")
        dropped = {item.item_id for item in items[limit:]}
        items = items[:limit]
        report.problems = [p for p in report.problems if p.excluded or p.item_id not in dropped]
        report.n_items = len(items)
    return items, report
