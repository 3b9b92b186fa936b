"""Tiny, randomly initialised models of the REAL audio-LM architectures, built fully offline.

``python -m audio_thinker.toy.tiny --arch {qwen2_audio,qwen2_5_omni_thinker} --out DIR [--seed S]``
writes a directory that loads through the very code path used for the real 7B checkpoints::

    AutoConfig / AutoTokenizer / AutoProcessor .from_pretrained(DIR)
    Qwen2AudioForConditionalGeneration.from_pretrained(DIR)            # --arch qwen2_audio
    Qwen2_5OmniThinkerForConditionalGeneration.from_pretrained(DIR)    # --arch qwen2_5_omni_thinker

Design decisions
----------------
* **Real architecture, tiny sizes.** The configs are the real config classes (``Qwen2AudioConfig``,
  ``Qwen2_5OmniThinkerConfig``) with a 64-wide, 2-layer text model (2 heads, 1 KV head, GQA like the
  real Omni; ``head_dim=32``, the least vLLM's CPU attention accepts) and a 64-wide, 2-layer audio
  encoder. What the audio path depends on stays real:
  ``num_mel_bins=128``, ``max_source_positions=1500`` (Qwen2-Audio's encoder insists on exactly
  ``1500 * 2 = 3000`` mel frames, i.e. 30 s padded input), Omni's ``n_window=100`` chunking,
  ``position_id_per_seconds=25``, ``seconds_per_chunk=2`` and an M-RoPE section scaled from the
  real ``[16, 24, 24]`` to ``[4, 6, 6]`` for ``head_dim=32``. Word embeddings are untied (as in both
  7B releases). Weights are float32; each directory is a few MB.
* **Real special-token wiring, compact ids.** A 152k vocabulary would cost ~40 MB, so the tokenizer
  is a byte-level BPE trained here (Qwen2's exact NFC normaliser + split regex + byte-level
  pre-tokenizer, so ``Qwen2Tokenizer`` rebuilds it identically from ``vocab``/``merges``) on a
  built-in English corpus (the prompt templates of :mod:`audio_thinker.prompts`, audio-QA words,
  ``<think>``-style answers). The added tokens follow the BPE vocabulary in the real order, so
  every special id keeps its real *offset* from ``<|endoftext|>`` (real 151643 + k == tiny
  ``BASE + k``): ``<|AUDIO|>`` is base+3, ``<|audio_bos|>`` base+4, Omni's ``<|IMAGE|>`` base+12...
  The configs point ``audio_token_index`` / ``audio_start_token_id`` / bos / eos / pad at those ids.
  ``<think> </think> <answer> </answer>`` are appended as non-special added tokens (single ids
  that survive ``skip_special_tokens=True`` decoding, which the reward parsers rely on).
  ``vocab_size`` equals the tokenizer length.
* **Real processors and chat templates.** ``Qwen2AudioProcessor`` / ``Qwen2_5OmniProcessor`` with a
  ``WhisperFeatureExtractor`` configured like the real ``preprocessor_config.json`` (128 mel bins,
  16 kHz, hop 160, n_fft 400; 30 s chunks for Qwen2-Audio, 300 s for Omni), Omni's
  ``Qwen2VLImageProcessor`` / ``Qwen2VLVideoProcessor`` with the real pixel bounds, and the chat
  templates copied verbatim from Qwen2-Audio-7B-Instruct and Qwen2.5-Omni-7B. Both processors emit
  25 audio tokens per second of audio (``((frames - 1) // 2 + 1 - 2) // 2 + 1``, 100 frames/s).
* **Deterministic.** The tokenizer depends only on the built-in corpus; weights depend only on
  ``seed`` (``torch.manual_seed`` right before construction).
* **Crash-safe.** :func:`ensure_tiny_model` builds into a sibling temp directory, writes the marker
  file last, then renames into place, so a half-written directory is never mistaken for a model.

Note on the Omni thinker: for audio-only inputs (no image/video grids) ``get_rope_index`` returns
plain sequential positions (copied on the 3 M-RoPE axes); ``audio_seqlens`` (=
``feature_attention_mask.sum(-1)``) only shapes positions when vision inputs are present.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "ARCHS", "MARKER", "REASONING_TOKENS", "SPECS", "TinySpec", "build_config", "build_model",
    "build_processor", "build_tiny_model", "build_tokenizer", "ensure_tiny_model", "generation_config",
    "get_spec", "is_complete", "main", "token_ids",
]

#: Written last by a build: its presence (with the right arch/seed) marks a complete directory.
MARKER = "tiny_model_complete.json"
#: Every file a build writes (and legacy/real-layout names): what a half-written build may hold.
_OUTPUT_NAMES = frozenset({
    MARKER, "config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
    "tokenizer_config.json", "processor_config.json", "preprocessor_config.json",
    "video_preprocessor_config.json", "chat_template.jinja", "chat_template.json",
    "special_tokens_map.json", "added_tokens.json", "vocab.json", "merges.txt",
})
SAMPLING_RATE = 16_000

_PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
#: BPE vocabulary size (256 byte symbols + merges); the added tokens come after it.
BPE_VOCAB_SIZE = 1024
#: Reasoning-format tags: single, non-special ids (kept by ``skip_special_tokens`` decoding).
REASONING_TOKENS = ("<think>", "</think>", "<answer>", "</answer>")

#: Qwen2-Audio-7B-Instruct added tokens, in id order (real ids 151643..151648).
_QWEN2_AUDIO_SPECIALS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>",
)
#: Qwen2.5-Omni-7B added tokens, in id order (real ids 151643..151656 special, 151657.. not).
_OMNI_SPECIALS = _QWEN2_AUDIO_SPECIALS + (
    "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_bos|>", "<|vision_eos|>",
    "<|vision_pad|>", "<|IMAGE|>", "<|VIDEO|>",
)
_OMNI_PLAIN_ADDED = (
    "<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>",
    "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>",
)
#: Omni tokenizer attributes the Omni processor reads (``tokenizer.audio_token`` ...).
_OMNI_NAMED_TOKENS = {
    "image_token": "<|IMAGE|>", "audio_token": "<|AUDIO|>", "video_token": "<|VIDEO|>",
    "vision_bos_token": "<|vision_bos|>", "vision_eos_token": "<|vision_eos|>",
    "audio_bos_token": "<|audio_bos|>", "audio_eos_token": "<|audio_eos|>",
}

#: Verbatim from Qwen/Qwen2-Audio-7B-Instruct (chat_template.json / tokenizer_config.json).
QWEN2_AUDIO_CHAT_TEMPLATE = (
    "{% set audio_count = namespace(value=0) %}{% for message in messages %}{% if loop.first and "
    "message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if 'audio' in content or 'audio_url' in content %}"
    "{% set audio_count.value = audio_count.value + 1 %}"
    "Audio {{ audio_count.value }}: <|audio_bos|><|AUDIO|><|audio_eos|>\n"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
#: Verbatim from Qwen/Qwen2.5-Omni-7B (chat_template.json).
QWEN2_5_OMNI_CHAT_TEMPLATE = (
    "{% set audio_count = namespace(value=0) %}{% set image_count = namespace(value=0) %}"
    "{% set video_count = namespace(value=0) %}{% for message in messages %}{% if loop.first and "
    "message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture "
    "{{ image_count.value }}: {% endif %}<|vision_bos|><|IMAGE|><|vision_eos|>"
    "{% elif content['type'] == 'audio' or 'audio' in content or 'audio_url' in content %}"
    "{% set audio_count.value = audio_count.value + 1 %}{% if add_audio_id %}Audio "
    "{{ audio_count.value }}: {% endif %}<|audio_bos|><|AUDIO|><|audio_eos|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}Video "
    "{{ video_count.value }}: {% endif %}<|vision_bos|><|VIDEO|><|vision_eos|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@dataclass(frozen=True)
class TinySpec:
    """What differs between the two architectures (everything else is shared)."""

    arch: str
    model_class: str
    processor_class: str
    specials: tuple[str, ...]
    plain_added: tuple[str, ...]
    chat_template: str
    chunk_length_s: int
    model_max_length: int


SPECS: dict[str, TinySpec] = {
    "qwen2_audio": TinySpec(
        arch="qwen2_audio", model_class="Qwen2AudioForConditionalGeneration",
        processor_class="Qwen2AudioProcessor", specials=_QWEN2_AUDIO_SPECIALS, plain_added=(),
        chat_template=QWEN2_AUDIO_CHAT_TEMPLATE, chunk_length_s=30, model_max_length=8192,
    ),
    "qwen2_5_omni_thinker": TinySpec(
        arch="qwen2_5_omni_thinker", model_class="Qwen2_5OmniThinkerForConditionalGeneration",
        processor_class="Qwen2_5OmniProcessor", specials=_OMNI_SPECIALS, plain_added=_OMNI_PLAIN_ADDED,
        chat_template=QWEN2_5_OMNI_CHAT_TEMPLATE, chunk_length_s=300, model_max_length=32768,
    ),
}
ARCHS: tuple[str, ...] = tuple(SPECS)


def get_spec(arch: str) -> TinySpec:
    """The :class:`TinySpec` of ``arch``; a ``ValueError`` naming the valid archs otherwise."""
    try:
        return SPECS[arch]
    except KeyError:
        raise ValueError(f"unknown arch {arch!r}: use one of {', '.join(ARCHS)}") from None


# ----------------------------------------------------------------------------------------------
# Tokenizer
# ----------------------------------------------------------------------------------------------

_SOUNDS = (
    "dog barking", "cat meowing", "car horn", "engine idling", "police siren", "male speech",
    "female speech", "child laughing", "baby crying", "rain falling", "thunder", "wind blowing",
    "birds chirping", "water running", "footsteps", "door knocking", "bell ringing", "clock ticking",
    "alarm beeping", "piano music", "acoustic guitar", "drums", "violin", "people singing",
    "crowd cheering", "applause", "glass breaking", "typing on a keyboard", "train passing",
    "airplane flying", "phone ringing", "dishes clattering", "a cough", "whistling", "silence",
    "a pure tone", "white noise", "an orchestra", "electronic music", "a helicopter",
)
_QUESTIONS = (
    "What is the main sound event in the audio?", "Which sound is heard first?",
    "How many times does the {s} occur?", "Is the speaker male or female?",
    "What emotion does the speaker express?", "What instrument is playing?",
    "Where was this audio most likely recorded?", "Which tone is higher?",
    "Is the {s} louder at the beginning or at the end?", "What is the genre of the music?",
    "How many speakers are there?", "What happens after the {s}?",
    "Does the audio contain speech?", "What is the tempo of the music?",
)
_EXTRA_TEXT = (
    "You are a helpful assistant.", "system", "user", "assistant", "Audio 1:", "Audio 2:",
    "yes no true false first second third last before after louder quieter higher lower faster "
    "slower happy sad angry neutral calm excited fearful surprised indoor outdoor street park "
    "kitchen office concert hall forest beach stadium classical jazz rock pop hip hop blues",
    "zero one two three four five six seven eight nine ten eleven twelve twenty hundred",
    "seconds second minutes frequency hertz pitch loudness volume duration rhythm melody speech",
    "The recording is noisy and the background contains traffic, voices and distant music. A man "
    "says hello, a woman answers quietly, and then a loud bang interrupts them. The listener must "
    "count the events, compare their order, estimate how long each one lasts, describe the scene "
    "and decide which option matches the evidence best. Because the sound repeats twice, the "
    "correct choice is the second one; otherwise it would be the first. Let me think step by step.",
    "animal vehicle instrument environment nature human voice conversation announcement narration "
    "whisper shout scream sigh breath snore sneeze chewing walking running jumping closing opening "
    "falling hitting scraping rustling buzzing humming ringing beeping tapping clapping knocking",
)


def _training_corpus() -> list[str]:
    """The built-in English corpus the tiny BPE is trained on (deterministic, ~100 KB)."""
    from audio_thinker import prompts

    texts: list[str] = [
        prompts.CAPTION_TEMPLATE, prompts.ADAPTIVE_SHORT_INSTRUCTION, *prompts.INSTRUCTIONS.values(),
        *_EXTRA_TEXT, *_EXTRA_TEXT,
    ]
    for i, template in enumerate(_QUESTIONS * 3):
        sound, other = _SOUNDS[i % len(_SOUNDS)], _SOUNDS[(7 * i + 3) % len(_SOUNDS)]
        question = template.format(s=sound)
        choices = [sound, other, "none of them", str(i % 10)]
        for mode in prompts.PromptMode:  # chat turns as the templates lay them out
            user = prompts.build_user_prompt(question, choices, mode=mode)
            texts.append(f"system\nYou are a helpful assistant.\nuser\nAudio 1: \n{user}\nassistant\n")
        texts.append(prompts.build_cot_generation_prompt(
            caption=f"The clip starts with {sound}, followed by {other} after {i % 9 + 1} seconds.",
            question=question, choices=choices, answer=sound,
        ))
        texts.append(
            f"<think>The audio starts with {sound}. After about {i % 9 + 1} seconds there is "
            f"{other}. The question asks: {question} So the answer is {sound}.</think>"
            f"<answer>{sound}</answer>"
        )
        texts.append(f"<answer>{other}</answer>")
    texts.extend(f"{n} {n * 7 % 1000} {n / 4:.2f}" for n in range(1000))
    return texts


def _train_bpe(specials: Sequence[str], plain_added: Sequence[str]) -> Any:
    """Train Qwen2's byte-level BPE pipeline on the corpus and append the added tokens in order."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers
    from tokenizers import pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=BPE_VOCAB_SIZE, min_frequency=2, show_progress=False, special_tokens=[],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(_training_corpus(), trainer=trainer)
    if tokenizer.get_vocab_size() != BPE_VOCAB_SIZE:
        raise RuntimeError(f"BPE reached {tokenizer.get_vocab_size()} < {BPE_VOCAB_SIZE} tokens")
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    plain = [*plain_added, *REASONING_TOKENS]
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in plain])
    return tokenizer


