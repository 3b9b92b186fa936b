"""Processor subclasses verl needs for audio models (see :mod:`audio_thinker.verl_ext.plugin`)."""

from __future__ import annotations

import json
import os
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

    Saved (verl writes the processor into every checkpoint's ``huggingface/`` folder) as the
    stock ``Qwen2AudioProcessor``, so ``AutoProcessor`` reloads a checkpoint anywhere; under its
    own name ``AutoProcessor`` would not find the class and silently return the bare tokenizer.
    """

    #: the class name written into processor_config.json / tokenizer_config.json
    SAVED_AS = "Qwen2AudioProcessor"

    def to_dict(self) -> dict[str, Any]:
        output = super().to_dict()
        output["processor_class"] = self.SAVED_AS
        return output

    def save_pretrained(self, save_directory, *args, **kwargs):
        result = super().save_pretrained(save_directory, *args, **kwargs)
        path = os.path.join(save_directory, "tokenizer_config.json")
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as handle:
                config = json.load(handle)
            if config.get("processor_class") == type(self).__name__:
                config["processor_class"] = self.SAVED_AS
                with open(path, "w", encoding="utf-8") as handle:
                    json.dump(config, handle, indent=2, ensure_ascii=False)
                    handle.write("\n")
        return result

    def __call__(self, text=None, audio=None, **kwargs):
        texts = [text] if isinstance(text, str) else text
        if audio is None or texts is None or any(self.audio_token in t for t in texts):
            return super().__call__(text=text, audio=audio, **kwargs)
        features = super().__call__(text=[self.audio_token] * _count(audio), audio=audio, **kwargs)
        tokens = super().__call__(text=text, audio=None, **kwargs)
        for key in ("input_features", "feature_attention_mask"):
            tokens[key] = features[key]
        return tokens
