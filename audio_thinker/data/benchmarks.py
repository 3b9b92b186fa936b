"""Evaluation benchmark metadata -> :class:`BenchmarkItem` records, with a :class:`LoadReport`.

Supported files (the audio itself is downloaded from each benchmark's own page):

=========================  ======================================================================
benchmark (``name``)       metadata file and layout
=========================  ======================================================================
``mmau``                   MMAU test-mini / test JSON list (both the v1_2025-03-25 and v05.15.25
                           test-mini releases share one schema): ``id``, ``audio_id`` (relative to
                           the audio root, e.g. ``./test-mini-audios/<id>.wav``), ``question``,
                           ``choices``, ``answer``, groups ``task``, ``difficulty``, ``category``,
                           ``sub-category``, ``dataset``. A ``split == "test"`` row may lack its
                           answer (hidden by the benchmark): kept with ``answer=None``.
``mmar``                   ``MMAR-meta.jsonl``: ``id``, ``audio_path`` (relative to the root,
                           ``./audio/<id>.wav``), ``question``, ``choices``, ``answer``, groups
                           ``modality``, ``category``, ``sub-category``.
``air-bench-foundation``   AIR-Bench ``Foundation_meta.json`` list: ``uniq_id``, ``path``,
                           ``question``, ``choice_a`` .. ``choice_d`` (c/d absent or null for
                           2-3 option items), ``answer_gt``, groups ``task_name``,
                           ``dataset_name``; audio at ``{root}/{task_name}_{dataset_name}/{path}``
                           (``.flac`` instead of the path's 3-letter suffix for
                           ``Audio_Grounding``, as the official inference script does).
=========================  ======================================================================

The audio root defaults to the metadata file's folder. A file whose first non-blank character is
``[`` is read as one JSON list, anything else as JSON lines; text that is not valid JSON raises
:class:`BenchmarkFormatError` naming the line. Every row ends up either as an item or as an
excluded problem in the report; nothing is dropped silently. Problems and what happens to the
item (:data:`PROBLEM_EXCLUDES`):

* ``malformed_row`` (excluded): not an object, or a required field missing / of the wrong type
  (fewer than two choices, a gap in AIR-Bench's ``choice_a..d``, ...).
* ``duplicate_id`` (excluded): a later row reusing an earlier row's id (results are keyed by id).
* ``answer_not_in_choices`` (excluded): the gold answer is not verbatim one of the choices (no
  option can be right; the official AIR-Bench script aborts on such an item).
* ``duplicate_choices`` (kept): a choice text repeated; the official rules still score it.
* ``non_string_value`` (kept): a number where a choice/answer text was expected, made a string.
* ``group_normalized`` (kept): a grouping field that is not a plain string (MMAU has
  ``category: ["Reasoning"]``), unwrapped from a one-element list or made a string.
* ``missing_group`` (kept): a grouping field absent or null; the item's ``groups`` lack it.
* ``answer_hidden`` (kept): an MMAU ``test``-split row without an answer.
* ``missing_audio`` (kept; checked only with ``check_audio=True``): the audio file does not
  exist. Such an item gets no prediction, which the scorers count as missing.
* ``prompt_too_long`` (kept): the question and its choices hold more than ``max_question_chars``
  characters (:data:`~audio_thinker.data.prompt_length.DEFAULT_MAX_QUESTION_CHARS`, 4000; the
  real files' longest is 759). The loader has no tokenizer: evaluation counts the prompt's tokens
  and records an item over its ``max_prompt_length`` as missing, with that reason.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audio_thinker.data.prompt_length import DEFAULT_MAX_QUESTION_CHARS, PROMPT_TOO_LONG, check_question_chars

MMAU = "mmau"
MMAR = "mmar"
AIR_BENCH = "air-bench-foundation"
BENCHMARKS: tuple[str, ...] = (MMAU, MMAR, AIR_BENCH)
_ALIASES = {"air-bench": AIR_BENCH, "airbench": AIR_BENCH, "airbench-foundation": AIR_BENCH}

#: The benchmark's own grouping fields, copied into :attr:`BenchmarkItem.groups`.
GROUP_FIELDS: dict[str, tuple[str, ...]] = {
    MMAU: ("task", "difficulty", "category", "sub-category", "dataset"),
    MMAR: ("modality", "category", "sub-category"),
    AIR_BENCH: ("task_name", "dataset_name"),
}

#: Problem kind -> whether the row is excluded from the items (True) or kept and flagged (False).
PROBLEM_EXCLUDES: dict[str, bool] = {
    "malformed_row": True,
    "duplicate_id": True,
    "answer_not_in_choices": True,
    "audio_path_escapes": True,
    "duplicate_choices": False,
    "non_string_value": False,
    "group_normalized": False,
    "missing_group": False,
    "answer_hidden": False,
    "missing_audio": False,
    PROMPT_TOO_LONG: False,
}

#: Environment variable naming the folder with the real benchmark metadata files.
BENCHMARKS_DIR_ENV = "AUDIO_THINKER_BENCHMARKS_DIR"
AIR_BENCH_LETTERS = "ABCD"


class BenchmarkFormatError(ValueError):
    """The metadata file cannot be read at all (invalid JSON, not a list of rows)."""


@dataclass(frozen=True)
class BenchmarkItem:
    """One multiple-choice benchmark question.

    ``answer`` is the gold choice text (None only for hidden-answer MMAU test rows); ``groups``
    holds the benchmark's own grouping fields (:data:`GROUP_FIELDS`) as strings.

    >>> item = BenchmarkItem("mmar", "x1", "/data/audio/x1.wav", "Who?", ("cat", "dog"), "dog")
    >>> item.answer_index, item.answer_letter
    (1, 'B')
    """

    benchmark: str
    item_id: str
    audio_path: str
    question: str
    choices: tuple[str, ...]
    answer: str | None
    groups: Mapping[str, str] = field(default_factory=dict, hash=False)
    #: the metadata row exactly as read (official prediction files are this row plus one key)
    row: Mapping[str, Any] = field(default_factory=dict, hash=False, compare=False, repr=False)

    @property
    def answer_index(self) -> int | None:
        """Index of the first choice equal to the answer (the official AIR-Bench order), or None."""
        if self.answer is None or self.answer not in self.choices:
            return None
        return self.choices.index(self.answer)

    @property
    def answer_letter(self) -> str | None:
        """``A``, ``B``, ... for :attr:`answer_index` (None when it is None)."""
        index = self.answer_index
        return None if index is None else chr(ord("A") + index)


@dataclass(frozen=True)
class Problem:
    """One problem found while loading; ``where`` is ``line N`` (JSON lines) or ``row N``."""

    kind: str
    item_id: str | None
    where: str
    detail: str

    @property
    def excluded(self) -> bool:
        """Whether the row was left out of the items (:data:`PROBLEM_EXCLUDES`)."""
        return PROBLEM_EXCLUDES[self.kind]


@dataclass
class LoadReport:
    """What a loader read: row and item counts and every problem, by kind and id."""

    benchmark: str
    meta_path: str
    audio_root: str
    n_rows: int = 0
    n_items: int = 0
    audio_checked: bool = False
    problems: list[Problem] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """Problem kind -> number of problems (kinds without problems left out)."""
        return dict(Counter(p.kind for p in self.problems))

    def ids(self, kind: str) -> list[str | None]:
        """Item ids with a problem of ``kind``, in file order (None where the row had no id)."""
        if kind not in PROBLEM_EXCLUDES:
            raise ValueError(f"unknown problem kind {kind!r}; known: {sorted(PROBLEM_EXCLUDES)}")
        return [p.item_id for p in self.problems if p.kind == kind]

    @property
    def n_excluded(self) -> int:
        """Rows left out of the items (each excluded row has exactly one excluding problem)."""
        return sum(p.excluded for p in self.problems)

    def summary(self) -> str:
        """A few human-readable lines: counts, then each problem kind with kept/excluded."""
        head = (
            f"{self.benchmark}: {self.n_items} items from {self.n_rows} rows of {self.meta_path}"
            f" ({self.n_excluded} excluded; audio {'checked' if self.audio_checked else 'not checked'})"
        )
        lines = [head]
        for kind, count in sorted(self.counts().items()):
            ids = [str(i) for i in self.ids(kind)]
            shown = ", ".join(ids[:5]) + (", ..." if len(ids) > 5 else "")
            verdict = "excluded" if PROBLEM_EXCLUDES[kind] else "kept"
            lines.append(f"  {kind}: {count} ({verdict}): {shown}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (problems as dicts with their ``excluded`` verdict)."""
        return {
            "benchmark": self.benchmark,
            "meta_path": self.meta_path,
            "audio_root": self.audio_root,
            "n_rows": self.n_rows,
            "n_items": self.n_items,
            "n_excluded": self.n_excluded,
            "audio_checked": self.audio_checked,
            "counts": self.counts(),
            "problems": [
                {"kind": p.kind, "item_id": p.item_id, "where": p.where, "detail": p.detail,
                 "excluded": p.excluded}
                for p in self.problems
            ],
        }


