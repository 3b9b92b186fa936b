"""The one training-row schema shared by every training set (synthetic, AVQA, benchmark-derived).

A row is what verl's RLHF dataset reads from parquet, plus our own ``extra_info``:

============================  ==============================================================
column                        meaning
============================  ==============================================================
``data_source``               where the row comes from (``synthetic_aqa``, ``avqa``, ...)
``prompt``                    chat messages; the user turn holds one ``<audio>`` placeholder
                              (verl's multimodal convention) followed by the question text
``audios``                    list with one audio path (verl's ``data.audio_key`` column)
``ability``                   ``audio_qa``
``reward_model``              ``{"style": "rule", "ground_truth": <gold choice text>}``
``extra_info``                ``{"index", "split", "question", "choices", "answer",
                              "answer_index", "task", "difficulty", "audio_path",
                              "prompt_mode", "prompt_version"}``
============================  ==============================================================

The prompt text is built from a named template (:mod:`audio_thinker.prompts`), so one config key
(``prompt_mode``) switches between adaptive-think, think and direct-answer data, and
:func:`with_prompt_mode` rewrites existing rows without touching anything else.

:func:`validate_row` is the one check of a row (the same for every prompt mode), raising
:class:`RowError` with a counter ``reason``; readers validate once when they open a file and skip
malformed rows. :class:`BadClipSkipper` is how the training data sets replace a row whose clip
fails at read time, counting each bad clip once.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from audio_thinker.data.audio import AudioError, AudioStats
from audio_thinker.prompts import PROMPT_VERSION, PromptMode, build_user_prompt, format_question, parse_mode

logger = logging.getLogger(__name__)

AUDIO_PLACEHOLDER = "<audio>"
ABILITY = "audio_qa"
ROW_COLUMNS = ("data_source", "prompt", "audios", "ability", "reward_model", "extra_info")


@dataclass(frozen=True)
class QAExample:
    """One audio multiple-choice question before it becomes a training row."""

    audio_path: str
    question: str
    choices: tuple[str, ...]
    answer: str
    task: str = ""
    difficulty: str = ""

    def __post_init__(self) -> None:
        if self.answer not in self.choices:
            raise ValueError(
                f"answer {self.answer!r} is not one of the choices {list(self.choices)!r}"
            )
        if len(set(self.choices)) != len(self.choices):
            raise ValueError(f"duplicate choices {list(self.choices)!r}")


def make_row(
    example: QAExample,
    *,
    data_source: str,
    index: int,
    split: str,
    prompt_mode: str | PromptMode = PromptMode.ADAPTIVE,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Turn ``example`` into one parquet row of the schema above."""
    mode = parse_mode(prompt_mode)
    extra_info: dict[str, Any] = {
        "index": int(index),
        "split": split,
        "question": example.question,
        "choices": list(example.choices),
        "answer": example.answer,
        "answer_index": example.choices.index(example.answer),
        "task": example.task,
        "difficulty": example.difficulty,
        "audio_path": example.audio_path,
        "prompt_mode": mode.value,
        "prompt_version": PROMPT_VERSION,
    }
    if extra:
        clash = set(extra) & set(extra_info)
        if clash:
            raise ValueError(f"extra keys {sorted(clash)} would overwrite schema fields")
        extra_info.update(extra)
    return {
        "data_source": data_source,
        "prompt": build_prompt_messages(example.question, example.choices, mode=mode),
        "audios": [example.audio_path],
        "ability": ABILITY,
        "reward_model": {"style": "rule", "ground_truth": example.answer},
        "extra_info": extra_info,
    }


def build_prompt_messages(
    question: str, choices: Sequence[str], *, mode: str | PromptMode
) -> list[dict[str, str]]:
    """The chat messages of a row: one user turn, audio first, then the question."""
    return [
        {"role": "user", "content": AUDIO_PLACEHOLDER + build_user_prompt(question, choices, mode=mode)}
    ]


