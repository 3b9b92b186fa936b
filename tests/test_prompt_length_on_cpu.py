"""The prompt-length count (audio_thinker/data/prompt_length.py) equals what the models' processors make.

For both tiny architectures (Qwen2-Audio; the Qwen2.5-Omni thinker, whose feature window is 300 s)
:class:`PromptLengthCounter` gives exactly the length of the ``input_ids`` the processor builds for
the same chat and clip, over clip lengths that straddle every rounding step of the encoder; a
clip's duration comes from its header; an unknown duration is counted at the cap.
"""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from audio_thinker.data.prompt_length import (
    AudioTokenRule,
    PromptLengthCounter,
    check_question_chars,
    clip_seconds,
    count_audio_tokens,
)
from audio_thinker.data.rows import build_prompt_messages, inline_audio

ARCHS = ("qwen2_audio", "qwen2_5_omni_thinker")
#: sample counts around the hop (160), the two stride-2 steps, 1 s, 30 s and beyond
LENGTHS = (400, 16_000, 16_001, 16_159, 16_160, 16_321, 33_333, 479_999, 480_000, 480_001, 800_000)


@pytest.fixture(scope="module")
def processors(tiny_model_dir):
    from transformers import AutoProcessor

    return {arch: AutoProcessor.from_pretrained(tiny_model_dir(arch)) for arch in ARCHS}


@pytest.mark.parametrize("arch", ARCHS)
def test_the_count_is_the_processors_input_length(processors, arch):
    processor = processors[arch]
    counter = PromptLengthCounter(processor, max_seconds=None)  # no loader cap: the extractor's window
    rng = np.random.default_rng(0)
    # Omni's extractor pads every clip to its 300 s window (slow): a few lengths suffice there
    lengths = LENGTHS if arch == "qwen2_audio" else (400, 16_001, 33_333, 480_001, 800_000)
    cases = [("adaptive", "Which tone is higher?", n) for n in lengths]
    cases += [("direct", "Is the dog closer? " * 40, 33_333), ("think", "Wie viele Töne hörst du? 这是什么声音？", 16_000)]
    for mode, question, n in cases:
        messages = build_prompt_messages(question, ["first", "second", "third"], mode=mode)
        clip = (0.1 * rng.standard_normal(n)).astype(np.float32)
        chat = inline_audio(messages, [clip])
        text = processor.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
        truth = len(processor(text=[text], audio=[clip], sampling_rate=16_000)["input_ids"][0])
        assert counter.count_samples(messages, [n]) == truth, (arch, mode, n)
        assert counter.count_samples(chat, [n]) == truth, "inlined messages count the same"


def test_audio_tokens_per_second_and_window(processors):
    assert count_audio_tokens(480_000) == 750  # 30 s of Qwen2-Audio: 25 tokens per second
    qwen, omni = (AudioTokenRule.from_processor(processors[a], max_seconds=None) for a in ARCHS)
    assert qwen.window_samples == 480_000 and omni.window_samples == 4_800_000
    assert qwen.tokens(60.0) == 750 and omni.tokens(60.0) == 1500
    capped = AudioTokenRule.from_processor(processors["qwen2_5_omni_thinker"], max_seconds=30.0)
    assert capped.tokens(60.0) == 750 and capped.tokens(None) == 750  # the loader cuts at 30 s


def test_duration_from_the_header_and_unknown_counted_at_the_cap(tmp_path, processors):
    wav = tmp_path / "clip.wav"
    sf.write(wav, np.zeros(24_000, dtype=np.float32), 8_000)  # 3 s at 8 kHz: resampled to 48000 samples
    assert clip_seconds(wav) == pytest.approx(3.0)
    assert clip_seconds(tmp_path / "absent.wav") is None
    (tmp_path / "junk.wav").write_bytes(b"not audio")
    assert clip_seconds(tmp_path / "junk.wav") is None
    counter = PromptLengthCounter(processors["qwen2_audio"], max_seconds=30.0)
    messages = build_prompt_messages("Loud?", ["yes", "no"], mode="direct")
    assert counter.count(messages, [3.0]) == counter.count_samples(messages, [48_000])
    assert counter.count(messages, [None]) == counter.count(messages, [30.0]) == counter.text_tokens(messages) + 750


def test_a_100k_character_question_is_over_any_bound(processors):
    question = "Why? " * 20_000
    messages = build_prompt_messages(question, ["a", "b"], mode="adaptive")
    n = PromptLengthCounter(processors["qwen2_audio"]).count(messages, [10.0])
    assert n > 20_000, n
    assert "100002 characters > max_question_chars=4000" in check_question_chars(question, ["a", "b"], max_chars=4000)


def test_what_a_check_counts_for_an_unreadable_header(tmp_path):
    from audio_thinker.data.prompt_length import seconds_to_count

    (tmp_path / "corrupt.wav").write_bytes(b"RIFF not really a wav")
    (tmp_path / "clip.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42")
    assert seconds_to_count(tmp_path / "corrupt.wav") == 0.0  # skipped as corrupt when decoded
    assert seconds_to_count(tmp_path / "clip.mp4") is None  # ffmpeg's: counted at the cap


def test_doctests():
    import doctest

    import audio_thinker.data.prompt_length as module

    result = doctest.testmod(module)
    assert result.attempted >= 8 and result.failed == 0