def shared_benchmarks_dir() -> Path | None:
    """The folder with the real benchmark metadata, or None when it is absent.

    ``$AUDIO_THINKER_BENCHMARKS_DIR`` when set, else a ``shared/benchmarks`` folder next to the
    checkout's own folder (a sibling of the checkout). The files are read in place, never copied.
    """
    configured = os.environ.get(BENCHMARKS_DIR_ENV)
    default = Path(__file__).resolve().parents[2].parent / "shared" / "benchmarks"
    candidate = Path(configured) if configured else default
    return candidate if candidate.is_dir() else None


# ----------------------------------------------------------------------------------------------
# Reading rows


def _read_rows(path: Path) -> Iterator[tuple[str, Any]]:
    """Yield ``(where, row)``: a JSON list's elements, or the non-blank lines of JSON lines."""
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise BenchmarkFormatError(
                f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
            ) from exc
        for index, row in enumerate(data, start=1):
            yield f"row {index}", row
        return
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BenchmarkFormatError(
                f"{path}: invalid JSON on line {lineno} (column {exc.colno}): {exc.msg}"
            ) from exc
        yield f"line {lineno}", row


class _RowError(Exception):
    """A malformed row (message = detail)."""


@dataclass
class _Parsed:
    item_id: str
    audio_rel: str
    question: str
    choices: list[str]
    answer: str | None
    notes: list[tuple[str, str]] = field(default_factory=list)