def build_tokenizer(arch: str) -> Any:
    """The arch's ``Qwen2Tokenizer``: tiny BPE, the real special tokens and chat template."""
    from transformers import Qwen2Tokenizer

    spec = get_spec(arch)
    named = _OMNI_NAMED_TOKENS if arch == "qwen2_5_omni_thinker" else {}
    return Qwen2Tokenizer(
        tokenizer_object=_train_bpe(spec.specials, spec.plain_added),
        bos_token=None, unk_token=None, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        extra_special_tokens=list(spec.specials[1:]), chat_template=spec.chat_template,
        model_max_length=spec.model_max_length, errors="replace", split_special_tokens=False,
        clean_up_tokenization_spaces=False, **named,
    )


def token_ids(tokenizer: Any, tokens: Sequence[str]) -> dict[str, int]:
    """``{token: id}``, checking that each token is ONE id of the tokenizer's vocabulary."""
    ids: dict[str, int] = {}
    for token in tokens:
        encoded = tokenizer.encode(token, add_special_tokens=False)
        if len(encoded) != 1:
            raise ValueError(f"{token!r} is not a single token: {encoded}")
        ids[token] = encoded[0]
    return ids


# ----------------------------------------------------------------------------------------------
# Processor
# ----------------------------------------------------------------------------------------------


