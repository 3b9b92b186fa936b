"""One evaluated item: the response, what each rule reads from it, and both verdicts.

:func:`make_record` turns a benchmark item and the model's raw response into an
:class:`EvalRecord`, the per-item line of ``records.jsonl``. Two readings of a response:

* **the training rule** (:mod:`audio_thinker.rewards.parsing` / :mod:`~audio_thinker.rewards.accuracy`):
  the response mode (THINK / NO-THINK / MALFORMED, DESIGN.md section 3) and ``reward_correct``
  (well-formed and the ``<answer>`` names the gold choice). The think-rate analysis uses these.
* **the benchmark's official rule** (:mod:`audio_thinker.scoring.match`) applied to the
  *prediction*, the text written into the official prediction file:

  - MMAU, MMAR, synthetic (``model_output`` / ``answer_prediction``): the ``<answer>`` text of a
    well-formed response; for a malformed one the text of its last non-empty ``<answer>..</answer>``
    block; with no such block, the whole response (end-of-sequence tokens stripped). The official
    string match then decides.
  - AIR-Bench (``response``): the official scorer reads an option letter, but the policy answers
    with the choice text (the training prompt lists choices as text). The ``<answer>`` text (found
    as above) is therefore mapped to the letter of the choice it names (a bare letter ``B``/``(B)``
    names option B; otherwise normalized equality with a choice, the first such choice); an answer
    naming no choice is written as it is, and the official letter rule decides (usually *unparsed*).

An item without a response (its audio is missing or unreadable, or generation failed) has
``prediction=None``: *missing*. The official scripts skip it; our figure counts it wrong.

>>> from audio_thinker.data.benchmarks import BenchmarkItem
>>> item = BenchmarkItem("mmau", "q1", "/a.wav", "Who speaks?", ("Man", "Woman"), "Man", {"difficulty": "easy"})
>>> r = make_record(item, "<think>low voice</think><answer>Man</answer>", prompt_mode="adaptive")
>>> r.response_mode, r.prediction, r.correct, r.reward_correct
('think', 'Man', True, True)
>>> r = make_record(item, "It is a man.", prompt_mode="adaptive")
>>> r.response_mode, r.prediction, r.correct, r.reward_correct
('malformed', 'It is a man.', True, False)
>>> make_record(item, None, prompt_mode="direct", error="missing_audio: /a.wav").missing
True
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from audio_thinker.data.benchmarks import AIR_BENCH, AIR_BENCH_LETTERS, BenchmarkItem
from audio_thinker.scoring.match import ItemResult, score_item
from audio_thinker.rewards.accuracy import answer_letter_index, is_correct, normalize_answer
from audio_thinker.rewards.parsing import ResponseMode, parse_response, strip_eos

RECORD_VERSION = 1
_ANSWER_BLOCK = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


@dataclass(frozen=True)
class EvalRecord:
    """The per-item result of an evaluation run (one line of ``records.jsonl``)."""

    item_id: str
    benchmark: str
    #: the prompt mode the item was asked in (adaptive | think | direct)
    prompt_mode: str
    question: str
    choices: tuple[str, ...]
    #: the gold choice text
    answer: str
    audio_path: str
    groups: Mapping[str, str] = field(default_factory=dict)
    #: the raw generated text (special tokens removed); None when nothing was generated
    response: str | None = None
    #: think | no_think | malformed (training grammar); None without a response
    response_mode: str | None = None
    #: the think block of a THINK response
    think: str | None = None
    #: the ``<answer>`` text (lenient for malformed responses, see the module docstring)
    extracted_answer: str | None = None
    #: the text written to the official prediction file (None: missing)
    prediction: str | None = None
    #: what the official rule reads from the prediction (the matched choice, or AIR-Bench's letter)
    official_extracted: str | None = None
    #: the official rule's verdict (missing and unparsed items are never correct)
    correct: bool = False
    missing: bool = True
    #: AIR-Bench only: the official scorer reads no letter (left out of its denominator)
    unparsed: bool = False
    #: the training rule's verdict: well-formed and the answer names the gold choice
    reward_correct: bool = False
    #: why there is no response (``missing_audio: ...``, ``audio_error: ...``, ``generation_error: ...``)
    error: str | None = None
    #: generated tokens and why generation stopped (stop | length)
    n_tokens: int = 0
    finish_reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["choices"] = list(self.choices)
        data["groups"] = dict(self.groups)
        data["version"] = RECORD_VERSION
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EvalRecord:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names - {"version"}
        if unknown:
            raise ValueError(f"unknown record keys {sorted(unknown)}")
        values = {k: v for k, v in data.items() if k in names}
        values["choices"] = tuple(values.get("choices") or ())
        values["groups"] = dict(values.get("groups") or {})
        return cls(**values)

    def to_item_result(self) -> ItemResult:
        """The official verdict as :mod:`audio_thinker.scoring.match` tallies it."""
        return ItemResult(self.item_id, self.benchmark, self.prediction, self.official_extracted,
                          self.correct, self.missing, self.unparsed, dict(self.groups))


def lenient_answer(response: str) -> str | None:
    """The last non-empty ``<answer>..</answer>`` text of ``response`` (stripped), or None.

    >>> lenient_answer("<answer>a</answer> no wait <answer> b </answer> trailing")
    'b'
    >>> lenient_answer("<answer> </answer>") is None
    True
    """
    for text in reversed(_ANSWER_BLOCK.findall(response)):
        if text.strip():
            return text.strip()
    return None


def air_bench_response(answer: str, choices: Sequence[str]) -> str:
    """The AIR-Bench ``response``: the letter of the choice ``answer`` names, else ``answer``.

    >>> air_bench_response("dog", ["cat", "Dog"]), air_bench_response("(A)", ["cat", "dog"])
    ('B', 'A')
    >>> air_bench_response("a horse", ["cat", "dog"])
    'a horse'
    """
    n = min(len(choices), len(AIR_BENCH_LETTERS))
    index = answer_letter_index(answer, n)
    if index is None:
        wanted = normalize_answer(answer, n_choices=n)
        index = next((i for i, c in enumerate(choices[:n]) if wanted and normalize_answer(c, n_choices=n) == wanted), None)
    return AIR_BENCH_LETTERS[index] if index is not None else answer


def make_record(
    item: BenchmarkItem,
    response: str | None,
    *,
    prompt_mode: str,
    error: str | None = None,
    n_tokens: int = 0,
    finish_reason: str | None = None,
) -> EvalRecord:
    """Score ``response`` to ``item`` with both rules (``None``: no response, a missing item)."""
    if item.answer is None:
        raise ValueError(f"item {item.item_id!r} has no gold answer (hidden test split?): cannot evaluate it")
    base = dict(
        item_id=item.item_id, benchmark=item.benchmark, prompt_mode=prompt_mode, question=item.question,
        choices=tuple(item.choices), answer=item.answer, audio_path=item.audio_path, groups=dict(item.groups),
        error=error, n_tokens=int(n_tokens), finish_reason=finish_reason,
    )
    if response is None:
        return EvalRecord(**base)
    parsed = parse_response(response)
    extracted = parsed.answer if parsed.well_formed else lenient_answer(strip_eos(response))
    if item.benchmark == AIR_BENCH:
        prediction = air_bench_response(extracted, item.choices) if extracted is not None else strip_eos(response)
    else:
        prediction = extracted if extracted is not None else strip_eos(response)
    verdict = score_item(benchmark=item.benchmark, item_id=item.item_id, answer=item.answer,
                         choices=item.choices, prediction=prediction, groups=item.groups)
    reward_correct = parsed.well_formed and is_correct(parsed.answer, gold=item.answer, choices=list(item.choices))
    return EvalRecord(
        **base, response=response, response_mode=parsed.mode.value,
        think=parsed.think if parsed.mode is ResponseMode.THINK else None,
        extracted_answer=extracted, prediction=prediction, official_extracted=verdict.extracted,
        correct=verdict.correct, missing=False, unparsed=verdict.unparsed, reward_correct=bool(reward_correct),
    )
