"""Correctness of an extracted answer against the gold choice (DESIGN.md section 3).

An answer is correct when, after normalisation, it equals the gold choice, or (only when the prompt
showed lettered options) it is the gold option's letter. Normalisation lower-cases, collapses
whitespace, strips a conservative set of surrounding punctuation and quotes (never ``#``/``+``,
so ``C#`` stays distinct from ``C``), unwraps matching brackets, and removes a leading option
label such as ``A.``, ``(A)``, ``A)`` or ``A:`` whose letter names one of the choices.

Containment is never enough: "dog" is not "a dog barking" (that would be reward hacking, e.g.
answering with every choice at once).

>>> is_correct("(B) Two beeps.", gold="two beeps", choices=["one beep", "two beeps"])
True
>>> is_correct("beeps", gold="two beeps", choices=["one beep", "two beeps"])
False
>>> is_correct("B", gold="two beeps", choices=["one beep", "two beeps"], lettered=True)
True
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence

_STRIP_CHARS = ".,;:!?'\"`*" + string.whitespace
_BRACKETS = {"(": ")", "[": "]", "{": "}", "<": ">", "“": "”", "‘": "’"}
_LABEL = re.compile(r"^(?:\((?P<p>[a-z])\)|(?P<d>[a-z])[.):])\s*", re.IGNORECASE)
_BARE_LETTER = re.compile(r"^\(?(?P<l>[a-z])\)?[.):]?$", re.IGNORECASE)


def option_letter(index: int) -> str:
    """``0 -> 'A'``; raises for indices beyond ``Z``."""
    if not 0 <= index < 26:
        raise ValueError(f"option index {index} out of range A-Z")
    return string.ascii_uppercase[index]


def _strip_wrapping(text: str) -> str:
    previous = None
    while text != previous:
        previous = text
        text = text.strip(_STRIP_CHARS)
        if len(text) >= 2 and _BRACKETS.get(text[0]) == text[-1]:
            text = text[1:-1]
    return text


def normalize_answer(text: str, *, n_choices: int = 26) -> str:
    """Canonical form of an answer or choice for equality comparison.

    A leading label is removed only when its letter is among the first ``n_choices`` letters.

    >>> normalize_answer("  (A)  The  Dog barks. ", n_choices=4)
    'the dog barks'
    >>> normalize_answer("C#")
    'c#'
    """
    text = " ".join(text.split())
    text = _strip_wrapping(text)
    match = _LABEL.match(text)
    if match:
        letter = (match.group("p") or match.group("d")).upper()
        if string.ascii_uppercase.index(letter) < n_choices and match.end() < len(text):
            text = _strip_wrapping(text[match.end():])
    return text.lower()


def answer_letter_index(answer: str, n_choices: int) -> int | None:
    """Index named by a bare option letter (``B``, ``(B)``, ``B.``), or None.

    >>> answer_letter_index("(c)", 4), answer_letter_index("E", 4), answer_letter_index("cat", 4)
    (2, None, None)
    """
    match = _BARE_LETTER.match(answer.strip())
    if not match:
        return None
    index = string.ascii_uppercase.index(match.group("l").upper())
    return index if index < n_choices else None


def is_correct(
    answer: str | None, *, gold: str, choices: Sequence[str], lettered: bool = False
) -> bool:
    """Whether ``answer`` (an extracted ``<answer>`` text) names the gold choice.

    ``gold`` must be one of ``choices``; ``lettered`` says the prompt showed options as A, B, ...
    A ``None`` answer (malformed response) is incorrect.
    """
    if gold not in choices:
        raise ValueError(f"gold answer {gold!r} is not one of the choices {list(choices)!r}")
    if answer is None:
        return False
    n = len(choices)
    if lettered:
        index = answer_letter_index(answer, n)
        if index is not None:
            return choices[index] == gold
    normalized = normalize_answer(answer, n_choices=n)
    return bool(normalized) and normalized == normalize_answer(gold, n_choices=n)
