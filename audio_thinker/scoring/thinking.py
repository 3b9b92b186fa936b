"""When does the model think? Think / no-think / malformed rates and accuracy by mode (paper Figure 2).

Modes are the training grammar's (DESIGN.md section 3, :class:`~audio_thinker.rewards.parsing.ResponseMode`):
``think`` (a well-formed response with a non-empty think block), ``no_think`` (well-formed, no or an
empty think block) and ``malformed``. The three rates of a group sum to 1; the paper's Figure 2 plots
the no-think rate by MMAU difficulty. Accuracy by mode is the share of correct responses among the
responses of that mode (the official verdict ``correct`` for evaluation records; a malformed or, on
AIR-Bench, unparsed response can still be officially correct or is wrong).

Two views built on one tally (:func:`tally_modes`), so they agree exactly:

* :func:`think_report` over :class:`~audio_thinker.scoring.records.EvalRecord` items: a JSON-ready dict.
  Records without a response (missing) are counted in ``n_missing`` and left out of every rate.
* :func:`think_metrics` over plain lists (verl's validation logger): flat ``{name: float}`` metrics,
  empty groups left out (never NaN):

  ==========================================  =====================================================
  ``{prefix}responses``                       number of responses
  ``{prefix}{mode}_rate``                     share of each mode (``think_rate``, ``no_think_rate``,
                                              ``malformed_rate``)
  ``{prefix}accuracy``                        share of correct responses
  ``{prefix}accuracy/{mode}``                 accuracy among the responses of each mode
  ``{prefix}{mode}_rate/difficulty/{d}``      share of each mode among responses of difficulty d
  ``{prefix}accuracy/difficulty/{d}``         accuracy among responses of difficulty d
  ``{prefix}accuracy/{mode}/difficulty/{d}``  accuracy by mode within difficulty d
  ``{prefix}responses/difficulty/{d}``        number of responses of difficulty d
  ==========================================  =====================================================

Groups are ordered easy, medium, hard, then other values (sorted), then ``unknown`` (no value).

>>> m = think_metrics(["think", "no_think", "no_think", "malformed"], [1, 1, 0, 0],
...                   ["hard", "easy", "easy", None], prefix="val/")
>>> m["val/no_think_rate"], m["val/no_think_rate/difficulty/easy"], m["val/accuracy/no_think"]
(0.5, 1.0, 0.5)
>>> m["val/responses/difficulty/unknown"], "val/accuracy/think/difficulty/easy" in m
(1.0, False)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from audio_thinker.scoring.records import EvalRecord
from audio_thinker.scoring.tables import DIFFICULTIES, Table

MODES: tuple[str, ...] = ("think", "no_think", "malformed")
#: the group of responses without a value of the grouping field
UNKNOWN = "unknown"
OVERALL = "overall"


@dataclass
class ModeTally:
    """Counts of one group: responses and correct responses per mode, and missing records."""

    count: dict[str, int] = field(default_factory=lambda: dict.fromkeys(MODES, 0))
    correct: dict[str, int] = field(default_factory=lambda: dict.fromkeys(MODES, 0))
    n_missing: int = 0

    @property
    def n(self) -> int:
        """Number of responses (missing records excluded)."""
        return sum(self.count.values())

    def add(self, mode: str, correct: bool) -> None:
        self.count[mode] += 1
        self.correct[mode] += bool(correct)

    def rate(self, mode: str) -> float | None:
        """Share of ``mode`` among the responses (None without responses)."""
        return self.count[mode] / self.n if self.n else None

    def accuracy(self, mode: str | None = None) -> float | None:
        """Accuracy among responses of ``mode`` (all responses when None); None when there are none."""
        if mode is None:
            return sum(self.correct.values()) / self.n if self.n else None
        return self.correct[mode] / self.count[mode] if self.count[mode] else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "n_missing": self.n_missing,
            **{f"{mode}_rate": self.rate(mode) for mode in MODES},
            "accuracy": self.accuracy(),
            "accuracy_by_mode": {mode: self.accuracy(mode) for mode in MODES},
            "n_by_mode": dict(self.count),
            "correct_by_mode": dict(self.correct),
        }


def mode_name(mode: object) -> str:
    """The mode string of ``mode`` (a string or a :class:`ResponseMode`); ValueError if unknown."""
    name = str(getattr(mode, "value", mode))
    if name not in MODES:
        raise ValueError(f"unknown response mode {mode!r}; expected one of {', '.join(MODES)}")
    return name


def group_label(value: object) -> str:
    """The group of a value of the grouping field: its stripped text, or ``unknown`` when empty/None."""
    text = "" if value is None else str(value).strip()
    return text or UNKNOWN


def order_groups(labels: Iterable[str]) -> list[str]:
    """easy, medium, hard (those present), then others sorted, then ``unknown``.

    >>> order_groups(["unknown", "hard", "zz", "easy"])
    ['easy', 'hard', 'zz', 'unknown']
    """
    present = set(labels)
    others = sorted(present - set(DIFFICULTIES) - {UNKNOWN})
    return [d for d in DIFFICULTIES if d in present] + others + ([UNKNOWN] if UNKNOWN in present else [])


def _as_correct(value: object) -> bool:
    if value not in (0, 1):  # True/False, 0/1 and 0.0/1.0 compare equal to 0 or 1
        raise ValueError(f"correct values must be 0/1 or booleans, got {value!r}")
    return bool(value)


def tally_modes(
    modes: Sequence[object | None], correct: Sequence[object], groups: Sequence[object | None],
) -> tuple[dict[str, ModeTally], ModeTally]:
    """``(per group in order, overall)`` tallies; a ``None`` mode is a missing record (no response)."""
    if not len(modes) == len(correct) == len(groups):
        raise ValueError(f"lengths differ: {len(modes)} modes, {len(correct)} correct, {len(groups)} groups")
    tallies: dict[str, ModeTally] = {}
    total = ModeTally()
    for mode, ok, group in zip(modes, correct, groups):
        tally = tallies.setdefault(group_label(group), ModeTally())
        if mode is None:
            tally.n_missing += 1
            total.n_missing += 1
            continue
        name, verdict = mode_name(mode), _as_correct(ok)
        tally.add(name, verdict)
        total.add(name, verdict)
    return {label: tallies[label] for label in order_groups(tallies)}, total


def _record_mode(record: EvalRecord) -> str | None:
    return None if record.missing or record.response_mode is None else record.response_mode


def think_report(records: Sequence[EvalRecord], group_field: str = "difficulty") -> dict[str, Any]:
    """Rates and accuracy by mode per value of ``group_field`` and overall (JSON-ready, no NaN).

    Shape: ``{"group_field", "n_records", "n_missing", "n_responses", "groups": {label: entry},
    "overall": entry}`` with ``entry`` = ``{"n", "n_missing", "think_rate", "no_think_rate",
    "malformed_rate", "accuracy", "accuracy_by_mode": {mode: acc}, "n_by_mode", "correct_by_mode"}``;
    rates and accuracies are fractions, ``None`` for an empty group.
    """
    records = list(records)
    groups, total = tally_modes([_record_mode(r) for r in records], [r.correct for r in records],
                                [r.groups.get(group_field) for r in records])
    return {
        "group_field": group_field,
        "n_records": len(records),
        "n_missing": total.n_missing,
        "n_responses": total.n,
        "groups": {label: tally.to_dict() for label, tally in groups.items()},
        OVERALL: total.to_dict(),
    }


def think_metrics(
    modes: Sequence[object],
    correct: Sequence[object],
    difficulties: Sequence[object | None],
    prefix: str = "",
) -> dict[str, float]:
    """The think-rate analysis as flat metrics (see the module docstring); empty groups left out."""
    if any(mode is None for mode in modes):
        raise ValueError("think_metrics takes responses only: drop items without a response")
    groups, total = tally_modes(modes, correct, difficulties)
    metrics: dict[str, float] = {f"{prefix}responses": float(total.n)}

    def put(name: str, value: float | None) -> None:
        if value is not None:
            metrics[name] = float(value)

    for mode in MODES:
        put(f"{prefix}{mode}_rate", total.rate(mode))
    put(f"{prefix}accuracy", total.accuracy())
    for mode in MODES:
        put(f"{prefix}accuracy/{mode}", total.accuracy(mode))
    for label, tally in groups.items():
        for mode in MODES:
            put(f"{prefix}{mode}_rate/difficulty/{label}", tally.rate(mode))
        put(f"{prefix}accuracy/difficulty/{label}", tally.accuracy())
        for mode in MODES:
            put(f"{prefix}accuracy/{mode}/difficulty/{label}", tally.accuracy(mode))
        metrics[f"{prefix}responses/difficulty/{label}"] = float(tally.n)
    return metrics


def think_table(report: Mapping[str, Any], *, title: str | None = None) -> Table:
    """The report as a :class:`Table`: one row per group, then ``overall``."""
    field_name = str(report.get("group_field", "group"))
    columns = (field_name, "n", "think %", "no-think %", "malformed %", "acc %", "acc think %",
               "acc no-think %", "missing")
    rows = []
    for label, entry in [*report["groups"].items(), (OVERALL, report[OVERALL])]:
        by_mode = entry["accuracy_by_mode"]
        rows.append((label, entry["n"], entry["think_rate"], entry["no_think_rate"], entry["malformed_rate"],
                     entry["accuracy"], by_mode["think"], by_mode["no_think"], entry["n_missing"]))
    notes = ["Rates are shares of the responses (think + no-think + malformed = 100%); accuracy by mode is "
             "the official verdict among that mode's responses (– when there are none)."]
    if report.get("n_missing"):
        notes.append(f"{report['n_missing']} item(s) without a response are left out of the rates.")
    return Table(title or f"Think rate by {field_name}", columns, tuple(rows), tuple(notes))


def think_markdown(report: Mapping[str, Any], *, title: str | None = None) -> str:
    """:func:`think_table` as Markdown.

    >>> from audio_thinker.data.benchmarks import BenchmarkItem
    >>> from audio_thinker.scoring.records import make_record
    >>> item = BenchmarkItem("mmau", "q", "/a.wav", "Who?", ("Man", "Woman"), "Man", {"difficulty": "easy"})
    >>> recs = [make_record(item, r, prompt_mode="adaptive")
    ...         for r in ("<answer>Man</answer>", "<think>hm</think><answer>Woman</answer>")]
    >>> print(think_markdown(think_report(recs)))
    ### Think rate by difficulty
    <BLANKLINE>
    | difficulty | n | think % | no-think % | malformed % | acc % | acc think % | acc no-think % | missing |
    |:--|--:|--:|--:|--:|--:|--:|--:|--:|
    | easy | 2 | 50.00 | 50.00 | 0.00 | 50.00 | 0.00 | 100.00 | 0 |
    | overall | 2 | 50.00 | 50.00 | 0.00 | 50.00 | 0.00 | 100.00 | 0 |
    <BLANKLINE>
    - Rates are shares of the responses (think + no-think + malformed = 100%); accuracy by mode is ...
    """
    return think_table(report, title=title).to_markdown()
