"""The verl plugin loads through the entry point in a fresh process and fixes what it must."""

import json
import subprocess
import sys
import textwrap

import pytest


def run_fresh(code: str, *, plugins: str = "auto") -> dict:
    """Run ``code`` in a fresh interpreter (verl loads plugins on import) and return its JSON."""
    env_code = f"import os; os.environ['VERL_USE_EXTERNAL_PLUGINS'] = {plugins!r}\n" + textwrap.dedent(code)
    out = subprocess.run([sys.executable, "-c", env_code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


RESOLVE = """
import json, sys
import verl
from transformers import Qwen2AudioConfig, Qwen2_5OmniThinkerConfig
from verl.utils.model import get_hf_auto_model_class
audio = Qwen2AudioConfig(architectures=["Qwen2AudioForConditionalGeneration"])
omni = Qwen2_5OmniThinkerConfig(architectures=["Qwen2_5OmniThinkerForConditionalGeneration"])
import verl.utils, verl.workers.config.model as model_cfg
print(json.dumps({
    "plugin_loaded": "audio_thinker.verl_ext.plugin" in sys.modules,
    "audio": get_hf_auto_model_class(audio).__name__,
    "omni": get_hf_auto_model_class(omni).__name__,
    "patched": [bool(getattr(m.hf_processor, "__audio_thinker__", False)) for m in (verl.utils, model_cfg)],
}))
"""


def test_entry_point_loads_the_plugin_in_a_fresh_process():
    result = run_fresh(RESOLVE)
    assert result["plugin_loaded"]
    assert result["audio"] == "AutoModelForImageTextToText"
    assert result["omni"] == "AutoModelForImageTextToText"
    assert result["patched"] == [True, True]


def test_without_the_plugin_verl_resolves_qwen2_audio_to_the_headless_base_model():
    """The failure the plugin exists for: verl alone picks AutoModel (no LM head)."""
    result = run_fresh(RESOLVE, plugins="none")
    assert not result["plugin_loaded"]
    assert result["audio"] == "AutoModel"
    assert result["patched"] == [False, False]


def test_full_omni_checkpoint_is_rejected_with_a_fix(tmp_path):
    from transformers import Qwen2_5OmniConfig

    Qwen2_5OmniConfig().save_pretrained(tmp_path)
    from audio_thinker.verl_ext.plugin import load_audio_processor

    with pytest.raises(ValueError, match="audio_thinker.models.omni_thinker"):
        load_audio_processor(str(tmp_path))


def test_non_audio_checkpoints_go_to_verls_own_helper(tmp_path):
    from transformers import Qwen2Config

    Qwen2Config(hidden_size=8, num_hidden_layers=1, num_attention_heads=2).save_pretrained(tmp_path)
    from audio_thinker.verl_ext.plugin import load_audio_processor

    assert load_audio_processor(str(tmp_path)) is None
    assert load_audio_processor(str(tmp_path / "does-not-exist")) is None


def test_patch_is_idempotent():
    import verl.utils

    from audio_thinker.verl_ext import plugin

    first = verl.utils.hf_processor
    plugin.register()
    plugin.register()
    assert verl.utils.hf_processor is first
    assert first.__wrapped_original__.__module__ == "verl.utils.tokenizer.tokenizer"


PROCESSOR = """
import json, warnings
import verl
from verl.utils import hf_processor
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    processor = hf_processor({path!r})
print(json.dumps({{"processor": type(processor).__name__, "warnings": [str(w.message) for w in caught]}}))
"""


@pytest.mark.parametrize(
    ("arch", "expected"),
    [("qwen2_audio", "Qwen2AudioProcessorForVerl"), ("qwen2_5_omni_thinker", "Qwen2_5OmniProcessor")],
)
def test_tiny_models_get_their_processor_only_with_the_plugin(arch, expected, tmp_path):
    from audio_thinker.toy.tiny import ensure_tiny_model

    path = str(ensure_tiny_model(arch, tmp_path / arch))
    with_plugin = run_fresh(PROCESSOR.format(path=path))
    assert with_plugin["processor"] == expected
    without = run_fresh(PROCESSOR.format(path=path), plugins="none")
    assert without["processor"] == "NoneType"
    assert any("Unsupported processor type" in w for w in without["warnings"]), without["warnings"]


def test_audio_processors_count_as_multimodal_for_verls_token_wiring(tmp_path):
    """verl's Continuous Token wiring asked for an image processor; audio prompts were refused."""
    import verl  # noqa: F401
    from transformers import AutoTokenizer
    from verl.utils.tokenizer import continuous_token_wiring as wiring

    from audio_thinker.toy.tiny import ensure_tiny_model
    from audio_thinker.verl_ext import plugin
    from audio_thinker.verl_ext.processors import Qwen2AudioProcessorForVerl

    path = ensure_tiny_model("qwen2_audio", tmp_path / "qa")
    audio_processor = Qwen2AudioProcessorForVerl.from_pretrained(str(path))
    original = wiring._is_multimodal_processor.__wrapped_original__
    assert original(audio_processor) is False  # verl's own check
    assert wiring._is_multimodal_processor(audio_processor) is True
    assert wiring._is_multimodal_processor(AutoTokenizer.from_pretrained(str(path))) is False
    assert wiring._is_multimodal_processor(None) is False
    plugin.register()
    assert wiring._is_multimodal_processor.__wrapped_original__ is original  # idempotent


def test_fsdp2_wrap_targets_keep_directly_read_position_embeddings_in_their_parent(tmp_path):
    """Qwen2-Audio's encoder reads embed_positions.weight directly: it must not be its own unit."""
    import verl  # noqa: F401
    from transformers import Qwen2AudioForConditionalGeneration
    from verl.utils import fsdp_utils

    from audio_thinker.toy.tiny import ensure_tiny_model

    model = Qwen2AudioForConditionalGeneration.from_pretrained(str(ensure_tiny_model("qwen2_audio", tmp_path / "qa")))
    layers = ["Qwen2DecoderLayer", "Qwen2AudioEncoderLayer"]
    verl_targets = fsdp_utils._select_fsdp2_wrap_targets.__wrapped_original__(model, layers)
    ours = fsdp_utils._select_fsdp2_wrap_targets(model, layers)
    positions = model.audio_tower.embed_positions
    assert any(m is positions for m in verl_targets)  # what broke the forward
    assert not any(m is positions for m in ours)
    assert len(ours) == len(verl_targets) - 1
    assert any(m is model.get_input_embeddings() for m in ours)  # word embeddings keep their unit


def test_checkpoint_processor_reloads_as_the_stock_class(tmp_path):
    """verl saves the processor into every checkpoint; AutoProcessor must find its class there."""
    from transformers import AutoProcessor

    from audio_thinker.toy.tiny import ensure_tiny_model
    from audio_thinker.verl_ext.processors import Qwen2AudioProcessorForVerl

    processor = Qwen2AudioProcessorForVerl.from_pretrained(str(ensure_tiny_model("qwen2_audio", tmp_path / "qa")))
    processor.save_pretrained(tmp_path / "saved")
    for name in ("processor_config.json", "tokenizer_config.json"):
        assert json.loads((tmp_path / "saved" / name).read_text())["processor_class"] == "Qwen2AudioProcessor"
    assert type(AutoProcessor.from_pretrained(tmp_path / "saved")).__name__ == "Qwen2AudioProcessor"
