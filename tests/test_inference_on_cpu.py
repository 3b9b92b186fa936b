"""``audio_thinker.inference``, the one home of generation, on CPU.

Pure helpers (options, ids -> text, batching, backend choice, templates, vLLM engine and sampling
arguments; vLLM itself is not installed here), the package's layering and light import, and the
transformers core on tiny random models: a batch gives what each prompt gives alone (left
padding), stop strings and deadlines end judge continuations, seeded sampling reproduces and
leaves the global RNG alone. :class:`HFGenerator` on evaluation prompts is tested in
``test_eval_backends_on_cpu.py``.
"""

from __future__ import annotations

import ast
import asyncio
import importlib.util
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from audio_thinker.inference import vllm as vg
from audio_thinker.inference.backend import BACKENDS, choose_backend, release, resolve_device_and_dtype
from audio_thinker.inference.batching import batches, generate_isolating
from audio_thinker.inference.continuations import cut_at_stop, generate_continuations
from audio_thinker.inference.hf import HFGenerator, HFTextGenerator, generate_kwargs, left_pad
from audio_thinker.inference.options import GenerationOptions
from audio_thinker.inference.outputs import Generated, PromptInput, cut_response, eos_token_ids
from audio_thinker.inference.templates import render_text_prompt

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "audio_thinker" / "inference"
SR = 16_000


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_dir(tiny_model_dir) -> Path:

    return tiny_model_dir("qwen2_audio")


@pytest.fixture(scope="module")
def judge_dir(tiny_judge_dir) -> str:

    return str(tiny_judge_dir)


@pytest.fixture(scope="module")
def judge(judge_dir):
    from audio_thinker.inference.loading import load_causal_lm

    return load_causal_lm(judge_dir)


def _sine(freq: float) -> np.ndarray:
    t = np.arange(SR, dtype=np.float64) / SR
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


# ------------------------------------------------------------------------------ the package itself

#: what inference may import besides the standard library (the layering rule)
ALLOWED_ROOTS = {"numpy", "torch", "transformers", "vllm"}
ALLOWED_PROJECT = ("audio_thinker.inference", "audio_thinker.prompts", "audio_thinker.rewards",
                   "audio_thinker.data")