def _feature_extractor(spec: TinySpec) -> Any:
    """``WhisperFeatureExtractor`` as in the real ``preprocessor_config.json``."""
    from transformers import WhisperFeatureExtractor

    return WhisperFeatureExtractor(
        feature_size=128, sampling_rate=SAMPLING_RATE, hop_length=160, n_fft=400,
        chunk_length=spec.chunk_length_s, padding_value=0.0, dither=0.0,
        return_attention_mask=True, padding_side="right",
    )


def build_processor(arch: str, tokenizer: Any) -> Any:
    """The arch's real processor class around ``tokenizer`` (Omni adds image + video processors)."""
    import transformers
    from transformers.utils.constants import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

    spec = get_spec(arch)
    feature_extractor = _feature_extractor(spec)
    if arch == "qwen2_audio":
        return transformers.Qwen2AudioProcessor(
            feature_extractor=feature_extractor, tokenizer=tokenizer, chat_template=spec.chat_template
        )
    pixels = {"min_pixels": 56 * 56, "max_pixels": 28 * 28 * 16384}  # Qwen2.5-Omni-7B's bounds
    vision = dict(
        patch_size=14, temporal_patch_size=2, merge_size=2, image_mean=list(OPENAI_CLIP_MEAN),
        image_std=list(OPENAI_CLIP_STD), **pixels,
        # a fresh dict: the classes otherwise mutate their class-level default ``size``
        size={"shortest_edge": pixels["min_pixels"], "longest_edge": pixels["max_pixels"]},
    )
    return transformers.Qwen2_5OmniProcessor(
        image_processor=transformers.Qwen2VLImageProcessor(**vision),
        video_processor=transformers.Qwen2VLVideoProcessor(**vision, min_frames=4, max_frames=768),
        feature_extractor=feature_extractor, tokenizer=tokenizer, chat_template=spec.chat_template,
    )


