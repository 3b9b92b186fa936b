"""Audio QA rows -> verl's message format, with audio decoded (``data.custom_cls``).

verl's ``RLHFDataset`` passes audio through undecoded (a path string reaches the processor and
the rollout). This subclass, selected with::

    data.custom_cls.path=pkg://audio_thinker.verl_ext.dataset
    data.custom_cls.name=AudioQADataset

* rewrites each row's prompt for the configured prompt mode (``data.prompt_mode``, interpolated
  from ``audio_thinker.prompt_mode``), so one key switches adaptive / think / direct;
* decodes every clip with :func:`audio_thinker.data.audio.load_audio` to 16 kHz mono float32
  (``data.audio``, interpolated from ``audio_thinker.audio``), so the processor (features for
  the actor's forward) and the rollout engine receive the same samples;
* validates every row once, when the data set is opened, with
  :func:`audio_thinker.data.rows.validate_row` (the same check whatever the prompt mode: a row
  that passes rebuilds in every mode), and drops malformed rows, rows whose audio file is
  missing and rows whose prompt would exceed ``data.max_prompt_length`` (``prompt_too_long``:
  the text tokens of the prompt mode's prompt through the model's chat template plus the audio
  tokens of the clip's duration, read from its header; :mod:`audio_thinker.data.prompt_length`),
  counted by reason in :attr:`AudioQADataset.skipped` and logged in one warning, overlong prompts
  in one more line (how many, the longest, the key to raise). verl would raise mid-training on
  such a prompt (``filter_overlong_prompts`` is off: verl's filter decodes every clip);
* replaces a row whose clip fails to decode at read time by the next readable row
  (:class:`audio_thinker.data.rows.BadClipSkipper`): a bad clip is counted once in
  :attr:`AudioQADataset.audio_stats` and never decoded again. Training never dies on one row
  or clip, and a data set where nothing can be used fails with a clear error when it opens.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from typing import Any

from verl.utils.dataset.rl_dataset import RLHFDataset

from audio_thinker.data.audio import AudioConfig, AudioStats, load_audio
from audio_thinker.data.prompt_length import PROMPT_TOO_LONG, PromptLengthCounter, seconds_to_count, too_long_detail
from audio_thinker.data.rows import BadClipSkipper, RowError, build_prompt_messages, to_plain, validate_row
from audio_thinker.prompts import parse_mode

logger = logging.getLogger(__name__)


class AudioQADataset(RLHFDataset):
    """verl RLHF dataset for audio multiple-choice rows (schema: :mod:`audio_thinker.data.rows`)."""

    def __init__(self, data_files, tokenizer, config, processor=None, max_samples: int = -1):
        mode = config.get("prompt_mode", None)
        self.prompt_mode = parse_mode(mode) if mode is not None else None
        self.audio_config = AudioConfig(**(to_plain(config.get("audio", None)) or {}))
        self.audio_stats = AudioStats()
        #: rows dropped when the data set was opened, by reason (a RowError reason, missing_audio or
        #: prompt_too_long)
        self.skipped: Counter[str] = Counter()
        #: (tokens, row position) of the longest prompt dropped as too long, when one was
        self.longest_dropped: tuple[int, int] | None = None
        self._skipper = BadClipSkipper(self.audio_stats, log=logger)
        if processor is None:
            raise ValueError(
                "AudioQADataset needs the model's audio processor, got None: check that "
                "actor_rollout_ref.model.path is an audio checkpoint (Qwen2-Audio or a Qwen2.5-Omni "
                "thinker) and that the audio_thinker verl plugin is installed (pip install -e .)"
            )
        super().__init__(data_files, tokenizer, config, processor=processor, max_samples=max_samples)

    # -- opening the data set ------------------------------------------------------------------

    def _read_files_and_tokenize(self) -> None:
        super()._read_files_and_tokenize()
        self.dataframe = self._drop_unusable_rows(self.dataframe)

    def _drop_unusable_rows(self, dataframe):
        """``dataframe`` without malformed rows, rows whose audio file is missing and rows whose prompt
        exceeds ``data.max_prompt_length`` (counted)."""
        keep: list[int] = []
        examples: dict[str, str] = {}
        counter = PromptLengthCounter(self.processor, max_seconds=self.audio_config.max_seconds,
                                      chat_template_kwargs=to_plain(self.apply_chat_template_kwargs))
        for position, row in enumerate(dataframe):
            try:
                validate_row(row)
                audios = [str(p) for p in row.get(self.audio_key) or []]
                absent = [p for p in audios if not os.path.exists(p)]
                if absent:
                    self.audio_stats.record_error("missing")
                    raise RowError("missing_audio", f"audio file {absent[0]} does not exist")
                self._check_prompt_length(counter, row, audios, position)
            except RowError as error:
                self.skipped[error.reason] += 1
                examples.setdefault(error.reason, f"row {position}: {error}")
                continue
            keep.append(position)
        if self.skipped:
            details = "; ".join(f"{n} {reason} (e.g. {examples[reason]})" for reason, n in sorted(self.skipped.items()))
            logger.warning("dropped %d of %d rows of %s: %s", len(dataframe) - len(keep), len(dataframe),
                           self.data_files, details)
        if self.longest_dropped is not None:
            logger.warning("dropped %d rows of %s whose prompt is longer than data.max_prompt_length=%d tokens "
                           "(the longest: %d tokens, row %d): raise data.max_prompt_length to keep them",
                           self.skipped[PROMPT_TOO_LONG], self.data_files, self.max_prompt_length,
                           *self.longest_dropped)
        if not keep:
            raise ValueError(
                f"no row of {self.data_files} has readable audio and follows the row schema (dropped: "
                f"{dict(self.skipped)}): check the paths in the `audios` column (they are absolute; regenerate "
                "or rewrite them after moving the data) and the schema in audio_thinker.data.rows"
            )
        return dataframe.select(keep) if len(keep) < len(dataframe) else dataframe

    def _check_prompt_length(self, counter: PromptLengthCounter, row: dict, audios: list[str], position: int) -> None:
        """A :class:`RowError` ``prompt_too_long`` when the row's prompt, in the mode it trains with,
        exceeds ``data.max_prompt_length`` (clips counted at their header's duration; a video at the cap)."""
        info = row["extra_info"]
        messages = (build_prompt_messages(info["question"], list(info["choices"]), mode=self.prompt_mode)
                    if self.prompt_mode is not None else to_plain(row[self.prompt_key]))
        n_tokens = counter.count(messages, [seconds_to_count(path) for path in audios])
        if n_tokens > self.max_prompt_length:
            if self.longest_dropped is None or n_tokens > self.longest_dropped[0]:
                self.longest_dropped = (n_tokens, position)
            raise RowError(PROMPT_TOO_LONG, too_long_detail(n_tokens, self.max_prompt_length, "data.max_prompt_length"))

    # -- reading one row -----------------------------------------------------------------------

    def _build_messages(self, example: dict, key: str):
        if self.prompt_mode is not None:
            info = example.get("extra_info") or {}
            if info.get("prompt_mode") != self.prompt_mode.value:
                example[key] = build_prompt_messages(info["question"], info["choices"], mode=self.prompt_mode)
                info["prompt_mode"] = self.prompt_mode.value
        audios = example.get(self.audio_key) or []
        example[self.audio_key] = [self._decode(path) for path in audios]
        return super()._build_messages(example, key)

    def _decode(self, path: Any) -> Any:
        loaded = load_audio(str(path), config=self.audio_config)  # errors: counted by the skipper
        self.audio_stats.record_ok(truncated=loaded.truncated)
        return loaded.samples

    def __getitem__(self, item: int) -> dict:
        return self._skipper.read(item, len(self), super().__getitem__)
