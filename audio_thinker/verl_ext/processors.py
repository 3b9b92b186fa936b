"""Processor subclasses verl needs for audio models (see :mod:`audio_thinker.verl_ext.plugin`)."""

from __future__ import annotations

from typing import Any

import numpy as np
from transformers import Qwen2AudioProcessor


def _count(audio: Any) -> int:
    return 1 if isinstance(audio, np.ndarray) and audio.ndim == 1 else len(audio)


class Qwen2AudioProcessorForVerl(Qwen2AudioProcessor):
    """``Qwen2AudioProcessor`` that also accepts audio together with placeholder-free text.

    verl's agent loop recomputes the actor's ``input_features`` by decoding the prompt with
    ``skip_special_tokens=True`` (which drops ``<|AUDIO|>``) and calling the processor on that
    text with the audio; the stock processor refuses ("Found 0 <|AUDIO|> token"). Here such a
    call returns the tokenized text plus the audio features, exactly the features the stock
    processor computes for the same clips. Text that contains placeholders is processed by the
    stock code unchanged.
    """

    def __call__(self, text=None, audio=None, **kwargs):
        texts = [text] if isinstance(text, str) else text
        if audio is None or texts is None or any(self.audio_token in t for t in texts):
            return super().__call__(text=text, audio=audio, **kwargs)
        features = super().__call__(text=[self.audio_token] * _count(audio), audio=audio, **kwargs)
        tokens = super().__call__(text=text, audio=None, **kwargs)
        for key in ("input_features", "feature_attention_mask"):
            tokens[key] = features[key]
        return tokens