def test_inference_imports_only_lower_layers():
    """Never scoring, evaluate, verl_ext, backends, toy, reward_workers, ray or verl."""
    bad = []
    for path in sorted(PACKAGE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            for name in names:
                root = name.split(".")[0]
                if root == "audio_thinker":
                    ok = name.startswith(ALLOWED_PROJECT)
                else:
                    ok = root in ALLOWED_ROOTS or root in sys.stdlib_module_names or root == "__future__"
                if not ok:
                    bad.append(f"{path.name}: {name}")
    assert not bad, bad


def test_every_module_imports_no_heavy_dependency():
    # vllm_omni is the model class vLLM itself imports by name inside its processes (it subclasses vLLM's)
    modules = sorted(f"audio_thinker.inference.{p.stem}" for p in PACKAGE.glob("*.py")
                     if p.stem not in ("__init__", "vllm_omni"))
    assert "audio_thinker.inference.vllm" in modules
    code = (f"import sys, {', '.join(modules)}\n"
            "print(sorted(m for m in ('vllm', 'torch', 'ray', 'verl') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]"


# ------------------------------------------------------------------------------------ pure helpers


@pytest.mark.parametrize("kwargs", [
    {"max_new_tokens": 0}, {"temperature": -0.5}, {"top_p": 0.0}, {"top_p": 1.5}, {"batch_size": 0},
])
def test_generation_options_rejects_bad_values(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        GenerationOptions(**kwargs)


def test_generation_options_defaults_and_greedy():
    options = GenerationOptions()
    assert (options.max_new_tokens, options.temperature, options.top_p, options.top_k) == (512, 0.0, 1.0, -1)
    assert options.greedy
    assert not GenerationOptions(temperature=0.7).greedy


def test_cut_response():
    assert cut_response([5, 6, 2, 7, 2], {2}, 0) == ([5, 6], "stop")
    assert cut_response([2, 5], {2, 3}, 0) == ([], "stop")
    assert cut_response([5, 3, 2], {2, 3}, None) == ([5], "stop")
    assert cut_response([5, 6, 7], {2}, 0) == ([5, 6, 7], "length")
    # trailing padding is dropped when pad is not a stop id; a pad that is a stop id stops
    assert cut_response([5, 6, 0, 0], {2}, 0) == ([5, 6], "length")
    assert cut_response([5, 0, 6], {2}, 0) == ([5, 0, 6], "length")
    assert cut_response([5, 0, 6], {0, 2}, 0) == ([5], "stop")
    assert cut_response(np.array([4, 2]), {2}, None) == ([4], "stop")


def test_eos_token_ids():
    model = SimpleNamespace(generation_config=SimpleNamespace(eos_token_id=[7, 9]),
                            config=SimpleNamespace(eos_token_id=3))
    tokenizer = SimpleNamespace(eos_token_id=9)
    assert eos_token_ids(model, tokenizer) == {3, 7, 9}
    assert eos_token_ids(None, tokenizer) == {9}
    assert eos_token_ids(None, SimpleNamespace(eos_token_id=None)) == set()
    assert eos_token_ids(SimpleNamespace(generation_config=None, config=None), SimpleNamespace()) == set()


def test_batches():
    assert [list(b) for b in batches(list(range(7)), 3)] == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(batches([], 4)) == []
    with pytest.raises(ValueError, match="batch size"):
        list(batches([1], 0))


def test_generate_isolating_retries_only_a_failing_batch():
    calls: list[list[str]] = []

    def fails_on_bad(batch):
        calls.append(list(batch))
        if "bad" in batch:
            raise RuntimeError("boom")
        return [Generated(p, 1, "stop") for p in batch]

    assert generate_isolating(fails_on_bad, []) == []
    assert [r.text for r in generate_isolating(fails_on_bad, ["a", "b"])] == ["a", "b"]
    results = generate_isolating(fails_on_bad, ["a", "bad", "c"])
    assert [r.text for r in results] == ["a", None, "c"]
    assert results[1].error == "generation_error: RuntimeError: boom" and results[1].n_tokens == 0
    assert calls[1:] == [["a", "bad", "c"], ["a"], ["bad"], ["c"]]


def test_generate_kwargs_and_left_pad():
    assert generate_kwargs(GenerationOptions(temperature=0.5, top_p=0.9, top_k=7)) == {
        "do_sample": True, "temperature": 0.5, "top_p": 0.9, "top_k": 7}
    assert generate_kwargs(GenerationOptions(temperature=1.0, top_k=-1))["top_k"] == 0  # vLLM's "off"
    assert generate_kwargs(GenerationOptions())["do_sample"] is False
    batch = left_pad([[1, 2], [3, 4, 5], []], pad_id=9)
    assert batch["input_ids"].tolist() == [[9, 1, 2], [3, 4, 5], [9, 9, 9]]
    assert batch["attention_mask"].tolist() == [[0, 1, 1], [1, 1, 1], [0, 0, 0]]


def test_render_text_prompt_uses_the_chat_template_without_qwen3_thinking():
    class Templated:
        chat_template = "{{ messages }}"

        def apply_chat_template(self, messages, **kwargs):
            self.kwargs = kwargs
            return f"<|im_start|>user\n{messages[0]['content']}<|im_end|>\n<|im_start|>assistant\n"

    tok = Templated()
    assert render_text_prompt(tok, "Hi") == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    assert tok.kwargs == {"tokenize": False, "add_generation_prompt": True, "enable_thinking": False}


def test_cut_at_stop():
    assert cut_at_stop(" Yes\n### Review", ["\n"]) == (" Yes", True)
    assert cut_at_stop("\n\n 0.7\nmore", ["\n"]) == ("\n\n 0.7", True)  # leading newlines kept going
    assert cut_at_stop("  ", ["\n"]) == ("  ", False)
    assert cut_at_stop("a;b\nc", ["\n", ";"]) == ("a", True)  # the first stop string wins
    assert cut_at_stop("abc", []) == ("abc", False)


# ------------------------------------------------------------------------------------------ backend


def test_choose_backend(monkeypatch):
    assert choose_backend("hf") == "hf"
    assert choose_backend("vllm") == "vllm"
    real_find_spec = importlib.util.find_spec

    def find_spec(available: bool):
        def fake(name, *args, **kwargs):
            if name == "vllm":
                return object() if available else None
            return real_find_spec(name, *args, **kwargs)
        return fake

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(importlib.util, "find_spec", find_spec(True))
    assert choose_backend("auto") == "hf"  # CPU-only: vLLM is never chosen
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert choose_backend("auto") == "vllm"
    monkeypatch.setattr(importlib.util, "find_spec", find_spec(False))
    assert choose_backend("auto") == "hf"
    with pytest.raises(ValueError, match="auto, hf, vllm"):
        choose_backend("tpu")
    assert BACKENDS == ("auto", "hf", "vllm")


def test_choose_backend_here():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert choose_backend("auto") == "hf"
    assert resolve_device_and_dtype(None, None) == ("cpu", "float32")
    assert resolve_device_and_dtype("cuda", "float16") == ("cuda", "float16")


def test_release_closes():
    closed = []
    release(SimpleNamespace(close=lambda: closed.append(True)))
    release(None)
    assert closed == [True]


# ------------------------------------------------------------------------------------- vLLM helpers


def test_engine_kwargs():
    options = vg.VLLMOptions(tensor_parallel_size=2, gpu_memory_utilization=0.5, max_model_len=4096,
                             max_num_seqs=16, dtype="float16", enforce_eager=True)
    kwargs = vg.engine_kwargs("/models/m", options, seed=5)
    assert kwargs == {
        "model": "/models/m", "tokenizer": "/models/m", "tensor_parallel_size": 2,
        "gpu_memory_utilization": 0.5, "max_model_len": 4096, "max_num_seqs": 16, "dtype": "float16",
        "enforce_eager": True, "limit_mm_per_prompt": {"audio": 1, "image": 0, "video": 0}, "seed": 5,
    }
    assert vg.engine_kwargs("/m", vg.VLLMOptions())["limit_mm_per_prompt"] == {"audio": 1, "image": 0, "video": 0}
    text = vg.engine_kwargs("/m", vg.VLLMOptions(), audio=False)
    assert "limit_mm_per_prompt" not in text and text["max_num_seqs"] == 64


@pytest.mark.parametrize("kwargs, key", [
    ({"tensor_parallel_size": 0}, "tensor_parallel_size"),
    ({"gpu_memory_utilization": 0.0}, "gpu_memory_utilization"),
    ({"gpu_memory_utilization": 1.2}, "gpu_memory_utilization"),
])
def test_engine_kwargs_rejects_bad_values(kwargs, key):
    with pytest.raises(ValueError, match=key):
        vg.engine_kwargs("/m", vg.VLLMOptions(**kwargs))


def test_async_engine_kwargs():
    one = vg.async_engine_kwargs("m")
    assert one == {"model": "m", "tensor_parallel_size": 1, "gpu_memory_utilization": 0.9,
                   "dtype": "auto", "seed": 0, "enforce_eager": False, "enable_prefix_caching": True,
                   "disable_log_stats": True}
    two = vg.async_engine_kwargs("m", tensor_parallel_size=2, max_model_len=4096,
                                 extra={"quantization": "fp8"})
    assert two["distributed_executor_backend"] == "mp" and two["max_model_len"] == 4096
    assert two["quantization"] == "fp8"
    with pytest.raises(ValueError, match="max_model_len"):
        vg.async_engine_kwargs("m", max_model_len=0)


def test_sampling_kwargs_greedy():
    kwargs = vg.sampling_kwargs(GenerationOptions(max_new_tokens=64, top_p=0.5, top_k=7, seed=3), [9, 2])
    assert kwargs == {"n": 1, "max_tokens": 64, "temperature": 0.0, "top_p": 1.0, "top_k": -1,
                      "stop_token_ids": [2, 9], "skip_special_tokens": False}
    assert "seed" not in kwargs


def test_sampling_kwargs_sampled():
    options = GenerationOptions(max_new_tokens=8, temperature=0.8, top_p=0.9, top_k=20, seed=11)
    kwargs = vg.sampling_kwargs(options, {7, 2, 5})
    assert (kwargs["temperature"], kwargs["top_p"], kwargs["top_k"], kwargs["seed"]) == (0.8, 0.9, 20, 11)
    assert kwargs["stop_token_ids"] == [2, 5, 7] and kwargs["max_tokens"] == 8
    assert vg.sampling_kwargs(GenerationOptions(temperature=1.0, top_k=0), [2])["top_k"] == -1


def test_sampling_kwargs_with_stop_strings_unseeded():
    kwargs = vg.sampling_kwargs(GenerationOptions(max_new_tokens=4, temperature=0.5), stop=["\n"],
                                skip_special_tokens=True, seeded=False)
    assert kwargs["stop"] == ["\n"] and kwargs["skip_special_tokens"] is True
    assert "seed" not in kwargs and "stop_token_ids" not in kwargs


def test_request():
    clip = _sine(330)
    req = vg.request("<|AUDIO|>question", [clip], SR)
    assert req["prompt"] == "<|AUDIO|>question"
    (audio,) = req["multi_modal_data"]["audio"]
    assert audio[0] is clip and audio[1] == SR
    assert vg.request("text", [], SR) == {"prompt": "text", "multi_modal_data": {"audio": []}}


def test_finish():
    decode = lambda ids: ",".join(map(str, ids))
    assert vg.finish([4, 5, 2, 9], {2}, 0, decode, 8) == Generated("4,5", 4, "stop")
    assert vg.finish([4, 5, 6], {2}, 0, decode, 3) == Generated("4,5,6", 3, "length")
    assert vg.finish([4, 5], {2}, 0, decode, 8) == Generated("4,5", 2, "stop")  # ended before max_tokens
    assert vg.finish([4, 2], {2}, 0, decode, 2) == Generated("4", 2, "stop")


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")
def test_build_without_vllm_says_how_to_install(tiny_dir, judge_dir):
    with pytest.raises(vg.VLLMNotInstalledError, match=r"pip install -e \.\[gpu\]") as info:
        vg.build(str(tiny_dir), GenerationOptions(), {"tensor_parallel_size": 1})
    assert isinstance(info.value, ImportError)
    with pytest.raises(vg.VLLMNotInstalledError, match="backend=hf"):
        vg.VLLMTextGenerator(judge_dir, GenerationOptions(), vg.VLLMOptions())
    with pytest.raises(vg.VLLMNotInstalledError, match="my hint"):
        vg.build_async_engine({"model": "m"}, hint="my hint")


def test_import_vllm_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # `import vllm` now raises ImportError
    with pytest.raises(vg.VLLMNotInstalledError, match="use the judge on CPU") as info:
        vg.import_vllm("use the judge on CPU")
    assert isinstance(info.value, ImportError)


def test_complete_async_keeps_order_and_cancels_siblings():
    class Engine:
        def __init__(self):
            self.cancelled = []

        async def generate(self, prompt, sampling_params, request_id):
            try:
                if prompt == "slow":
                    await asyncio.sleep(30)
                if prompt == "boom":
                    raise RuntimeError("boom")
                yield SimpleNamespace(outputs=[SimpleNamespace(text=f"{prompt}!")])
            except asyncio.CancelledError:
                self.cancelled.append(request_id)
                raise

    engine = Engine()
    assert asyncio.run(vg.complete_async(engine, ["a", "b"], None, ["r0", "r1"])) == ["a!", "b!"]
    with pytest.raises(RuntimeError, match="boom"):
        asyncio.run(vg.complete_async(engine, ["slow", "boom"], None, ["r2", "r3"]))
    assert engine.cancelled == ["r2"]


# ------------------------------------------------------------- transformers on tiny random models


def test_continuations_batch_equals_singles_and_stop(judge):
    model, tokenizer = judge
    params = SimpleNamespace(max_new_tokens=12, temperature=0.0, stop=("\n",))
    prompts = ["Review 1: the answer is", "A much longer prompt about tones, beeps and birds. Verdict:", "Q"]
    together = generate_continuations(model, tokenizer, prompts, params)
    assert together == [generate_continuations(model, tokenizer, [p], params)[0] for p in prompts]
    for text in together:
        assert "\n" not in text.lstrip("\n")  # cut at the first stop after content
    unstopped = SimpleNamespace(max_new_tokens=12, temperature=0.0, stop=())
    free = generate_continuations(model, tokenizer, prompts, unstopped)
    assert all(f.startswith(t) for f, t in zip(free, together))
    assert generate_continuations(model, tokenizer, [], params) == []


def test_continuations_deadline(judge):
    model, tokenizer = judge
    params = SimpleNamespace(max_new_tokens=64, temperature=0.0, stop=())
    with pytest.raises(TimeoutError, match="exceeded"):
        generate_continuations(model, tokenizer, ["slow"], params, timeout_s=0.0)


def test_text_generator_batches_and_seeds(judge_dir):
    prompts = ["Caption: a dog barks. Question: which animal?", "short", "x " * 20]
    greedy = HFTextGenerator.from_pretrained(judge_dir, GenerationOptions(max_new_tokens=10))
    try:
        assert greedy.tokenizer.padding_side == "left"
        together = greedy.generate(prompts)
        assert together == [greedy.generate([p])[0] for p in prompts]
        assert all(r.error is None and 0 < r.n_tokens <= 10 for r in together)
    finally:
        greedy.close()

    sampled = HFTextGenerator.from_pretrained(judge_dir, GenerationOptions(max_new_tokens=10, temperature=1.0,
                                                                          seed=7))
    try:
        state = torch.random.get_rng_state()
        first, second = sampled.generate(prompts), sampled.generate(prompts)
        assert torch.equal(state, torch.random.get_rng_state())  # the global RNG is left alone
        assert first != second  # each call draws from its own seed
        sampled._calls = 0
        assert sampled.generate(prompts) == first
    finally:
        sampled.close()


def test_generator_around_a_loaded_model_gives_the_processor_back(tiny_dir):
    from audio_thinker.inference.loading import load_audio_model, load_audio_processor

    processor = load_audio_processor(str(tiny_dir))
    processor.tokenizer.padding_side = "right"
    model = load_audio_model(str(tiny_dir))
    generator = HFGenerator(model, processor, GenerationOptions(max_new_tokens=4, temperature=1.0, seed=1))
    messages = [{"role": "user", "content": [{"type": "audio", "audio": _sine(440)},
                                             {"type": "text", "text": "What?"}]}]
    prompt = PromptInput("p", messages, [_sine(440)])
    state = torch.random.get_rng_state()
    (result,) = generator.generate([prompt])
    assert result.error is None and torch.equal(state, torch.random.get_rng_state())
    assert processor.tokenizer.padding_side == "left"
    generator.close()
    assert processor.tokenizer.padding_side == "right" and generator.model is None


def test_loading_rejects_what_it_cannot_generate_with(tmp_path):
    from audio_thinker.inference.loading import audio_model_type

    (tmp_path / "config.json").write_text('{"model_type": "qwen2_5_omni"}')
    with pytest.raises(ValueError, match="audio_thinker.models.omni_thinker"):
        audio_model_type(str(tmp_path))
    with pytest.raises(ValueError, match="not an audio checkpoint"):
        audio_model_type(str(tmp_path / "absent"))
