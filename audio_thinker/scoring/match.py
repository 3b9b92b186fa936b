"""Official benchmark verdicts, per-item results and both accuracy figures (DESIGN.md section 5).

* MMAU, MMAR (and the synthetic set): :func:`mmau_string_match` is the ``string_match`` of the official MMAU
  ``evaluation.py`` and MMAR evaluation script, rule for rule. The official scripts skip items
  without a prediction key (MMAU ``model_output``, MMAR ``answer_prediction``) and crash on a
  null one; here both are a *missing* prediction (``None``). An empty string is a prediction
  (always wrong), exactly as officially.
* AIR-Bench foundation: :func:`air_bench_letter` is the letter rule of the official
  ``score_foundation.py``; the gold letter is the first of ``choice_a..choice_d`` equal to
  ``answer_gt`` (:func:`air_bench_gold_letter`). A response without a readable letter is the
  official script's ``fail_num``: *unparsed*, left out of its denominator. A 2-option item
  answered ``C`` is wrong, not unparsed (officially too).

:func:`summarize` reports both figures: ``official`` (missing and unparsed items left out of the
denominator, as the official scripts do) and ``ours`` (every item counts; missing and unparsed
ones are wrong).

>>> mmau_string_match("Man", "The speaker is a man.", ["Man", "Woman", "Child"])
True
>>> mmau_string_match("Man", "a man or a woman", ["Man", "Woman", "Child"])
False
>>> air_bench_letter("The answer is B."), air_bench_letter("B"), air_bench_letter("maybe")
('B', 'B', None)
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from audio_thinker.data.benchmarks import AIR_BENCH, AIR_BENCH_LETTERS, MMAR, MMAU
from audio_thinker.scoring.items import EVAL_BENCHMARKS, SYNTHETIC

_WORD = re.compile(r"\b\w+\b")
#: Benchmarks scored with the official MMAU string match (the synthetic set too); AIR-Bench by letter.
STRING_MATCH_BENCHMARKS: tuple[str, ...] = (MMAU, MMAR, SYNTHETIC)


def official_tokens(text: str) -> frozenset[str]:
    """The official tokenisation: the set of ``\\b\\w+\\b`` matches of the lower-cased text.

    >>> sorted(official_tokens("Man's voice: 2.5 kHz!"))
    ['2', '5', 'khz', 'man', 's', 'voice']
    >>> official_tokens("?!")
    frozenset()
    """
    if not isinstance(text, str):
        raise TypeError(f"expected a string, got {type(text).__name__}")
    return frozenset(_WORD.findall(text.lower()))


def mmau_string_match(answer: str, prediction: str, choices: Sequence[str]) -> bool:
    """The official MMAU/MMAR verdict for ``prediction`` against the gold ``answer``.

    With ``tok`` = :func:`official_tokens`: a prediction without tokens is wrong; otherwise it is
    correct iff it contains every answer token and none of the *incorrect* tokens, the union over
    choices ``c`` with ``tok(c) != tok(answer)`` of ``tok(c) - tok(answer)``. Consequences:
    case, punctuation, word order and repeated words never matter; a choice token-identical to the
    answer (``"A, B"`` vs ``"B, A"``) is indistinguishable from it; the raw ``<answer>`` tags of a
    response add the token ``answer``.

    >>> choices = ["Man", "Woman", "Child", "Robot"]
    >>> mmau_string_match("Man", "man.", choices), mmau_string_match("Man", "A MAN", choices)
    (True, True)
    >>> mmau_string_match("Man", "Woman", choices), mmau_string_match("Man", "", choices)
    (False, False)
    >>> mmau_string_match("Man", "A", choices)  # a bare letter lacks the answer's tokens
    False
    >>> mmau_string_match("Guitar, Piano", "piano guitar", ["Guitar, Piano", "Piano, Guitar"])
    True
    """
    if not isinstance(prediction, str):
        raise TypeError(
            f"prediction must be a string, got {type(prediction).__name__} (a missing prediction "
            "is scored by score_item)"
        )
    prediction_tokens = official_tokens(prediction)
    answer_tokens = official_tokens(answer)
    if not prediction_tokens:
        return False
    incorrect: set[str] = set()
    for choice in choices:
        choice_tokens = official_tokens(choice)
        if choice_tokens != answer_tokens:
            incorrect |= choice_tokens - answer_tokens
    return answer_tokens <= prediction_tokens and prediction_tokens.isdisjoint(incorrect)


def air_bench_letter(response: str | None) -> str | None:
    """The option letter the official AIR-Bench foundation scorer reads, or None (unparsed).

    As ``score_foundation.py``: strip the response, then delete every newline; an empty result or
    the string ``None`` is unparsed; otherwise the first character if it is one of ``ABCD``
    (upper case only), else the second-to-last character if it is, else unparsed. Note the
    official quirk that ``Answer: B`` reads as ``A``. ``None`` (no response) is unparsed.

    >>> [air_bench_letter(r) for r in ["B", "(C)", "D.", " A\\n", "The answer is C."]]
    ['B', 'C', 'D', 'A', 'C']
    >>> air_bench_letter("Answer: B")
    'A'
    >>> [air_bench_letter(r) for r in ["", "x", "b", "None", "The answer is b.", None]]
    [None, None, None, None, None, None]
    """
    if response is None:
        return None
    if not isinstance(response, str):
        raise TypeError(f"response must be a string or None, got {type(response).__name__}")
    predict = response.strip().replace("\n", "")
    if not predict or predict == "None":
        return None
    if predict[0] in AIR_BENCH_LETTERS:
        return predict[0]
    if len(predict) > 1 and predict[-2] in AIR_BENCH_LETTERS:
        return predict[-2]
    return None


def air_bench_gold_letter(answer: str, choices: Sequence[str]) -> str:
    """The gold letter: that of the first choice equal to ``answer`` (the official order).

    >>> air_bench_gold_letter("dog", ["cat", "dog", "dog"])
    'B'
    """
    if len(choices) > len(AIR_BENCH_LETTERS):
        raise ValueError(f"AIR-Bench items have at most 4 choices, got {len(choices)}")
    for letter, choice in zip(AIR_BENCH_LETTERS, choices):
        if choice == answer:
            return letter
    raise ValueError(f"answer {answer!r} is not one of the choices {list(choices)!r}")


@dataclass(frozen=True)
class ItemResult:
    """The verdict on one item.

    ``prediction`` is the text scored (None: no prediction, ``missing``). ``extracted`` is what
    the official rule reads from it: for AIR-Bench the letter (None: ``unparsed``); for MMAU/MMAR
    the first choice the string match accepts (None when it accepts none). ``correct`` compares
    with the gold answer; missing and unparsed items are never correct.
    """

    item_id: str
    benchmark: str
    prediction: str | None
    extracted: str | None
    correct: bool
    missing: bool
    unparsed: bool = False
    groups: Mapping[str, str] = field(default_factory=dict, hash=False)

    @property
    def counted_officially(self) -> bool:
        """Whether the official script counts this item in its denominator."""
        return not (self.missing or self.unparsed)


class ScorableItem(Protocol):
    """What scoring needs of an item (:class:`audio_thinker.data.benchmarks.BenchmarkItem`)."""

    @property
    def benchmark(self) -> str: ...
    @property
    def item_id(self) -> str: ...
    @property
    def answer(self) -> str | None: ...
    @property
    def choices(self) -> tuple[str, ...]: ...
    @property
    def groups(self) -> Mapping[str, str]: ...


def score_item(
    *,
    benchmark: str,
    item_id: str,
    answer: str,
    choices: Sequence[str],
    prediction: str | None,
    groups: Mapping[str, str] | None = None,
) -> ItemResult:
    """Score one prediction with the benchmark's official rule.

    >>> r = score_item(benchmark="mmau", item_id="q1", answer="Man", choices=["Man", "Woman"],
    ...                prediction="It is a man.")
    >>> r.correct, r.extracted, r.missing
    (True, 'Man', False)
    >>> r = score_item(benchmark="air-bench-foundation", item_id="7", answer="dog",
    ...                choices=["cat", "dog"], prediction="I think so")
    >>> r.correct, r.unparsed, r.counted_officially
    (False, True, False)
    """
    if benchmark not in EVAL_BENCHMARKS:
        raise ValueError(f"unknown benchmark {benchmark!r}; known: {', '.join(EVAL_BENCHMARKS)}")
    if answer is None:
        raise ValueError(f"item {item_id!r} has no gold answer (hidden test split?): cannot score")
    groups = dict(groups or {})
    if prediction is None:
        return ItemResult(item_id, benchmark, None, None, False, True, False, groups)
    if benchmark == AIR_BENCH:
        gold = air_bench_gold_letter(answer, choices)
        letter = air_bench_letter(prediction)
        return ItemResult(item_id, benchmark, prediction, letter, letter == gold, False,
                          letter is None, groups)
    correct = mmau_string_match(answer, prediction, choices)
    extracted = next((c for c in choices if mmau_string_match(c, prediction, choices)), None)
    return ItemResult(item_id, benchmark, prediction, extracted, correct, False, False, groups)


def score_items(
    items: Iterable[ScorableItem], predictions: Mapping[str, str | None]
) -> list[ItemResult]:
    """Score every item; ``predictions`` maps item ids to texts (absent or None: missing).

    A prediction whose id is not among the items raises ValueError (a mismatched benchmark or
    version); score a subset by passing only those items.
    """
    items = list(items)
    known = {item.item_id for item in items}
    unknown = sorted(set(predictions) - known)
    if unknown:
        raise ValueError(f"{len(unknown)} predictions for unknown item ids, e.g. {unknown[:5]}")
    return [
        score_item(
            benchmark=item.benchmark,
            item_id=item.item_id,
            answer=item.answer,  # type: ignore[arg-type]  # None is rejected by score_item
            choices=item.choices,
            prediction=predictions.get(item.item_id),
            groups=item.groups,
        )
        for item in items
    ]


@dataclass(frozen=True)
class Accuracy:
    """Counts of a set of results and both accuracy figures (fractions in [0, 1])."""

    n_items: int
    n_correct: int
    n_missing: int
    n_unparsed: int

    @property
    def n_official(self) -> int:
        """The official denominator: items with a prediction the official rule could read."""
        return self.n_items - self.n_missing - self.n_unparsed

    @property
    def official(self) -> float | None:
        """``n_correct / n_official`` (None when nothing is counted)."""
        return self.n_correct / self.n_official if self.n_official else None

    @property
    def ours(self) -> float | None:
        """``n_correct / n_items``: missing and unparsed items count as wrong (None if empty)."""
        return self.n_correct / self.n_items if self.n_items else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_items": self.n_items,
            "n_correct": self.n_correct,
            "n_missing": self.n_missing,
            "n_unparsed": self.n_unparsed,
            "n_official": self.n_official,
            "official": self.official,
            "ours": self.ours,
        }


def accuracy(results: Iterable[ItemResult]) -> Accuracy:
    """Tally ``results``.

    >>> r = [ItemResult("a", "mmar", "x", "x", True, False), ItemResult("b", "mmar", None, None,
    ...      False, True)]
    >>> acc = accuracy(r)
    >>> acc.official, acc.ours, acc.n_missing
    (1.0, 0.5, 1)
    """
    n = correct = missing = unparsed = 0
    for result in results:
        n += 1
        correct += result.correct
        missing += result.missing
        unparsed += result.unparsed
    return Accuracy(n, correct, missing, unparsed)


@dataclass(frozen=True)
class Summary:
    """Overall accuracy and accuracy per value of each grouping field."""

    benchmark: str
    overall: Accuracy
    by_group: Mapping[str, Mapping[str, Accuracy]] = field(hash=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "benchmark": self.benchmark,
            "overall": self.overall.to_dict(),
            "by_group": {
                name: {value: acc.to_dict() for value, acc in values.items()}
                for name, values in self.by_group.items()
            },
        }


def summarize(
    results: Sequence[ItemResult], *, group_fields: Sequence[str] | None = None
) -> Summary:
    """Overall and per-group accuracy of one benchmark's results.

    ``group_fields`` defaults to every grouping field present in the results; an item lacking a
    field is left out of that field's breakdown (never out of the overall figure).

    >>> rs = [score_item(benchmark="mmau", item_id=str(i), answer="yes", choices=["yes", "no"],
    ...                  prediction=p, groups={"difficulty": d})
    ...       for i, (p, d) in enumerate([("yes", "easy"), ("no", "easy"), (None, "hard")])]
    >>> s = summarize(rs)
    >>> s.overall.official, s.overall.ours, s.by_group["difficulty"]["easy"].official
    (0.5, 0.3333333333333333, 0.5)
    """
    benchmarks = {r.benchmark for r in results}
    if len(benchmarks) > 1:
        raise ValueError(f"results mix benchmarks {sorted(benchmarks)}; summarize each separately")
    if group_fields is None:
        group_fields = sorted({name for r in results for name in r.groups})
    by_group: dict[str, dict[str, Accuracy]] = {}
    for name in group_fields:
        buckets: dict[str, list[ItemResult]] = defaultdict(list)
        for result in results:
            if name in result.groups:
                buckets[result.groups[name]].append(result)
        by_group[name] = {value: accuracy(buckets[value]) for value in sorted(buckets)}
    return Summary(next(iter(benchmarks), ""), accuracy(results), by_group)