def inline_audio(messages: Sequence[dict[str, Any]], audios: Sequence[Any]) -> list[dict[str, Any]]:
    """``messages`` with each ``<audio>`` placeholder replaced by ``{"type": "audio", "audio": clip}``.

    The text around a placeholder becomes ``{"type": "text", ...}`` items, as verl's
    ``RLHFDataset._build_messages`` does; the result is what a processor's chat template renders.

    >>> inline_audio([{"role": "user", "content": "<audio>Loud?"}], ["clip"])
    [{'role': 'user', 'content': [{'type': 'audio', 'audio': 'clip'}, {'type': 'text', 'text': 'Loud?'}]}]
    """
    pending = list(audios)
    out: list[dict[str, Any]] = []
    for message in messages:
        content: list[dict[str, Any]] = []
        for segment in re.split(f"({re.escape(AUDIO_PLACEHOLDER)})", str(message["content"])):
            if segment == AUDIO_PLACEHOLDER:
                if not pending:
                    raise ValueError("more <audio> placeholders than audios")
                content.append({"type": "audio", "audio": pending.pop(0)})
            elif segment:
                content.append({"type": "text", "text": segment})
        out.append({"role": message["role"], "content": content})
    if pending:
        raise ValueError(f"{len(pending)} audios without an <audio> placeholder")
    return out


def with_prompt_mode(row: dict[str, Any], mode: str | PromptMode) -> dict[str, Any]:
    """Return a copy of ``row`` whose prompt uses ``mode``; everything else is unchanged."""
    info = dict(row["extra_info"])
    parsed = parse_mode(mode)
    info["prompt_mode"] = parsed.value
    info["prompt_version"] = PROMPT_VERSION
    return {
        **row,
        "prompt": build_prompt_messages(info["question"], info["choices"], mode=parsed),
        "extra_info": info,
    }


