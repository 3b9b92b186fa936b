"""Audio QA rows -> supervised examples for verl's SFT trainer (``data.custom_cls``).

verl's SFT trainer (``verl.trainer.sft_trainer.SFTTrainer``) builds its data set with
``data.custom_cls`` when one is named, calling ``cls(parquet_files=, tokenizer=, config=data,
processor=, max_samples=)``, and collates with ``SFTTensorCollator`` (``data.pad_mode=no_padding``,
the only mode its FSDP engine accepts). verl's own ``MultiTurnSFTDataset`` cannot take audio: it
reads ``processor.image_processor`` when it is built (audio processors have none), only expands
``<image>``/``<video>`` placeholders, and its messages column is not our row schema. This class
produces exactly the item that data set produces (``input_ids``, ``position_ids``, ``loss_mask``,
``multi_modal_inputs``), from rows of the project's training schema (:mod:`audio_thinker.data.rows`),
selected with::

    data.custom_cls.path=pkg://audio_thinker.verl_ext.sft_dataset
    data.custom_cls.name=AudioSFTDataset

Per row:

* **Prompt**: rebuilt from ``extra_info`` (question, choices) with the prompt mode
  ``data.prompt_mode`` (``direct`` for answer targets, ``think`` for CoT targets by default), the
  ``<audio>`` placeholder inlined with the clip decoded by :func:`audio_thinker.data.audio.load_audio`
  (16 kHz mono float32), rendered by the processor's chat template with the generation prompt.
* **Target** (``data.sft_target``): ``answer`` -> ``<answer>{gold}</answer>``; ``cot`` ->
  ``<think>{rationale}</think><answer>{gold}</answer>`` with the rationale from
  ``extra_info[data.rationale_key]`` (``rationale``: what ``python -m audio_thinker.data.cot``
  writes). The end-of-turn token the chat template puts after an assistant turn (``<|im_end|>``)
  is part of the target, so the model learns to stop; template whitespace after it is not.
  Every target is checked with the reward parser: it must parse as THINK / NO-THINK with the gold
  answer, so SFT teaches exactly the format the rewards and the evaluation read.
* **Tensors**: the processor turns prompt text + audio into ``input_ids`` (``<|AUDIO|>`` expanded to
  one token per audio frame), ``input_features`` and ``feature_attention_mask`` with verl's own
  ``build_multimodal_processor_inputs`` (what the GRPO actor's forward receives); the target's
  token ids follow the prompt ids as a rollout's response does; ``loss_mask`` is 1 on the target
  tokens only; positions are sequential (what verl uses for processors without ``get_rope_index``,
  which includes both audio models for audio-only prompts). A sequence longer than
  ``data.max_length`` is an error (``data.truncation=error``) or loses the tail of its target
  (``left`` / ``right``); the prompt is never cut (its audio tokens must match the features).

Rows that cannot be used are skipped, counted by reason in :attr:`AudioSFTDataset.skipped` and
reported in one warning when the data set is opened: ``missing_rationale`` (a CoT target without
a rationale), ``bad_rationale`` (a rationale holding ``<think>``/``<answer>`` tags of its own),
``missing_audio`` (an audio file that does not exist), ``bad_answer`` (the gold answer is not
among the choices), ``bad_row`` (no question). A clip that fails to decode at read time is
replaced by the next readable row (:class:`audio_thinker.data.rows.BadClipSkipper`, as in the GRPO
data set: counted once in :attr:`audio_stats`, never decoded again). A
data set with no usable row fails with an error naming the counts.
"""

from __future__ import annotations

import logging
import os
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from audio_thinker.data.audio import AudioConfig, AudioStats, load_audio
from audio_thinker.data.rows import BadClipSkipper, build_prompt_messages, inline_audio, to_plain
from audio_thinker.prompts import PromptMode, parse_mode
from audio_thinker.rewards.parsing import TAGS, ResponseMode, parse_response

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_PROMPT_MODE", "SFT_TARGETS", "AudioSFTDataset", "SFTRowError", "build_target", "rationale_of",
]