def _item_id(row: Mapping[str, Any], key: str) -> str:
    value = row.get(key)
    if isinstance(value, bool) or not isinstance(value, (str, int)) or str(value).strip() == "":
        raise _RowError(f"field {key!r} must be a non-empty string or integer id, got {value!r}")
    return str(value)


def _as_text(value: Any, key: str, notes: list[tuple[str, str]], *, coerce: bool) -> str:
    """``value`` as text; numbers become strings (noted) when ``coerce``, else a malformed row."""
    if isinstance(value, str):
        return value
    if coerce and isinstance(value, (int, float)) and not isinstance(value, bool):
        notes.append(("non_string_value", f"{key}={value!r} made a string"))
        return str(value)
    raise _RowError(f"field {key!r} must be a string, got {value!r}")


def _text(row: Mapping[str, Any], key: str, notes: list[tuple[str, str]], *, coerce: bool = False) -> str:
    """A required text field of ``row``."""
    return _as_text(row.get(key), key, notes, coerce=coerce)


def _choice_list(value: Any, notes: list[tuple[str, str]]) -> list[str]:
    if not isinstance(value, list) or len(value) < 2:
        raise _RowError(f"field 'choices' must be a list of at least 2 options, got {value!r}")
    return [_as_text(v, "choices", notes, coerce=True) for v in value]


def _parse_mmau(row: Mapping[str, Any]) -> _Parsed:
    notes: list[tuple[str, str]] = []
    item_id = _item_id(row, "id")
    choices = _choice_list(row.get("choices"), notes)
    answer: str | None
    if row.get("answer") in (None, "") and row.get("split") == "test":
        answer = None
        notes.append(("answer_hidden", "test split without an answer"))
    else:
        answer = _text(row, "answer", notes, coerce=True)
    return _Parsed(item_id, _text(row, "audio_id", notes), _text(row, "question", notes), choices,
                   answer, notes)


def _parse_mmar(row: Mapping[str, Any]) -> _Parsed:
    notes: list[tuple[str, str]] = []
    item_id = _item_id(row, "id")
    choices = _choice_list(row.get("choices"), notes)
    answer = _text(row, "answer", notes, coerce=True)
    return _Parsed(item_id, _text(row, "audio_path", notes), _text(row, "question", notes), choices,
                   answer, notes)


