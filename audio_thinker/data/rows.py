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
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from audio_thinker.prompts import PROMPT_VERSION, PromptMode, build_user_prompt, parse_mode

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


def validate_row(row: dict[str, Any]) -> None:
    """Raise ``ValueError`` naming the first problem if ``row`` does not follow the schema."""
    missing = [c for c in ROW_COLUMNS if c not in row]
    if missing:
        raise ValueError(f"row is missing columns {missing}; expected {list(ROW_COLUMNS)}")
    prompt = row["prompt"]
    if not isinstance(prompt, (list, tuple)) or not prompt:
        raise ValueError("prompt must be a non-empty list of chat messages")
    n_placeholders = sum(str(m.get("content", "")).count(AUDIO_PLACEHOLDER) for m in prompt)
    audios = list(row["audios"])
    if n_placeholders != len(audios):
        raise ValueError(
            f"{n_placeholders} {AUDIO_PLACEHOLDER} placeholders but {len(audios)} audios"
        )
    info = row["extra_info"]
    for key in ("question", "choices", "answer", "audio_path", "prompt_mode"):
        if key not in info:
            raise ValueError(f"extra_info is missing {key!r}")
    if row["reward_model"].get("ground_truth") != info["answer"]:
        raise ValueError("reward_model.ground_truth differs from extra_info.answer")
    if info["answer"] not in list(info["choices"]):
        raise ValueError(f"answer {info['answer']!r} not among choices {list(info['choices'])!r}")


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
