"""Strict parsers from a judge's continuation to a verdict (DESIGN.md section 3).

Both parsers read only the judge's *own continuation* (the text generated after the prompt of
:mod:`audio_thinker.rewards.judge_prompts`), and of it only the first non-empty line: a base
model keeps writing further reviews after its verdict, and those must not count. A parser returns
``None`` when the verdict cannot be read; the reward then counts it as the worst verdict.

Fallback cascade, applied to that first line:

1. the verdict itself at the start (``Yes`` / ``No``; a number such as ``0.7``);
2. the same after a repeated label (``Verdict: Yes``, ``Score: 0.7``) or markdown emphasis;
3. otherwise ``None``: no searching elsewhere in the text, so an echoed example or a quoted
   "Score: 1.0" cannot be mistaken for the verdict.

>>> parse_consistency(" Yes\\n\\n### Review 6\\nVerdict: No")
1
>>> parse_quality(" 0.74\\n")
0.7
>>> parse_quality(" 7/10"), parse_quality(" 85%"), parse_quality(" 3 out of 10"), parse_quality(" great")
(0.7, 0.9, 0.3, None)

Parsing is strict, never generous: a value outside [0, 1] (after reading ``a/b``, ``a out of b`` and
percentages exactly) is unreadable, never clipped; so are decimal commas (``0,7``), exponents
(``1e-3``) and a consistency verdict that names both answers (``Yes/No``).

>>> parse_quality(" 7"), parse_quality(" 10"), parse_quality(" 1e-3"), parse_quality(" 0,7")
(None, None, None, None)
>>> parse_consistency(" Yes/No"), parse_consistency(" yes or no"), parse_consistency(" Yes, it does")
(None, None, 1)
"""

from __future__ import annotations

import math
import re

_LABEL = re.compile(r"^(?:verdict|answer|score|rating|quality)\s*[:=\-]\s*", re.IGNORECASE)
_EMPHASIS = "*_\"'` \t"
_YES = frozenset({"yes", "true", "1", "supported", "supports", "consistent"})
_NO = frozenset({"no", "false", "0", "unsupported", "inconsistent"})
_WORD = re.compile(r"^[A-Za-z0-9]+")
_NUMBER = re.compile(
    r"^(?P<value>[+-]?(?:\d+(?:\.\d*)?|\.\d+))"
    r"(?:\s*(?:(?:/|\bout\s+of\b)\s*(?P<denominator>\d+(?:\.\d+)?)|(?P<percent>%)))?"
)
#: what may not follow a number: more of a number we do not read exactly (``0,7``, ``1e-3``, ``7/``)
_NUMBER_CONTINUES = re.compile(r"^(?:[,.]?\d|[eE][+-]?\d|\s*/|\w)")
#: a second verdict word after the first (``Yes/No``, ``yes or no``): the judge did not decide
_ALTERNATIVE = re.compile(r"^\s*(?:/|\||\\|\bor\b|\band\b)\s*(?P<word>[A-Za-z0-9]+)", re.IGNORECASE)


def first_line(continuation: str) -> str:
    """The first line of ``continuation`` that has content, stripped (``''`` if none).

    >>> first_line("\\n\\n  Yes.  \\nNo")
    'Yes.'
    """
    if not isinstance(continuation, str):
        raise TypeError(f"judge output must be str, got {type(continuation).__name__}")
    for line in continuation.splitlines():
        if line.strip():
            return line.strip()
    return ""


def _verdict_text(continuation: str) -> str:
    line = first_line(continuation).strip(_EMPHASIS)
    stripped = _LABEL.sub("", line, count=1)
    return stripped.strip(_EMPHASIS)


def parse_consistency(continuation: str) -> int | None:
    """``1`` (the reasoning supports the answer), ``0`` (it does not) or ``None`` (unreadable).

    >>> parse_consistency("**No**, it argues for the violin."), parse_consistency(" Maybe")
    (0, None)
    """
    text = _verdict_text(continuation)
    match = _WORD.match(text)
    if not match:
        return None
    word = match.group().lower()
    if word not in _YES and word not in _NO:
        return None
    other = _ALTERNATIVE.match(text[match.end():])
    if other and other.group("word").lower() in _YES | _NO:
        return None
    return 1 if word in _YES else 0


def round_to_tenth(value: float) -> float:
    """Round a value in [0, 1] half up to the nearest 0.1 (a value outside raises ValueError).

    >>> round_to_tenth(0.25), round_to_tenth(0.0), round_to_tenth(0.94999)
    (0.3, 0.0, 0.9)
    """
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{value} is outside [0, 1]")
    return round(math.floor(value * 10.0 + 0.5 + 1e-9) / 10.0, 1)


def parse_quality(continuation: str) -> float | None:
    """A think-quality score in {0.0, 0.1, ..., 1.0}, or ``None`` when unreadable.

    ``a/b`` and ``a out of b`` fractions and percentages are read exactly; a value outside [0, 1]
    after that is unreadable (never clipped), and so is a number written in a way not read exactly.
    """
    text = _verdict_text(continuation)
    match = _NUMBER.match(text)
    if not match or _NUMBER_CONTINUES.match(text[match.end():]):
        return None
    value = float(match.group("value"))
    denominator = match.group("denominator")
    if denominator is not None:
        scale = float(denominator)
        if scale <= 0:
            return None
        value /= scale
    elif match.group("percent"):
        value /= 100.0
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        return None
    return round_to_tenth(value)
