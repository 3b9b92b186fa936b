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
  that passes rebuilds in every mode), and drops malformed rows and rows whose audio file is
  missing, counted by reason in :attr:`AudioQADataset.skipped` and logged in one warning;
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
        #: rows dropped when the data set was opened, by reason (a RowError reason or missing_audio)
        self.skipped: Counter[str] = Counter()
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
        """``dataframe`` without malformed rows and rows whose audio file is missing (counted)."""
        keep: list[int] = []
        examples: dict[str, str] = {}
        for position, row in enumerate(dataframe):
            try:
                validate_row(row)
                absent = [p for p in row.get(self.audio_key) or [] if not os.path.exists(str(p))]
                if absent:
                    self.audio_stats.record_error("missing")
                    raise RowError("missing_audio", f"audio file {absent[0]} does not exist")
            except RowError as error:
                self.skipped[error.reason] += 1
                examples.setdefault(error.reason, f"row {position}: {error}")
                continue
            keep.append(position)
        if self.skipped:
            details = "; ".join(f"{n} {reason} (e.g. {examples[reason]})" for reason, n in sorted(self.skipped.items()))
            logger.warning("dropped %d of %d rows of %s: %s", len(dataframe) - len(keep), len(dataframe),
                           self.data_files, details)
        if not keep:
            raise ValueError(
                f"no row of {self.data_files} has readable audio and follows the row schema (dropped: "
                f"{dict(self.skipped)}): check the paths in the `audios` column (they are absolute; regenerate "
                "or rewrite them after moving the data) and the schema in audio_thinker.data.rows"
            )
        return dataframe.select(keep) if len(keep) < len(dataframe) else dataframe

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
