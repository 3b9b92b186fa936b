"""The audio model classes verl loads, with an option to freeze the audio encoder.

verl 0.9.1's freeze option (``freeze_vision_tower``) covers vision towers only. These subclasses
are the stock transformers classes, same name, same weights and state-dict keys (a checkpoint they
save loads with the stock class), plus one behaviour: when the model config has
``freeze_audio_tower = True`` the audio encoder's parameters get ``requires_grad=False`` (no
gradients, so the optimizer never moves them). The config flag reaches the model through verl's
own ``actor_rollout_ref.model.override_config``, which our base config fills from
``audio_thinker.freeze_audio_encoder``. The plugin registers them with
``AutoModelForImageTextToText``, the auto class verl resolves for both configs.
"""

from __future__ import annotations

import transformers

FREEZE_FLAG = "freeze_audio_tower"


def freeze_audio_tower_if_configured(model, config) -> None:
    """Turn off gradients of ``model.audio_tower`` when ``config.freeze_audio_tower`` is set."""
    if getattr(config, FREEZE_FLAG, False):
        model.audio_tower.requires_grad_(False)


class _FreezableAudioTower:
    """Applies :func:`freeze_audio_tower_if_configured` after construction and after loading.

    ``from_pretrained`` may materialise parameters anew after ``__init__`` (meta-device init),
    so the flag is applied again once the weights are in.
    """

    def __init__(self, config, *args, **kwargs):
        super().__init__(config, *args, **kwargs)
        freeze_audio_tower_if_configured(self, config)

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        model = super().from_pretrained(*args, **kwargs)
        freeze_audio_tower_if_configured(model, model.config)
        return model


class Qwen2AudioForConditionalGeneration(_FreezableAudioTower, transformers.Qwen2AudioForConditionalGeneration):
    """Stock Qwen2-Audio, plus the opt-in frozen audio encoder."""


class Qwen2_5OmniThinkerForConditionalGeneration(
    _FreezableAudioTower, transformers.Qwen2_5OmniThinkerForConditionalGeneration
):
    """Stock Qwen2.5-Omni thinker, plus the opt-in frozen audio encoder."""
