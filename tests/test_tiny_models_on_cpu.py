"""Tiny random Qwen2-Audio / Qwen2.5-Omni-thinker models: offline build, reload, audio path, seeds."""

import hashlib
import json
import time

import numpy as np
import pytest
import torch

from audio_thinker.toy import tiny

SR = 16_000
MODEL_CLASSES = {
    "qwen2_audio": "Qwen2AudioForConditionalGeneration",
    "qwen2_5_omni_thinker": "Qwen2_5OmniThinkerForConditionalGeneration",
}
#: how each real chat template lays out a user turn holding one audio clip and a question
USER_TURNS = {
    "qwen2_audio": "<|im_start|>user\nAudio 1: <|audio_bos|><|AUDIO|><|audio_eos|>\nWhat is it?<|im_end|>\n",
    "qwen2_5_omni_thinker": "<|im_start|>user\n<|audio_bos|><|AUDIO|><|audio_eos|>What is it?<|im_end|>\n",
}
SYSTEM_TURN = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"


def tone(seconds=3.0, hz=440.0):
    t = np.arange(int(seconds * SR)) / SR
    return (0.5 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def noise(seconds=3.0, seed=0):
    return np.random.default_rng(seed).uniform(-0.5, 0.5, int(seconds * SR)).astype(np.float32)


def conversation(audio, *extra):
    content = [*extra, {"type": "audio", "audio": audio}, {"type": "text", "text": "What is it?"}]
    return [{"role": "user", "content": content}]


def state_hash(state_dict):
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        digest.update(name.encode())
        digest.update(state_dict[name].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Each arch built once per session: {arch: (directory, build seconds)}."""
    out = {}
    for arch in tiny.ARCHS:
        started = time.perf_counter()
        path = tiny.build_tiny_model(arch, tmp_path_factory.mktemp("tiny") / arch, seed=0)
        out[arch] = (path, time.perf_counter() - started)
    return out


@pytest.fixture(scope="module")
def loaded(built):
    """{arch: (config, tokenizer, processor, model)} reloaded offline the way real checkpoints load."""
    import transformers
    from transformers import AutoConfig, AutoProcessor, AutoTokenizer

    out = {}
    for arch, (path, _) in built.items():
        model_class = getattr(transformers, MODEL_CLASSES[arch])
        out[arch] = (
            AutoConfig.from_pretrained(path, local_files_only=True),
            AutoTokenizer.from_pretrained(path, local_files_only=True),
            AutoProcessor.from_pretrained(path, local_files_only=True),
            model_class.from_pretrained(path, local_files_only=True).eval(),
        )
    return out


def inputs_for(processor, audio):
    text = processor.apply_chat_template(conversation(audio), add_generation_prompt=True, tokenize=False)
    return processor(text=text, audio=[audio], sampling_rate=SR, return_tensors="pt")


def test_unknown_arch_is_refused_with_the_valid_names(tmp_path, capsys):
    with pytest.raises(ValueError, match="qwen2_audio, qwen2_5_omni_thinker"):
        tiny.build_tiny_model("llama", tmp_path / "x")
    with pytest.raises(ValueError, match="qwen2_audio"):
        tiny.ensure_tiny_model("qwen3_omni", tmp_path / "x")
    assert tiny.main(["--arch", "whisper", "--out", str(tmp_path / "y")]) == 2
    assert "use one of qwen2_audio, qwen2_5_omni_thinker" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


@pytest.mark.parametrize("arch", tiny.ARCHS)
def test_directory_is_small_complete_and_fast_to_build(built, arch):
    path, seconds = built[arch]
    size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    assert size < 20 * 2**20, size
    assert seconds < 20, seconds
    marker = json.loads((path / tiny.MARKER).read_text())
    assert marker["arch"] == arch and marker["seed"] == 0 and marker["model_class"] == MODEL_CLASSES[arch]
    expected = {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                "processor_config.json", "generation_config.json", "chat_template.jinja"}
    assert expected <= {p.name for p in path.iterdir()}
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no staging leftovers


@pytest.mark.parametrize("arch", tiny.ARCHS)
def test_reloads_offline_with_real_special_token_wiring(loaded, arch):
    config, tokenizer, processor, model = loaded[arch]
    assert config.model_type == arch and config.architectures == [MODEL_CLASSES[arch]]
    assert type(tokenizer).__name__ == "Qwen2Tokenizer"
    assert type(processor).__name__ == tiny.get_spec(arch).processor_class
    specials = tiny.get_spec(arch).specials
    ids = tiny.token_ids(tokenizer, [*specials, *tiny.REASONING_TOKENS])  # raises unless single ids
    base = ids["<|endoftext|>"]
    assert [ids[t] for t in specials] == list(range(base, base + len(specials)))  # real offsets from 151643
    assert config.audio_token_id == ids["<|AUDIO|>"] == base + 3
    assert config.get_text_config().vocab_size == len(tokenizer)
    assert model.get_input_embeddings().num_embeddings == len(tokenizer)
    assert (tokenizer.eos_token, tokenizer.pad_token) == ("<|im_end|>", "<|endoftext|>")
    assert tokenizer.bos_token is None
    assert model.generation_config.eos_token_id == [ids["<|im_end|>"], base]
    assert model.generation_config.pad_token_id == base
    assert model.dtype == torch.float32
    if arch == "qwen2_5_omni_thinker":
        assert (config.audio_start_token_id, config.audio_end_token_id) == (base + 4, base + 5)
        assert (config.image_token_id, config.video_token_id) == (base + 12, base + 13)
        assert config.vision_start_token_id == base + 9
        assert [config.user_token_id] == tokenizer.encode("user")
        named = (processor.audio_token, processor.audio_bos_token, processor.image_token)
        assert named == ("<|AUDIO|>", "<|audio_bos|>", "<|IMAGE|>")
    text = "<think>A dog barks twice.</think><answer>dog</answer>"
    encoded = tokenizer.encode(text + "<|im_end|>")
    assert tokenizer.decode(encoded, skip_special_tokens=True) == text  # tags survive, <|im_end|> does not


@pytest.mark.parametrize("arch", tiny.ARCHS)
def test_chat_template_renders_the_real_audio_turn(loaded, arch):
    _, tokenizer, processor, _ = loaded[arch]
    assert tokenizer.chat_template == processor.chat_template == tiny.get_spec(arch).chat_template
    rendered = processor.apply_chat_template(conversation(tone()), add_generation_prompt=True, tokenize=False)
    assert rendered == SYSTEM_TURN + USER_TURNS[arch] + "<|im_start|>assistant\n"


@pytest.mark.parametrize("arch", tiny.ARCHS)
def test_processor_expands_audio_and_model_runs(loaded, arch):
    config, tokenizer, processor, model = loaded[arch]
    inputs = inputs_for(processor, tone(3.0))
    ids = inputs["input_ids"][0].tolist()
    assert ids.count(config.audio_token_id) == 75  # 25 audio tokens per second of 16 kHz audio
    bos = tokenizer.convert_tokens_to_ids("<|audio_bos|>")
    assert ids[ids.index(bos) + 1: ids.index(bos) + 77] == [config.audio_token_id] * 75 + [bos + 1]
    assert inputs["feature_attention_mask"].sum().item() == 300  # 100 mel frames per second
    with torch.no_grad():
        logits = model(**inputs).logits
        generated = model.generate(**inputs, max_new_tokens=4, do_sample=False)
    assert logits.shape == (1, len(ids), len(tokenizer)) and torch.isfinite(logits).all()
    assert generated.shape[0] == 1 and len(ids) < generated.shape[1] <= len(ids) + 4
    assert generated[0, : len(ids)].tolist() == ids


@pytest.mark.parametrize("arch", tiny.ARCHS)
def test_audio_reaches_the_logits(loaded, arch):
    _, _, processor, model = loaded[arch]

    def logprobs(audio):
        with torch.no_grad():
            return model(**inputs_for(processor, audio)).logits.log_softmax(-1)

    first, again, other = logprobs(tone()), logprobs(tone()), logprobs(noise())
    assert torch.equal(first, again)
    assert (first[0, -1] - other[0, -1]).abs().max() > 1e-3  # the next-token distribution moves


@pytest.mark.parametrize("arch", tiny.ARCHS)
def test_weights_are_a_function_of_the_seed(loaded, arch):
    config, tokenizer, _, model = loaded[arch]
    fresh_tokenizer = tiny.build_tokenizer(arch)
    assert fresh_tokenizer.get_vocab() == tokenizer.get_vocab()  # tokenizer training is deterministic
    sample = "Which sound is heard first? <think>a dog, then 3 horns</think><answer>dog</answer>"
    assert fresh_tokenizer.encode(sample) == tokenizer.encode(sample)  # reloaded merges are the same
    fresh_config = tiny.build_config(arch, fresh_tokenizer)
    saved = state_hash(model.state_dict())
    assert state_hash(tiny.build_model(arch, fresh_config, seed=0).state_dict()) == saved
    assert state_hash(tiny.build_model(arch, fresh_config, seed=1).state_dict()) != saved


def test_omni_positions_are_sequential_for_audio_and_mrope_with_vision(loaded):
    """get_rope_index uses audio_seqlens (feature_attention_mask.sum) only when vision is present."""
    _, _, processor, model = loaded["qwen2_5_omni_thinker"]
    audio = tone()
    inputs = inputs_for(processor, audio)
    audio_seqlens = inputs["feature_attention_mask"].sum(-1)
    positions, deltas = model.get_rope_index(
        inputs["input_ids"], None, None, inputs["attention_mask"], False, audio_seqlens
    )
    length = inputs["input_ids"].shape[1]
    assert positions.shape == (3, 1, length) and deltas.tolist() == [[0]]
    assert torch.equal(positions[:, 0], torch.arange(length).expand(3, -1))
    image = np.random.default_rng(0).integers(0, 256, (3, 112, 112), dtype=np.uint8)
    picture = {"type": "image", "image": image}
    text = processor.apply_chat_template(conversation(audio, picture), add_generation_prompt=True,
                                         tokenize=False)
    assert "<|vision_bos|><|IMAGE|><|vision_eos|><|audio_bos|><|AUDIO|><|audio_eos|>" in text
    inputs = processor(text=text, images=[image], audio=[audio], sampling_rate=SR, return_tensors="pt")
    with torch.no_grad():
        output = model(**inputs)
    assert torch.isfinite(output.logits).all()
    assert output.rope_deltas.item() < 0  # the 4x4 image grid takes fewer positions than tokens


def test_auto_classes_resolve_as_documented(loaded):
    from transformers.models.auto import modeling_auto as auto

    image_text_to_text = auto.MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES
    assert image_text_to_text["qwen2_5_omni_thinker"] == MODEL_CLASSES["qwen2_5_omni_thinker"]
    assert "qwen2_audio" not in image_text_to_text  # our verl plugin registers it at runtime
    for arch, model_class in MODEL_CLASSES.items():
        assert auto.MODEL_FOR_MULTIMODAL_LM_MAPPING_NAMES[arch] == model_class
        assert arch not in auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and arch not in auto.MODEL_MAPPING_NAMES
    assert auto.MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES["qwen2_audio"] == MODEL_CLASSES["qwen2_audio"]


def test_ensure_builds_only_when_missing_or_incomplete(built, tmp_path):
    source, _ = built["qwen2_audio"]
    assert tiny.ensure_tiny_model("qwen2_audio", source, seed=0) == source  # complete: reused
    half = tmp_path / "half"
    half.mkdir()
    (half / "config.json").write_text("{}")  # an interrupted copy: no marker
    started = time.perf_counter()
    assert tiny.ensure_tiny_model("qwen2_audio", half, seed=0) == half
    assert tiny.is_complete(half, arch="qwen2_audio", seed=0)
    assert time.perf_counter() - started < 20
    assert (half / "model.safetensors").read_bytes() == (source / "model.safetensors").read_bytes()
    mtime = (half / tiny.MARKER).stat().st_mtime_ns
    tiny.ensure_tiny_model("qwen2_audio", half, seed=0)
    assert (half / tiny.MARKER).stat().st_mtime_ns == mtime
    assert not tiny.is_complete(half, arch="qwen2_audio", seed=1)
    marker = json.loads((half / tiny.MARKER).read_text())
    assert marker["config_layout"] == tiny.CONFIG_LAYOUT
    del marker["config_layout"]  # a build from before config.json took the real checkpoint's layout
    (half / tiny.MARKER).write_text(json.dumps(marker))
    assert not tiny.is_complete(half, arch="qwen2_audio", seed=0)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError):
        tiny.ensure_tiny_model("qwen2_audio", foreign, seed=0)
    assert (foreign / "notes.txt").read_text() == "keep me"
