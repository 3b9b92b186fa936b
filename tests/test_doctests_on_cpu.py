"""Run the doctests of the pure modules (examples in docstrings must stay true)."""

import doctest
import importlib

import pytest

PURE_MODULES = [
    "audio_thinker.prompts",
    "audio_thinker.rewards.parsing",
    "audio_thinker.rewards.accuracy",
    "audio_thinker.rewards.atar",
    "audio_thinker.rewards.judge_prompts",
    "audio_thinker.rewards.judge_parsing",
    "audio_thinker.rewards.combine",
    "audio_thinker.rewards.metrics",
    "audio_thinker.scoring.match",
    "audio_thinker.scoring.items",
    "audio_thinker.scoring.records",
    "audio_thinker.scoring.official_format",
    "audio_thinker.scoring.tables",
    "audio_thinker.scoring.thinking",
    "audio_thinker.inference.options",
    "audio_thinker.inference.outputs",
    "audio_thinker.inference.batching",
    "audio_thinker.inference.backend",
    "audio_thinker.inference.templates",
    "audio_thinker.inference.hf",
    "audio_thinker.inference.continuations",
    "audio_thinker.inference.vllm",
    "audio_thinker.inference.vllm_models",
    "audio_thinker.data.cot.settings",
    "audio_thinker.data.cot.filter",
    "audio_thinker.data.cot.store",
    "audio_thinker.data.rows",
    "audio_thinker.data.benchmarks",
    "audio_thinker.data.files",
    "audio_thinker.toy.loop",
]


@pytest.mark.parametrize("name", PURE_MODULES)
def test_doctests(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} has no doctest examples"
    assert result.failed == 0


def test_reward_core_is_pure():
    """The reward core imports only the standard library and numpy (no torch, verl, ray)."""
    import subprocess
    import sys

    code = (
        "import sys; import audio_thinker.rewards.combine, audio_thinker.rewards.judge_prompts, "
        "audio_thinker.rewards.judge_parsing, audio_thinker.prompts, audio_thinker.data.rows; "
        "bad = [m for m in ('torch', 'verl', 'ray', 'vllm', 'transformers') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_importing_the_package_is_light():
    import subprocess
    import sys

    code = (
        "import sys, audio_thinker, audio_thinker.config; "
        "bad = [m for m in ('vllm', 'ray', 'torch', 'verl') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
