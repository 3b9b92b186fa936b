"""Parse a policy response into THINK / NO-THINK / MALFORMED (DESIGN.md section 3).

Grammar, applied after stripping surrounding whitespace and trailing end-of-sequence tokens:

* THINK: ``<think>T</think>`` optional whitespace ``<answer>A</answer>``, T non-empty after strip.
* NO-THINK: ``<answer>A</answer>``, or an empty think block ``<think> </think><answer>A</answer>``
  (the Qwen3 convention).
* Anything else is MALFORMED: text before the first tag or after ``</answer>``, a missing,
  extra, nested or unbalanced tag, two answers, an empty answer. A malformed response gets
  format reward 0 and counts as incorrect; for the batch think ratio it counts as THINK when it
  contains ``<think>`` (:attr:`ParsedResponse.counts_as_think`).

Tags are matched case-sensitively and exactly: ``<Think>`` is ordinary text.

>>> parse_response("<think>two beeps</think> <answer>2</answer><|im_end|>")
ParsedResponse(mode=<ResponseMode.THINK: 'think'>, think='two beeps', answer='2')
>>> parse_response("<think> </think><answer>high</answer>").mode.value
'no_think'
>>> parse_response("<answer>a</answer> because").mode.value
'malformed'
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

#: End-of-sequence tokens ignored at the end of a response (Qwen2-Audio / Qwen2.5-Omni / Qwen3).
DEFAULT_EOS_TOKENS: tuple[str, ...] = ("<|im_end|>", "<|endoftext|>")

TAGS: tuple[str, ...] = ("<think>", "</think>", "<answer>", "</answer>")

_STRUCTURE = re.compile(
    r"(?:<think>(?P<think>.*?)</think>\s*)?<answer>(?P<answer>.*?)</answer>", re.DOTALL
)


class ResponseMode(str, enum.Enum):
    """The mode of a response; ``.value`` is the string used in metrics and logs."""

    THINK = "think"
    NO_THINK = "no_think"
    MALFORMED = "malformed"


@dataclass(frozen=True)
class ParsedResponse:
    """A parsed response. ``think``/``answer`` are stripped text, or None when absent/malformed."""

    mode: ResponseMode
    think: str | None
    answer: str | None
    #: whether the (stripped) text contains ``<think>``; decides a malformed response's mode
    has_think_tag: bool = field(default=False, repr=False)

    @property
    def well_formed(self) -> bool:
        """True for THINK and NO-THINK (format reward 1)."""
        return self.mode is not ResponseMode.MALFORMED

    @property
    def counts_as_think(self) -> bool:
        """Whether the response counts as THINK for the batch think ratio lambda."""
        return self.mode is ResponseMode.THINK or (
            self.mode is ResponseMode.MALFORMED and self.has_think_tag
        )


def strip_eos(text: str, eos_tokens: Sequence[str] = DEFAULT_EOS_TOKENS) -> str:
    """Strip surrounding whitespace and any run of trailing end-of-sequence tokens.

    >>> strip_eos("  <answer>x</answer> <|im_end|><|endoftext|>\\n")
    '<answer>x</answer>'
    """
    text = text.strip()
    changed = True
    while changed:
        changed = False
        for token in eos_tokens:
            if token and text.endswith(token):
                text = text[: -len(token)].rstrip()
                changed = True
    return text


def _contains_tag(text: str) -> bool:
    return any(tag in text for tag in TAGS)


def parse_response(
    text: str, *, eos_tokens: Sequence[str] = DEFAULT_EOS_TOKENS
) -> ParsedResponse:
    """Parse one response string; never raises on any ``str`` input."""
    if not isinstance(text, str):
        raise TypeError(f"response must be str, got {type(text).__name__}")
    body = strip_eos(text, eos_tokens)
    malformed = ParsedResponse(ResponseMode.MALFORMED, None, None, has_think_tag="<think>" in body)
    match = _STRUCTURE.fullmatch(body)
    if match is None:
        return malformed
    think, answer = match.group("think"), match.group("answer")
    # Any tag inside a block means nesting, a second answer or an unbalanced tag.
    if _contains_tag(answer) or (think is not None and _contains_tag(think)):
        return malformed
    answer = answer.strip()
    if not answer:
        return malformed
    think = think.strip() if think is not None else ""
    if think:
        return ParsedResponse(ResponseMode.THINK, think, answer, has_think_tag=True)
    return ParsedResponse(ResponseMode.NO_THINK, None, answer, has_think_tag="<think>" in body)
