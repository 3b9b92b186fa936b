"""The GPU backbones, checked on CPU against the real 7B configs (no weights, no GPU, no vLLM).

* attention: verl defaults to flash_attention_2 (the flash-attn package, not installed by the
  ``gpu`` extra); every GPU backbone sets ``attn_implementation: sdpa`` explicitly.
* ``tie_word_embeddings``: the released Qwen2-Audio-7B-Instruct config.json names it only inside
  ``text_config``; verl reads ``hf_config.tie_word_embeddings`` directly (the plugin supplies it).
* FSDP wrapping: verl's default (``_no_split_modules``) selects encoder units and the layers inside
  them, and wraps the parent first ("mixed torch.Tensor and DTensor"); each GPU backbone names one
  class per layer. Checked by building the real configs on the meta device and running verl's own
  wrap-target selection over them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parents[1]
REAL = REPO / "tests" / "data" / "real_configs"
GRPO = {"qwen2_audio_7b": "qwen2_audio_7b_instruct.json", "qwen2_5_omni_7b": "qwen2_5_omni_7b.json"}


def _grpo(name: str):
    return OmegaConf.load(REPO / "conf" / "backbone" / f"{name}.yaml")


def _sft(name: str):
    return OmegaConf.load(REPO / "conf" / "sft" / "backbone" / f"{name}.yaml")


def _wrap_lists(name: str) -> list[list[str]]:
    grpo, sft = _grpo(name), _sft(name)
    lists = [grpo.actor_rollout_ref[role].fsdp_config.wrap_policy.transformer_layer_cls_to_wrap
             for role in ("actor", "ref")]
    lists.append(sft.engine.wrap_policy.transformer_layer_cls_to_wrap)
    return [list(x) for x in lists]


@pytest.mark.parametrize("name", sorted(GRPO))
def test_gpu_backbones_set_sdpa(name):
    assert _grpo(name).actor_rollout_ref.model.override_config.attn_implementation == "sdpa"
    assert _sft(name).model.override_config.attn_implementation == "sdpa"


def _config(name: str, tmp_path: Path):
    from transformers import AutoConfig

    shutil.copy(REAL / GRPO[name], tmp_path / "config.json")
    config = AutoConfig.from_pretrained(tmp_path)
    return config.thinker_config if name == "qwen2_5_omni_7b" else config


def test_real_qwen2_audio_config_has_tie_word_embeddings(tmp_path):
    import audio_thinker.verl_ext.plugin  # noqa: F401  (what every verl process imports)

    config = _config("qwen2_audio_7b", tmp_path)
    assert "tie_word_embeddings" not in config.to_dict()  # the released file does not name it
    assert config.tie_word_embeddings is False  # text_config's value, what verl's engine reads
    from transformers import Qwen2AudioConfig

    assert Qwen2AudioConfig(tie_word_embeddings=True).tie_word_embeddings is True
    assert Qwen2AudioConfig(text_config={"model_type": "qwen2", "tie_word_embeddings": True}).tie_word_embeddings


def _nested(targets: list, model) -> list[str]:
    """Names of selected modules that sit inside another selected module."""
    names = {id(m): n for n, m in model.named_modules()}
    chosen = [names[id(m)] for m in targets]
    return [c for c in chosen if any(c != p and c.startswith(p + ".") for p in chosen if p)]


@pytest.mark.parametrize("name", sorted(GRPO))
def test_gpu_wrap_policy_selects_no_nested_units(name, tmp_path):
    import torch
    import transformers

    import audio_thinker.verl_ext.plugin  # noqa: F401
    from verl.utils import fsdp_utils

    config = _config(name, tmp_path)
    cls = (transformers.Qwen2_5OmniThinkerForConditionalGeneration if name == "qwen2_5_omni_7b"
           else transformers.Qwen2AudioForConditionalGeneration)
    with torch.device("meta"):
        model = cls(config)
    default = fsdp_utils._select_fsdp2_wrap_targets(model, list(model._no_split_modules))
    assert _nested(default, model), "verl's default wrapping is expected to nest (the break this guards)"
    layer_counts = {}
    for classes in _wrap_lists(name):
        targets = fsdp_utils._select_fsdp2_wrap_targets(model, classes)
        assert not _nested(targets, model), classes
        for cls_name in classes:  # every class named exists in the model
            count = sum(type(m).__name__ == cls_name for m in targets)
            assert count > 0, cls_name
            layer_counts[cls_name] = count
    decoder = "Qwen2DecoderLayer" if name == "qwen2_audio_7b" else "Qwen2_5OmniDecoderLayer"
    assert layer_counts[decoder] == config.text_config.num_hidden_layers
