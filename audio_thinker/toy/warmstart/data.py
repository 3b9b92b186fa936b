"""Warm-start data: training-schema rows -> the prompt ids and audio embeddings training feeds on.

The prompt is built exactly as training builds the policy's (adaptive mode, audio inlined, the
processor's chat template); the frozen audio path runs once per row (:func:`encode_rows`) and
:func:`collate` scatters its cached output into the language model's input embeddings.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audio_thinker.data.rows import build_prompt_messages, inline_audio
from audio_thinker.toy.warmstart.targets import PROMPT_MODE

__all__ = [
    "Example", "chat_messages", "collate", "encode_rows", "load_audios", "processor_inputs", "read_rows",
    "readable_rows",
]


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a training-schema parquet file (:mod:`audio_thinker.data.rows`) as plain dicts.

    ``extra_info`` is returned with ``choices`` as a list of str.
    """
    import pandas as pd

    frame = pd.read_parquet(path)
    rows = []
    for record in frame.to_dict(orient="records"):
        info = dict(record["extra_info"])
        info["choices"] = [str(c) for c in info["choices"]]
        record["extra_info"] = info
        record["audios"] = [str(a) for a in record["audios"]]
        rows.append(record)
    return rows


def chat_messages(row: Mapping[str, Any], audios: Sequence[Any]) -> list[dict[str, Any]]:
    """The chat messages training builds for ``row`` (adaptive prompt), with ``audios`` inlined.

    The adaptive prompt is rebuilt from ``extra_info`` (as ``AudioQADataset`` does for
    ``prompt_mode=adaptive``), then each ``<audio>`` placeholder becomes
    ``{"type": "audio", "audio": samples}`` and the text around it ``{"type": "text", ...}``
    items, like verl's ``RLHFDataset._build_messages``.
    """
    info = row["extra_info"]
    return inline_audio(build_prompt_messages(info["question"], info["choices"], mode=PROMPT_MODE), audios)


@dataclass
class Example:
    """A row ready for the warm-start: prompt ids and the frozen audio path's output at its audio slots."""

    row: dict[str, Any]
    prompt_ids: Any  # LongTensor[P]
    audio_embeds: Any  # FloatTensor[n_audio_tokens, hidden]


def load_audios(row: Mapping[str, Any], audio_config: Any, stats: Any = None) -> list[Any]:
    """The decoded clips of ``row`` (an ``AudioError`` when one cannot be read)."""
    from audio_thinker.data.audio import load_audio

    return [load_audio(path, config=audio_config, stats=stats).samples for path in row["audios"]]


def readable_rows(
    rows: Sequence[dict[str, Any]], audio_config: Any, stats: Any
) -> Iterator[tuple[dict[str, Any], list[Any]]]:
    """``(row, decoded clips)`` for every row whose audio decodes; the others are counted in ``stats``."""
    from audio_thinker.data.audio import AudioError

    for row in rows:
        try:
            yield row, load_audios(row, audio_config, stats)
        except AudioError:
            continue


def processor_inputs(processor: Any, rows: Sequence[Mapping[str, Any]], audios: Sequence[list[Any]]) -> Any:
    """Chat template + processor over a batch of rows, as the rollout prepares a prompt."""
    texts = [
        processor.apply_chat_template(chat_messages(row, clips), add_generation_prompt=True, tokenize=False)
        for row, clips in zip(rows, audios)
    ]
    flat = [clip for clips in audios for clip in clips]
    sampling_rate = int(processor.feature_extractor.sampling_rate)
    return processor(text=texts, audio=flat, sampling_rate=sampling_rate, padding=True, return_tensors="pt")


class _CaptureEmbeds:
    """Forward pre-hook on the language model recording the ``inputs_embeds`` it receives."""

    def __init__(self) -> None:
        self.value: Any = None

    def __call__(self, module: Any, args: Any, kwargs: dict[str, Any]) -> None:
        self.value = kwargs.get("inputs_embeds")


def encode_rows(
    model: Any, processor: Any, rows: Sequence[dict[str, Any]], *, audio_config: Any, chunk: int = 16,
    stats: Any, progress: bool = False,
) -> list[Example]:
    """Decode audio, build the prompts and run the frozen audio path once per row.

    Rows whose audio cannot be read are skipped and counted in ``stats`` (an ``AudioStats``).
    """
    import torch
    from tqdm import tqdm

    audio_id = int(model.config.audio_token_id)
    capture = _CaptureEmbeds()
    handle = model.language_model.register_forward_pre_hook(capture, with_kwargs=True)
    examples: list[Example] = []
    try:
        for start in tqdm(range(0, len(rows), chunk), desc="encoding", disable=not progress, leave=False):
            readable = list(readable_rows(rows[start:start + chunk], audio_config, stats))
            if not readable:
                continue
            batch_rows, batch_audio = [r for r, _ in readable], [a for _, a in readable]
            inputs = processor_inputs(processor, batch_rows, batch_audio)
            with torch.no_grad():
                model(**inputs)
            embeds = capture.value
            for i, row in enumerate(batch_rows):
                ids = inputs["input_ids"][i][inputs["attention_mask"][i].bool()]
                slots = inputs["input_ids"][i] == audio_id
                examples.append(Example(row, ids.clone(), embeds[i][slots].detach().clone()))
    finally:
        handle.remove()
    return examples


def collate(
    model: Any, examples: Sequence[Example], responses: Sequence[Any], *, pad_id: int
) -> dict[str, Any]:
    """Right-padded ``inputs_embeds`` / ``attention_mask`` / ``labels`` for prompt + response.

    The audio slots get the cached audio embeddings (exactly what the model's forward scatters
    there); labels are -100 on the prompt and the padding, so the loss covers the response only.
    """
    import torch

    audio_id = int(model.config.audio_token_id)
    sequences = [torch.cat([ex.prompt_ids, resp]) for ex, resp in zip(examples, responses)]
    width = max(len(s) for s in sequences)
    input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
    labels = torch.full((len(sequences), width), -100, dtype=torch.long)
    for i, (ex, seq) in enumerate(zip(examples, sequences)):
        input_ids[i, : len(seq)] = seq
        attention_mask[i, : len(seq)] = 1
        labels[i, len(ex.prompt_ids): len(seq)] = seq[len(ex.prompt_ids):]
    embeds = model.get_input_embeddings()(input_ids)
    slots = (input_ids == audio_id).unsqueeze(-1).expand_as(embeds)
    audio = torch.cat([ex.audio_embeds for ex in examples]).to(embeds.dtype)
    embeds = embeds.masked_scatter(slots, audio)
    return {"inputs_embeds": embeds, "attention_mask": attention_mask, "labels": labels}