# ----------------------------------------------------------------------------------------------
# Model configs
# ----------------------------------------------------------------------------------------------

# 2 heads of 32 (GQA, 1 KV head): vLLM's CPU attention needs head_dim >= 32
_TEXT = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
             num_key_value_heads=1, hidden_act="silu", tie_word_embeddings=False,
             use_sliding_window=False, initializer_range=0.02)
_AUDIO = dict(num_mel_bins=128, encoder_layers=2, encoder_attention_heads=4, encoder_ffn_dim=128,
              d_model=64, max_source_positions=1500, activation_function="gelu", scale_embedding=False)


def qwen2_audio_config(ids: dict[str, int], vocab_size: int) -> Any:
    """Tiny ``Qwen2AudioConfig`` (real Qwen2-Audio-7B: 4096 wide, 32 layers, 32 encoder layers)."""
    from transformers import Qwen2AudioConfig

    text = dict(
        _TEXT, model_type="qwen2", vocab_size=vocab_size, max_position_embeddings=8192,
        rms_norm_eps=1e-5, rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
    )
    audio = dict(_AUDIO, model_type="qwen2_audio_encoder")
    return Qwen2AudioConfig(
        audio_config=audio, text_config=text, audio_token_index=ids["<|AUDIO|>"],
        pad_token_id=ids["<|endoftext|>"], tie_word_embeddings=False,
    )