def _parse_air_bench(row: Mapping[str, Any]) -> _Parsed:
    notes: list[tuple[str, str]] = []
    item_id = _item_id(row, "uniq_id")
    keys = [f"choice_{letter.lower()}" for letter in AIR_BENCH_LETTERS]
    present = [row.get(key) is not None for key in keys]
    n_choices = sum(present)
    if present != [True] * n_choices + [False] * (len(keys) - n_choices) or n_choices < 2:
        raise _RowError(f"choice_a..choice_d must be a gap-free prefix of at least 2, got {present}")
    choices = [_text(row, key, notes, coerce=True) for key in keys[:n_choices]]
    answer = _text(row, "answer_gt", notes, coerce=True)
    task_name = _text(row, "task_name", notes)
    dataset_name = _text(row, "dataset_name", notes)
    path = _text(row, "path", notes)
    if task_name == "Audio_Grounding":  # the official inference script reads .flac for this task
        path = path[:-3] + "flac"
    return _Parsed(item_id, f"{task_name}_{dataset_name}/{path}", _text(row, "question", notes),
                   choices, answer, notes)


_PARSERS: dict[str, Callable[[Mapping[str, Any]], _Parsed]] = {
    MMAU: _parse_mmau,
    MMAR: _parse_mmar,
    AIR_BENCH: _parse_air_bench,
}


def _groups(row: Mapping[str, Any], fields: tuple[str, ...], notes: list[tuple[str, str]]) -> dict[str, str]:
    groups: dict[str, str] = {}
    for key in fields:
        value = row.get(key)
        if isinstance(value, str):
            groups[key] = value
        elif value is None or value == []:
            notes.append(("missing_group", f"{key} absent or null"))
        elif isinstance(value, list) and len(value) == 1 and isinstance(value[0], str):
            groups[key] = value[0]
            notes.append(("group_normalized", f"{key}={value!r} unwrapped"))
        else:
            groups[key] = "|".join(map(str, value)) if isinstance(value, list) else str(value)
            notes.append(("group_normalized", f"{key}={value!r} made {groups[key]!r}"))
    return groups


# ----------------------------------------------------------------------------------------------
# Loaders


def _load(
    benchmark: str, meta_path: str | os.PathLike[str], audio_root: str | os.PathLike[str] | None,
    check_audio: bool, max_question_chars: int | None = DEFAULT_MAX_QUESTION_CHARS,
) -> tuple[list[BenchmarkItem], LoadReport]:
    meta = Path(meta_path)
    root = Path(audio_root) if audio_root is not None else meta.parent
    root = root.expanduser().absolute()
    report = LoadReport(benchmark, str(meta), str(root), audio_checked=check_audio)
    items: list[BenchmarkItem] = []
    seen: set[str] = set()
    for where, row in _read_rows(meta):
        report.n_rows += 1
        item = _row_to_item(benchmark, where, row, root, seen, report)
        if item is None:
            continue
        if check_audio and not os.path.exists(item.audio_path):
            report.problems.append(Problem("missing_audio", item.item_id, where, item.audio_path))
        flag_long_question(item, where, report, max_question_chars)
        seen.add(item.item_id)
        items.append(item)
    report.n_items = len(items)
    return items, report


def flag_long_question(item: BenchmarkItem, where: str, report: LoadReport, max_chars: int | None) -> None:
    """Record ``prompt_too_long`` (kept) when the item's question and choices exceed ``max_chars``."""
    detail = check_question_chars(item.question, item.choices, max_chars=max_chars)
    if detail:
        report.problems.append(Problem(PROMPT_TOO_LONG, item.item_id, where, detail))


def resolve_under(root: Path, relative: str) -> Path | None:
    """``root / relative`` normalised, or None when it leaves ``root`` (``..`` or an absolute path).

    The check is lexical: a symlink inside the root may still point elsewhere (a data set kept on
    another disk), but metadata can no longer name files outside the audio root.

    >>> str(resolve_under(Path("/data/mmau"), "./test-mini-audios/x.wav"))
    '/data/mmau/test-mini-audios/x.wav'
    >>> resolve_under(Path("/data/mmau"), "../../../etc/passwd"), resolve_under(Path("/data/mmau"), "/etc/passwd")
    (None, None)
    """
    if not relative or os.path.isabs(relative) or "\x00" in relative:
        return None
    base = os.path.normpath(root)
    joined = os.path.normpath(os.path.join(base, relative))
    if os.path.commonpath([base, joined]) != base or joined == base:
        return None
    return Path(joined)


