"""The published configs of the two 7B backbones (tests/data/real_configs/) as test data.

* They load through transformers' ``AutoConfig`` and give the published sizes.
* The models built from them on the meta device (no memory, no weights) have the published
  parameter counts: Qwen2-Audio-7B-Instruct 8.40 B (the README's figure; 8,397,094,912 counted),
  the Qwen2.5-Omni-7B thinker ~8.9 B (8,931,813,888 counted, which is also the size of the
  published thinker weights: 17,863,627,776 bf16 bytes).
* The tiny builders (``audio_thinker.toy.tiny``) write ``config.json`` files with the same key
  structure as the real checkpoints, only smaller values: code that reads a key the real file
  lacks (a top-level ``tie_word_embeddings``, ``rope_parameters``, ``dtype``...) fails on the
  tiny models too. The one exception: the sizes Qwen2-Audio's ``text_config`` leaves to defaults.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import (
    AutoConfig,
    Qwen2_5OmniThinkerForConditionalGeneration,
    Qwen2AudioForConditionalGeneration,
)

REAL_CONFIGS = Path(__file__).parent / "data" / "real_configs"
QWEN2_AUDIO = REAL_CONFIGS / "qwen2_audio_7b_instruct.json"
OMNI = REAL_CONFIGS / "qwen2_5_omni_7b.json"


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _assert_close(measured: int, expected: float, what: str, rel: float = 0.01) -> None:
    assert abs(measured - expected) <= rel * expected, f"{what}: {measured:,} not within {rel:.0%} of {expected:,.0f}"


def test_qwen2_audio_config_gives_the_published_sizes():
    cfg = AutoConfig.from_pretrained(QWEN2_AUDIO)
    assert type(cfg).__name__ == "Qwen2AudioConfig"
    text, audio = cfg.text_config, cfg.audio_config
    assert (text.hidden_size, text.num_hidden_layers, text.vocab_size) == (4096, 32, 156032)
    assert (text.num_attention_heads, text.num_key_value_heads, text.intermediate_size) == (32, 32, 11008)
    assert (audio.encoder_layers, audio.d_model, audio.num_mel_bins, audio.max_source_positions) == (32, 1280, 128, 1500)
    assert cfg.audio_token_index == 151646
    # the file has no top-level tie_word_embeddings: the LM head must still be its own matrix
    assert "tie_word_embeddings" not in json.loads(QWEN2_AUDIO.read_text())
    assert text.tie_word_embeddings is False


def test_omni_config_gives_the_published_sizes():
    cfg = AutoConfig.from_pretrained(OMNI)
    assert type(cfg).__name__ == "Qwen2_5OmniConfig"
    thinker = cfg.thinker_config
    text, audio, vision = thinker.text_config, thinker.audio_config, thinker.vision_config
    assert (text.hidden_size, text.num_hidden_layers, text.vocab_size) == (3584, 28, 152064)
    assert (text.num_attention_heads, text.num_key_value_heads, text.intermediate_size) == (28, 4, 18944)
    assert text.rope_parameters["mrope_section"] == [16, 24, 24]
    assert text.rope_parameters["rope_theta"] == 1_000_000
    assert (audio.encoder_layers, audio.d_model, audio.num_mel_bins, audio.n_window, audio.output_dim) == (
        32, 1280, 128, 100, 3584)
    assert (vision.depth, vision.hidden_size, vision.out_hidden_size) == (32, 1280, 3584)
    assert thinker.tie_word_embeddings is False
    assert (thinker.audio_token_index, thinker.position_id_per_seconds) == (151646, 25)
    assert {"talker_config", "token2wav_config"} <= set(json.loads(OMNI.read_text()))


def test_qwen2_audio_parameter_count_on_meta():
    cfg = AutoConfig.from_pretrained(QWEN2_AUDIO)
    with torch.device("meta"):
        model = Qwen2AudioForConditionalGeneration._from_config(cfg)
    assert model.get_input_embeddings().weight is not model.get_output_embeddings().weight
    _assert_close(_count(model), 8.40e9, "Qwen2-Audio-7B-Instruct")
    _assert_close(_count(model.language_model), 7.76e9, "its language model")
    _assert_close(_count(model.audio_tower), 0.64e9, "its Whisper encoder")


def test_omni_thinker_parameter_count_on_meta():
    cfg = AutoConfig.from_pretrained(OMNI).thinker_config
    with torch.device("meta"):
        model = Qwen2_5OmniThinkerForConditionalGeneration._from_config(cfg)
    assert model.get_input_embeddings().weight is not model.get_output_embeddings().weight
    _assert_close(_count(model), 8.9e9, "Qwen2.5-Omni-7B thinker")
    _assert_close(_count(model.model) + _count(model.lm_head), 7.6e9, "its language model")
    _assert_close(_count(model.audio_tower), 0.64e9, "its audio encoder")
    _assert_close(_count(model.visual), 0.675e9, "its vision encoder (675 M in the technical report)")


# ----------------------------------------------------------------------------------------------
# Key structure of the tiny builders' config.json vs the real checkpoints'
# ----------------------------------------------------------------------------------------------

def key_paths(tree: dict, prefix: str = "") -> set[str]:
    """Every key of ``tree`` and of its nested dicts, as dotted paths."""
    paths = set()
    for key, value in tree.items():
        paths.add(prefix + key)
        if isinstance(value, dict):
            paths |= key_paths(value, f"{prefix}{key}.")
    return paths


def key_set_diff(real: dict, tiny: dict) -> dict[str, list[str]]:
    """Dotted key paths only the real config has, and only the tiny one has."""
    real_keys, tiny_keys = key_paths(real), key_paths(tiny)
    return {"only_real": sorted(real_keys - tiny_keys), "only_tiny": sorted(tiny_keys - real_keys)}


def test_key_set_diff_compares_nested_keys_not_values():
    real = {"a": 1, "text_config": {"hidden_size": 4096, "rope": {"theta": 1}}, "vocab_size": 9}
    tiny = {"a": 2, "text_config": {"hidden_size": 64, "rope": {"type": "x"}}, "dtype": "float32"}
    assert key_set_diff(real, real) == {"only_real": [], "only_tiny": []}
    assert key_set_diff(real, tiny) == {
        "only_real": ["text_config.rope.theta", "vocab_size"], "only_tiny": ["dtype", "text_config.rope.type"],
    }


def _tiny_config(arch: str, out: Path) -> dict:
    from audio_thinker.toy.tiny import build_tiny_model

    return json.loads((build_tiny_model(arch, out, seed=0) / "config.json").read_text())


def _real_thinker_checkpoint_config(tmp_path: Path) -> dict:
    """The config.json of the thinker-only checkpoint the GPU recipe trains (the converter's output)."""
    from audio_thinker.models.omni_thinker import thinker_config

    src = tmp_path / "omni_src"
    src.mkdir()
    (src / "config.json").write_text(OMNI.read_text())
    return thinker_config(src)


#: Qwen2-Audio-7B-Instruct's text_config leaves the model sizes to Qwen2Config's defaults (the 7B
#: ones: 4096 wide, 32 layers, 32/32 heads); a tiny model has to name them, and may add nothing else.
QWEN2_AUDIO_SIZES_LEFT_TO_DEFAULTS = [
    "text_config.hidden_size", "text_config.num_attention_heads", "text_config.num_hidden_layers",
    "text_config.num_key_value_heads",
]


def test_tiny_qwen2_audio_config_has_the_real_key_set(tmp_path):
    tiny = _tiny_config("qwen2_audio", tmp_path / "tiny")
    real = json.loads(QWEN2_AUDIO.read_text())
    assert not set(QWEN2_AUDIO_SIZES_LEFT_TO_DEFAULTS) & key_paths(real)
    assert key_set_diff(real, tiny) == {"only_real": [], "only_tiny": QWEN2_AUDIO_SIZES_LEFT_TO_DEFAULTS}
    assert "tie_word_embeddings" not in tiny and "pad_token_id" not in tiny


def test_tiny_omni_thinker_config_has_the_real_key_set(tmp_path):
    tiny = _tiny_config("qwen2_5_omni_thinker", tmp_path / "tiny")
    real = _real_thinker_checkpoint_config(tmp_path)
    assert key_set_diff(real, tiny) == {"only_real": [], "only_tiny": []}
