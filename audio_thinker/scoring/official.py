"""Official prediction files: write them, re-read them as the official scripts do, check the round trip.

Each benchmark has its own official scorer, which reads a predictions file of its own format.
:func:`write_predictions` writes that file from the evaluation records, so the official script
accepts it unchanged; the ``read_*_official`` functions (:mod:`audio_thinker.scoring.official_read`) reimplement what each script computes from
such a file (with the rules of :mod:`audio_thinker.scoring.match`); :func:`check_round_trip`
re-reads a written file and verifies that the official figures equal the tally of the records
(``official = correct / (items - missing - unparsed)``, :class:`~audio_thinker.scoring.match.Accuracy`).

* ``mmau`` -> ``mmau_predictions.json``: a JSON list of each item's metadata row as read, plus
  ``model_output``. MMAU's ``evaluation.py --input FILE`` tallies ``task`` (sound/music/speech),
  ``difficulty`` (easy/hard/medium), ``sub-category`` and the total.
* ``mmar`` -> ``mmar_predictions.json``: a JSON list of each row plus ``answer_prediction``. MMAR's
  ``code/evaluation.py --input FILE`` tallies ``modality`` (its 7 mixes), ``category`` (its 4
  layers), ``sub-category`` and the total.
* ``air-bench-foundation`` -> ``Foundation_result_modelx.jsonl`` (the name ``score_foundation.py``
  opens): JSON lines with exactly the keys the official ``Inference_Foundation.py`` writes, in its
  order (``choice_c``/``choice_d`` null when the row lacks them), ``response`` = the prediction.
  The scorer tallies per ``task_name + '_' + dataset_name``, ``total_sum`` and ``fail_num``.
* ``synthetic`` -> ``synthetic_predictions.json``: MMAU-style (the flat row plus ``model_output``),
  tallied per ``task`` and ``difficulty`` with open vocabularies (the MMAU script itself only knows
  MMAU's task and difficulty values and would raise KeyError on the synthetic ones).

*Missing* items (no record, or a record whose ``prediction`` is None) get no prediction key
(MMAU/MMAR/synthetic), so the official script skips them, or no line at all (AIR-Bench, as the
official inference script skips a missing wav).

The formats' constants and :class:`OfficialScore` live in :mod:`audio_thinker.scoring.official_format`,
the readers in :mod:`audio_thinker.scoring.official_read`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from audio_thinker.data.benchmarks import AIR_BENCH, BenchmarkItem
from audio_thinker.data.files import atomic_write
from audio_thinker.scoring.items import eval_benchmark_name
from audio_thinker.scoring.match import Accuracy, ItemResult, accuracy
from audio_thinker.scoring.official_format import (
    AIR_BENCH_TASK_ID,
    PREDICTION_KEYS,
    OfficialScore,
    RoundTripError,
    Tally,
    group_spec,
    official_filename,
)
from audio_thinker.scoring.official_read import read_official
from audio_thinker.scoring.records import EvalRecord


def _prediction_of(record: EvalRecord | None) -> str | None:
    return None if record is None else record.prediction


def _checked_records(
    benchmark: str, items: Sequence[BenchmarkItem], records: Mapping[str, EvalRecord]
) -> None:
    ids = [item.item_id for item in items]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{benchmark}: duplicate item ids among the items")
    wrong = [item.item_id for item in items if item.benchmark != benchmark]
    if wrong:
        raise ValueError(f"items {wrong[:5]} are not {benchmark} items")
    unknown = sorted(set(records) - set(ids))
    if unknown:
        raise ValueError(f"{len(unknown)} records for ids that are not among the items, e.g. {unknown[:5]}")
    for item_id, record in records.items():
        if record.item_id != item_id or record.benchmark != benchmark:
            raise ValueError(f"record under key {item_id!r} is {record.benchmark}:{record.item_id}")
        if record.prediction is not None and not isinstance(record.prediction, str):
            raise ValueError(f"record {item_id!r}: prediction must be a string or None")


def _row_of(item: BenchmarkItem) -> dict[str, Any]:
    if not isinstance(item.row, Mapping) or not item.row:
        raise ValueError(f"item {item.item_id!r} has no metadata row (load it with load_eval_items)")
    return dict(item.row)


def _json_list_rows(
    benchmark: str, items: Sequence[BenchmarkItem], records: Mapping[str, EvalRecord]
) -> list[dict[str, Any]]:
    key = PREDICTION_KEYS[benchmark]
    rows = []
    for item in items:
        row = _row_of(item)
        row.pop(key, None)  # a stale prediction in the metadata must not reach the scorer
        prediction = _prediction_of(records.get(item.item_id))
        if prediction is not None:
            row[key] = prediction
        rows.append(row)
    return rows


def _air_bench_lines(
    items: Sequence[BenchmarkItem], records: Mapping[str, EvalRecord]
) -> list[dict[str, Any]]:
    lines = []
    for item in items:
        prediction = _prediction_of(records.get(item.item_id))
        if prediction is None:
            continue  # Inference_Foundation.py writes no line for a missing wav
        row = _row_of(item)
        line = {
            "path": row["path"], "question": row["question"], "choice_a": row["choice_a"],
            "choice_b": row["choice_b"], "choice_c": row.get("choice_c"), "choice_d": row.get("choice_d"),
            "answer_gt": row["answer_gt"], "task_name": row["task_name"],
            "dataset_name": row["dataset_name"], "response": prediction, "uniq_id": row["uniq_id"],
        }
        lines.append(line)
    return lines


def write_predictions(
    benchmark: str,
    items: Sequence[BenchmarkItem],
    records: Mapping[str, EvalRecord],
    path: str | os.PathLike[str],
) -> Path:
    """Write ``benchmark``'s official predictions file to ``path`` (atomically); return the path.

    ``items`` are the evaluated items in file order; ``records`` maps item ids to their records.
    An item without a record, or whose record's ``prediction`` is None, is missing: no prediction
    key (JSON lists) or no line (AIR-Bench). Records for ids that are not among the items raise.
    """
    benchmark = eval_benchmark_name(benchmark)
    items = list(items)
    _checked_records(benchmark, items, records)
    target = Path(path)
    if benchmark == AIR_BENCH:
        lines = _air_bench_lines(items, records)
        text = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)
    else:
        text = json.dumps(_json_list_rows(benchmark, items, records), ensure_ascii=False, indent=1) + "\n"
    atomic_write(target, text)
    return target


# ----------------------------------------------------------------------------------------------
# Round trip


def _results(
    benchmark: str, items: Sequence[BenchmarkItem], records: Mapping[str, EvalRecord]
) -> list[ItemResult]:
    out = []
    for item in items:
        record = records.get(item.item_id)
        if record is not None:
            out.append(record.to_item_result())
        else:
            out.append(ItemResult(item.item_id, benchmark, None, None, False, True, False, dict(item.groups)))
    return out


def _group_key(benchmark: str, result: ItemResult, group: str) -> str | None:
    if benchmark == AIR_BENCH:
        task, dataset = result.groups.get("task_name"), result.groups.get("dataset_name")
        return None if task is None or dataset is None else f"{task}_{dataset}"
    return result.groups.get(group)


def expected_official(
    benchmark: str, items: Sequence[BenchmarkItem], records: Mapping[str, EvalRecord]
) -> tuple[Accuracy, dict[str, dict[str, Tally]]]:
    """The records' tally: overall :class:`Accuracy` and, per official group, the counted tallies.

    Items without a record are missing. Group values with nothing counted are left out.
    """
    benchmark = eval_benchmark_name(benchmark)
    results = _results(benchmark, items, records)
    group_names = [AIR_BENCH_TASK_ID] if benchmark == AIR_BENCH else list(group_spec(benchmark))
    groups: dict[str, dict[str, Tally]] = {}
    for group in group_names:
        buckets: dict[str, list[ItemResult]] = {}
        for result in results:
            value = _group_key(benchmark, result, group)
            if value is not None:
                buckets.setdefault(value, []).append(result)
        tallies = {value: accuracy(bucket) for value, bucket in buckets.items()}
        groups[group] = {value: Tally(acc.n_correct, acc.n_official)
                         for value, acc in tallies.items() if acc.n_official}
    return accuracy(results), groups


def _counted(groups: Mapping[str, Tally]) -> dict[str, tuple[int, int]]:
    return {value: (t.correct, t.counted) for value, t in groups.items() if t.counted}


def _verdict_mismatches(
    score: OfficialScore, items: Sequence[BenchmarkItem], records: Mapping[str, EvalRecord]
) -> list[str]:
    out = []
    for result in _results(score.benchmark, items, records):
        if result.missing:
            wanted: Iterable[str] = ("skipped", "absent")
        elif result.unparsed:
            wanted = ("failed",)
        else:
            wanted = ("correct",) if result.correct else ("wrong",)
        got = score.verdicts.get(result.item_id, "absent")
        if got not in wanted:
            out.append(f"{result.item_id}: official {got}, records {'/'.join(wanted)}")
    return out


def check_round_trip(
    benchmark: str,
    items: Sequence[BenchmarkItem],
    records: Mapping[str, EvalRecord],
    path: str | os.PathLike[str],
) -> OfficialScore:
    """Re-read ``path`` as the official script does; raise :class:`RoundTripError` unless it agrees.

    Checks the total (correct, counted = items - missing - unparsed), every group tally, the rows
    skipped (MMAU/MMAR/synthetic: the missing items) or lines written and failed (AIR-Bench: items
    not missing; the unparsed ones). Returns the official score (see its ``report_crash``).
    """
    benchmark = eval_benchmark_name(benchmark)
    items = list(items)
    score = read_official(benchmark, path)
    acc, groups = expected_official(benchmark, items, records)
    problems = []

    def compare(what: str, official: object, ours: object) -> None:
        if official != ours:
            problems.append(f"{what}: official {official}, records {ours}")

    compare("total (correct, counted)", (score.total.correct, score.total.counted),
            (acc.n_correct, acc.n_official))
    if benchmark == AIR_BENCH:
        compare("lines written", score.n_rows, acc.n_items - acc.n_missing)
        compare("fail_num", score.n_failed, acc.n_unparsed)
        compare("skipped lines (null task_name)", score.n_skipped, 0)
    else:
        compare("rows", score.n_rows, acc.n_items)
        compare("rows skipped (no prediction key)", score.n_skipped, acc.n_missing)
        compare("unparsed", 0, acc.n_unparsed)
    for group, expected in groups.items():
        official = _counted(score.groups.get(group, {}))
        ours = {value: (t.correct, t.counted) for value, t in expected.items()}
        for value in sorted(set(official) | set(ours)):
            compare(f"{group}={value!r} (correct, counted)", official.get(value, (0, 0)),
                    ours.get(value, (0, 0)))
    if problems:
        items_off = _verdict_mismatches(score, items, records)
        detail = "; ".join(problems[:10]) + (f" (+{len(problems) - 10} more)" if len(problems) > 10 else "")
        if items_off:
            detail += f". Items: {'; '.join(items_off[:5])}" + (" ..." if len(items_off) > 5 else "")
        raise RoundTripError(f"{benchmark} predictions file {path} disagrees with the records: {detail}")
    return score


def write_and_check(
    benchmark: str,
    items: Sequence[BenchmarkItem],
    records: Mapping[str, EvalRecord],
    directory: str | os.PathLike[str],
) -> tuple[Path, OfficialScore]:
    """Write the predictions file into ``directory`` (:func:`official_filename`) and check it."""
    path = write_predictions(benchmark, items, records, Path(directory) / official_filename(benchmark))
    return path, check_round_trip(benchmark, items, records, path)
