"""The evaluation backends and their set-up, on CPU with the tiny random Qwen2-Audio.

* ``audio_thinker.evaluate.prompts``: benchmark items as prompts, rendered by the chat template;
* ``audio_thinker.inference.hf``: :class:`HFGenerator` on evaluation prompts (order, token counts,
  placeholder suppression, determinism, per-item retry of a failing batch); the pure helpers and
  the vLLM ones are in ``test_inference_on_cpu.py``;
* ``audio_thinker.verl_ext.merge``: a fake verl FSDP checkpoint merged by verl's own merger;
* ``audio_thinker.evaluate.config`` / ``run``: config validation and the run's pure helpers.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from audio_thinker.config import ConfigError
from audio_thinker.data.benchmarks import BenchmarkItem
from audio_thinker.data.rows import AUDIO_PLACEHOLDER
from audio_thinker.evaluate import run as run_mod
from audio_thinker.evaluate.config import EvalConfig, load_eval_config
from audio_thinker.evaluate.prompts import build_messages, prompt_input
from audio_thinker.inference.hf import HFGenerator
from audio_thinker.inference.options import GenerationOptions, VLLMOptions
from audio_thinker.inference.outputs import Generated, PromptInput, cut_response
from audio_thinker.inference.templates import render_prompt
from audio_thinker.scoring.records import make_record
from audio_thinker.verl_ext.merge import MARKER, ResolvedModel, resolve_model

REPO = Path(__file__).resolve().parents[1]
SR = 16_000
PLACEHOLDERS = ("<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>")
MAX_NEW = 32
QUESTIONS = (
    "What is the sound?",
    "Which animal is heard in this recording?",
    "Is it loud?",
    "How many beeps are there in the clip?",
)


# ------------------------------------------------------------------------------------ fixtures


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_dir(tiny_model_dir) -> Path:

    return tiny_model_dir("qwen2_audio")


def _sine(freq: float) -> np.ndarray:
    t = np.arange(SR, dtype=np.float64) / SR
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _item(k: int, question: str) -> BenchmarkItem:
    return BenchmarkItem("synthetic", f"item-{k}", f"/audio/{k}.wav", question, ("cat", "dog", "bird"), "dog")


@pytest.fixture(scope="module")
def prompts() -> list[PromptInput]:
    return [prompt_input(_item(k, q), "adaptive", _sine(220 + 110 * k)) for k, q in enumerate(QUESTIONS)]


@pytest.fixture(scope="module")
def generator(tiny_dir) -> HFGenerator:
    gen = HFGenerator.from_pretrained(str(tiny_dir), GenerationOptions(max_new_tokens=MAX_NEW))
    yield gen
    gen.close()


@pytest.fixture(scope="module")
def greedy(generator, prompts) -> list[Generated]:
    return generator.generate(prompts)


def _placeholder_ids(tokenizer) -> list[int]:
    return [tokenizer.convert_tokens_to_ids(t) for t in PLACEHOLDERS]


def _boost(generator: HFGenerator, ids, amount: float = 30.0):
    """Add ``amount`` to the logits of ``ids`` at every step (a forward hook on the LM head)."""
    index = torch.tensor(sorted(ids))

    def hook(_module, _inputs, output):
        return output.index_add(-1, index, torch.full((*output.shape[:-1], len(index)), amount))

    return generator.model.get_output_embeddings().register_forward_hook(hook)


# ------------------------------------------------------------------------------------- prompts


def test_build_messages_and_prompt_input():
    item = _item(0, "Which animal makes this sound?")
    messages = build_messages(item, "think")
    assert len(messages) == 1 and messages[0]["role"] == "user"
    content = messages[0]["content"]
    assert content.startswith(AUDIO_PLACEHOLDER) and content.count(AUDIO_PLACEHOLDER) == 1
    assert "Which animal makes this sound?" in content and all(c in content for c in item.choices)
    assert "<think>" in content  # the think mode's instruction
    assert build_messages(item, "direct") != messages

    clip = _sine(440)
    prompt = prompt_input(item, "think", clip)
    assert prompt.item_id == "item-0" and len(prompt.audios) == 1 and prompt.audios[0] is clip
    parts = prompt.messages[0]["content"]
    assert parts[0]["type"] == "audio" and parts[0]["audio"] is clip
    assert [p["type"] for p in parts[1:]] == ["text"]
    assert parts[1]["text"] == content[len(AUDIO_PLACEHOLDER):]


def test_render_prompt_with_tiny_chat_template(generator, prompts):
    text = render_prompt(generator.processor, prompts[1])
    assert QUESTIONS[1] in text
    assert "Audio 1: <|audio_bos|><|AUDIO|><|audio_eos|>" in text  # Qwen2-Audio's template
    assert text.count("<|AUDIO|>") == 1
    assert text.rstrip().endswith("<|im_start|>assistant")  # generation prompt appended
    # the processor expands the placeholder to 25 audio tokens per second of audio
    inputs = generator._inputs(prompts)
    audio_id = generator.model.config.audio_token_index
    assert (inputs["input_ids"] == audio_id).sum(dim=1).tolist() == [25] * len(prompts)


def test_reasoning_tags_survive_decoding(generator):
    tokenizer = generator.tokenizer
    text = "<think>The clip has a dog barking twice.</think><answer>dog</answer>"
    ids = tokenizer.encode(text, add_special_tokens=False)
    for tag in ("<think>", "</think>", "<answer>", "</answer>"):
        assert tokenizer.convert_tokens_to_ids(tag) in ids
    # as _generate_batch does: cut at the stop id, decode with special tokens kept
    kept, reason = cut_response(ids + [min(generator.stop_ids), 5, 6], generator.stop_ids, generator.pad_id)
    assert reason == "stop" and kept == ids
    assert tokenizer.decode(kept, skip_special_tokens=False) == text


# --------------------------------------------------------------------------- HFGenerator on CPU


def test_hf_generator_setup(generator, tiny_dir):
    tokenizer = generator.tokenizer
    assert tokenizer.padding_side == "left"
    assert generator.sampling_rate == SR
    assert generator.stop_ids and tokenizer.convert_tokens_to_ids("<|im_end|>") in generator.stop_ids
    assert generator.suppressed, "the multimodal placeholder ids must be suppressed"
    assert set(_placeholder_ids(tokenizer)) <= set(generator.suppressed)
    assert not set(generator.suppressed) & generator.stop_ids


def test_hf_generator_rejects_a_non_audio_model(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
    with pytest.raises(ValueError, match="not an audio checkpoint"):
        HFGenerator.from_pretrained(str(tmp_path), GenerationOptions())


def test_hf_generator_results(generator, prompts, greedy):
    assert generator.generate([]) == []
    assert len(greedy) == len(prompts)
    for result in greedy:
        assert isinstance(result, Generated) and result.error is None and isinstance(result.text, str)
        assert result.finish_reason in {"stop", "length"}
        assert 0 < result.n_tokens <= MAX_NEW + 1
        if result.finish_reason == "length":
            assert result.n_tokens == MAX_NEW  # the pad id is a stop id: nothing trimmed
        for token in PLACEHOLDERS:
            assert token not in result.text
    # one result per prompt, in order: each equals the prompt generated alone
    assert [generator.generate([p])[0] for p in prompts] == greedy
    assert generator.generate(prompts[::-1]) == greedy[::-1]


def test_greedy_is_deterministic(generator, prompts, greedy):
    assert generator.generate(prompts) == greedy


def test_placeholders_are_suppressed_even_when_favoured(generator, prompts, greedy):
    handle = _boost(generator, generator.suppressed)
    try:
        boosted = generator.generate(prompts)
        saved, generator.suppressed = generator.suppressed, []
        try:
            unsuppressed = generator.generate(prompts[:2])
        finally:
            generator.suppressed = saved
    finally:
        handle.remove()
    assert boosted == greedy  # suppression fully masks the favoured placeholder logits
    assert all(any(t in r.text for t in PLACEHOLDERS) for r in unsuppressed)  # the control


def test_stop_token_ends_generation(generator, prompts):
    stop = min(generator.stop_ids)
    handle = _boost(generator, [stop])
    try:
        results = generator.generate(prompts[:2])
    finally:
        handle.remove()
    assert results == [Generated("", 1, "stop")] * 2  # the stop token is counted, not decoded


def test_sampling_reproduces_with_the_same_seed(tiny_dir, prompts, greedy):
    def sample(seed: int, calls: int = 1) -> list[list[Generated]]:
        options = GenerationOptions(max_new_tokens=12, temperature=1.0, top_k=50, seed=seed)
        gen = HFGenerator.from_pretrained(str(tiny_dir), options)
        try:
            return [gen.generate(prompts) for _ in range(calls)]
        finally:
            gen.close()

    first, second = sample(7, calls=2)
    assert sample(7) == [first]
    assert second != first  # each call draws from its own seed
    assert sample(8)[0] != first
    for result in first:
        assert result.error is None and result.n_tokens <= 12
        assert not any(t in result.text for t in PLACEHOLDERS)


def test_failing_batch_is_retried_item_by_item(generator, prompts, greedy, monkeypatch):
    real = generator._generate_batch
    calls: list[int] = []

    def only_singles(batch):
        calls.append(len(batch))
        if len(batch) > 1:
            raise RuntimeError("out of memory")
        return real(batch)

    monkeypatch.setattr(generator, "_generate_batch", only_singles)
    assert generator.generate(prompts) == greedy
    assert calls == [len(prompts)] + [1] * len(prompts)


def test_one_bad_prompt_costs_only_itself(generator, prompts, greedy, monkeypatch):
    real = generator._generate_batch

    def bad_item_2(batch):
        if any(p.item_id == "item-2" for p in batch):
            raise ValueError("corrupt audio features")
        return real(batch)

    monkeypatch.setattr(generator, "_generate_batch", bad_item_2)
    results = generator.generate(prompts)
    assert len(results) == len(prompts)
    bad = results[2]
    assert bad.text is None and bad.n_tokens == 0 and bad.finish_reason is None
    assert bad.error.startswith("generation_error") and "corrupt audio features" in bad.error
    assert [r for i, r in enumerate(results) if i != 2] == [r for i, r in enumerate(greedy) if i != 2]


def test_a_real_broken_prompt_is_isolated(generator, prompts, greedy):
    clip = np.zeros((2, 3, 4), dtype=np.float32)  # not a mono waveform: the feature extractor fails
    broken = prompt_input(_item(9, "Broken?"), "adaptive", clip)
    results = generator.generate([prompts[0], broken, prompts[1]])
    assert results[0] == greedy[0] and results[2] == greedy[1]
    assert results[1].text is None and results[1].error.startswith("generation_error")


# ------------------------------------------------------------------------- verl checkpoints


@pytest.fixture(scope="module")
def original_state(tiny_dir) -> dict[str, torch.Tensor]:
    from transformers import Qwen2AudioForConditionalGeneration

    model = Qwen2AudioForConditionalGeneration.from_pretrained(tiny_dir)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _write_verl_run(run: Path, tiny_dir: Path, state: dict[str, torch.Tensor], step: int = 2) -> Path:
    """A verl FSDP run directory (world size 1, plain tensors) holding checkpoint ``step``."""
    actor = run / f"global_step_{step}" / "actor"
    (actor / "huggingface").mkdir(parents=True)
    torch.save(state, actor / "model_world_size_1_rank_0.pt")
    (actor / "fsdp_config.json").write_text(json.dumps({"FSDP_version": 2, "world_size": 1}))
    for path in tiny_dir.iterdir():
        if path.is_file() and path.suffix not in (".safetensors", ".bin"):
            shutil.copy(path, actor / "huggingface" / path.name)
    (run / "latest_checkpointed_iteration.txt").write_text(str(step))
    return actor


@pytest.fixture(scope="module")
def verl_run(tmp_path_factory, tiny_dir, original_state) -> Path:
    run = tmp_path_factory.mktemp("ckpt") / "my_run"
    _write_verl_run(run, tiny_dir, original_state)
    return run


@pytest.fixture(scope="module")
def merged(verl_run) -> ResolvedModel:
    return resolve_model(verl_run)


def test_resolve_verl_run_merges(merged, verl_run, original_state):
    from transformers import AutoProcessor, Qwen2AudioForConditionalGeneration, Qwen2AudioProcessor

    actor = verl_run / "global_step_2" / "actor"
    assert merged.source == "verl" and merged.step == 2
    assert Path(merged.checkpoint_dir) == actor
    assert Path(merged.hf_dir) == actor / "merged_hf"
    marker = json.loads((Path(merged.hf_dir) / MARKER).read_text())
    assert marker["shards"][0][0] == "model_world_size_1_rank_0.pt"

    model = Qwen2AudioForConditionalGeneration.from_pretrained(merged.hf_dir)
    state = model.state_dict()
    assert set(state) == set(original_state)
    for name, tensor in original_state.items():
        assert state[name].dtype == torch.bfloat16, name  # verl's merger writes bf16
        assert torch.equal(state[name], tensor.to(torch.bfloat16)), name
    assert isinstance(AutoProcessor.from_pretrained(merged.hf_dir), Qwen2AudioProcessor)


def test_resolve_reuses_the_merge(merged, verl_run):
    marker = Path(merged.hf_dir) / MARKER
    before = marker.stat().st_mtime_ns
    for path in (verl_run, verl_run / "global_step_2", verl_run / "global_step_2" / "actor"):
        started = time.perf_counter()
        again = resolve_model(path)
        assert time.perf_counter() - started < 1.0
        assert again == merged
    assert marker.stat().st_mtime_ns == before


def test_changed_checkpoint_is_merged_again(tmp_path, tiny_dir, original_state):
    from safetensors.torch import load_file

    run = tmp_path / "run"
    actor = _write_verl_run(run, tiny_dir, original_state, step=5)
    first = resolve_model(run)
    assert first.step == 5
    marker = Path(first.hf_dir) / MARKER
    stamp = marker.stat().st_mtime_ns
    shard = actor / "model_world_size_1_rank_0.pt"

    st = shard.stat()  # same bytes, newer mtime
    os.utime(shard, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))
    assert resolve_model(run) == first
    assert marker.stat().st_mtime_ns != stamp
    stamp = marker.stat().st_mtime_ns

    changed = dict(original_state)  # rewritten with other weights
    name = next(k for k in changed if k.endswith("lm_head.weight"))
    changed[name] = changed[name] + 1.0
    torch.save(changed, shard)
    assert resolve_model(run) == first
    assert marker.stat().st_mtime_ns != stamp
    weights = load_file(Path(first.hf_dir) / "model.safetensors")
    saved = next(v for k, v in weights.items() if k.endswith("lm_head.weight"))
    assert torch.equal(saved, changed[name].to(torch.bfloat16))
    assert not list(actor.glob(".merged_hf.tmp-*"))  # no staging left behind


def test_merged_dir_elsewhere(verl_run, merged, tmp_path):
    target = tmp_path / "out" / "merged"
    resolved = resolve_model(verl_run / "global_step_2", merged_dir=target)
    assert Path(resolved.hf_dir) == target and resolved.source == "verl" and resolved.step == 2
    assert (target / "config.json").is_file() and (target / "model.safetensors").is_file()
    assert (target / MARKER).is_file() and Path(merged.hf_dir).is_dir()


def test_hf_dir_resolves_to_itself(tiny_dir, merged):
    assert resolve_model(tiny_dir) == ResolvedModel(str(tiny_dir), "hf")
    assert resolve_model(merged.hf_dir).source == "hf"


def test_resolve_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_model(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="latest_checkpointed_iteration.txt"):
        resolve_model(empty)
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / "latest_checkpointed_iteration.txt").write_text("step two\n")
    with pytest.raises(ValueError, match="not a step number"):
        resolve_model(garbage)
    dangling = tmp_path / "dangling"
    dangling.mkdir()
    (dangling / "latest_checkpointed_iteration.txt").write_text("9")
    with pytest.raises(FileNotFoundError, match="global_step_9"):
        resolve_model(dangling)
    megatron = tmp_path / "mega" / "global_step_1" / "actor"
    (megatron / "huggingface").mkdir(parents=True)
    with pytest.raises(ValueError, match="--backend megatron"):
        resolve_model(megatron.parent)


# ------------------------------------------------------------------------------- eval config


def test_load_eval_config_defaults():
    cfg = load_eval_config({})
    assert cfg == EvalConfig()
    assert cfg.benchmark.name == "synthetic" and cfg.prompt_mode == "adaptive" and cfg.backend == "auto"
    assert cfg.generation == GenerationOptions()
    assert cfg.vllm == VLLMOptions()


@pytest.mark.parametrize("section, fragments", [
    ({"prompt_mod": "think"}, ["unknown key prompt_mod", "did you mean prompt_mode?"]),
    ({"generation": {"max_new_token": 3}},
     ["unknown key generation.max_new_token", "did you mean generation.max_new_tokens?"]),
    ({"generation": {"max_new_tokens": "many"}}, ["generation.max_new_tokens", "wrong type"]),
    ({"resume": "yes"}, ["resume", "wrong type"]),
    ({"model": "some/path"}, ["model must be a mapping"]),
    ({"prompt_mode": "chatty"}, ["prompt_mode='chatty'", "adaptive, think, direct"]),
    ({"backend": "tpu"}, ["backend='tpu'", "auto, hf, vllm"]),
    ({"benchmark": {"name": "mmlu"}},
     ["benchmark.name='mmlu'", "mmau, mmar, air-bench-foundation, synthetic"]),
    ({"benchmark": {"limit": 0}}, ["benchmark.limit=0"]),
    ({"generation": {"temperature": -1}}, ["temperature must be >= 0"]),
    ({"hf": {"dtype": "int8"}}, ["hf.dtype='int8'", "float32, bfloat16, float16, auto"]),
    ({"vllm": {"tensor_parallel_size": 0}}, ["vllm.tensor_parallel_size must be >= 1, got 0"]),
    ({"vllm": {"gpu_memory_utilization": 1.5}}, ["vllm.gpu_memory_utilization must lie in (0, 1]"]),
])
def test_load_eval_config_rejects(section, fragments):
    with pytest.raises(ConfigError) as info:
        load_eval_config(section)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_benchmark_name_is_canonicalised():
    assert load_eval_config({"benchmark": {"name": "AIR_Bench"}}).benchmark.name == "air-bench-foundation"
    assert load_eval_config({"benchmark": {"name": "MMAU"}}).benchmark.name == "mmau"


@pytest.fixture(scope="module")
def composed():
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base=None):
        return compose(config_name="evaluate", return_hydra_config=True)


def test_the_real_hydra_config_loads(composed):
    assert "hydra" in composed
    cfg = load_eval_config(composed)
    assert cfg.model.path == "models/tiny_qwen2_audio_primed"
    assert cfg.benchmark.name == "synthetic" and cfg.benchmark.meta == "data/synthetic/val.parquet"
    assert cfg.toy.warmstart_model == "models/tiny_qwen2_audio_primed"
    # every key of the yaml is a field with the schema's default (toy aside)
    assert cfg.generation == EvalConfig().generation and cfg.hf == EvalConfig().hf
    assert cfg.vllm == EvalConfig().vllm and cfg.audio == EvalConfig().audio


def test_the_toy_section_is_checked_as_in_training():
    with pytest.raises(ConfigError, match="toy.warmstart_model warm-starts toy.tiny_model"):
        load_eval_config({"toy": {"warmstart_model": "m", "tiny_model": None}})
    with pytest.raises(ConfigError, match="toy.primed_model is now toy.warmstart_model"):
        load_eval_config({"toy": {"primed_model": "m"}})
    with pytest.raises(ConfigError, match="unknown key toy.tiny_modle"):
        load_eval_config({"toy": {"tiny_modle": "m"}})


# --------------------------------------------------------------------------- run.py helpers


def test_needed_prepare(composed):
    from omegaconf import OmegaConf

    def with_(**changes):
        data = OmegaConf.to_container(composed)
        data.pop("hydra")
        for dotted, value in changes.items():
            section, key = dotted.split("__")
            data[section][key] = value
        return load_eval_config(data)

    default = run_mod.needed_prepare(load_eval_config(composed))
    assert default.synthetic_data == "data/synthetic"
    assert default.tiny_model == "models/tiny_qwen2_audio"
    assert default.warmstart_model == "models/tiny_qwen2_audio_primed"
    assert default.tiny_judge is None

    elsewhere = run_mod.needed_prepare(with_(model__path="/models/Qwen2-Audio-7B-Instruct",
                                             benchmark__name="mmau", benchmark__meta="/data/mmau.json"))
    assert (elsewhere.synthetic_data, elsewhere.tiny_model, elsewhere.warmstart_model) == (None, None, None)

    base = run_mod.needed_prepare(with_(model__path="models/tiny_qwen2_audio"))
    assert (base.synthetic_data, base.tiny_model, base.warmstart_model) == (
        "data/synthetic", "models/tiny_qwen2_audio", None)

    data_only = run_mod.needed_prepare(with_(model__path="/models/other"))
    assert (data_only.synthetic_data, data_only.tiny_model, data_only.warmstart_model) == (
        "data/synthetic", None, None)


def test_model_label(tmp_path, merged, verl_run):
    assert run_mod.model_label(load_eval_config({"model": {"label": "mine"}}), merged) == "mine"
    cfg = load_eval_config({})
    assert run_mod.model_label(cfg, ResolvedModel(str(tmp_path / "Qwen2-Audio-7B"), "hf")) == "Qwen2-Audio-7B"
    assert run_mod.model_label(cfg, merged) == f"{verl_run.name}-step2" == "my_run-step2"
    actor = tmp_path / "run7" / "global_step_7" / "actor"
    no_step = ResolvedModel(str(actor / "merged_hf"), "verl", str(actor), None)
    assert run_mod.model_label(cfg, no_step) == "run7"


def test_default_output_dir():
    cfg = load_eval_config({})
    assert run_mod.default_output_dir(cfg, "tiny") == Path("runs/eval/tiny/synthetic-adaptive")
    cfg = load_eval_config({"benchmark": {"name": "mmau", "version": "v05.15.25"}, "prompt_mode": "think"})
    assert run_mod.default_output_dir(cfg, "m") == Path("runs/eval/m/mmau-v05.15.25-think")


def test_read_records(tmp_path):
    items = [_item(0, "Q0?"), _item(1, "Q1?")]
    assert run_mod.read_records(tmp_path / "absent.jsonl") == ({}, 0)
    first = make_record(items[0], None, prompt_mode="think", error="generation_error: boom")
    second = make_record(items[0], "<think>barking</think><answer>dog</answer>", prompt_mode="think",
                         n_tokens=9, finish_reason="stop")
    other = make_record(items[1], "<answer>cat</answer>", prompt_mode="think", n_tokens=4,
                        finish_reason="stop")
    lines = [json.dumps(r.to_json()) for r in (first, other, second)]
    half = lines[-1][: len(lines[-1]) // 2]
    path = tmp_path / "records.jsonl"
    path.write_text("\n".join([*lines, "", half]), encoding="utf-8")
    records, bad = run_mod.read_records(path)
    assert bad == 1
    assert records == {"item-0": second, "item-1": other}
    assert not records["item-0"].missing and records["item-0"].correct


def test_check_resumable(tmp_path, tiny_dir):
    resolved = ResolvedModel(str(tiny_dir), "hf")
    cfg = load_eval_config({})
    current = run_mod.fingerprint(cfg, resolved)
    out = tmp_path / "run"
    out.mkdir()
    run_mod._check_resumable(out, current, True)  # a new directory
    run_mod._check_resumable(out, current, False)

    (out / run_mod.RECORDS_FILE).write_text("")
    with pytest.raises(ConfigError, match="no run.json"):
        run_mod._check_resumable(out, current, True)

    (out / run_mod.RUN_FILE).write_text(json.dumps({"run": {}, "fingerprint": current}))
    run_mod._check_resumable(out, current, True)
    # the batch size does not change what is generated: resuming with another one is fine
    bigger = run_mod.fingerprint(load_eval_config({"generation": {"batch_size": 2}}), resolved)
    run_mod._check_resumable(out, bigger, True)
    with pytest.raises(ConfigError, match="resume=false"):
        run_mod._check_resumable(out, current, False)

    other = run_mod.fingerprint(
        load_eval_config({"prompt_mode": "think", "generation": {"temperature": 0.5}}), resolved)
    with pytest.raises(ConfigError, match=r"differs in: generation, prompt_mode\)"):
        run_mod._check_resumable(out, other, True)
