"""Versioned prompt templates for the policy (paper appendix A).

Three prompt modes switch how the policy is asked to answer:

* ``adaptive`` (A.1): the model decides whether to think; the Audio-Thinker default.
* ``think`` (A.3): always ``<think>..</think><answer>..</answer>`` (the GRPO+CoT rows).
* ``direct``: ``<answer>..</answer>`` only (the plain GRPO rows, R1-AQA style).

plus the CoT-generation template (A.2) given to a large text LLM to write rationales.

The question itself follows the R1-AQA convention: the question text followed by the list of
choices. Templates are plain ``str.format`` strings keyed by a version so that a run records
exactly which wording it trained with (``PROMPT_VERSION``).

>>> build_user_prompt("Which tone is higher?", ["first", "second"], mode="direct")
"Which tone is higher? Please choose the answer from the following options: ['first', 'second']. Output the final answer in <answer> </answer>."
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

PROMPT_VERSION = "v1"


class PromptMode(str, enum.Enum):
    """How the policy is asked to answer; ``.value`` is the config string."""

    ADAPTIVE = "adaptive"
    THINK = "think"
    DIRECT = "direct"


#: The question + choices, as in R1-AQA (choices shown as a Python list literal).
QUESTION_TEMPLATE = "{question} Please choose the answer from the following options: {choices}."

#: Per-mode instruction appended after the question. ``adaptive`` quotes appendix A.1.
INSTRUCTIONS: dict[PromptMode, str] = {
    PromptMode.ADAPTIVE: (
        "First, identify whether this problem requires thinking. If the problem requires "
        "thinking, output thinking process in <think> </think> and final answer inside "
        "<answer> </answer>. If no thinking is required, and the final output answer in "
        "<answer> </answer> The Assistant is encouraged to use the <answer></answer> tag "
        "whenever possible, while ensuring accuracy."
    ),
    PromptMode.THINK: (
        "Output the thinking process in <think> </think> and final answer in <answer> </answer>."
    ),
    PromptMode.DIRECT: "Output the final answer in <answer> </answer>.",
}

#: Figure 1's short form of the adaptive instruction (kept for ablations and docs).
ADAPTIVE_SHORT_INSTRUCTION = (
    "If the problem requires thinking, output thinking in <think> </think> and answer in "
    "<answer> </answer>. If no thinking is required, output answer in <answer> </answer>"
)

#: Appendix A.2: rationale generation for the SFT-CoT / GRPO-CoT baselines (text LLM input).
COT_GENERATION_TEMPLATE = (
    "You are given a description of an audio clip, a question about it, the answer choices and "
    "the correct answer. Write the step-by-step reasoning that a listener would follow to reach "
    "the correct answer from the audio, in four parts: planning (what must be determined), "
    "caption (the relevant audio evidence), reasoning (from the evidence to the answer) and "
    "summary (the conclusion). Do not mention that the answer was given to you.\n\n"
    "Audio description: {caption}\n"
    "Question: {question}\n"
    "Choices: {choices}\n"
    "Correct answer: {answer}\n\n"
    "Output the reasoning in <think> </think> and then the final answer in <answer> </answer>."
)

#: Caption request sent to the base audio model before rationale generation (A.2, step one).
CAPTION_TEMPLATE = (
    "Describe the audio in detail: the sound events, their order and timing, pitch, loudness, "
    "speech content and speaker characteristics, and any music."
)


def parse_mode(mode: str | PromptMode) -> PromptMode:
    """Return ``mode`` as a :class:`PromptMode`, with an error naming the valid values.

    >>> parse_mode("think")
    <PromptMode.THINK: 'think'>
    """
    if isinstance(mode, PromptMode):
        return mode
    try:
        return PromptMode(mode)
    except ValueError:
        valid = ", ".join(m.value for m in PromptMode)
        raise ValueError(f"unknown prompt mode {mode!r}: use one of {valid}") from None


def format_question(question: str, choices: Sequence[str]) -> str:
    """The question followed by its choices (R1-AQA convention).

    >>> format_question("Is it loud?", ["yes", "no"])
    "Is it loud? Please choose the answer from the following options: ['yes', 'no']."
    """
    if not question or not question.strip():
        raise ValueError("question is empty")
    if len(choices) < 2:
        raise ValueError(f"need at least two choices, got {list(choices)!r}")
    return QUESTION_TEMPLATE.format(question=question.strip(), choices=[str(c) for c in choices])


def build_user_prompt(question: str, choices: Sequence[str], *, mode: str | PromptMode) -> str:
    """The full text of the user turn for ``mode`` (the audio comes before it in the chat)."""
    return f"{format_question(question, choices)} {INSTRUCTIONS[parse_mode(mode)]}"


def build_cot_generation_prompt(
    *, caption: str, question: str, choices: Sequence[str], answer: str
) -> str:
    """Appendix A.2 prompt for the rationale-writing text LLM."""
    return COT_GENERATION_TEMPLATE.format(
        caption=caption.strip(), question=question.strip(), choices=list(choices), answer=answer
    )
