"""Accuracy tables of one evaluation run, in the benchmarks' (and the paper's) layouts.

A :class:`Table` is a title, column headers, rows of cells and notes. Cells are ``str`` (labels),
``int`` (counts), ``float`` (accuracies, as fractions of 1) or ``None`` (no data). Markdown shows
accuracies as percentages with two decimals and ``None`` as ``–``; :meth:`Table.to_dict` keeps
the raw values (JSON-ready, never NaN).

Every accuracy row shows both figures (:mod:`audio_thinker.scoring.match`): ``official %``
(correct / (n - missing - unparsed), as the official scripts count) and ``ours %`` (correct / n),
with the counts they come from (``n``, ``correct``, ``missing``, ``unparsed``).

:func:`benchmark_tables` gives, per benchmark:

* MMAU: by task (sound, music, speech) + ``Avg`` (all items: the official script's total), by
  difficulty, by category, by sub-category, by dataset;
* MMAR: by modality (the 7 mixes) + ``Avg``, by category (the 4 layers) + ``Avg``, by sub-category;
* AIR-Bench foundation: by task / dataset, by task, and the paper's Table-3 layout
  (Speech | Sound | Music | Avg; a domain is the mean of its tasks' accuracies, each task pooling
  its datasets; Avg is the mean of the three domains; tasks outside :data:`AIR_DOMAINS` are shown
  under ``Other`` and left out of Avg);
* synthetic: by task + ``Avg``, by difficulty + ``Avg``.

A breakdown lists the values that occur, known values first in their usual order, then any
others (sorted, with a note). Items without the field are in no row (a note says how many), so a
breakdown's ``n`` column sums to the number of items that have the field.

:func:`headline` gives the few figures the paper's Table 1 shows (read by
:mod:`audio_thinker.evaluate.compare`).

>>> from audio_thinker.data.benchmarks import BenchmarkItem
>>> from audio_thinker.scoring.records import make_record
>>> def rec(i, task, response):
...     item = BenchmarkItem("mmau", f"q{i}", "/a.wav", "Who?", ("Man", "Woman"), "Man", {"task": task})
...     return make_record(item, response, prompt_mode="adaptive")
>>> records = [rec(0, "sound", "<answer>Man</answer>"), rec(1, "speech", "<answer>Woman</answer>"),
...            rec(2, "speech", None)]
>>> table = benchmark_tables(records)[0]
>>> print(table.to_markdown())
### MMAU by task
<BLANKLINE>
| task | n | correct | official % | ours % | missing | unparsed |
|:--|--:|--:|--:|--:|--:|--:|
| sound | 1 | 1 | 100.00 | 100.00 | 0 | 0 |
| speech | 2 | 0 | 0.00 | 0.00 | 1 | 0 |
| Avg | 3 | 1 | 50.00 | 33.33 | 1 | 0 |
<BLANKLINE>
- official: correct / (n - missing - unparsed), as the official scripts count; ours: correct / n.
>>> headline(records)["avg"]
{'official': 0.5, 'ours': 0.3333333333333333, 'n_items': 3}
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Union

from audio_thinker.data.benchmarks import AIR_BENCH, MMAR, MMAU
from audio_thinker.scoring.items import SYNTHETIC
from audio_thinker.scoring.records import EvalRecord
from audio_thinker.scoring.match import Accuracy, accuracy

#: a table cell: a label, a count, an accuracy (fraction of 1) or no data
Cell = Union[str, int, float, None]

DIFFICULTIES: tuple[str, ...] = ("easy", "medium", "hard")
MMAU_TASKS: tuple[str, ...] = ("sound", "music", "speech")
MMAU_CATEGORIES: tuple[str, ...] = ("Reasoning", "Information Extraction")
MMAR_MODALITIES: tuple[str, ...] = (
    "sound", "music", "speech", "mix-sound-music", "mix-sound-speech", "mix-music-speech",
    "mix-sound-music-speech",
)
MMAR_CATEGORIES: tuple[str, ...] = ("Signal Layer", "Perception Layer", "Semantic Layer", "Cultural Layer")
#: AIR-Bench foundation task names by domain (the dataset's own spelling, typos included)
AIR_DOMAINS: dict[str, tuple[str, ...]] = {
    "speech": (
        "Speech_Grounding", "Spoken_Language_Identification", "Speaker_Gender_Recognition",
        "Speaker_Emotion_Recontion", "Speaker_Age_Prediction", "Speech_Entity_Reconition",
        "Speaker_Intent_Classification", "Speaker_Number_Verification", "Synthesized_Voice_Detection",
    ),
    "sound": ("Audio_Grounding", "vocal_sound_classification", "Acoustic_Scene_Classification", "Sound_AQA"),
    "music": (
        "Music_Instruments_Classfication", "Music_Genre_Recognition", "Music_Midi_Pitch_Analysis",
        "Music_Midi_Velocity_Analysis", "Music_AQA", "Music_Mood_Recognition",
    ),
}
AIR_OTHER = "other"
AIR_TASK_DOMAIN: dict[str, str] = {task: domain for domain, tasks in AIR_DOMAINS.items() for task in tasks}
#: the task label of AIR-Bench records without a ``task_name``
NO_TASK = "(no task_name)"

ACCURACY_COLUMNS: tuple[str, ...] = ("n", "correct", "official %", "ours %", "missing", "unparsed")
AVG = "Avg"
FIGURES_NOTE = ("official: correct / (n - missing - unparsed), as the official scripts count; "
                "ours: correct / n.")
_TITLES = {MMAU: "MMAU", MMAR: "MMAR", AIR_BENCH: "AIR-Bench foundation", SYNTHETIC: "Synthetic"}


def format_cell(value: Cell) -> str:
    """Markdown text of a cell: accuracies as percentages (2 decimals), ``None`` as ``–``.

    >>> [format_cell(v) for v in (0.71234, 12, None, "a|b")]
    ['71.23', '12', '–', 'a\\\\|b']
    """
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{100 * value:.2f}"
    return str(value).replace("|", "\\|").replace("\n", " ")


@dataclass(frozen=True)
class Table:
    """A titled table; rows are tuples of cells, one per column (floats are fractions of 1)."""

    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[Cell, ...], ...]
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "columns", tuple(self.columns))
        object.__setattr__(self, "rows", tuple(tuple(row) for row in self.rows))
        object.__setattr__(self, "notes", tuple(self.notes))
        for row in self.rows:
            if len(row) != len(self.columns):
                raise ValueError(f"table {self.title!r}: row {row!r} has {len(row)} cells for "
                                 f"{len(self.columns)} columns")

    def column(self, name: str) -> list[Cell]:
        """The cells of column ``name``, top to bottom."""
        index = self.columns.index(name)
        return [row[index] for row in self.rows]

    def row(self, *labels: str) -> dict[str, Cell]:
        """The first row whose leading cells are ``labels``, as {column: cell} (KeyError if none)."""
        for row in self.rows:
            if tuple(row[: len(labels)]) == labels:
                return dict(zip(self.columns, row))
        raise KeyError(f"table {self.title!r} has no row {labels!r}")

    def to_markdown(self, *, heading: str = "###") -> str:
        """The table as GitHub Markdown: a heading, the table, then the notes as a list."""
        align = []
        for i in range(len(self.columns)):
            textual = any(isinstance(row[i], str) for row in self.rows) or not self.rows
            align.append(":--" if textual else "--:")
        lines = [f"{heading} {self.title}".strip(), ""] if self.title else []
        lines.append("| " + " | ".join(format_cell(c) for c in self.columns) + " |")
        lines.append("|" + "|".join(align) + "|")
        lines += ["| " + " | ".join(format_cell(cell) for cell in row) + " |" for row in self.rows]
        if self.notes:
            lines.append("")
            lines += [f"- {note}" for note in self.notes]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form with the raw cell values."""
        return {"title": self.title, "columns": list(self.columns), "rows": [list(r) for r in self.rows],
                "notes": list(self.notes)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Table:
        """Inverse of :meth:`to_dict`."""
        return cls(str(data["title"]), tuple(data["columns"]), tuple(tuple(r) for r in data["rows"]),
                   tuple(data.get("notes") or ()))


def overall(records: Iterable[EvalRecord]) -> Accuracy:
    """Both accuracy figures over ``records`` (the official verdicts)."""
    return accuracy(r.to_item_result() for r in records)


def accuracy_cells(acc: Accuracy) -> tuple[Cell, ...]:
    """The :data:`ACCURACY_COLUMNS` cells of ``acc``."""
    return (acc.n_items, acc.n_correct, acc.official, acc.ours, acc.n_missing, acc.n_unparsed)


def order_values(values: Iterable[str], known: Sequence[str] = ()) -> tuple[list[str], list[str]]:
    """``(ordered, extra)``: the known values that occur in their order, then the others sorted.

    >>> order_values(["hard", "x", "easy", "hard"], DIFFICULTIES)
    (['easy', 'hard', 'x'], ['x'])
    """
    present = set(values)
    extra = sorted(present - set(known))
    return [v for v in known if v in present] + extra, extra


def _group_value(record: EvalRecord, name: str) -> str | None:
    value = record.groups.get(name)
    return None if value is None or str(value).strip() == "" else str(value)


def _figures_notes(accs: Iterable[Accuracy]) -> list[str]:
    return [FIGURES_NOTE] if any(a.n_missing or a.n_unparsed for a in accs) else []


def breakdown_table(
    records: Sequence[EvalRecord], name: str, *, title: str, known: Sequence[str] = (), avg: bool = False,
) -> Table:
    """Accuracy per value of grouping field ``name`` (+ an ``Avg`` row over all ``records``)."""
    buckets: dict[str, list[EvalRecord]] = defaultdict(list)
    lacking = 0
    for record in records:
        value = _group_value(record, name)
        if value is None:
            lacking += 1
        else:
            buckets[value].append(record)
    order, extra = order_values(buckets, known)
    accs = [overall(buckets[value]) for value in order]
    rows = [(value, *accuracy_cells(acc)) for value, acc in zip(order, accs)]
    notes = []
    if extra and known:
        notes.append(f"values outside the usual list (after it): {', '.join(extra)}")
    if lacking:
        counted = " (Avg counts them)" if avg else ""
        notes.append(f"{lacking} item(s) without `{name}` are in no row{counted}")
    if avg:
        total = overall(records)
        accs.append(total)
        rows.append((AVG, *accuracy_cells(total)))
    return Table(title, (name, *ACCURACY_COLUMNS), tuple(rows), tuple(_figures_notes(accs) + notes))


def _mean(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def _figure(official: float | None, ours: float | None, n_items: int) -> dict[str, Any]:
    return {"official": official, "ours": ours, "n_items": n_items}


def _acc_figure(acc: Accuracy) -> dict[str, Any]:
    return _figure(acc.official, acc.ours, acc.n_items)


def _air_tasks(records: Sequence[EvalRecord]) -> dict[str, list[EvalRecord]]:
    tasks: dict[str, list[EvalRecord]] = defaultdict(list)
    for record in records:
        tasks[_group_value(record, "task_name") or NO_TASK].append(record)
    return tasks


def air_domain_scores(records: Sequence[EvalRecord]) -> dict[str, dict[str, Any]]:
    """AIR-Bench Table-3 figures: domain -> {official, ours, n_items, n_tasks}, then ``avg``.

    A domain's figure is the unweighted mean of its tasks' accuracies (a task pools its datasets;
    a task without an official figure, all missing/unparsed, is left out of the official mean).
    ``avg`` is the mean of the speech, sound and music figures that exist. Tasks outside
    :data:`AIR_DOMAINS` form the ``other`` domain (present only when there are such tasks), which
    ``avg`` leaves out.
    """
    by_domain: dict[str, list[Accuracy]] = defaultdict(list)
    for task, task_records in _air_tasks(records).items():
        by_domain[AIR_TASK_DOMAIN.get(task, AIR_OTHER)].append(overall(task_records))
    scores: dict[str, dict[str, Any]] = {}
    for domain in (*AIR_DOMAINS, AIR_OTHER):
        accs = by_domain.get(domain, [])
        if domain == AIR_OTHER and not accs:
            continue
        scores[domain] = {**_figure(_mean(a.official for a in accs), _mean(a.ours for a in accs),
                                    sum(a.n_items for a in accs)), "n_tasks": len(accs)}
    main = [scores[d] for d in AIR_DOMAINS]
    scores["avg"] = {**_figure(_mean(s["official"] for s in main), _mean(s["ours"] for s in main),
                               sum(s["n_items"] for s in main)), "n_tasks": sum(s["n_tasks"] for s in main)}
    return scores


def _air_tables(records: Sequence[EvalRecord]) -> list[Table]:
    tasks = _air_tasks(records)
    known_tasks = [task for domain_tasks in AIR_DOMAINS.values() for task in domain_tasks]
    task_order, extra = order_values(tasks, known_tasks)
    task_rows, pair_rows, task_accs, pair_accs = [], [], [], []
    for task in task_order:
        domain = AIR_TASK_DOMAIN.get(task, AIR_OTHER)
        acc = overall(tasks[task])
        task_accs.append(acc)
        task_rows.append((domain, task, *accuracy_cells(acc)))
        datasets: dict[str, list[EvalRecord]] = defaultdict(list)
        for record in tasks[task]:
            datasets[_group_value(record, "dataset_name") or "(no dataset_name)"].append(record)
        for dataset in sorted(datasets):
            pair_acc = overall(datasets[dataset])
            pair_accs.append(pair_acc)
            pair_rows.append((task, dataset, *accuracy_cells(pair_acc)))
    other_note = ([f"tasks outside the domain map, under `{AIR_OTHER}`: {', '.join(extra)}"] if extra else [])
    by_pair = Table("AIR-Bench foundation by task / dataset",
                    ("task_name", "dataset_name", *ACCURACY_COLUMNS),
                    tuple(pair_rows), tuple(_figures_notes(pair_accs)))
    by_task = Table("AIR-Bench foundation by task", ("domain", "task_name", *ACCURACY_COLUMNS),
                    tuple(task_rows), tuple(_figures_notes(task_accs) + other_note))
    scores = air_domain_scores(records)
    domains = [d for d in (*AIR_DOMAINS, AIR_OTHER) if d in scores]
    headers = ("figure", *(d.capitalize() for d in domains[:3]), AVG,
               *(["Other"] if AIR_OTHER in scores else []))
    rows = []
    for figure in ("official", "ours"):
        rows.append((figure, *(scores[d][figure] for d in AIR_DOMAINS), scores["avg"][figure],
                     *([scores[AIR_OTHER][figure]] if AIR_OTHER in scores else [])))
    notes = [
        "A domain is the unweighted mean of its tasks' accuracies, each task pooling all its datasets; "
        "Avg is the mean of the Speech, Sound and Music figures (domains without items left out).",
        "Tasks per domain: " + ", ".join(f"{d} {scores[d]['n_tasks']}" for d in domains) + ".",
        FIGURES_NOTE,
    ]
    if AIR_OTHER in scores:
        notes.append(f"Other: tasks outside the domain map ({', '.join(extra)}); not in Avg.")
    table3 = Table("AIR-Bench foundation (paper Table 3 layout)", headers, tuple(rows), tuple(notes))
    return [by_pair, by_task, table3]


def single_benchmark(records: Sequence[EvalRecord], benchmark: str | None = None) -> str:
    """The one benchmark of ``records`` (``benchmark`` when given; ValueError on a mix or mismatch)."""
    found = sorted({r.benchmark for r in records})
    if len(found) > 1:
        raise ValueError(f"records mix benchmarks {found}; make tables for each benchmark separately")
    if benchmark is not None and found and found[0] != benchmark:
        raise ValueError(f"records are of {found[0]!r}, not {benchmark!r}")
    name = benchmark or (found[0] if found else None)
    if name is None:
        raise ValueError("no records: pass benchmark= to name the benchmark")
    if name not in _TITLES:
        raise ValueError(f"unknown benchmark {name!r}; known: {', '.join(_TITLES)}")
    return name


def benchmark_tables(records: Sequence[EvalRecord], *, benchmark: str | None = None) -> list[Table]:
    """Every breakdown table of one benchmark's records (see the module docstring)."""
    records = list(records)
    name = single_benchmark(records, benchmark)
    title = _TITLES[name]

    def by(field: str, known: Sequence[str] = (), avg: bool = False) -> Table:
        return breakdown_table(records, field, title=f"{title} by {field}", known=known, avg=avg)

    if name == MMAU:
        return [by("task", MMAU_TASKS, avg=True), by("difficulty", DIFFICULTIES),
                by("category", MMAU_CATEGORIES), by("sub-category"), by("dataset")]
    if name == MMAR:
        return [by("modality", MMAR_MODALITIES, avg=True), by("category", MMAR_CATEGORIES, avg=True),
                by("sub-category")]
    if name == AIR_BENCH:
        return _air_tables(records)
    return [by("task", avg=True), by("difficulty", DIFFICULTIES, avg=True)]


def _field_figures(
    records: Sequence[EvalRecord], name: str, keys: Sequence[str]
) -> dict[str, dict[str, Any]]:
    return {key: _acc_figure(overall(r for r in records if _group_value(r, name) == key)) for key in keys}


def headline(records: Sequence[EvalRecord], *, benchmark: str | None = None) -> dict[str, dict[str, Any]]:
    """The paper's Table-1 figures of one benchmark: key -> {official, ours, n_items}.

    Keys: MMAU ``sound, music, speech, avg``; MMAR the 7 modalities and ``avg``; AIR-Bench
    ``speech, sound, music, avg`` (Table-3 macro averages, plus ``other`` when some task is
    outside the domain map); synthetic ``avg``. ``avg`` of MMAU/MMAR/synthetic is over all items.
    A key without items has ``None`` figures and ``n_items`` 0.
    """
    records = list(records)
    name = single_benchmark(records, benchmark)
    if name == AIR_BENCH:
        scores = air_domain_scores(records)
        keys = [*AIR_DOMAINS, "avg", *([AIR_OTHER] if AIR_OTHER in scores else [])]
        return {key: _figure(scores[key]["official"], scores[key]["ours"], scores[key]["n_items"])
                for key in keys}
    keys = {MMAU: MMAU_TASKS, MMAR: MMAR_MODALITIES, SYNTHETIC: ()}[name]
    field = "modality" if name == MMAR else "task"
    return {**_field_figures(records, field, keys), "avg": _acc_figure(overall(records))}
