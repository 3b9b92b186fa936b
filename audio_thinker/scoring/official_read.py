"""Read a predictions file as each benchmark's official script does.

The ``read_*_official`` functions reimplement what each official scorer computes from a file in its
format (with the rules of :mod:`audio_thinker.scoring.match`). Where an official script would crash
on a file, the reader raises :class:`~audio_thinker.scoring.official_format.OfficialScriptError`
naming the row: a null or non-string prediction, a gold answer that is not one of AIR-Bench's
choices (the script calls ``exit(1)``; it computes the gold letter only for a response with a
readable letter, and so does the reader), a group value outside the script's fixed dictionaries,
a field it indexes missing. Two crashes in the final report depend only on the predictions, not
on the file's format, so the reader does not raise for them but sets
:attr:`OfficialScore.report_crash`: MMAU/MMAR with no counted item (``ZeroDivisionError`` on the
total) and an AIR-Bench task whose every line is unparsed (``KeyError`` in the report loop).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from audio_thinker.data.benchmarks import AIR_BENCH, MMAR, MMAU
from audio_thinker.scoring.items import SYNTHETIC, eval_benchmark_name
from audio_thinker.scoring.match import air_bench_gold_letter, air_bench_letter, mmau_string_match
from audio_thinker.scoring.official_format import (
    AIR_BENCH_TASK_ID,
    MMAR_GROUPS,
    MMAU_GROUPS,
    PREDICTION_KEYS,
    SYNTHETIC_GROUPS,
    Group,
    OfficialScore,
    OfficialScriptError,
    Tally,
)


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
    group_spec: Mapping[str, Group],
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
    return _read_string_match(MMAU, path, rows, PREDICTION_KEYS[MMAU], MMAU_GROUPS)


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
    return _read_string_match(MMAR, path, rows, PREDICTION_KEYS[MMAR], MMAR_GROUPS)


def read_synthetic_official(path: str | os.PathLike[str]) -> OfficialScore:
    """The MMAU script's rules on a synthetic-set file, tallied per task and difficulty (any values)."""
    rows = _load_json_list(Path(path))
    return _read_string_match(SYNTHETIC, path, rows, PREDICTION_KEYS[SYNTHETIC], SYNTHETIC_GROUPS)


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