#: ``data.sft_target`` values: the Table 1 rows ``SFT`` (answer) and ``SFT + CoT`` (cot)
SFT_TARGETS = ("answer", "cot")
#: the prompt mode each target is trained with unless ``data.prompt_mode`` says otherwise
DEFAULT_PROMPT_MODE = {"answer": PromptMode.DIRECT, "cot": PromptMode.THINK}
#: ``extra_info`` key of the CoT rationale (the think text, without tags)
DEFAULT_RATIONALE_KEY = "rationale"
#: processor outputs that are not model inputs (verl drops them too)
_NOT_MODEL_INPUTS = ("input_ids", "attention_mask", "mm_token_type_ids")


class SFTRowError(ValueError):
    """A row that cannot become a training example; ``reason`` is the counter key."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def rationale_of(info: Mapping[str, Any], key: str = DEFAULT_RATIONALE_KEY) -> str:
    """The think text of a CoT row: ``info[key]`` stripped, an outer ``<think>..</think>`` removed.

    Raises :class:`SFTRowError` (``missing_rationale``) when it is absent or blank, and
    (``bad_rationale``) when it still holds a ``<think>``/``<answer>`` tag.

    >>> rationale_of({"rationale": " <think>Two beeps.</think> "})
    'Two beeps.'
    """
    value = info.get(key)
    text = value.strip() if isinstance(value, str) else ""
    match = re.fullmatch(r"<think>(.*)</think>", text, flags=re.DOTALL)
    if match:
        text = match.group(1).strip()
    if not text:
        raise SFTRowError("missing_rationale", f"extra_info[{key!r}] is missing or empty")
    if any(tag in text for tag in TAGS):
        raise SFTRowError("bad_rationale", f"extra_info[{key!r}] holds a <think>/<answer> tag: {text[:80]!r}")
    return text


def build_target(info: Mapping[str, Any], target: str, *, rationale_key: str = DEFAULT_RATIONALE_KEY) -> str:
    """The supervised response text of a row (without the end-of-turn token).

    >>> build_target({"answer": "high", "choices": ["high", "low"]}, "answer")
    '<answer>high</answer>'
    >>> build_target({"answer": "2", "choices": ["1", "2"], "rationale": "I hear two beeps."}, "cot")
    '<think>I hear two beeps.</think><answer>2</answer>'
    """
    if target not in SFT_TARGETS:
        raise ValueError(f"unknown SFT target {target!r}: use one of {', '.join(SFT_TARGETS)}")
    answer = str(info.get("answer", "")).strip()
    choices = [str(c) for c in to_plain(info.get("choices")) or []]
    if not answer or answer not in choices:
        raise SFTRowError("bad_answer", f"answer {answer!r} is not one of the choices {choices!r}")
    text = f"<answer>{answer}</answer>"
    if target == "cot":
        text = f"<think>{rationale_of(info, rationale_key)}</think>{text}"
    parsed = parse_response(text)
    expected = ResponseMode.THINK if target == "cot" else ResponseMode.NO_THINK
    if parsed.mode is not expected or parsed.answer != answer:
        raise SFTRowError("bad_target", f"target {text[:80]!r} is not {expected.value} with {answer!r}")
    return text


class AudioSFTDataset(Dataset):
    """verl SFT data set for audio multiple-choice rows (module docstring)."""

    def __init__(
        self,
        parquet_files: str | Sequence[str],
        tokenizer: Any,
        config: Any,
        processor: Any = None,
        max_samples: int = -1,
    ) -> None:
        if processor is None or getattr(processor, "feature_extractor", None) is None:
            raise ValueError(
                "AudioSFTDataset needs the model's audio processor, got "
                f"{type(processor).__name__ if processor is not None else None}: check that model.path is an "
                "audio checkpoint (Qwen2-Audio or a Qwen2.5-Omni thinker) and that the audio_thinker verl "
                "plugin is installed (pip install -e .)"
            )
        config = config if config is not None else {}
        self.target = str(config.get("sft_target", "answer"))
        if self.target not in SFT_TARGETS:
            raise ValueError(f"data.sft_target={self.target!r}: use one of {', '.join(SFT_TARGETS)}")
        mode = config.get("prompt_mode", None)
        self.prompt_mode = parse_mode(mode) if mode is not None else DEFAULT_PROMPT_MODE[self.target]
        self.rationale_key = str(config.get("rationale_key", None) or DEFAULT_RATIONALE_KEY)
        self.max_length = int(config.get("max_length", 1024))
        self.truncation = str(config.get("truncation", "error"))
        if self.truncation not in ("error", "left", "right"):
            raise ValueError(f"data.truncation={self.truncation!r}: use error, left or right")
        pad_mode = config.get("pad_mode", "no_padding")
        pad_mode = str(getattr(pad_mode, "value", pad_mode))
        if pad_mode != "no_padding":
            raise ValueError(f"data.pad_mode={pad_mode!r}: verl's FSDP engine trains SFT with no_padding")
        self.audio_key = str(config.get("audio_key", None) or "audios")
        self.audio_config = AudioConfig(**(to_plain(config.get("audio", None)) or {}))
        self.mm_processor_kwargs = to_plain(config.get("mm_processor_kwargs", None)) or {}
        self.shuffle = bool(config.get("shuffle", False))
        self.seed = config.get("seed", None)
        self.tokenizer = tokenizer
        self.processor = processor
        files = [parquet_files] if isinstance(parquet_files, str) else list(parquet_files)
        self.files = [str(f) for f in files]
        self.max_samples = int(max_samples)
        self.audio_stats = AudioStats()
        self._skipper = BadClipSkipper(self.audio_stats, log=logger)
        #: rows left out when the data set was opened, by reason
        self.skipped: Counter[str] = Counter()
        self.rows = self._read_rows()

    # -- opening the data set ------------------------------------------------------------------

    def _read_rows(self) -> list[dict[str, Any]]:
        from verl.utils.fs import copy_local_path_from_hdfs

        frames = [pd.read_parquet(copy_local_path_from_hdfs(path, verbose=False)) for path in self.files]
        records = [r for frame in frames for r in frame.to_dict(orient="records")]
        total = len(records)
        if 0 < self.max_samples < total:
            if self.shuffle:
                rng = np.random.default_rng(*(() if self.seed is None else (self.seed,)))
                keep = sorted(rng.choice(total, size=self.max_samples, replace=False).tolist())
            else:
                keep = list(range(self.max_samples))
            records = [records[i] for i in keep]
        rows = []
        examples: dict[str, str] = {}
        for record in records:
            row = {key: to_plain(value) for key, value in record.items()}
            row["extra_info"] = {k: to_plain(v) for k, v in dict(row.get("extra_info") or {}).items()}
            try:
                if not str(row["extra_info"].get("question") or "").strip():
                    raise SFTRowError("bad_row", "extra_info has no question (see audio_thinker.data.rows)")
                row["target"] = build_target(row["extra_info"], self.target, rationale_key=self.rationale_key)
                audios = [str(path) for path in (row.get(self.audio_key) or [])]
                if not audios:
                    raise SFTRowError("missing_audio", f"the row has no {self.audio_key!r} entry")
                absent = [path for path in audios if not os.path.exists(path)]
                if absent:
                    raise SFTRowError("missing_audio", f"audio file {absent[0]} does not exist")
                row[self.audio_key] = audios
            except SFTRowError as error:
                self.skipped[error.reason] += 1
                examples.setdefault(error.reason, f"row {row['extra_info'].get('index', '?')}: {error}")
                continue
            rows.append(row)
        if self.skipped:
            details = "; ".join(
                f"{n} {reason} (e.g. {examples[reason]})" for reason, n in sorted(self.skipped.items())
            )
            logger.warning(
                "AudioSFTDataset (%s target) skipped %d of %d rows of %s: %s", self.target,
                sum(self.skipped.values()), len(records), ", ".join(self.files), details,
            )
        if not rows:
            hint = (
                f" CoT targets need extra_info[{self.rationale_key!r}] (write it with "
                "`python -m audio_thinker.data.cot`)" if self.target == "cot" else ""
            )
            raise ValueError(
                f"no usable row in {', '.join(self.files)} for data.sft_target={self.target} "
                f"({len(records)} rows, skipped: {dict(self.skipped)}).{hint}"
            )
        print(f"AudioSFTDataset: {len(rows)} of {len(records)} rows ({self.target} targets, "
              f"{self.prompt_mode.value} prompt) from {', '.join(self.files)}")
        return rows

    def __len__(self) -> int:
        return len(self.rows)

    # -- one example ---------------------------------------------------------------------------

    def messages(self, row: Mapping[str, Any], clips: Sequence[Any]) -> list[dict[str, Any]]:
        """The prompt's chat messages for ``row`` with the decoded ``clips`` inlined."""
        info = row["extra_info"]
        choices = [str(c) for c in info["choices"]]
        prompt = build_prompt_messages(info["question"], choices, mode=self.prompt_mode)
        return inline_audio(prompt, clips)

    def _response_text(self, prompt_messages: list[dict[str, Any]], prompt_text: str, target: str) -> str:
        """The target as the chat template renders an assistant turn, cut after its end-of-turn token."""
        full = self.processor.apply_chat_template(
            prompt_messages + [{"role": "assistant", "content": target}],
            add_generation_prompt=False, tokenize=False,
        )
        if not full.startswith(prompt_text) or target not in full[len(prompt_text):]:
            raise RuntimeError(
                "the chat template does not render the assistant turn after the generation prompt; "
                f"prompt ends {prompt_text[-60:]!r}, conversation ends {full[-80:]!r}"
            )
        return full[len(prompt_text):].rstrip()

    def encode(self, row: Mapping[str, Any], clips: Sequence[Any]) -> dict[str, Any]:
        """The training item of ``row`` given its decoded ``clips`` (verl's SFT item layout)."""
        from verl.utils.tokenizer import build_multimodal_processor_inputs

        prompt_messages = self.messages(row, clips)
        prompt_text = self.processor.apply_chat_template(
            prompt_messages, add_generation_prompt=True, tokenize=False
        )
        response_text = self._response_text(prompt_messages, prompt_text, row["target"])
        inputs = build_multimodal_processor_inputs(
            self.processor, text=[prompt_text], audio=list(clips),
            mm_processor_kwargs=self.mm_processor_kwargs,
        )
        prompt_ids = torch.as_tensor(inputs["input_ids"][0], dtype=torch.long)
        response_ids = torch.tensor(
            self.tokenizer(response_text, add_special_tokens=False)["input_ids"], dtype=torch.long
        )
        if len(prompt_ids) >= self.max_length:
            raise ValueError(
                f"the prompt of row {row['extra_info'].get('index', '?')} has {len(prompt_ids)} tokens, "
                f">= data.max_length={self.max_length}: raise data.max_length (audio tokens cannot be cut; "
                "~25 per second of audio)"
            )
        if len(prompt_ids) + len(response_ids) > self.max_length:
            if self.truncation == "error":
                raise ValueError(
                    f"row {row['extra_info'].get('index', '?')} has {len(prompt_ids) + len(response_ids)} "
                    f"tokens > data.max_length={self.max_length}: raise data.max_length or set "
                    "data.truncation=right (cuts the target's tail)"
                )
            response_ids = response_ids[: self.max_length - len(prompt_ids)]
        input_ids = torch.cat([prompt_ids, response_ids])
        loss_mask = torch.cat([torch.zeros_like(prompt_ids), torch.ones_like(response_ids)])
        multi_modal_inputs = {
            key: torch.as_tensor(value) for key, value in inputs.items() if key not in _NOT_MODEL_INPUTS
        }
        return {
            "input_ids": input_ids,
            "position_ids": torch.arange(len(input_ids), dtype=torch.long),
            "loss_mask": loss_mask,
            "multi_modal_inputs": multi_modal_inputs,
        }

    def _decode(self, path: str) -> Any:
        loaded = load_audio(path, config=self.audio_config)  # errors: counted by the skipper
        self.audio_stats.record_ok(truncated=loaded.truncated)
        return loaded.samples

    def _read(self, index: int) -> dict[str, Any]:
        row = self.rows[index]
        return self.encode(row, [self._decode(path) for path in row[self.audio_key]])

    def __getitem__(self, item: int) -> dict[str, Any]:
        return self._skipper.read(item, len(self), self._read)
