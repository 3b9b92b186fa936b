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
    from audio_thinker.models.tiny import ensure_tiny_model

    path = str(ensure_tiny_model(arch, tmp_path / arch))
    with_plugin = run_fresh(PROCESSOR.format(path=path))
    assert with_plugin["processor"] == expected
    without = run_fresh(PROCESSOR.format(path=path), plugins="none")
    assert without["processor"] == "NoneType"
    assert any("Unsupported processor type" in w for w in without["warnings"]), without["warnings"]