def _row_to_item(
    benchmark: str, where: str, row: Any, root: Path, seen: set[str], report: LoadReport
) -> BenchmarkItem | None:
    """The item of one row, or None when it is excluded (the problem is recorded either way)."""
    raw_id = row.get("uniq_id" if benchmark == AIR_BENCH else "id") if isinstance(row, dict) else None
    try:
        if not isinstance(row, dict):
            raise _RowError(f"row must be a JSON object, got {type(row).__name__}")
        parsed = _PARSERS[benchmark](row)
    except _RowError as exc:
        bad_id = None if raw_id is None else str(raw_id)
        report.problems.append(Problem("malformed_row", bad_id, where, str(exc)))
        return None
    item_id = parsed.item_id

    def flag(kind: str, detail: str) -> None:
        report.problems.append(Problem(kind, item_id, where, detail))

    if item_id in seen:
        flag("duplicate_id", f"id {item_id!r} already used by an earlier row")
        return None
    if parsed.answer is not None and parsed.answer not in parsed.choices:
        flag("answer_not_in_choices", f"answer {parsed.answer!r} not in {parsed.choices!r}")
        return None
    audio_path = resolve_under(root, parsed.audio_rel)
    if audio_path is None:
        flag("audio_path_escapes", f"audio path {parsed.audio_rel!r} is not under the audio root {str(root)!r}")
        return None
    for kind, detail in parsed.notes:
        flag(kind, detail)
    if len(set(parsed.choices)) != len(parsed.choices):
        repeated = sorted(c for c, n in Counter(parsed.choices).items() if n > 1)
        flag("duplicate_choices", f"repeated: {repeated!r}")
    group_notes: list[tuple[str, str]] = []
    groups = _groups(row, GROUP_FIELDS[benchmark], group_notes)
    for kind, detail in group_notes:
        flag(kind, detail)
    return BenchmarkItem(
        benchmark=benchmark,
        item_id=item_id,
        audio_path=str(audio_path),
        question=parsed.question,
        choices=tuple(parsed.choices),
        answer=parsed.answer,
        groups=groups,
        row=row,
    )


def load_mmau(
    meta_path: str | os.PathLike[str], audio_root: str | os.PathLike[str] | None = None, *,
    check_audio: bool = False, max_question_chars: int | None = DEFAULT_MAX_QUESTION_CHARS,
) -> tuple[list[BenchmarkItem], LoadReport]:
    """MMAU test-mini / test JSON (any released version) -> items and report."""
    return _load(MMAU, meta_path, audio_root, check_audio, max_question_chars)


def load_mmar(
    meta_path: str | os.PathLike[str], audio_root: str | os.PathLike[str] | None = None, *,
    check_audio: bool = False, max_question_chars: int | None = DEFAULT_MAX_QUESTION_CHARS,
) -> tuple[list[BenchmarkItem], LoadReport]:
    """MMAR ``MMAR-meta.jsonl`` -> items and report."""
    return _load(MMAR, meta_path, audio_root, check_audio, max_question_chars)


def load_air_bench(
    meta_path: str | os.PathLike[str], audio_root: str | os.PathLike[str] | None = None, *,
    check_audio: bool = False, max_question_chars: int | None = DEFAULT_MAX_QUESTION_CHARS,
) -> tuple[list[BenchmarkItem], LoadReport]:
    """AIR-Bench foundation ``Foundation_meta.json`` -> items and report."""
    return _load(AIR_BENCH, meta_path, audio_root, check_audio, max_question_chars)


def canonical_name(name: str) -> str:
    """The canonical benchmark name for ``name`` (case, ``_`` vs ``-`` and aliases ignored).

    >>> canonical_name("AIR_Bench"), canonical_name("mmau")
    ('air-bench-foundation', 'mmau')
    """
    key = name.strip().lower().replace("_", "-")
    key = _ALIASES.get(key, key)
    if key not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}")
    return key


def load_benchmark(
    name: str, meta_path: str | os.PathLike[str], audio_root: str | os.PathLike[str] | None = None,
    *, check_audio: bool = False, max_question_chars: int | None = DEFAULT_MAX_QUESTION_CHARS,
) -> tuple[list[BenchmarkItem], LoadReport]:
    """Load benchmark ``name`` (see :data:`BENCHMARKS`) from its metadata file.

    ``audio_root`` defaults to the metadata file's folder; ``check_audio`` also reports items
    whose audio file does not exist (kept); ``max_question_chars`` (None: no bound) flags items whose
    question and choices are longer (``prompt_too_long``, kept). Returns the items in file order and
    the report.
    """
    return _load(canonical_name(name), meta_path, audio_root, check_audio, max_question_chars)
