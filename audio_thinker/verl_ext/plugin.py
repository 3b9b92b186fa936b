"""The verl plugin: audio models and processors for verl 0.9.1.

Registered in ``setup.py`` under the ``verl.plugins`` entry-point group, so verl imports this
module at the end of every ``import verl`` — in the driver and in every Ray worker process.
verl swallows plugin import errors at debug level, so failures here are logged as errors.

What it does, each through the narrowest hook verl offers:

1. **Model class.** verl picks the auto class from ``AutoModelForImageTextToText``'s mapping or
   the architecture name; Qwen2-Audio is in neither and silently became ``AutoModel`` (the base
   model without its LM head). We register ``Qwen2AudioConfig`` with
   ``AutoModelForImageTextToText`` (and re-register the Omni thinker there) with the classes of
   :mod:`audio_thinker.verl_ext.models`: the stock classes plus an opt-in frozen audio encoder.
   The full Omni model has no ``forward`` and is rejected with a fix-it message.
2. **Processor.** verl's ``hf_processor`` keeps only vision processors and turns any other into
   ``None`` with a warning, so audio would silently never reach the model. verl has no registry
   for this, so we wrap the function where it is imported (``verl.utils``, ``verl.utils.tokenizer``
   and modules that imported it by name): audio checkpoints get their real processor (with
   ``config`` attached as verl does), everything else goes to verl's original unchanged.
3. **Features for the actor's forward.** verl's agent loop recomputes ``input_features`` by
   decoding the prompt with ``skip_special_tokens=True`` and running the processor again on that
   text with the audio. The decode drops ``<|AUDIO|>`` (a special token in the real Qwen2-Audio
   tokenizer), and ``Qwen2AudioProcessor`` then refuses the audio ("Found 0 <|AUDIO|> token").
   :class:`~audio_thinker.verl_ext.processors.Qwen2AudioProcessorForVerl` accepts text without placeholders and returns the audio
   features (the actor's ``input_ids`` come from the rollout, not from this call); text that has
   placeholders is processed exactly as by the stock processor.
4. **vLLM rollout.** verl's ``vllm`` rollout entry builds the audio-aware server of
   :mod:`audio_thinker.verl_ext.vllm_rollout` (collapsed audio runs, banned audio placeholders,
   no duplicate ``sampling_rate``, an audio-aware response budget).

Every verl name patched here (and every other verl name the project relies on) is listed, with
its expected signature, in :mod:`audio_thinker.verl_ext.contract`.
"""

from __future__ import annotations

import functools
import logging
import sys
from typing import Any

from audio_thinker.backends.cpu import cpu_backend_requested, register_cpu_backend  # cheap: no torch, no verl
from audio_thinker.verl_ext.vllm_rollout import register_audio_vllm_rollout  # cheap: vLLM imported on first use

logger = logging.getLogger(__name__)

#: model_type -> what we do with it
AUDIO_MODEL_TYPES = ("qwen2_audio", "qwen2_5_omni_thinker")
UNSUPPORTED_MODEL_TYPES = {
    "qwen2_5_omni": (
        "the full Qwen2.5-Omni checkpoint has no forward(); train its thinker: convert it once with "
        "`python -m audio_thinker.models.omni_thinker --src <Qwen2.5-Omni-7B dir> --out <dir>` and "
        "point actor_rollout_ref.model.path at the output"
    ),
}


def register_model_classes() -> None:
    """Map both audio configs onto the auto class verl uses for multimodal LMs (idempotent)."""
    from transformers import AutoModelForImageTextToText, Qwen2_5OmniThinkerConfig, Qwen2AudioConfig

    from audio_thinker.verl_ext import models

    AutoModelForImageTextToText.register(Qwen2AudioConfig, models.Qwen2AudioForConditionalGeneration, exist_ok=True)
    AutoModelForImageTextToText.register(
        Qwen2_5OmniThinkerConfig, models.Qwen2_5OmniThinkerForConditionalGeneration, exist_ok=True
    )


class _TieWordEmbeddingsFromTextConfig:
    """``config.tie_word_embeddings``: the value set on the config, else its ``text_config``'s.

    Under transformers 5.9 ``Qwen2AudioConfig`` has no ``tie_word_embeddings`` unless the
    config.json names it, and the released Qwen2-Audio-7B-Instruct one names it only inside
    ``text_config``; verl reads ``hf_config.tie_word_embeddings`` directly (its FSDP engine's
    meta-device init) and fails with ``AttributeError``.
    """

    def __get__(self, obj: Any, owner: type) -> Any:
        if obj is None:
            return self
        if "tie_word_embeddings" in obj.__dict__:
            return obj.__dict__["tie_word_embeddings"]
        return bool(getattr(getattr(obj, "text_config", None), "tie_word_embeddings", False))

    def __set__(self, obj: Any, value: Any) -> None:
        obj.__dict__["tie_word_embeddings"] = value


def default_tie_word_embeddings() -> None:
    """Give the audio configs that lack it a ``tie_word_embeddings`` read from ``text_config``."""
    import transformers

    for name in ("Qwen2AudioConfig", "Qwen2_5OmniConfig"):
        cls = getattr(transformers, name)
        if not isinstance(cls.__dict__.get("tie_word_embeddings"), _TieWordEmbeddingsFromTextConfig) and \
                not hasattr(cls, "tie_word_embeddings"):
            cls.tie_word_embeddings = _TieWordEmbeddingsFromTextConfig()


