"""The transformers (``hf``) rollout backend verl's agent loop calls like its vLLM server.

Most tests drive the generation core and the server object directly (no Ray): batched equals
one-at-a-time, EOS / stop ids / max_tokens, log-probs equal a plain transformers forward of
prompt+response (with audio, both architectures), audio changes the output, weight updates change
it and the log-probs follow the new weights, seeds, temperature / top-k / top-p. One test starts
the replica's server as a Ray actor and syncs weights through the in-worker adapter.
"""

import asyncio
import math
import os

import numpy as np
import pytest
import torch

SR = 16_000
EOS = "<|im_end|>"


def clip(kind: str, seconds: float = 2.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    if kind == "tone":
        return (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    return (0.3 * np.random.default_rng(0).standard_normal(t.size)).astype(np.float32)


# --------------------------------------------------------------------------- fixtures
class Tiny:
    """A tiny model directory plus the pieces the tests need."""

    def __init__(self, arch, path):
        import verl  # noqa: F401  (loads the project's plugin)
        from verl.workers.config import HFModelConfig, RolloutConfig

        from audio_thinker.backends.cpu.server import HFRolloutServerActor

        self.arch, self.path = arch, path
        self.rollout_config = RolloutConfig(
            name="hf", prompt_length=512, response_length=12, tensor_model_parallel_size=1, seed=7,
        )
        self.model_config = HFModelConfig(path=path, override_config={"attn_implementation": "eager"})
        self.server = HFRolloutServerActor(self.rollout_config, self.model_config)
        self.tokenizer = self.model_config.tokenizer
        self.processor = self.model_config.processor
        self.eos_id = self.tokenizer.convert_tokens_to_ids(EOS)
        # the reference: the model as verl's actor loads it (all-eager), untouched by the server
        from verl.utils.model import get_hf_auto_model_class

        self.reference = get_hf_auto_model_class(self.model_config.hf_config).from_pretrained(
            path, config=self.model_config.hf_config, attn_implementation="eager", dtype=torch.float32
        ).eval()

    def audio_prompt(self, audio, question="Which half is louder?"):
        """Prompt ids with expanded placeholders (what the agent loop sends) + the processor's features."""
        content = [{"type": "audio", "audio": "clip"}, {"type": "text", "text": question}]
        messages = [{"role": "user", "content": content}]
        text = self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        inputs = self.processor(text=[text], audio=[audio], sampling_rate=SR, return_tensors="pt")
        features = {k: inputs[k] for k in ("input_features", "feature_attention_mask")}
        return [int(t) for t in inputs["input_ids"][0]], features

    def text_prompt(self, text="What is the loudest sound?"):
        messages = [{"role": "user", "content": text}]
        ids = self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=True, return_dict=False
        )
        return [int(t) for t in ids]

    def plain_logits(self, prompt_ids, response_ids, features=None, model=None):
        """Logits predicting each response token: one plain forward, no padding, no cache."""
        model = model or self.reference
        ids = torch.tensor(prompt_ids + response_ids)[None]
        with torch.no_grad():
            out = model(input_ids=ids, attention_mask=torch.ones_like(ids), **(features or {}))
        logits = out.logits[0].float()
        return logits[len(prompt_ids) - 1: -1]

    def plain_logprobs(self, prompt_ids, response_ids, features=None, model=None, temperature=1.0):
        logits = self.plain_logits(prompt_ids, response_ids, features, model) / temperature
        return torch.log_softmax(logits, -1).gather(-1, torch.tensor(response_ids)[:, None]).squeeze(-1)


@pytest.fixture(scope="module")
def tiny_dirs(tiny_model_dir):
    archs = ("qwen2_audio", "qwen2_5_omni_thinker")
    return {arch: str(tiny_model_dir(arch)) for arch in archs}


@pytest.fixture(scope="module")
def qa(tiny_dirs):
    return Tiny("qwen2_audio", tiny_dirs["qwen2_audio"])


def spec(**kw):
    from audio_thinker.backends.cpu.sampling import SamplingSpec

    kw.setdefault("max_tokens", 12)
    kw.setdefault("temperature", 0.0)
    return SamplingSpec(**kw)


def req(prompt_ids, features=None, **kw):
    from audio_thinker.backends.cpu.generator import GenerationRequest

    return GenerationRequest(prompt_ids=list(prompt_ids), sampling=spec(**kw), mm_inputs=features)


# ------------------------------------------------------------------------ pure pieces
def test_parse_sampling_params_defaults_clamping_and_refusals():
    from audio_thinker.backends.cpu.sampling import parse_sampling_params

    s = parse_sampling_params(
        {"temperature": 0.7, "top_p": 0.9, "top_k": -1, "repetition_penalty": 1.0, "logprobs": True},
        default_max_tokens=48, max_possible_tokens=30,
    )
    assert (s.max_tokens, s.temperature, s.top_p, s.top_k, s.logprobs) == (30, 0.7, 0.9, -1, True)
    assert not s.greedy
    s = parse_sampling_params({"max_new_tokens": 5, "temperature": 0, "top_k": 0, "logprobs": 0},
                              default_max_tokens=48)
    # vLLM: logprobs=0 -> the sampled token's log-prob
    assert (s.max_tokens, s.greedy, s.top_k, s.logprobs) == (5, True, -1, True)
    s = parse_sampling_params({"logprobs": None}, default_max_tokens=4,
                              defaults={"ignore_eos": True, "seed": 3})
    assert (s.logprobs, s.ignore_eos, s.seed) == (False, True, 3)
    assert parse_sampling_params({"max_tokens": 0}, default_max_tokens=4).max_tokens == 1
    refused = ({"n": 2}, {"stop": ["</answer>"]}, {"presence_penalty": 0.5}, {"top_p": 0.0},
               {"temperature": -1})
    for bad in refused:
        with pytest.raises(ValueError):
            parse_sampling_params(bad, default_max_tokens=4)
    neutral = {"stop": [], "skip_special_tokens": False}
    assert parse_sampling_params(neutral, default_max_tokens=4).max_tokens == 4


def test_top_k_top_p_masks_match_a_direct_computation():
    from audio_thinker.backends.cpu.sampling import apply_top_k_top_p

    logits = torch.log(torch.tensor([[0.5, 0.2, 0.15, 0.1, 0.05]] * 4))
    out = apply_top_k_top_p(logits, torch.tensor([-1, 2, -1, 3]), torch.tensor([1.0, 1.0, 0.6, 0.7]))
    kept = torch.isfinite(out)
    assert kept.tolist() == [
        [True] * 5,                              # nothing
        [True, True, False, False, False],       # top-2
        [True, True, False, False, False],       # 0.5 < 0.6 <= 0.5 + 0.2
        [True, True, False, False, False],       # top-3 renormalised (.5/.85, .2/.85 = 0.82 >= 0.7)
    ]
    torch.testing.assert_close(out[kept], logits[kept])
    # the most likely token survives any top_p
    assert torch.isfinite(apply_top_k_top_p(logits[:1], torch.tensor([-1]), torch.tensor([1e-9]))).sum() == 1


def test_request_batcher_batches_concurrent_requests_and_isolates_failures():
    from concurrent.futures import ThreadPoolExecutor

    from audio_thinker.backends.cpu.batcher import RequestBatcher

    calls = []

    def run(batch):
        calls.append(list(batch))
        if "bad" in batch:
            raise ValueError("bad request")
        return [x.upper() for x in batch]

    async def main():
        batcher = RequestBatcher(run, executor=ThreadPoolExecutor(1), max_batch_size=8, max_wait_s=0.05)
        ok = await asyncio.gather(*[batcher.submit(f"r{i}") for i in range(6)])
        mixed = await asyncio.gather(batcher.submit("a"), batcher.submit("bad"), batcher.submit("b"),
                                     return_exceptions=True)
        await batcher.close()
        return ok, mixed, batcher.batch_sizes

    ok, mixed, sizes = asyncio.run(main())
    assert ok == [f"R{i}" for i in range(6)]
    assert sizes[0] == 6, "concurrent requests were not batched"
    assert mixed[0] == "A" and mixed[2] == "B" and isinstance(mixed[1], ValueError)


# ------------------------------------------------------------------ generation core
def test_batched_generation_equals_one_at_a_time(qa):
    g = qa.server.generator
    tone_ids, tone_f = qa.audio_prompt(clip("tone"))
    noise_ids, noise_f = qa.audio_prompt(clip("noise"), question="Is it noise?")
    text_ids = qa.text_prompt()
    requests = [
        req(tone_ids, tone_f),
        req(text_ids, max_tokens=5),
        req(noise_ids, noise_f, max_tokens=9),
        req(tone_ids, tone_f, temperature=1.0, seed=11),
        req(text_ids, temperature=0.8, top_p=0.9, top_k=50, seed=5),
    ]
    assert len({len(r.prompt_ids) for r in requests}) > 1, "different prompt lengths exercise left padding"
    batched = g.generate(requests)
    for r, b in zip(requests, batched):
        alone = g.generate([r])[0]
        assert b.token_ids == alone.token_ids
        torch.testing.assert_close(torch.tensor(b.log_probs), torch.tensor(alone.log_probs), rtol=0,
                                   atol=1e-5)
        assert b.finish_reason == alone.finish_reason
    assert [len(b.token_ids) for b in batched] == [12, 5, 9, 12, 12]  # max_tokens per request
    assert all(b.finish_reason == "length" for b in batched)


def test_stops_at_eos_and_stop_ids_honours_ignore_eos_and_min_tokens(qa):
    from audio_thinker.backends.cpu.generator import BatchedGenerator

    ids = qa.text_prompt()
    free = qa.server.generator.generate([req(ids, max_tokens=12)])[0].token_ids
    stop_at = free[3]
    k = free.index(stop_at)  # first occurrence
    # a generator whose EOS is the token greedy decoding emits at step k
    g = BatchedGenerator(qa.server.model, eos_token_ids=[stop_at], pad_token_id=qa.tokenizer.pad_token_id)
    out = g.generate([req(ids), req(ids, ignore_eos=True), req(ids, min_tokens=k + 2, ignore_eos=False)])
    assert out[0].token_ids == free[: k + 1] and out[0].finish_reason == "stop"  # EOS included, like vLLM
    assert out[1].token_ids == free and out[1].finish_reason == "length"
    assert len(out[2].token_ids) >= k + 2 and stop_at not in out[2].token_ids[: k + 1]
    # stop_token_ids stop a request even with ignore_eos
    out = qa.server.generator.generate([req(ids, stop_token_ids=(stop_at,), ignore_eos=True)])[0]
    assert out.token_ids == free[: k + 1] and out.finish_reason == "stop"
    # the server's EOS set is the tokenizer's plus generation_config's (im_end and endoftext)
    endoftext = qa.tokenizer.convert_tokens_to_ids("<|endoftext|>")
    assert {qa.eos_id, endoftext} <= qa.server.generator.eos_token_ids


@pytest.mark.parametrize("arch", ["qwen2_audio", "qwen2_5_omni_thinker"])
def test_logprobs_equal_a_plain_forward_and_depend_on_audio(arch, qa, tiny_dirs):
    t = qa if arch == "qwen2_audio" else Tiny(arch, tiny_dirs[arch])
    g = t.server.generator
    tone_ids, tone_f = t.audio_prompt(clip("tone"))
    noise_ids, noise_f = t.audio_prompt(clip("noise"))
    assert tone_ids == noise_ids  # same placeholders: only the audio differs
    out = g.generate([
        req(tone_ids, tone_f), req(noise_ids, noise_f), req(tone_ids, tone_f, temperature=1.0, seed=1),
    ])
    for r, o in zip([tone_f, noise_f, tone_f], out):
        plain = t.plain_logprobs(tone_ids, o.token_ids, r)
        torch.testing.assert_close(torch.tensor(o.log_probs), plain, rtol=0, atol=1e-4)
    # greedy tokens are the plain forward's argmax
    assert out[0].token_ids == t.plain_logits(tone_ids, out[0].token_ids, tone_f).argmax(-1).tolist()
    # the audio reaches the model: same prompt ids, different audio -> different log-probs
    swapped = g.generate([req(tone_ids, noise_f, max_tokens=len(out[0].token_ids), temperature=0.0)])[0]
    other = t.plain_logprobs(tone_ids, out[0].token_ids, noise_f)
    assert (other - torch.tensor(out[0].log_probs)).abs().max() > 1e-4
    assert swapped.token_ids != out[0].token_ids or not torch.allclose(
        torch.tensor(swapped.log_probs), torch.tensor(out[0].log_probs), atol=1e-4)


def test_sampling_with_a_seed_is_reproducible_and_independent_of_the_batch(qa):
    g = qa.server.generator
    ids, f = qa.audio_prompt(clip("tone"))
    alone = g.generate([req(ids, f, temperature=1.0, seed=123)])[0]
    in_batch = g.generate([req(ids, f, temperature=1.0, seed=9), req(ids, f, temperature=1.0, seed=123)])
    assert in_batch[1].token_ids == alone.token_ids
    assert in_batch[0].token_ids != alone.token_ids  # another seed, another sample
    # unseeded rows draw from the server's generator: different samples for identical requests
    unseeded = g.generate([req(ids, f, temperature=1.0) for _ in range(2)])
    assert unseeded[0].token_ids != unseeded[1].token_ids


def test_temperature_top_k_top_p_are_honoured_in_tokens_and_logprobs(qa):
    g = qa.server.generator
    ids = qa.text_prompt()
    greedy = g.generate([req(ids)])[0]
    # top_k=1 and a tiny top_p leave only the argmax: sampling equals greedy, log-prob 0
    for kw in ({"top_k": 1}, {"top_p": 1e-6}):
        out = g.generate([req(ids, temperature=1.0, seed=3, **kw)])[0]
        assert out.token_ids == greedy.token_ids
        assert max(abs(x) for x in out.log_probs) < 1e-6
    # temperatures below vLLM's epsilon are greedy
    assert g.generate([req(ids, temperature=1e-6, seed=3)])[0].token_ids == greedy.token_ids
    # processed log-probs are those of the distribution sampled from: temperature then top-p
    temperature, top_p = 0.7, 0.3
    out = g.generate([req(ids, temperature=temperature, top_p=top_p, seed=4)])[0]
    logits = qa.plain_logits(ids, out.token_ids) / temperature
    for step, (token, logprob) in enumerate(zip(out.token_ids, out.log_probs)):
        probs = logits[step].softmax(-1)
        sorted_probs, order = probs.sort(descending=True)
        keep = order[(sorted_probs.cumsum(0) - sorted_probs) < top_p]
        assert token in keep.tolist()
        expected = math.log(probs[token] / probs[keep].sum())
        assert abs(logprob - expected) < 1e-4
    # raw_logprobs ignore the processing (vLLM's logprobs_mode)
    from audio_thinker.backends.cpu.generator import BatchedGenerator

    raw = BatchedGenerator(qa.server.model, eos_token_ids=[qa.eos_id], logprobs_mode="raw_logprobs")
    out = raw.generate([req(ids, temperature=temperature, top_p=top_p, seed=4)])[0]
    plain = qa.plain_logprobs(ids, out.token_ids)
    torch.testing.assert_close(torch.tensor(out.log_probs), plain, rtol=0, atol=1e-4)


# ------------------------------------------------------------------------ the server
def test_server_generate_batches_concurrent_audio_requests(qa):
    from verl.workers.rollout.replica import TokenOutput

    server = qa.server
    ids, features = qa.audio_prompt(clip("tone"))
    params = {"temperature": 0.0, "top_p": 1.0, "top_k": -1, "repetition_penalty": 1.0, "logprobs": True}

    async def main():
        before = len(server.batcher.batch_sizes)
        outs = await asyncio.gather(*[
            server.generate(prompt_ids=ids, sampling_params=dict(params), request_id=f"r{i}",
                            image_data=None, video_data=None, audio_data=[clip("tone")],
                            mm_processor_kwargs={"sampling_rate": SR})
            for i in range(6)
        ])
        sizes = server.batcher.batch_sizes[before:]
        no_lp = await server.generate(ids, {"temperature": 0.0, "logprobs": False, "max_tokens": 3}, "x",
                                      audio_data=[clip("tone")])
        return outs, sizes, no_lp

    outs, sizes, no_lp = asyncio.run(main())
    assert sizes == [6], f"6 concurrent requests ran as batches {sizes}"
    assert all(isinstance(o, TokenOutput) for o in outs)
    assert all(o.token_ids == outs[0].token_ids for o in outs)
    assert len(outs[0].token_ids) == qa.rollout_config.response_length  # default max_tokens
    assert outs[0].stop_reason == "completed" and outs[0].extra_fields["global_steps"] is None
    # the server computed the features itself from the raw audio: same log-probs as the processor's
    plain = qa.plain_logprobs(ids, outs[0].token_ids, features)
    torch.testing.assert_close(torch.tensor(outs[0].log_probs), plain, rtol=0, atol=1e-4)
    assert no_lp.log_probs is None and len(no_lp.token_ids) == 3
    with pytest.raises(NotImplementedError):
        asyncio.run(server.generate(ids, {}, "img", image_data=["an image"]))


def test_server_update_weights_changes_outputs_and_logprobs_follow(tiny_dirs):
    t = Tiny("qwen2_audio", tiny_dirs["qwen2_audio"])  # own server: its weights get perturbed
    server = t.server
    ids, features = t.audio_prompt(clip("tone"))
    params = {"temperature": 0.0, "logprobs": True}

    async def generate():
        return await server.generate(ids, dict(params), "r", audio_data=[clip("tone")])

    before = asyncio.run(generate())
    torch.manual_seed(0)
    perturbed = {k: v + 0.5 * torch.randn_like(v) if v.is_floating_point() else v
                 for k, v in t.reference.state_dict().items()}
    names = list(perturbed)

    async def update():
        # two buckets, as the adapter sends them
        await server.update_weights([(k, perturbed[k]) for k in names[:10]], is_last=False)
        rest = [(k, perturbed[k]) for k in names[10:]]
        return await server.update_weights(rest, is_last=True, global_steps=5)

    report = asyncio.run(update())
    assert report == {"updated": len(names), "total": len(names)}
    after = asyncio.run(generate())
    assert after.token_ids != before.token_ids
    assert after.extra_fields["global_steps"] == 5
    t.reference.load_state_dict(perturbed)
    plain = t.plain_logprobs(ids, after.token_ids, features)
    torch.testing.assert_close(torch.tensor(after.log_probs), plain, rtol=0, atol=1e-4)
    # zeroing the LM head makes every token equally likely: greedy picks id 0, log-prob -log(V)
    head = [k for k in names if k.endswith("lm_head.weight")]
    asyncio.run(server.update_weights([(head[0], torch.zeros_like(perturbed[head[0]]))], global_steps=6))
    flat = asyncio.run(generate())
    vocab = perturbed[head[0]].shape[0]
    assert set(flat.token_ids) == {0}
    assert max(abs(lp + math.log(vocab)) for lp in flat.log_probs) < 1e-5
    with pytest.raises(KeyError):
        asyncio.run(server.update_weights([("not.a.weight", torch.zeros(1))]))


def test_server_abort_returns_partial_and_parks_until_resume(qa):
    server = qa.server
    ids = qa.text_prompt()

    async def main():
        long = {"temperature": 1.0, "max_tokens": 4000, "ignore_eos": True}
        running = asyncio.ensure_future(server.generate(ids, long, "long"))
        await asyncio.sleep(0.3)
        report = await server.abort_all_requests()
        partial = await running
        parked = asyncio.ensure_future(server.generate(ids, {"max_tokens": 2}, "parked"))
        await asyncio.sleep(0.2)
        assert not parked.done()
        await server.resume_generation()
        done = await parked
        await server.abort_all_requests(reject_request=True)
        rejected = await server.generate(ids, {"max_tokens": 2}, "rejected")
        await server.resume_generation()
        return report, partial, done, rejected

    report, partial, done, rejected = asyncio.run(main())
    assert partial.stop_reason == "aborted" and 0 < len(partial.token_ids) < 4000
    assert done.stop_reason == "completed" and len(done.token_ids) == 2
    assert rejected.stop_reason == "aborted" and rejected.token_ids == []
    assert report["aborted_count"] == 0  # the running request was stopped, none was queued


# ----------------------------------------------------------------- registration + Ray
def test_register_cpu_rollout_is_idempotent_and_resolves_through_verl():
    from verl.workers.rollout import base
    from verl.workers.rollout.base import get_rollout_class
    from verl.workers.rollout.replica import get_rollout_replica_class

    from audio_thinker.backends.cpu import rollout
    from audio_thinker.backends.cpu.options import engine_options

    assert base._ROLLOUT_REGISTRY.get(("hf", "async"), rollout.ADAPTER_FQDN) == rollout.ADAPTER_FQDN
    rollout.register_cpu_rollout()
    rollout.register_cpu_rollout()
    assert get_rollout_class("hf", "async") is rollout.HFServerAdapter
    assert get_rollout_replica_class("hf") is rollout.HFRolloutReplica
    with pytest.raises(ValueError, match="already registers"):
        rollout.register_cpu_rollout("vllm")
    assert engine_options({"engine_kwargs": {"hf": {"max_batch_size": 3}}, "max_num_seqs": 1024})[
        "max_batch_size"] == 3
    with pytest.raises(ValueError, match="unknown"):
        engine_options({"engine_kwargs": {"hf": {"max_batchsize": 3}}})


@pytest.mark.slow  # a Ray cluster (~30-50 s); the launch test syncs the hf rollout through Ray in the fast tier
def test_ray_replica_server_and_adapter_weight_sync(tiny_dirs):
    """The replica launches its server actor; the adapter (as in the actor worker) syncs weights."""
    ray = pytest.importorskip("ray")
    from omegaconf import OmegaConf
    from verl.utils.config import omega_conf_to_dataclass
    from verl.workers.config import HFModelConfig, RolloutConfig
    from verl.workers.rollout.base import get_rollout_class
    from verl.workers.rollout.replica import RolloutMode, get_rollout_replica_class

    from audio_thinker.backends.cpu.rollout import register_cpu_rollout

    register_cpu_rollout()
    rollout_config = OmegaConf.create({
        "_target_": "verl.workers.config.RolloutConfig", "name": "hf", "prompt_length": 256,
        "response_length": 6, "tensor_model_parallel_size": 1, "engine_kwargs": {"hf": {"num_threads": 1}},
    })
    model_config = OmegaConf.create({
        "path": tiny_dirs["qwen2_audio"], "override_config": {"attn_implementation": "eager"},
    })
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    try:
        async def main():
            replica = get_rollout_replica_class("hf")(
                replica_rank=0, config=rollout_config, model_config=model_config, gpus_per_node=1
            )
            replica.rollout_mode, replica.workers = RolloutMode.HYBRID, []
            await replica.launch_servers()
            server = replica.server_handle
            # the agent loop's client, through verl's load balancer, with audio
            from verl.workers.rollout.llm_server import LLMServerClient
            from verl.workers.rollout.router import get_router_handle

            balancer = get_router_handle(servers={replica.server_address: server})
            full_config = OmegaConf.create({"actor_rollout_ref": {"rollout": rollout_config}})
            client = LLMServerClient(full_config, balancer)
            ids = [1025, 40, 41, 42]
            outs = await asyncio.gather(*[
                client.generate(request_id=f"q{i}", prompt_ids=ids, image_data=None, video_data=None,
                                audio_data=None, mm_processor_output=None, mm_processor_kwargs=None,
                                priority=0, sampling_params={"temperature": 0, "top_p": 1.0, "top_k": -1,
                                                             "repetition_penalty": 1.0, "logprobs": True})
                for i in range(4)
            ])
            tiny = Tiny.__new__(Tiny)
            tiny.processor = omega_conf_to_dataclass(model_config, HFModelConfig).processor
            audio_ids, _ = tiny.audio_prompt(clip("tone"))
            with_audio = await client.generate(
                request_id="a", prompt_ids=audio_ids, sampling_params={"temperature": 0},
                audio_data=[clip("tone")], mm_processor_kwargs={"sampling_rate": SR},
            )
            state = await server.get_state_dict.remote()
            os.environ.setdefault("RANK", "0")
            adapter = get_rollout_class("hf", "async")(
                config=omega_conf_to_dataclass(rollout_config, RolloutConfig),
                model_config=omega_conf_to_dataclass(model_config, HFModelConfig), device_mesh=None,
            )
            zeroed = ((k, torch.zeros_like(v) if k.endswith("lm_head.weight") else v)
                      for k, v in state.items())
            await adapter.update_weights(zeroed, global_steps=2, peft_config=None, base_sync_done=True)
            after = await server.generate.remote(prompt_ids=ids, sampling_params={"temperature": 0},
                                                 request_id="z")
            for call in (replica.sleep, replica.wake_up, replica.clear_kv_cache, replica.release_kv_cache,
                         replica.resume_kv_cache, replica.start_profile, replica.stop_profile,
                         replica.abort_all_requests, replica.resume_generation):
                await call()
            stats = await server.get_stats.remote()
            ray.kill(server)
            return replica.server_address, outs, with_audio, after, stats

        address, outs, with_audio, after, stats = asyncio.run(main())
    finally:
        if started_here:
            ray.shutdown()
    assert address and all(o.token_ids == outs[0].token_ids and len(o.token_ids) == 6 for o in outs)
    assert all(len(o.log_probs) == 6 for o in outs)
    assert len(with_audio.token_ids) == 6 and with_audio.stop_reason == "completed"
    assert set(after.token_ids) == {0} and after.extra_fields["global_steps"] == 2 and after.log_probs is None
    assert stats["weight_updates"] == 1 and max(stats["batch_sizes"]) > 1


def test_banned_ids_are_never_sampled_and_log_probs_stay_the_models(qa):
    from audio_thinker.backends.cpu.generator import BatchedGenerator

    ids, features = qa.audio_prompt(clip("tone"))
    free = qa.server.generator.generate([req(ids, features)])[0].token_ids  # greedy
    banned = set(free[:4])
    g = BatchedGenerator(qa.server.model, eos_token_ids=[qa.eos_id], pad_token_id=qa.tokenizer.pad_token_id,
                         banned_token_ids=banned)
    requests = [req(ids, features), req(ids, features, temperature=1.0, seed=3),
                req(ids, features, temperature=1.0, top_k=5, seed=4)]
    for out in g.generate(requests):
        assert not banned & set(out.token_ids), out.token_ids
    greedy, sampled = g.generate(requests[:1])[0], g.generate(requests[1:2])[0]
    for out, temperature in ((greedy, 1.0), (sampled, 1.0)):
        plain = qa.plain_logprobs(ids, out.token_ids, features, temperature=temperature)
        torch.testing.assert_close(torch.tensor(out.log_probs), plain, rtol=0, atol=1e-4)


def test_the_server_bans_the_multimodal_placeholders(qa):
    from audio_thinker.inference.placeholders import multimodal_placeholder_ids

    vocab = qa.tokenizer.get_vocab()
    expected = {vocab["<|AUDIO|>"], vocab["<|audio_bos|>"], vocab["<|audio_eos|>"]}
    assert expected <= set(qa.server.generator.banned_token_ids)
    assert vocab["<|im_end|>"] not in qa.server.generator.banned_token_ids
    assert multimodal_placeholder_ids(qa.model_config.hf_config, None) >= {vocab["<|AUDIO|>"]}
    assert multimodal_placeholder_ids(object(), None) == set()


def test_server_actor_name_examples():
    """The doctest examples of the server actor name (one function names it for the replica and the adapter)."""
    import doctest

    from audio_thinker.backends.cpu import rollout

    result = doctest.testmod(rollout)
    assert result.attempted > 0 and result.failed == 0