class RowError(ValueError):
    """A row that does not follow the schema; ``reason`` is a short counter key (:data:`ROW_ERRORS`)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


#: the ``RowError.reason`` values, in the order :func:`validate_row` checks them
ROW_ERRORS = (
    "not_a_row", "missing_columns", "bad_prompt", "audio_mismatch", "bad_extra_info", "missing_field",
    "bad_question", "ground_truth_mismatch", "answer_not_in_choices",
)


def _sequence(value: Any) -> list[Any] | None:
    """``value`` as a list when it is a list, tuple or array (parquet readers differ), else None."""
    if isinstance(value, (list, tuple)):
        return list(value)
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        listed = value.tolist()
        return listed if isinstance(listed, list) else None
    return None


def validate_row(row: Any) -> None:
    """Raise :class:`RowError` (a ``ValueError``) naming the first problem if ``row`` does not follow
    the schema; never another exception, whatever ``row`` holds.

    Valid means usable in every prompt mode: the question and choices rebuild the prompt of any
    mode (:func:`~audio_thinker.prompts.format_question`), so a data set validated once never
    fails on a row later, whichever mode it trains with.

    >>> try:
    ...     validate_row({"data_source": "x"})
    ... except RowError as err:
    ...     print(err.reason)
    missing_columns
    """
    if not isinstance(row, dict):
        raise RowError("not_a_row", f"a row must be a mapping of columns, got {type(row).__name__}")
    missing = [c for c in ROW_COLUMNS if c not in row]
    if missing:
        raise RowError("missing_columns", f"row is missing columns {missing}; expected {list(ROW_COLUMNS)}")
    prompt = _sequence(row["prompt"])
    if not prompt or not all(isinstance(m, dict) for m in prompt):
        raise RowError("bad_prompt", "prompt must be a non-empty list of chat messages")
    n_placeholders = sum(str(m.get("content", "")).count(AUDIO_PLACEHOLDER) for m in prompt)
    audios = _sequence(row["audios"])
    if audios is None or n_placeholders != len(audios):
        raise RowError(
            "audio_mismatch",
            f"{n_placeholders} {AUDIO_PLACEHOLDER} placeholders but {len(audios or [])} audios",
        )
    info, reward = row["extra_info"], row["reward_model"]
    if not isinstance(info, dict) or not isinstance(reward, dict):
        raise RowError("bad_extra_info", "extra_info and reward_model must be mappings")
    for key in ("question", "choices", "answer", "audio_path", "prompt_mode"):
        if info.get(key) is None:
            raise RowError("missing_field", f"extra_info is missing {key!r}")
    question, choices = info["question"], _sequence(info["choices"])
    try:
        if not isinstance(question, str) or choices is None:
            raise ValueError(f"question must be text and choices a list, got {question!r}, {info['choices']!r}")
        format_question(question, [str(c) for c in choices])
    except ValueError as err:
        raise RowError("bad_question", f"extra_info question/choices cannot make a prompt: {err}") from None
    if reward.get("ground_truth") != info["answer"]:
        raise RowError("ground_truth_mismatch", "reward_model.ground_truth differs from extra_info.answer")
    if info["answer"] not in choices:
        raise RowError("answer_not_in_choices", f"answer {info['answer']!r} not among choices {choices!r}")


#: consecutive rows with unreadable audio a data set skips before it declares itself broken
MAX_CONSECUTIVE_FAILURES = 64

_Row = TypeVar("_Row")


class BadClipSkipper:
    """Reads row ``item`` of a data set, or the next row whose audio decodes (training never dies on
    one clip); shared by the GRPO and SFT data sets.

    A row whose clip fails is remembered: its error is counted once in ``stats`` and logged once
    (to ``log``), and later reads skip it without decoding it again, so ``stats`` counts distinct
    bad clips, not retries. ``MAX_CONSECUTIVE_FAILURES`` bad rows in a row (or every row) is a ``RuntimeError``.
    Each DataLoader worker process holds its own copy (and counts).

    >>> from audio_thinker.data.audio import AudioCorruptError
    >>> skipper = BadClipSkipper(AudioStats(), log=logging.Logger("quiet", level=logging.ERROR))
    >>> def read(i):
    ...     if i == 1:
    ...         raise AudioCorruptError(f"{i}.wav", "garbage")
    ...     return i
    >>> [skipper.read(i, 3, read) for i in (0, 1, 1, 2)], skipper.stats.as_dict()["errors"]
    ([0, 2, 2, 2], {'corrupt': 1})
    """

    def __init__(self, stats: AudioStats, *, log: logging.Logger | None = None) -> None:
        self.stats = stats
        self.log = log or logger
        #: row index -> the error that made it unusable
        self.bad: dict[int, AudioError] = {}
        self._lock = threading.Lock()

    def _remember(self, index: int, error: AudioError) -> None:
        with self._lock:
            if index in self.bad:
                return
            self.bad[index] = error
            count = len(self.bad)
        self.stats.record_error(error)
        self.log.warning("skipping row %d: %s (using the next row instead, now and later; %d bad rows so far; %s)",
                         index, error, count, self.stats.summary())

    def read(self, item: int, size: int, read_row: Callable[[int], _Row]) -> _Row:
        """``read_row(item)``, or of the next usable row (wrapping) when its audio fails."""
        index, failures = item, 0
        while True:
            if index not in self.bad:
                try:
                    return read_row(index)
                except AudioError as error:
                    self._remember(index, error)
            failures += 1
            if failures >= min(MAX_CONSECUTIVE_FAILURES, size):
                raise RuntimeError(
                    f"{failures} consecutive rows from {item} have unreadable audio (last: {self.bad[index]}); "
                    f"audio errors so far: {self.stats.as_dict()}"
                )
            index = (index + 1) % size


def to_plain(value: Any) -> Any:
    """numpy arrays and OmegaConf nodes (as verl's data pipeline hands rows over) -> plain Python containers.

    >>> import numpy as np
    >>> to_plain(np.array([1, 2])), to_plain("x")
    ([1, 2], 'x')
    """
    if hasattr(value, "tolist"):
        return value.tolist()
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if isinstance(value, DictConfig | ListConfig):
        return OmegaConf.to_container(value, resolve=True)
    return value
