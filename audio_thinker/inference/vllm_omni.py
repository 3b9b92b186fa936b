"""vLLM 0.24.0's Qwen2.5-Omni thinker, serving a *thinker-only* checkpoint (our training backbone).

vLLM registers its Omni thinker class only for the full Omni checkpoint (architectures
``Qwen2_5OmniModel`` / ``Qwen2_5OmniForConditionalGeneration``): the class reads
``hf_config.thinker_config`` and its weight mapper knows only ``thinker.*`` names. A thinker-only
checkpoint (``Qwen2_5OmniThinkerForConditionalGeneration``, what
``python -m audio_thinker.models.omni_thinker`` writes and what the actor trains) has the thinker's
config at the top level and unprefixed weight names (``model.*``, ``lm_head.*``, ``audio_tower.*``,
``visual.*``), which are also the names verl's actor sends when it syncs weights into the rollout.

:class:`Qwen2_5OmniThinkerOnlyForConditionalGeneration` is vLLM's class with two changes:

* the thinker config is ``hf_config.thinker_config`` when there is one, else ``hf_config`` itself
  (:func:`thinker_config_of`), in the model and in the multimodal processor's info
  (:class:`ThinkerOnlyProcessingInfo`); everything else (audio encoder, M-RoPE, placeholder
  expansion, the processor) is vLLM's own;
* its weight mapper also maps the unprefixed names: ``model.`` -> ``language_model.model.``,
  ``lm_head.`` -> ``language_model.lm_head.``; ``thinker.``-prefixed names load as before.

:func:`audio_thinker.inference.vllm_models.register_vllm_models` registers it with vLLM by name;
this module imports vLLM and torch and is only imported by vLLM when it builds the model.
"""

from __future__ import annotations

from typing import Any

from torch import nn
from vllm.config import VllmConfig
from vllm.model_executor.models import qwen2_5_omni_thinker as omni
from vllm.model_executor.models.utils import WeightsMapper, init_vllm_registered_model, maybe_prefix
from vllm.multimodal import MULTIMODAL_REGISTRY

#: thinker-only checkpoints name the text model and head without the ``thinker.`` prefix
UNPREFIXED_NAMES = {"model.": "language_model.model.", "lm_head.": "language_model.lm_head."}


def thinker_config_of(hf_config: Any) -> Any:
    """The thinker's config: ``hf_config.thinker_config`` of a full Omni config, else ``hf_config``."""
    return getattr(hf_config, "thinker_config", None) or hf_config


class ThinkerOnlyProcessingInfo(omni.Qwen2_5OmniThinkerProcessingInfo):
    """vLLM's Omni processing info, reading a thinker-only config as well as a full Omni one."""

    def get_hf_config(self) -> Any:
        return thinker_config_of(self.ctx.get_hf_config())


@MULTIMODAL_REGISTRY.register_processor(
    omni.Qwen2_5OmniThinkerMultiModalProcessor,
    info=ThinkerOnlyProcessingInfo,
    dummy_inputs=omni.Qwen2_5OmniThinkerDummyInputsBuilder,
)
class Qwen2_5OmniThinkerOnlyForConditionalGeneration(omni.Qwen2_5OmniThinkerForConditionalGeneration):
    """vLLM's Qwen2.5-Omni thinker for a thinker-only config and unprefixed weight names."""

    hf_to_vllm_mapper = omni.Qwen2_5OmniThinkerForConditionalGeneration.hf_to_vllm_mapper | WeightsMapper(
        orig_to_new_prefix=UNPREFIXED_NAMES)

    def __init__(self, *, vllm_config: VllmConfig, prefix: str = "") -> None:
        # vLLM 0.24.0's __init__ (qwen2_5_omni_thinker.py), except where the thinker config comes from
        nn.Module.__init__(self)
        self.vllm_config = vllm_config
        thinker_config = thinker_config_of(vllm_config.model_config.hf_config)
        self.config = thinker_config
        self.multimodal_config = vllm_config.model_config.multimodal_config
        self.quant_config = vllm_config.quant_config
        if omni.flash_attn is not None:  # as vLLM: the audio tower matches transformers' flash attention
            thinker_config.audio_config._attn_implementation_autoset = True
            thinker_config.audio_config._attn_implementation = "flash_attention_2"
        with self._mark_tower_model(vllm_config, "audio"):
            self.audio_tower = omni.Qwen2_5OmniAudioEncoder(thinker_config.audio_config)
        with self._mark_tower_model(vllm_config, {"image", "video"}):
            self.visual = omni.Qwen2_5_VisionTransformer(
                vision_config=thinker_config.vision_config,
                norm_eps=getattr(thinker_config.text_config, "rms_norm_eps", 1e-6),
                quant_config=self.quant_config, prefix=maybe_prefix(prefix, "visual"))
        with self._mark_language_model(vllm_config):
            self.language_model = init_vllm_registered_model(
                vllm_config=vllm_config, prefix=maybe_prefix(prefix, "language_model"),
                hf_config=thinker_config.text_config, architectures=["Qwen2ForCausalLM"])
        self.make_empty_intermediate_tensors = self.language_model.make_empty_intermediate_tensors
