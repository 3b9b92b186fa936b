"""Both tiny audio models through verl's own multimodal input path: audio really reaches them.

For each architecture: the processor comes from verl's ``hf_processor`` (with our plugin), the
model class from verl's ``get_hf_auto_model_class``; per-sample features are recomputed by verl's
``AgentLoopWorker._compute_multi_modal_inputs`` (what the agent loop stores for the actor) and
batched by ``extract_multi_modal_inputs`` (what verl's FSDP engine calls before the forward).
The resulting log-probs must equal a plain transformers forward of the same inputs, and change
when only the audio changes.
"""

import types

import numpy as np
import pytest
import torch

SR = 16000
ARCHS = ["qwen2_audio", "qwen2_5_omni_thinker"]


def clip(kind: str, seconds: float = 2.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    if kind == "tone":
        return (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    return (0.3 * np.random.default_rng(0).standard_normal(t.size)).astype(np.float32)


@pytest.fixture(scope="module", params=ARCHS)
def tiny(request, tiny_model_dir):
    import verl  # noqa: F401  (loads the plugin)
    from transformers import AutoConfig
    from verl.utils import hf_processor, hf_tokenizer
    from verl.utils.model import get_hf_auto_model_class


    path = str(tiny_model_dir(request.param))
    processor = hf_processor(path)
    assert processor is not None, "verl dropped the audio processor"
    model_cls = get_hf_auto_model_class(AutoConfig.from_pretrained(path))
    model = model_cls.from_pretrained(path, attn_implementation="eager").eval()
    return request.param, processor, hf_tokenizer(path), model


def prompt_text(processor) -> str:
    messages = [{"role": "user", "content": [{"type": "audio", "audio": "clip"}, {"type": "text", "text": "Which half is louder?"}]}]
    return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def verl_multi_modal_inputs(processor, tokenizer, input_ids: torch.Tensor, audio: np.ndarray) -> dict:
    """verl's AgentLoopWorker._compute_multi_modal_inputs, on a stand-in worker."""
    from verl.experimental.agent_loop.agent_loop import AgentLoopWorker

    worker = types.SimpleNamespace(processor=processor, tokenizer=tokenizer, mm_processor_kwargs=None)
    worker._get_mm_processor_kwargs = types.MethodType(AgentLoopWorker._get_mm_processor_kwargs, worker)
    output = types.SimpleNamespace(multi_modal_data={"audios": [audio]}, mm_processor_kwargs=None)
    return AgentLoopWorker._compute_multi_modal_inputs(worker, output, input_ids[None])


def response_logprobs(model, input_ids, attention_mask, n_response, **extra):
    from verl.utils.torch_functional import logprobs_from_logits

    with torch.no_grad():
        logits = model(input_ids=input_ids, attention_mask=attention_mask, **extra).logits
    labels = input_ids[:, 1:]
    logprobs = logprobs_from_logits(logits[:, :-1].float(), labels, inplace_backward=False)
    return logprobs[:, -n_response:]


def test_batch_logprobs_through_verls_path_match_plain_forward_and_depend_on_audio(tiny):
    from verl.utils.model import extract_multi_modal_inputs

    arch, processor, tokenizer, model = tiny
    text = prompt_text(processor)
    response = torch.tensor(tokenizer.encode("<think>two tones</think><answer>the first</answer>"))
    audios = [clip("tone"), clip("noise")]

    # the prompt as the rollout sees it: processor-expanded audio placeholders, then the response
    sequences, plain = [], []
    for audio in audios:
        inputs = processor(text=[text], audio=[audio], sampling_rate=SR, return_tensors="pt")
        ids = torch.cat([inputs["input_ids"][0], response])
        sequences.append(ids)
        plain.append(response_logprobs(
            model, ids[None], torch.ones_like(ids)[None], len(response),
            input_features=inputs["input_features"], feature_attention_mask=inputs["feature_attention_mask"],
        ))
    assert sequences[0].shape == sequences[1].shape
    audio_token = processor.tokenizer.convert_tokens_to_ids(processor.audio_token)
    assert int((sequences[0] == audio_token).sum()) > 10, "the audio placeholder was not expanded"

    per_sample = [verl_multi_modal_inputs(processor, tokenizer, ids, audio) for ids, audio in zip(sequences, audios)]
    batch = extract_multi_modal_inputs(per_sample)
    assert set(batch) >= {"input_features", "feature_attention_mask"}
    input_ids = torch.stack(sequences)
    batched = response_logprobs(model, input_ids, torch.ones_like(input_ids), len(response), **batch)

    torch.testing.assert_close(batched, torch.cat(plain), rtol=1e-4, atol=1e-4)
    assert torch.isfinite(batched).all()
    # only the audio differs between the two rows: the response log-probs must differ
    assert (batched[0] - batched[1]).abs().max() > 1e-4, f"{arch}: log-probs ignore the audio"


def test_same_audio_gives_identical_logprobs(tiny):
    _, processor, tokenizer, model = tiny
    text = prompt_text(processor)
    response = torch.tensor(tokenizer.encode("<answer>high</answer>"))
    outs = []
    for _ in range(2):
        inputs = processor(text=[text], audio=[clip("tone")], sampling_rate=SR, return_tensors="pt")
        ids = torch.cat([inputs["input_ids"][0], response])[None]
        mm = verl_multi_modal_inputs(processor, tokenizer, ids[0], clip("tone"))
        outs.append(response_logprobs(model, ids, torch.ones_like(ids), len(response), **mm))
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)


@pytest.mark.parametrize("tiny", ["qwen2_audio"], indirect=True)
def test_stock_qwen2_audio_processor_fails_on_verls_decoded_text(tiny):
    """Why the plugin ships Qwen2AudioProcessorForVerl: verl decodes with skip_special_tokens."""
    _, processor, tokenizer, _ = tiny
    from transformers import Qwen2AudioProcessor

    assert type(processor).__name__ == "Qwen2AudioProcessorForVerl"

    inputs = processor(text=[prompt_text(processor)], audio=[clip("tone")], sampling_rate=SR)
    decoded = tokenizer.decode(inputs["input_ids"][0], skip_special_tokens=True)
    assert processor.audio_token not in decoded
    with pytest.raises(ValueError, match="Found 0"):
        Qwen2AudioProcessor.__call__(processor, text=[decoded], audio=[clip("tone")], sampling_rate=SR)


@pytest.mark.parametrize("freeze", [True, False])
def test_freeze_audio_encoder_through_verls_override_config(tiny, freeze, tmp_path):
    """verl applies override_config to the HF config, then loads through the plugin's class."""
    from transformers import AutoConfig
    from verl.utils.model import get_hf_auto_model_class, update_model_config

    arch, processor, tokenizer, _ = tiny
    path = processor.config._name_or_path
    config = AutoConfig.from_pretrained(path)
    update_model_config(config, override_config_kwargs={"freeze_audio_tower": freeze})
    model = get_hf_auto_model_class(config).from_pretrained(path, config=config, attn_implementation="eager")
    audio_before = {k: v.clone() for k, v in model.audio_tower.state_dict().items()}
    lm_before = model.get_output_embeddings().weight.clone()

    inputs = processor(text=[prompt_text(processor)], audio=[clip("tone")], sampling_rate=SR, return_tensors="pt")
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model(**inputs, labels=inputs["input_ids"]).loss.backward()
    optimizer.step()

    moved = any(not torch.equal(v, model.audio_tower.state_dict()[k]) for k, v in audio_before.items())
    assert moved is (not freeze)
    assert not torch.equal(lm_before, model.get_output_embeddings().weight)
    # a checkpoint saved from it names the stock architecture and loads without the plugin's classes
    model.save_pretrained(tmp_path)
    import json

    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["architectures"] == [type(model).__name__]
    import transformers

    assert hasattr(transformers, saved["architectures"][0])
