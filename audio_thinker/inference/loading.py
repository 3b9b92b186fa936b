"""Checkpoints loaded for generation, with transformers' own classes.

* Audio models (Qwen2-Audio, a Qwen2.5-Omni thinker): :func:`load_audio_processor` and
  :func:`load_audio_model`, chosen by the ``model_type`` in ``config.json``. Training loads the
  same weights through verl's classes; generation needs only the stock ones.
* Text LLMs (the CoT rationale writer, the judge): :func:`load_causal_lm`, tokenizer padded on the
  left (batched decoder-only generation) with a pad token.

Models come back in eval mode with gradients off. Importing this module imports no torch.
"""

from __future__ import annotations

from typing import Any

#: the dtypes a model may be loaded in (besides ``auto``, the checkpoint's own)
_DTYPES = ("float32", "bfloat16", "float16", "float64")
#: model_type -> the transformers class that generates with it
AUDIO_MODEL_CLASSES = {
    "qwen2_audio": "Qwen2AudioForConditionalGeneration",
    "qwen2_5_omni_thinker": "Qwen2_5OmniThinkerForConditionalGeneration",
}
#: model types with an audio path that generate only after a conversion, and how
_CONVERT_FIRST = {
    "qwen2_5_omni": "the full Qwen2.5-Omni checkpoint generates through its thinker: convert it once with "
                    "`python -m audio_thinker.models.omni_thinker --src <Qwen2.5-Omni dir> --out <dir>`",
}


def torch_dtype(name: str) -> Any:
    """``"auto"`` (the checkpoint's dtype) or the ``torch`` dtype of that name (``bfloat16``...)."""
    import torch

    if name == "auto":
        return "auto"
    if name not in _DTYPES:
        raise ValueError(f"dtype {name!r}: use {', '.join(_DTYPES)} or auto")
    return getattr(torch, name)


def set_threads(num_threads: int | None) -> None:
    """torch's intra-op CPU threads (None or 0: leave torch's default)."""
    if num_threads:
        import torch

        torch.set_num_threads(int(num_threads))


def audio_model_type(model_dir: str) -> str:
    """The ``model_type`` of an audio checkpoint this project generates with, or a ``ValueError``
    that says what the directory is instead."""
    from transformers import AutoConfig

    try:
        model_type = getattr(AutoConfig.from_pretrained(model_dir), "model_type", None)
    except Exception as error:  # noqa: BLE001 - no config.json, not a model directory, unknown architecture
        raise ValueError(f"{model_dir} is not an audio checkpoint this project evaluates (Qwen2-Audio or a "
                         f"Qwen2.5-Omni thinker): its model config cannot be read ({error})") from None
    if model_type in _CONVERT_FIRST:
        raise ValueError(f"{model_dir}: {_CONVERT_FIRST[model_type]}")
    if model_type not in AUDIO_MODEL_CLASSES:
        raise ValueError(f"{model_dir} is not an audio checkpoint this project evaluates (Qwen2-Audio or a "
                         f"Qwen2.5-Omni thinker): its config.json has model_type {model_type!r}")
    return str(model_type)


def load_audio_processor(model_dir: str) -> Any:
    """The processor (tokenizer, chat template, feature extractor) of an audio checkpoint."""
    from transformers import AutoProcessor

    audio_model_type(model_dir)
    return AutoProcessor.from_pretrained(model_dir)


def load_audio_model(model_dir: str, *, device: str = "cpu", dtype: str = "float32",
                     attn_implementation: str = "sdpa", num_threads: int | None = None) -> Any:
    """The audio model of ``model_dir`` on ``device`` (eval mode, no gradients)."""
    import transformers

    set_threads(num_threads)
    model_class = getattr(transformers, AUDIO_MODEL_CLASSES[audio_model_type(model_dir)])
    model = model_class.from_pretrained(model_dir, dtype=torch_dtype(dtype),
                                        attn_implementation=attn_implementation)
    model = model.to(device).eval()
    model.requires_grad_(False)
    return model


def load_causal_lm(path: str, *, device: str = "cpu", dtype: str = "float32",
                   num_threads: int | None = None) -> tuple[Any, Any]:
    """``(model, tokenizer)`` of a causal LM: model on ``device`` (eval mode, no gradients),
    tokenizer padding on the left with a pad token (its eos when it has none)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    set_threads(num_threads)
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype(dtype)).to(device).eval()
    model.requires_grad_(False)
    return model, tokenizer
