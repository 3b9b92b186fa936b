"""The prompts of both stages and the filter that keeps or drops each row (pure).

A rationale is parsed with :func:`audio_thinker.rewards.parsing.parse_response` on its tagged span
(from the first ``<think>`` to the last ``</answer>``: chatter a chat model writes around the tags
is trimmed and counted as ``trimmed``); it must be THINK (non-empty ``<think>`` then ``<answer>``)
and its answer must name the gold choice (:func:`audio_thinker.rewards.accuracy.is_correct`).
Every row ends up kept or dropped under exactly one of :data:`DROP_REASONS`.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from audio_thinker.data.cot.settings import digest
from audio_thinker.data.rows import AUDIO_PLACEHOLDER, inline_audio, with_prompt_mode
from audio_thinker.prompts import CAPTION_TEMPLATE, PromptMode, build_cot_generation_prompt
from audio_thinker.rewards.accuracy import is_correct
from audio_thinker.rewards.parsing import ResponseMode, parse_response, strip_eos

#: every drop reason, in pipeline order (all are listed in the summary, zeros included)
DROP_REASONS = ("audio_error", "generation_error", "empty_caption", "malformed", "answer_mismatch")
#: extra_info keys added to the kept rows
COT_KEYS = ("rationale", "caption", "cot_model", "caption_model")


def row_key(row: Mapping[str, Any]) -> str:
    """The resume key of a row: source, split, index and a digest of its audio, question, choices
    and answer (an edited row gets a new key, so it is generated again).

    >>> row = {"data_source": "avqa", "audios": ["/a.wav"], "extra_info": {"split": "train",
    ...        "index": 3, "question": "Q?", "choices": ["x", "y"], "answer": "y"}}
    >>> key = row_key(row)
    >>> key.startswith("avqa:train:3:"), len(key.split(":")[-1])
    (True, 10)
    """
    info = row["extra_info"]
    audio = list(row.get("audios") or [info.get("audio_path")])
    payload = json.dumps([audio, info["question"], list(info["choices"]), info["answer"]], ensure_ascii=False)
    key_digest = hashlib.sha1(payload.encode("utf-8")).hexdigest()[:10]
    return f"{row.get('data_source', '')}:{info.get('split', '')}:{info.get('index', '')}:{key_digest}"


def caption_messages(samples: Any) -> list[dict[str, Any]]:
    """The captioner's chat: one user turn, the clip, then :data:`CAPTION_TEMPLATE`.

    >>> caption_messages("clip")[0]["content"][0]
    {'type': 'audio', 'audio': 'clip'}
    """
    return inline_audio([{"role": "user", "content": AUDIO_PLACEHOLDER + CAPTION_TEMPLATE}], [samples])


def clean_caption(text: str | None) -> str:
    """A generated caption without trailing end-of-sequence tokens and surrounding whitespace.

    >>> clean_caption("  A dog barks twice.<|im_end|>")
    'A dog barks twice.'
    """
    return strip_eos(text or "")


def rationale_prompt(row: Mapping[str, Any], caption: str) -> str:
    """The appendix A.2 prompt of ``row`` (before any chat template)."""
    info = row["extra_info"]
    return build_cot_generation_prompt(caption=caption, question=info["question"],
                                       choices=list(info["choices"]), answer=info["answer"])


def tagged_span(text: str) -> tuple[str, bool]:
    """The text from the first ``<think>`` to the last ``</answer>`` (end-of-sequence tokens
    stripped first), and whether anything around it was cut.

    >>> tagged_span("Sure.\\n<think>a</think><answer>b</answer> Hope it helps!<|im_end|>")
    ('<think>a</think><answer>b</answer>', True)
    >>> tagged_span("<think>a</think><answer>b</answer>")
    ('<think>a</think><answer>b</answer>', False)
    """
    body = strip_eos(text)
    start, end = body.find("<think>"), body.rfind("</answer>")
    if start < 0 or end < start:
        return body, False
    span = body[start:end + len("</answer>")]
    return span, span != body


def judge_rationale(text: str, *, answer: str, choices: Sequence[str]) -> tuple[str | None, str | None, bool]:
    """(drop reason or None, think text, trimmed) of a rationale LLM output for gold ``answer``.

    >>> judge_rationale("<think>Two beeps.</think><answer>two</answer>", answer="two", choices=["one", "two"])
    (None, 'Two beeps.', False)
    >>> judge_rationale("<think>One.</think><answer>one</answer>", answer="two", choices=["one", "two"])
    ('answer_mismatch', 'One.', False)
    >>> judge_rationale("<answer>two</answer>", answer="two", choices=["one", "two"])[0]
    'malformed'
    """
    span, trimmed = tagged_span(text)
    parsed = parse_response(span)
    if parsed.mode is not ResponseMode.THINK:
        return "malformed", None, trimmed
    if not is_correct(parsed.answer, gold=answer, choices=list(choices)):
        return "answer_mismatch", parsed.think, trimmed
    return None, parsed.think, trimmed


@dataclass(frozen=True)
class RowOutcome:
    """The fate of one row: ``reason`` None = kept, ``"pending"`` = not rationalised yet."""

    key: str
    reason: str | None
    caption: str | None = None
    think: str | None = None
    trimmed: bool = False


def row_outcome(row: Mapping[str, Any], caption: Mapping[str, Any] | None,
                rationale: Mapping[str, Any] | None) -> RowOutcome:
    """Decide one row from its caption and rationale records (see the module docstring).

    >>> row = {"data_source": "s", "audios": ["/a"], "extra_info": {"question": "Q", "choices": ["a", "b"],
    ...        "answer": "b"}}
    >>> cap = {"caption": "A beep."}
    >>> good = {"caption_sha": digest("A beep."), "text": "<think>t</think><answer>b</answer>"}
    >>> row_outcome(row, cap, good).reason is None
    True
    >>> row_outcome(row, {"caption": " "}, None).reason
    'empty_caption'
    >>> row_outcome(row, cap, None).reason
    'pending'
    """
    key = row_key(row)
    if caption is None:
        return RowOutcome(key, "pending")
    if caption.get("error"):
        return RowOutcome(key, str(caption["error"]))
    text = clean_caption(caption.get("caption"))
    if not text:
        return RowOutcome(key, "empty_caption")
    if rationale is None or rationale.get("caption_sha") != digest(text):
        return RowOutcome(key, "pending", caption=text)
    if rationale.get("error"):
        return RowOutcome(key, str(rationale["error"]), caption=text)
    info = row["extra_info"]
    reason, think, trimmed = judge_rationale(str(rationale.get("text") or ""), answer=info["answer"],
                                             choices=list(info["choices"]))
    return RowOutcome(key, reason, caption=text, think=think, trimmed=trimmed)


def cot_row(
    row: Mapping[str, Any], outcome: RowOutcome, *, cot_model: str, caption_model: str
) -> dict[str, Any]:
    """The output row of a kept ``row``: ``think`` prompt mode plus the :data:`COT_KEYS`."""
    if outcome.reason is not None or outcome.think is None:
        raise ValueError(f"row {outcome.key} was not kept ({outcome.reason})")
    out = with_prompt_mode(dict(row), PromptMode.THINK)
    out["extra_info"] = {**out["extra_info"], "rationale": outcome.think, "caption": outcome.caption,
                         "cot_model": cot_model, "caption_model": caption_model}
    return out


def summarize(outcomes: Sequence[RowOutcome], *, tasks: Sequence[str] = ()) -> dict[str, Any]:
    """Counts of the outcomes: ``rows = kept + dropped_total + pending``.

    >>> s = summarize([RowOutcome("a", None), RowOutcome("b", "malformed"), RowOutcome("c", "pending")])
    >>> s["kept"], s["dropped"]["malformed"], s["dropped_total"], s["pending"], s["rows"]
    (1, 1, 1, 1, 3)
    """
    counts = Counter(o.reason for o in outcomes)
    unknown = set(counts) - {None, "pending", *DROP_REASONS}
    if unknown:
        raise ValueError(f"unknown outcome reasons {sorted(unknown)}")
    dropped = {reason: counts.get(reason, 0) for reason in DROP_REASONS}
    summary: dict[str, Any] = {
        "rows": len(outcomes),
        "kept": counts.get(None, 0),
        "dropped": dropped,
        "dropped_total": sum(dropped.values()),
        "pending": counts.get("pending", 0),
        "trimmed": sum(o.trimmed for o in outcomes if o.reason is None),
    }
    if tasks:
        kept_tasks = Counter(t for o, t in zip(outcomes, tasks) if o.reason is None)
        summary["kept_by_task"] = dict(sorted(kept_tasks.items()))
    assert summary["kept"] + summary["dropped_total"] + summary["pending"] == summary["rows"]
    return summary


def format_summary_line(summary: Mapping[str, Any]) -> str:
    """One line: kept of rows, the non-zero drops, pending, invalid input rows skipped, seconds.

    >>> format_summary_line({"rows": 3, "kept": 1, "dropped": {"malformed": 2, "audio_error": 0},
    ...                      "pending": 0, "timing": {"total_s": 1.5}, "out": "/o"})
    'cot: kept 1 of 3 rows; dropped malformed 2; 1.5 s -> /o'
    """
    drops = ", ".join(f"{k} {v}" for k, v in summary["dropped"].items() if v) or "none"
    pending = f"; pending {summary['pending']}" if summary.get("pending") else ""
    invalid = summary.get("invalid_rows") or {}
    skipped = (f"; skipped {sum(invalid.values())} invalid input rows "
               f"({', '.join(f'{k} {v}' for k, v in invalid.items())})") if invalid else ""
    return (f"cot: kept {summary['kept']} of {summary['rows']} rows; dropped {drops}{pending}{skipped}; "
            f"{summary['timing']['total_s']} s -> {summary['out']}")