def qwen2_5_omni_thinker_config(ids: dict[str, int], vocab_size: int) -> Any:
    """Tiny ``Qwen2_5OmniThinkerConfig`` (real: 3584 wide, 28 layers, 32-layer audio + vision)."""
    from transformers import Qwen2_5OmniThinkerConfig

    text = dict(
        _TEXT, vocab_size=vocab_size, max_position_embeddings=32768, rms_norm_eps=1e-6,
        max_window_layers=2, sliding_window=32768,
        rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [4, 6, 6]},
        bos_token_id=ids["<|im_start|>"], eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
    )
    audio = dict(_AUDIO, n_window=100, output_dim=_TEXT["hidden_size"])
    vision = dict(
        depth=2, hidden_size=32, intermediate_size=64, num_heads=2, in_channels=3, patch_size=14,
        spatial_merge_size=2, temporal_patch_size=2, window_size=112, fullatt_block_indexes=[1],
        out_hidden_size=_TEXT["hidden_size"], hidden_act="silu",
    )
    return Qwen2_5OmniThinkerConfig(
        audio_config=audio, vision_config=vision, text_config=text,
        audio_token_index=ids["<|AUDIO|>"], image_token_index=ids["<|IMAGE|>"],
        video_token_index=ids["<|VIDEO|>"], audio_start_token_id=ids["<|audio_bos|>"],
        audio_end_token_id=ids["<|audio_eos|>"], user_token_id=ids["user"],
        position_id_per_seconds=25, seconds_per_chunk=2, tie_word_embeddings=False,
        # present in the real thinker_config (read by get_rope_index), not declared by the class
        vision_start_token_id=ids["<|vision_bos|>"], vision_end_token_id=ids["<|vision_eos|>"],
        vision_token_id=ids["<|vision_pad|>"], bos_token_id=ids["<|im_start|>"],
        eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"],
    )


