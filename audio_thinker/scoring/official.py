"""Official prediction files: write them, re-read them as the official scripts do, check the round trip.

Each benchmark has its own official scorer, which reads a predictions file of its own format.
:func:`write_predictions` writes that file from the evaluation records, so the official script
accepts it unchanged; the ``read_*_official`` functions reimplement what each script computes from
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

Where an official script would crash on a file, the reader raises :class:`OfficialScriptError`
naming the row: a null or non-string prediction, a gold answer that is not one of AIR-Bench's
choices (the script calls ``exit(1)``; it computes the gold letter only for a response with a
readable letter, and so does the reader), a group value outside the script's fixed dictionaries,
a field it indexes missing. Two crashes in the final report depend only on the predictions, not
on the file's format, so the reader does not raise for them but sets
:attr:`OfficialScore.report_crash`: MMAU/MMAR with no counted item (``ZeroDivisionError`` on the
total) and an AIR-Bench task whose every line is unparsed (``KeyError`` in the report loop).

>>> official_filename("mmau"), official_filename("air_bench")
('mmau_predictions.json', 'Foundation_result_modelx.jsonl')
>>> Tally(3, 4).accuracy, Tally(0, 0).accuracy is None
(0.75, True)
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audio_thinker.data.benchmarks import AIR_BENCH, MMAR, MMAU, BenchmarkItem
from audio_thinker.scoring.items import SYNTHETIC, eval_benchmark_name
from audio_thinker.scoring.records import EvalRecord
from audio_thinker.scoring.match import (
    Accuracy,
    ItemResult,
    accuracy,
    air_bench_gold_letter,
    air_bench_letter,
    mmau_string_match,
)

#: The file each benchmark's predictions are written to (in a run directory).
OFFICIAL_FILENAMES: dict[str, str] = {
    MMAU: "mmau_predictions.json",
    MMAR: "mmar_predictions.json",
    # score_foundation.py opens this fixed name (input_file = 'Foundation_result_modelx.jsonl')
    AIR_BENCH: "Foundation_result_modelx.jsonl",
    SYNTHETIC: "synthetic_predictions.json",
}
#: The key holding the prediction in the JSON-list formats.
PREDICTION_KEYS: dict[str, str] = {MMAU: "model_output", MMAR: "answer_prediction", SYNTHETIC: "model_output"}
#: The keys of one line of ``Inference_Foundation.py``'s output, in its order.
AIR_BENCH_KEYS: tuple[str, ...] = (
    "path", "question", "choice_a", "choice_b", "choice_c", "choice_d", "answer_gt", "task_name",
    "dataset_name", "response", "uniq_id",
)
#: The group name of AIR-Bench's per-task tally (``task_name + '_' + dataset_name``).
AIR_BENCH_TASK_ID = "task_id"



@dataclass(frozen=True)
class _Group:
    """A tallied field of an official script.

    ``values``: the script's fixed dictionary keys in print order (None: opened as values are
    seen); ``optional``: read with ``sample.get`` (absent or null: left out) rather than indexed.
    """

    values: tuple[str, ...] | None = None
    optional: bool = False


_MMAU_GROUPS: dict[str, _Group] = {
    "task": _Group(("sound", "music", "speech")),
    "difficulty": _Group(("easy", "hard", "medium")),
    "sub-category": _Group(optional=True),
}
_MMAR_GROUPS: dict[str, _Group] = {
    "modality": _Group(("sound", "music", "speech", "mix-sound-music", "mix-sound-speech",
                        "mix-music-speech", "mix-sound-music-speech")),
    "category": _Group(("Signal Layer", "Perception Layer", "Semantic Layer", "Cultural Layer")),
    "sub-category": _Group(optional=True),
}
_SYNTHETIC_GROUPS: dict[str, _Group] = {"task": _Group(optional=True), "difficulty": _Group(optional=True)}


class OfficialScriptError(ValueError):
    """The official script would crash (or exit) on this predictions file."""


class RoundTripError(ValueError):
    """A written predictions file does not reproduce the tally of the records."""


@dataclass(frozen=True)
class Tally:
    """Correct and counted items of one official tally (``[n_correct, n_total]`` in the scripts)."""

    correct: int = 0
    counted: int = 0

    @property
    def accuracy(self) -> float | None:
        """``correct / counted`` (None when nothing was counted)."""
        return self.correct / self.counted if self.counted else None

    def to_dict(self) -> dict[str, Any]:
        return {"correct": self.correct, "counted": self.counted, "accuracy": self.accuracy}


@dataclass(frozen=True)
class OfficialScore:
    """What an official script computes from a predictions file.

    ``groups`` maps each tallied field to its values in the script's print order (fixed values
    appear even with nothing counted, as the script prints them). ``verdicts`` maps each row's id
    (``id``; AIR-Bench ``uniq_id``) to ``correct``, ``wrong``, ``skipped`` (no prediction key, or
    AIR-Bench's null ``task_name``) or ``failed`` (AIR-Bench: no readable letter).
    """

    benchmark: str
    path: str
    total: Tally
    groups: Mapping[str, Mapping[str, Tally]] = field(hash=False)
    #: rows (JSON list) or lines (JSON lines) in the file
    n_rows: int = 0
    #: rows the script skips without counting them anywhere
    n_skipped: int = 0
    #: AIR-Bench's ``fail_num`` (0 elsewhere)
    n_failed: int = 0
    #: how the script's final report would crash on these figures (None: it completes)
    report_crash: str | None = None
    verdicts: Mapping[str, str] = field(default_factory=dict, hash=False, repr=False)

    @property
    def total_sum(self) -> int:
        """AIR-Bench's ``total_sum``: lines counted (the denominator of the total)."""
        return self.total.counted

    @property
    def fail_num(self) -> int:
        """AIR-Bench's ``fail_num``: lines without a readable letter."""
        return self.n_failed

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (verdicts left out)."""
        return {
            "benchmark": self.benchmark,
            "path": self.path,
            "total": self.total.to_dict(),
            "groups": {name: {value: t.to_dict() for value, t in values.items()}
                       for name, values in self.groups.items()},
            "n_rows": self.n_rows,
            "n_skipped": self.n_skipped,
            "n_failed": self.n_failed,
            "report_crash": self.report_crash,
        }


# ----------------------------------------------------------------------------------------------
# Writing


def official_filename(benchmark: str) -> str:
    """The name of ``benchmark``'s predictions file in a run directory (:data:`OFFICIAL_FILENAMES`)."""
    return OFFICIAL_FILENAMES[eval_benchmark_name(benchmark)]


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


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; a predictions file is for sharing
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


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
    _write_atomic(target, text)
    return target


# ----------------------------------------------------------------------------------------------
# Reading as the official scripts do


def _where(index: int, sample: Mapping[str, Any], id_key: str, unit: str = "row") -> str:
    return f"{unit} {index} ({id_key} {sample.get(id_key)!r})"


def _require(sample: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in sample:
        raise OfficialScriptError(f"{where}: no {key!r} key (the official script raises KeyError)")
    return sample[key]


def _require_text(value: Any, what: str, where: str) -> str:
    if not isinstance(value, str):
        raise OfficialScriptError(
            f"{where}: {what} is {value!r}, not a string (the official script crashes on it)"
        )
    return value


def _load_json_list(path: Path) -> list[Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, list):
        raise OfficialScriptError(f"{path}: not a JSON list")
    return data


def _load_json_lines(path: Path) -> list[Any]:
    rows = []
    with open(path, encoding="utf-8") as lines:
        for lineno, text in enumerate(lines, start=1):
            try:
                rows.append(json.loads(text))
            except json.JSONDecodeError as error:
                raise OfficialScriptError(f"{path}: line {lineno} is not JSON ({error.msg})") from error
    return rows


def _read_string_match(
    benchmark: str,
    path: str | os.PathLike[str],
    rows: list[Any],
    key: str,
    group_spec: Mapping[str, _Group],
) -> OfficialScore:
    """The MMAU/MMAR ``evaluation.py`` loop over ``rows`` (prediction under ``key``)."""
    counts: dict[str, dict[str, list[int]]] = {
        name: {value: [0, 0] for value in (spec.values or ())} for name, spec in group_spec.items()
    }
    correct = counted = skipped = 0
    verdicts: dict[str, str] = {}
    for index, sample in enumerate(rows, start=1):
        if not isinstance(sample, dict):
            raise OfficialScriptError(f"row {index} is not a JSON object")
        where = _where(index, sample, "id")
        name = str(sample.get("id", f"row {index}"))
        if key not in sample:
            skipped += 1
            verdicts[name] = "skipped"
            continue
        prediction = _require_text(sample[key], f"the prediction {key!r}", where)
        answer = _require_text(_require(sample, "answer", where), "'answer'", where)
        choices = _require(sample, "choices", where)
        if not isinstance(choices, list):
            raise OfficialScriptError(f"{where}: 'choices' is {choices!r}, not a list")
        for choice in choices:
            _require_text(choice, f"choice {choice!r}", where)
        values: dict[str, str] = {}
        for group, spec in group_spec.items():
            value = sample.get(group) if spec.optional else _require(sample, group, where)
            if value is None and spec.optional:
                continue
            if spec.values is not None and (not isinstance(value, str) or value not in spec.values):
                raise OfficialScriptError(
                    f"{where}: {group} {value!r} is not one of the official script's "
                    f"{list(spec.values)} (it raises KeyError)"
                )
            if not isinstance(value, str):
                raise OfficialScriptError(f"{where}: {group} {value!r} is not a string")
            values[group] = value
        verdict = mmau_string_match(answer, prediction, choices)
        correct += verdict
        counted += 1
        verdicts[name] = "correct" if verdict else "wrong"
        for group, value in values.items():
            tally = counts[group].setdefault(value, [0, 0])
            tally[0] += verdict
            tally[1] += 1
    crash = None
    if not counted:
        crash = "no item has a prediction: the total accuracy divides by zero (ZeroDivisionError)"
    return OfficialScore(
        benchmark, str(path), Tally(correct, counted),
        {group: {value: Tally(*c) for value, c in values_.items()} for group, values_ in counts.items()},
        len(rows), skipped, 0, crash, verdicts,
    )


def read_mmau_official(path: str | os.PathLike[str]) -> OfficialScore:
    """What MMAU's ``evaluation.py --input path`` computes (groups task, difficulty, sub-category)."""
    rows = _load_json_list(Path(path))
    return _read_string_match(MMAU, path, rows, PREDICTION_KEYS[MMAU], _MMAU_GROUPS)


def read_mmar_official(path: str | os.PathLike[str]) -> OfficialScore:
    """What MMAR's ``evaluation.py --input path`` computes (modality, category, sub-category).

    As the script: a name ending in ``json`` is one JSON list, in ``jsonl`` JSON lines.
    """
    target = Path(path)
    if target.name.endswith("json"):
        rows = _load_json_list(target)
    elif target.name.endswith("jsonl"):
        rows = _load_json_lines(target)
    else:
        raise OfficialScriptError(f"{target}: MMAR's script reads only *.json or *.jsonl files")
    return _read_string_match(MMAR, path, rows, PREDICTION_KEYS[MMAR], _MMAR_GROUPS)


def read_synthetic_official(path: str | os.PathLike[str]) -> OfficialScore:
    """The MMAU script's rules on a synthetic-set file, tallied per task and difficulty (any values)."""
    rows = _load_json_list(Path(path))
    return _read_string_match(SYNTHETIC, path, rows, PREDICTION_KEYS[SYNTHETIC], _SYNTHETIC_GROUPS)


def read_air_bench_official(path: str | os.PathLike[str]) -> OfficialScore:
    """What AIR-Bench's ``score_foundation.py`` computes from a ``Foundation_result_*.jsonl`` file.

    Per line: a null ``task_name`` is skipped; the letter is :func:`air_bench_letter` of the
    response (none: ``fail_num``); only then the gold letter, the first of ``choice_a..d`` equal to
    ``answer_gt`` (none: the script exits, here :class:`OfficialScriptError`). Tallied per
    ``task_name + '_' + dataset_name`` (group :data:`AIR_BENCH_TASK_ID`) in first-seen order.
    """
    target = Path(path)
    rows = _load_json_lines(target)
    counts: dict[str, list[int]] = {}
    correct = counted = skipped = failed = 0
    verdicts: dict[str, str] = {}
    for index, line in enumerate(rows, start=1):
        if not isinstance(line, dict):
            raise OfficialScriptError(f"{target}: line {index} is not a JSON object")
        where = _where(index, line, "uniq_id", "line")
        name = str(line.get("uniq_id", f"line {index}"))
        task_name = _require(line, "task_name", where)
        dataset_name = _require(line, "dataset_name", where)
        if task_name is None:
            skipped += 1
            verdicts[name] = "skipped"
            continue
        task_id = (_require_text(task_name, "'task_name'", where) + "_"
                   + _require_text(dataset_name, "'dataset_name'", where))
        tally = counts.setdefault(task_id, [0, 0])
        response = _require_text(_require(line, "response", where), "'response'", where)
        letter = air_bench_letter(response)
        if letter is None:
            failed += 1
            verdicts[name] = "failed"
            continue
        choices = [_require(line, "choice_a", where), _require(line, "choice_b", where),
                   line.get("choice_c"), line.get("choice_d")]
        try:
            gold = air_bench_gold_letter(_require(line, "answer_gt", where), choices)
        except ValueError:
            raise OfficialScriptError(
                f"{where}: answer_gt {line.get('answer_gt')!r} is none of its choices {choices!r} "
                "(the official script exits)"
            ) from None
        verdict = letter == gold
        tally[0] += verdict
        tally[1] += 1
        correct += verdict
        counted += 1
        verdicts[name] = "correct" if verdict else "wrong"
    empty = [task_id for task_id, (_, n) in counts.items() if n == 0]
    crash = None
    if empty:
        crash = (f"task ids {empty} have no line with a readable letter: the report loop raises KeyError "
                 "(and would divide by zero)")
    groups = {AIR_BENCH_TASK_ID: {task_id: Tally(*c) for task_id, c in counts.items()}}
    return OfficialScore(AIR_BENCH, str(path), Tally(correct, counted), groups, len(rows), skipped, failed,
                         crash, verdicts)


_READERS: dict[str, Callable[[str | os.PathLike[str]], OfficialScore]] = {
    MMAU: read_mmau_official,
    MMAR: read_mmar_official,
    AIR_BENCH: read_air_bench_official,
    SYNTHETIC: read_synthetic_official,
}


def read_official(benchmark: str, path: str | os.PathLike[str]) -> OfficialScore:
    """What ``benchmark``'s official script computes from the predictions file ``path``."""
    return _READERS[eval_benchmark_name(benchmark)](path)


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
    group_names = [AIR_BENCH_TASK_ID] if benchmark == AIR_BENCH else list(_group_spec(benchmark))
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


def _group_spec(benchmark: str) -> Mapping[str, _Group]:
    return {MMAU: _MMAU_GROUPS, MMAR: _MMAR_GROUPS, SYNTHETIC: _SYNTHETIC_GROUPS}[benchmark]


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
