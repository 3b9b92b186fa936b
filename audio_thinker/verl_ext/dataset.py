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
* drops rows whose audio file is missing when the data set is opened, and replaces a row whose
  clip fails to decode at read time by the next readable row. Both are counted by reason in
  :attr:`AudioQADataset.audio_stats` and logged; training never dies on one clip, and a data set
  where nothing can be read fails with a clear error.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from verl.utils.dataset.rl_dataset import RLHFDataset

from audio_thinker.data.audio import AudioConfig, AudioError, AudioStats, load_audio
from audio_thinker.data.rows import build_prompt_messages
from audio_thinker.prompts import parse_mode
from audio_thinker.data.rows import to_plain

logger = logging.getLogger(__name__)

#: consecutive unreadable rows tolerated before the data set is declared broken
MAX_CONSECUTIVE_FAILURES = 64



class AudioQADataset(RLHFDataset):
    """verl RLHF dataset for audio multiple-choice rows (schema: :mod:`audio_thinker.data.rows`)."""

    def __init__(self, data_files, tokenizer, config, processor=None, max_samples: int = -1):
        mode = config.get("prompt_mode", None)
        self.prompt_mode = parse_mode(mode) if mode is not None else None
        self.audio_config = AudioConfig(**(to_plain(config.get("audio", None)) or {}))
        self.audio_stats = AudioStats()
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
        audio_key = self.audio_key

        def has_audio(row: dict) -> bool:
            return all(os.path.exists(str(path)) for path in (row.get(audio_key) or []))

        before = len(self.dataframe)
        self.dataframe = self.dataframe.filter(has_audio, desc="checking audio files")
        missing = before - len(self.dataframe)
        for _ in range(missing):
            self.audio_stats.record_error("missing")
        if missing:
            logger.warning("dropped %d of %d rows whose audio file is missing (%s)", missing, before, self.data_files)
        if len(self.dataframe) == 0:
            raise ValueError(
                f"no row of {self.data_files} has readable audio ({missing} missing files): "
                "check the paths in the `audios` column (they are absolute; regenerate or rewrite "
                "them after moving the data)"
            )

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
        loaded = load_audio(str(path), config=self.audio_config, stats=self.audio_stats)
        return loaded.samples

    def __getitem__(self, item: int) -> dict:
        failures = 0
        index = item
        while True:
            try:
                return super().__getitem__(index)
            except AudioError as error:
                failures += 1
                logger.warning("skipping row %d: %s (using the next row instead)", index, error)
                if failures >= min(MAX_CONSECUTIVE_FAILURES, len(self)):
                    raise RuntimeError(
                        f"{failures} consecutive rows from {index - failures + 1} have unreadable audio "
                        f"(last: {error}); audio errors so far: {self.audio_stats.as_dict()}"
                    ) from error
                index = (index + 1) % len(self)