def build_config(arch: str, tokenizer: Any) -> Any:
    """The arch's tiny model config wired to ``tokenizer``'s special-token ids."""
    spec = get_spec(arch)
    wanted = [*spec.specials, *REASONING_TOKENS] + (["user"] if arch != "qwen2_audio" else [])
    ids = token_ids(tokenizer, wanted)
    make = qwen2_audio_config if arch == "qwen2_audio" else qwen2_5_omni_thinker_config
    config = make(ids, len(tokenizer))
    config.architectures = [spec.model_class]
    config.dtype = "float32"
    return config


# ----------------------------------------------------------------------------------------------
# Build / save
# ----------------------------------------------------------------------------------------------


def generation_config(tokenizer: Any) -> Any:
    """Greedy-by-default generation config: stop on ``<|im_end|>`` or ``<|endoftext|>``."""
    from transformers import GenerationConfig

    ids = token_ids(tokenizer, ["<|endoftext|>", "<|im_end|>"])
    return GenerationConfig(
        bos_token_id=ids["<|endoftext|>"], eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]],
        pad_token_id=ids["<|endoftext|>"],
    )


def build_model(arch: str, config: Any, *, seed: int) -> Any:
    """Randomly initialised float32 model of ``config``; the weights depend only on ``seed``."""
    import torch
    import transformers

    model_class = getattr(transformers, get_spec(arch).model_class)
    torch.manual_seed(seed)
    return model_class(config).to(torch.float32).eval()


def _write(arch: str, out_dir: Path, *, seed: int) -> dict[str, Any]:
    """Build tokenizer, processor and model of ``arch`` and save them all into ``out_dir``."""
    import transformers
    from transformers.utils import logging as hf_logging

    started = time.perf_counter()
    tokenizer = build_tokenizer(arch)
    processor = build_processor(arch, tokenizer)
    config = build_config(arch, tokenizer)
    model = build_model(arch, config, seed=seed)
    model.generation_config = generation_config(tokenizer)
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        processor.save_pretrained(out_dir)
        model.save_pretrained(out_dir)
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    return {
        "arch": arch, "seed": seed, "model_class": get_spec(arch).model_class,
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "vocab_size": len(tokenizer), "transformers_version": transformers.__version__,
        "build_seconds": round(time.perf_counter() - started, 3),
    }