def load_audio_processor(name_or_path: str, **kwargs: Any) -> Any | None:
    """The real processor of an audio checkpoint, or ``None`` when ``name_or_path`` is not one.

    Raises ``ValueError`` with a fix-it message for audio checkpoints verl cannot train as-is.
    """
    from transformers import AutoConfig, AutoProcessor

    try:
        config = AutoConfig.from_pretrained(name_or_path, **kwargs)
    except Exception:  # not a local/hub model config: let verl's own helper decide
        return None
    model_type = getattr(config, "model_type", None)
    if model_type in UNSUPPORTED_MODEL_TYPES:
        raise ValueError(f"{name_or_path}: {UNSUPPORTED_MODEL_TYPES[model_type]}")
    if model_type not in AUDIO_MODEL_TYPES:
        return None
    if model_type == "qwen2_audio":
        from audio_thinker.verl_ext.processors import Qwen2AudioProcessorForVerl

        processor = Qwen2AudioProcessorForVerl.from_pretrained(name_or_path, **kwargs)
    else:
        processor = AutoProcessor.from_pretrained(name_or_path, **kwargs)
    processor.config = config  # verl attaches the model config to every processor it returns
    add_vision_token_ids(processor)
    return processor


def add_vision_token_ids(processor: Any) -> None:
    """Give ``processor`` the ``image_token_id`` / ``video_token_id`` attributes verl's server reads.

    verl's vLLM server deduplicates vision runs for every processor with a Qwen2-VL image processor
    and reads ``processor.image_token_id``; the Omni thinker's processor has that image processor but
    only the token strings (``AttributeError`` on every rollout request). Set where the processor is
    loaded, so every verl consumer gets it. The ids are resolved the way verl's
    own ``get_processor_token_id`` does; processors that have them are left alone.
    """
    from verl.utils.tokenizer import get_processor_token_id

    for modality in ("image", "video"):
        attr = f"{modality}_token_id"
        if processor is not None and getattr(processor, attr, None) is None:
            token_id = get_processor_token_id(processor, modality)
            if token_id is not None:
                setattr(processor, attr, token_id)


def _with_audio(original: Any) -> Any:
    if getattr(original, "__audio_thinker__", False):
        return original

    @functools.wraps(original)
    def hf_processor(name_or_path: str, **kwargs: Any) -> Any:
        processor = load_audio_processor(name_or_path, **kwargs)
        return processor if processor is not None else original(name_or_path, **kwargs)

    hf_processor.__audio_thinker__ = True  # type: ignore[attr-defined]
    hf_processor.__wrapped_original__ = original  # type: ignore[attr-defined]
    return hf_processor


def patch_hf_processor() -> None:
    """Route verl's ``hf_processor`` through :func:`load_audio_processor` (idempotent)."""
    import verl.utils.tokenizer.tokenizer as tokenizer_module

    original = getattr(tokenizer_module.hf_processor, "__wrapped_original__", tokenizer_module.hf_processor)
    patched = _with_audio(original)
    for name, module in list(sys.modules.items()):
        if (name == "verl" or name.startswith("verl.")) and getattr(module, "hf_processor", None) is original:
            module.hf_processor = patched


def is_multimodal_processor(original: Any, processor: Any | None) -> bool:
    """verl's check (an image processor) or an audio processor (a feature extractor)."""
    if original(processor):
        return True
    return processor is not None and getattr(processor, "feature_extractor", None) is not None


def patch_multimodal_processor_check() -> None:
    """Make verl's Continuous Token wiring treat audio processors as multimodal (idempotent)."""
    import verl.utils.tokenizer.continuous_token_wiring as wiring

    current = wiring._is_multimodal_processor
    original = getattr(current, "__wrapped_original__", current)
    patched = functools.partial(is_multimodal_processor, original)
    patched.__wrapped_original__ = original  # type: ignore[attr-defined]
    wiring._is_multimodal_processor = patched


#: embeddings whose ``weight`` their parent reads directly (so they cannot be their own FSDP unit)
DIRECTLY_READ_EMBEDDINGS = ("embed_positions",)


def select_fsdp2_wrap_targets(original: Any, model: Any, fsdp_transformer_layer_cls_to_wrap: Any) -> list:
    """verl's FSDP2 wrap targets minus the embeddings in :data:`DIRECTLY_READ_EMBEDDINGS`."""
    excluded = {
        id(module) for name, module in model.named_modules()
        if name.rsplit(".", 1)[-1] in DIRECTLY_READ_EMBEDDINGS
    }
    targets = original(model, fsdp_transformer_layer_cls_to_wrap)
    return [module for module in targets if id(module) not in excluded]


def patch_fsdp2_wrap_targets() -> None:
    """Keep directly-read position embeddings inside their parent's FSDP2 unit (idempotent)."""
    import verl.utils.fsdp_utils as fsdp_utils

    current = fsdp_utils._select_fsdp2_wrap_targets
    original = getattr(current, "__wrapped_original__", current)
    patched = functools.partial(select_fsdp2_wrap_targets, original)
    patched.__wrapped_original__ = original  # type: ignore[attr-defined]
    fsdp_utils._select_fsdp2_wrap_targets = patched


def register() -> None:
    """Apply every registration; safe to call more than once."""
    register_model_classes()
    default_tie_word_embeddings()
    patch_hf_processor()
    patch_multimodal_processor_check()
    patch_fsdp2_wrap_targets()
    register_audio_vllm_rollout(cpu=cpu_backend_requested())


try:
    register()
except Exception:  # verl hides plugin errors at debug level: make ours visible
    logger.exception("audio_thinker verl plugin failed to register; audio models will not work")
    raise


# The CPU backend (platform, FSDP engines, transformers rollout) is selected by configuration:
# `VERL_PLATFORM=cpu` in the job's runtime_env (conf/backbone/tiny_cpu.yaml), never by detecting
# that no GPU is present. Outside the try above so a CPU failure cannot block the audio support.
if cpu_backend_requested():
    register_cpu_backend()
