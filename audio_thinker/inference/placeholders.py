"""Multimodal placeholder tokens: ids only the processor may place in a sequence.

A sampled ``<|AUDIO|>`` (or image/video placeholder) makes the actor count more audio tokens than
there are features and fail, so every generator bans these ids from sampling. Pure: reads a model
config and a tokenizer's vocabulary, imports nothing heavy.
"""

from __future__ import annotations

from typing import Any

#: config attributes naming multimodal placeholder / delimiter token ids (Qwen2-Audio, Qwen2.5-Omni)
_PLACEHOLDER_ID_ATTRS = (
    "audio_token_index", "audio_token_id", "image_token_index", "image_token_id",
    "video_token_index", "video_token_id", "audio_start_token_id", "audio_end_token_id",
    "vision_start_token_id", "vision_end_token_id",
)
#: the same tokens by text, for configs that only name the placeholder
_PLACEHOLDER_TOKENS = (
    "<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>", "<|IMAGE|>", "<|VIDEO|>",
    "<|vision_bos|>", "<|vision_eos|>",
)


def multimodal_placeholder_ids(hf_config: Any, tokenizer: Any) -> set[int]:
    """Token ids that only the processor may place in a sequence (never sampled by the rollout).

    Read from the model config (top level and ``thinker_config``) and, by text, from the
    tokenizer's vocabulary; unknown tokens are ignored.
    """
    ids: set[int] = set()
    configs = [hf_config, getattr(hf_config, "thinker_config", None)]
    for config in configs:
        for attr in _PLACEHOLDER_ID_ATTRS:
            value = getattr(config, attr, None) if config is not None else None
            if isinstance(value, int) and value >= 0:
                ids.add(value)
    vocab = tokenizer.get_vocab() if tokenizer is not None and hasattr(tokenizer, "get_vocab") else {}
    ids.update(int(vocab[token]) for token in _PLACEHOLDER_TOKENS if token in vocab)
    return ids