def _marker(out_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((Path(out_dir) / MARKER).read_text())
    except (OSError, ValueError):
        return None


def is_complete(out_dir: str | Path, *, arch: str, seed: int) -> bool:
    """Whether ``out_dir`` holds a finished build of ``arch`` with ``seed`` (its marker says so)."""
    marker = _marker(Path(out_dir))
    return bool(marker) and marker.get("arch") == arch and marker.get("seed") == seed


def _replaceable(out_dir: Path) -> bool:
    """Only our own (possibly half-written) outputs may be deleted: never a foreign directory."""
    if not out_dir.exists():
        return True
    if not out_dir.is_dir():
        return False
    names = {p.name for p in out_dir.iterdir()}
    return MARKER in names or names <= _OUTPUT_NAMES


def install_dir(staging: Path, out_dir: Path, *, done: Callable[[], bool], replaceable: Callable[[Path], bool],
                what: str) -> None:
    """Rename the finished ``staging`` directory to ``out_dir`` (replacing an older build).

    ``done()`` says that a concurrent builder already installed an acceptable build (it is kept);
    ``replaceable(out_dir)`` guards against deleting a directory this tool did not write.
    Shared by the tiny models, the tiny judge and the format warm-start.
    """
    for _ in range(3):
        if done():
            return  # a concurrent builder finished first: keep theirs
        if not replaceable(out_dir):
            raise FileExistsError(f"{out_dir} exists and is not a {what} directory: not replacing it")
        shutil.rmtree(out_dir, ignore_errors=True)
        try:
            os.replace(staging, out_dir)
            return
        except OSError:  # someone re-created out_dir in between: look again
            continue
    raise RuntimeError(f"could not move the {what} into {out_dir}")


def _install(staging: Path, out_dir: Path, *, keep_complete: bool, arch: str, seed: int) -> None:
    """:func:`install_dir` for a tiny model of ``arch`` / ``seed``."""
    install_dir(staging, out_dir, done=lambda: keep_complete and is_complete(out_dir, arch=arch, seed=seed),
                replaceable=_replaceable, what="tiny-model")


def _build(arch: str, out_dir: str | Path, *, seed: int, keep_complete: bool) -> Path:
    get_spec(arch)
    out_dir = Path(out_dir).absolute()
    if not _replaceable(out_dir):
        raise FileExistsError(f"{out_dir} exists and is not a tiny-model directory: not replacing it")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        staging.chmod(0o755)
        info = _write(arch, staging, seed=seed)
        (staging / MARKER).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
        _install(staging, out_dir, keep_complete=keep_complete, arch=arch, seed=seed)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir


def build_tiny_model(arch: str, out_dir: str | Path, *, seed: int = 0) -> Path:
    """Build the tiny ``arch`` model + tokenizer + processor into ``out_dir``; returns ``out_dir``.

    An existing build in ``out_dir`` is replaced (a directory holding anything else is refused).
    The files are written into a sibling temporary directory, the marker file last, which is then
    renamed to ``out_dir``: an interrupted build never leaves a directory that
    :func:`ensure_tiny_model` would accept.
    """
    return _build(arch, out_dir, seed=seed, keep_complete=False)


def ensure_tiny_model(arch: str, out_dir: str | Path, *, seed: int = 0) -> Path:
    """``out_dir`` if it already holds a complete build of ``arch``/``seed``; else build it there.

    Safe to call from concurrent processes: each builds privately and the first to finish wins.
    """
    get_spec(arch)
    if is_complete(out_dir, arch=arch, seed=seed):
        return Path(out_dir).absolute()
    return _build(arch, out_dir, seed=seed, keep_complete=True)


# ----------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m audio_thinker.toy.tiny",
        description="Build a tiny random model of a real audio-LM architecture (offline).",
    )
    parser.add_argument("--arch", required=True, help=f"one of: {', '.join(ARCHS)}")
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument("--seed", type=int, default=0, help="weight-init seed (default 0)")
    parser.add_argument("--if-missing", action="store_true",
                        help="keep an existing complete build instead of rebuilding")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the process exit code."""
    args = _parse_args(argv)
    if args.arch not in SPECS:
        print(f"error: unknown --arch {args.arch!r}: use one of {', '.join(ARCHS)}", file=sys.stderr)
        return 2
    build = ensure_tiny_model if args.if_missing else build_tiny_model
    try:
        out = build(args.arch, args.out, seed=args.seed)
    except FileExistsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    info = _marker(out) or {}
    size_mb = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 2**20
    print(f"{args.arch}: {info.get('num_parameters')} parameters, vocab {info.get('vocab_size')}, "
          f"{size_mb:.1f} MB, built in {info.get('build_seconds')} s -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
