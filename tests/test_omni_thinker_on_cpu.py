"""Full Qwen2.5-Omni checkpoint -> thinker-only checkpoint, on a tiny random model."""

import json

import pytest
import torch
from safetensors.torch import save_file

from audio_thinker.models.omni_thinker import convert, main, thinker_config


def tiny_thinker():
    from transformers import Qwen2_5OmniThinkerConfig, Qwen2_5OmniThinkerForConditionalGeneration

    config = Qwen2_5OmniThinkerConfig(
        audio_config=dict(d_model=32, encoder_layers=1, encoder_attention_heads=2, encoder_ffn_dim=64,
                          num_mel_bins=128, output_dim=64, n_window=100),
        vision_config=dict(depth=1, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
                           fullatt_block_indexes=[0]),
        text_config=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=4,
                         num_key_value_heads=2, vocab_size=1000,
                         rope_scaling={"type": "default", "mrope_section": [2, 3, 3], "rope_type": "default"}),
    )
    torch.manual_seed(0)
    return Qwen2_5OmniThinkerForConditionalGeneration(config).eval()


@pytest.fixture(scope="module")
def full_checkpoint(tmp_path_factory):
    """A directory shaped like the real Qwen2.5-Omni-7B release: thinker + talker + token2wav shards."""
    from transformers import Qwen2_5OmniConfig

    src = tmp_path_factory.mktemp("omni_full")
    thinker = tiny_thinker()
    Qwen2_5OmniConfig(thinker_config=thinker.config.to_dict()).save_pretrained(src)
    state = {f"thinker.{k}": v.contiguous().clone() for k, v in thinker.state_dict().items()}
    keys = sorted(state)
    half = len(keys) // 2
    shards = {
        "model-00001-of-00003.safetensors": {k: state[k] for k in keys[:half]},
        "model-00002-of-00003.safetensors": {k: state[k] for k in keys[half:]} | {"talker.proj.weight": torch.zeros(2, 2)},
        "model-00003-of-00003.safetensors": {"token2wav.code.weight": torch.ones(3)},
    }
    weight_map = {}
    for name, tensors in shards.items():
        save_file(tensors, str(src / name), metadata={"format": "pt"})
        weight_map.update({k: name for k in tensors})
    (src / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    (src / "chat_template.json").write_text(json.dumps({"chat_template": "{{ messages }}"}))
    return src, thinker


def test_converted_checkpoint_loads_as_the_thinker_with_identical_weights(full_checkpoint, tmp_path):
    from transformers import AutoConfig, Qwen2_5OmniThinkerForConditionalGeneration

    src, thinker = full_checkpoint
    out = convert(src, tmp_path / "thinker")
    assert AutoConfig.from_pretrained(out).model_type == "qwen2_5_omni_thinker"
    loaded = Qwen2_5OmniThinkerForConditionalGeneration.from_pretrained(out)
    expected = thinker.state_dict()
    got = loaded.state_dict()
    assert set(got) == set(expected)
    for key, value in expected.items():
        torch.testing.assert_close(got[key], value, rtol=0, atol=0)
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert not any(k.startswith(("talker.", "token2wav.", "thinker.")) for k in index["weight_map"])
    assert (out / "chat_template.json").exists()
    assert len(list(out.glob("model-*.safetensors"))) == 2  # the token2wav-only shard is dropped


def test_verl_resolves_the_converted_checkpoint(full_checkpoint, tmp_path):
    import verl  # noqa: F401  (loads the plugin)
    from transformers import AutoConfig
    from verl.utils.model import get_hf_auto_model_class

    out = convert(full_checkpoint[0], tmp_path / "thinker")
    assert get_hf_auto_model_class(AutoConfig.from_pretrained(out)).__name__ == "AutoModelForImageTextToText"


def test_bad_inputs_are_clear(full_checkpoint, tmp_path, capsys):
    src, _ = full_checkpoint
    (tmp_path / "qwen2").mkdir()
    (tmp_path / "qwen2" / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
    with pytest.raises(ValueError, match="expected a full Qwen2.5-Omni checkpoint"):
        thinker_config(tmp_path / "qwen2")
    out = tmp_path / "out"
    assert main(["--src", str(src), "--out", str(out)]) == 0
    assert main(["--src", str(src), "--out", str(out)]) == 2
    assert "pass --overwrite" in capsys.readouterr().err
    assert main(["--src", str(src), "--out", str(out), "--overwrite"]) == 0
    assert main(["--src", str(tmp_path / "missing"), "--out", str(tmp_path / "o2")]) == 2
