"""Tiny, randomly initialised models of the REAL audio-LM architectures, built fully offline.

``python -m audio_thinker.toy.tiny --arch {qwen2_audio,qwen2_5_omni_thinker} --out DIR [--seed S]``
writes a directory that loads through the very code path used for the real 7B checkpoints::

    AutoConfig / AutoTokenizer / AutoProcessor .from_pretrained(DIR)
    Qwen2AudioForConditionalGeneration.from_pretrained(DIR)            # --arch qwen2_audio
    Qwen2_5OmniThinkerForConditionalGeneration.from_pretrained(DIR)    # --arch qwen2_5_omni_thinker

Design decisions
----------------
* **Real architecture, tiny sizes.** The configs load as the real config classes (``Qwen2AudioConfig``,
  ``Qwen2_5OmniThinkerConfig``) with a 64-wide, 2-layer text model (2 heads, 1 KV head, GQA like the
  real Omni; ``head_dim=32``, the least vLLM's CPU attention accepts) and a 64-wide, 2-layer audio
  encoder. What the audio path depends on stays real:
  ``num_mel_bins=128``, ``max_source_positions=1500`` (Qwen2-Audio's encoder insists on exactly
  ``1500 * 2 = 3000`` mel frames, i.e. 30 s padded input), Omni's ``n_window=100`` chunking,
  ``position_id_per_seconds=25``, ``seconds_per_chunk=2`` and an M-RoPE section scaled from the
  real ``[16, 24, 24]`` to ``[4, 6, 6]`` for ``head_dim=32``. Word embeddings are untied (as in both
  7B releases). Weights are float32; each directory is a few MB.
* **The real config.json layout.** ``config.json`` is not the file transformers 5 would write: it
  has the key set of the real checkpoint's file (:func:`config_json`), nested keys included.
  Qwen2-Audio-7B-Instruct's was saved by transformers 4.45 and is sparse (no top-level
  ``tie_word_embeddings`` or ``pad_token_id``; ``rope_theta``, ``torch_dtype``); the thinker's is
  Qwen2.5-Omni-7B's ``thinker_config`` as the converter writes it (4.50's ``rope_scaling``,
  ``init_std``, ``torch_dtype`` in each sub-config). Code that reads a key only transformers 5
  writes fails on the tiny models as it would on the real ones. The one addition: the sizes that
  Qwen2-Audio's ``text_config`` leaves to defaults (:data:`QWEN2_AUDIO_ADDED_TEXT_KEYS`).
* **Real special-token wiring, compact ids.** A 152k vocabulary would cost ~40 MB, so the tokenizer
  is a byte-level BPE trained offline (:mod:`audio_thinker.toy.tokenizer`: Qwen2's exact pipeline,
  so ``Qwen2Tokenizer`` rebuilds it identically from ``vocab``/``merges``). The added tokens follow
  the BPE vocabulary in the real order, so
  every special id keeps its real *offset* from ``<|endoftext|>`` (real 151643 + k == tiny
  ``BASE + k``): ``<|AUDIO|>`` is base+3, ``<|audio_bos|>`` base+4, Omni's ``<|IMAGE|>`` base+12...
  The configs point ``audio_token_index`` / ``audio_start_token_id`` / bos / eos (/ pad, where the
  real file names one) at those ids.
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
  file last, then renames into place (:mod:`audio_thinker.toy.builds`), so a half-written directory
  is never mistaken for a model.

Note on the Omni thinker: for audio-only inputs (no image/video grids) ``get_rope_index`` returns
plain sequential positions (copied on the 3 M-RoPE axes); ``audio_seqlens`` (=
``feature_attention_mask.sum(-1)``) only shapes positions when vision inputs are present.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audio_thinker.toy.builds import build_dir, init_model, is_replaceable, quiet_hub, read_marker
from audio_thinker.toy.tokenizer import REASONING_TOKENS, token_ids, train_bpe

__all__ = [
    "ARCHS", "CONFIG_LAYOUT", "MARKER", "OUTPUT_NAMES", "QWEN2_AUDIO_ADDED_TEXT_KEYS", "REASONING_TOKENS",
    "SPECS", "TinySpec", "build_config", "build_model", "build_processor", "build_tiny_model", "build_tokenizer",
    "config_json", "ensure_tiny_model", "generation_config", "get_spec", "is_complete", "main",
    "qwen2_5_omni_thinker_config_json", "qwen2_audio_config_json", "read_tiny_marker", "replaceable", "token_ids",
]

#: Written last by a build: its presence (with the right arch/seed) marks a complete directory.
MARKER = "tiny_model_complete.json"
#: Every file a build writes (and legacy/real-layout names): what a half-written build may hold.
OUTPUT_NAMES = frozenset({
    MARKER, "config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
    "tokenizer_config.json", "processor_config.json", "preprocessor_config.json",
    "video_preprocessor_config.json", "chat_template.jinja", "chat_template.json",
    "special_tokens_map.json", "added_tokens.json", "vocab.json", "merges.txt",
})
SAMPLING_RATE = 16_000
#: Recorded in the marker: the version of the config.json layout (:func:`config_json`).
CONFIG_LAYOUT = "real-checkpoint-keys/1"

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
# Tokenizer, processor
# ----------------------------------------------------------------------------------------------


def build_tokenizer(arch: str) -> Any:
    """The arch's ``Qwen2Tokenizer``: tiny BPE, the real special tokens and chat template."""
    from transformers import Qwen2Tokenizer

    spec = get_spec(arch)
    named = _OMNI_NAMED_TOKENS if arch == "qwen2_5_omni_thinker" else {}
    return Qwen2Tokenizer(
        tokenizer_object=train_bpe(spec.specials, spec.plain_added),
        bos_token=None, unk_token=None, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        extra_special_tokens=list(spec.specials[1:]), chat_template=spec.chat_template,
        model_max_length=spec.model_max_length, errors="replace", split_special_tokens=False,
        clean_up_tokenization_spaces=False, **named,
    )


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
_TEXT_SIZES = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                   num_key_value_heads=1)
_AUDIO_SIZES = dict(encoder_layers=2, encoder_attention_heads=4, encoder_ffn_dim=128, d_model=64)
#: The sizes that Qwen2-Audio-7B-Instruct's ``text_config`` leaves to ``Qwen2Config``'s defaults
#: (4096 wide, 32 layers, 32/32 heads). A tiny model must name them: these are the only keys its
#: config.json adds to the real file's key set.
QWEN2_AUDIO_ADDED_TEXT_KEYS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads")
#: The tiny weights are float32; the real files say bfloat16 in the same places.
_DTYPE = "float32"


def qwen2_audio_config_json(ids: dict[str, int], vocab_size: int) -> dict[str, Any]:
    """Tiny Qwen2-Audio config.json, in the layout of Qwen2-Audio-7B-Instruct's own file.

    That file was saved by transformers 4.45 and is sparse: no top-level ``tie_word_embeddings``
    or ``pad_token_id``, the legacy ``rope_theta`` / ``torch_dtype`` keys, and a ``text_config``
    without the model sizes (:data:`QWEN2_AUDIO_ADDED_TEXT_KEYS`, the only keys added here).
    """
    audio = dict(
        model_type="qwen2_audio_encoder", num_mel_bins=128, **_AUDIO_SIZES, dropout=0.0,
        attention_dropout=0.0, activation_function="gelu", activation_dropout=0.0, scale_embedding=False,
        init_std=0.02, max_source_positions=1500,
    )
    text = dict(
        bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"],
        intermediate_size=_TEXT_SIZES["intermediate_size"], max_position_embeddings=8192, model_type="qwen2",
        rms_norm_eps=1e-5, rope_theta=10000, sliding_window=32768, torch_dtype=_DTYPE, use_mrope=False,
        vocab_size=vocab_size, **{key: _TEXT_SIZES[key] for key in QWEN2_AUDIO_ADDED_TEXT_KEYS},
    )
    return dict(
        architectures=[SPECS["qwen2_audio"].model_class], audio_config=audio,
        audio_token_index=ids["<|AUDIO|>"], model_type="qwen2_audio", text_config=text, torch_dtype=_DTYPE,
        vocab_size=vocab_size,
    )


def qwen2_5_omni_thinker_config_json(ids: dict[str, int], vocab_size: int) -> dict[str, Any]:
    """Tiny thinker config.json, in the layout of Qwen2.5-Omni-7B's ``thinker_config``.

    That is what :func:`audio_thinker.models.omni_thinker.thinker_config` writes for the real
    checkpoint: transformers 4.50's keys (``rope_scaling`` + ``rope_theta``, ``torch_dtype`` in
    every sub-config, ``init_std``, the vision encoder's ``embed_dim`` / ``in_chans`` aliases), no
    thinker-level ``tie_word_embeddings``. M-RoPE section scaled from [16, 24, 24] to head_dim 32.
    """
    audio = dict(
        activation_dropout=0.0, activation_function="gelu", attention_dropout=0.0, dropout=0.0,
        **_AUDIO_SIZES, encoder_layerdrop=0.0, init_std=0.02, max_source_positions=1500,
        model_type="qwen2_5_omni_audio_encoder", n_window=100, num_hidden_layers=_AUDIO_SIZES["encoder_layers"],
        num_mel_bins=128, output_dim=_TEXT_SIZES["hidden_size"], scale_embedding=False, torch_dtype=_DTYPE,
    )
    rope = {"mrope_section": [4, 6, 6], "rope_type": "default", "type": "default"}
    text = dict(
        attention_dropout=0.0, bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"],
        hidden_act="silu", **_TEXT_SIZES, init_std=0.02, initializer_range=0.02, max_position_embeddings=32768,
        max_window_layers=28, model_type="qwen2_5_omni_text", rms_norm_eps=1e-6, rope_scaling=rope,
        rope_theta=1000000.0, sliding_window=32768, tie_word_embeddings=False, torch_dtype=_DTYPE,
        use_cache=True, use_sliding_window=False, vocab_size=vocab_size,
    )
    vision = dict(
        depth=2, embed_dim=32, fullatt_block_indexes=[1], hidden_act="silu", hidden_size=32, in_channels=3,
        in_chans=3, init_std=0.02, intermediate_size=64, model_type="qwen2_5_omni_vision_encoder", num_heads=2,
        out_hidden_size=_TEXT_SIZES["hidden_size"], patch_size=14, spatial_merge_size=2, spatial_patch_size=14,
        temporal_patch_size=2, tokens_per_second=25, torch_dtype=_DTYPE, window_size=112,
    )
    return dict(
        architectures=[SPECS["qwen2_5_omni_thinker"].model_class], audio_config=audio,
        audio_end_token_id=ids["<|audio_eos|>"], audio_start_token_id=ids["<|audio_bos|>"],
        audio_token_index=ids["<|AUDIO|>"], bos_token_id=ids["<|im_start|>"], eos_token_id=ids["<|im_end|>"],
        ignore_index=-100, image_token_index=ids["<|IMAGE|>"], init_std=0.02, model_type="qwen2_5_omni_thinker",
        pad_token_id=ids["<|endoftext|>"], position_id_per_seconds=25, seconds_per_chunk=2, text_config=text,
        torch_dtype=_DTYPE, user_token_id=ids["user"], video_token_index=ids["<|VIDEO|>"], vision_config=vision,
        vision_end_token_id=ids["<|vision_eos|>"], vision_start_token_id=ids["<|vision_bos|>"],
        vision_token_id=ids["<|vision_pad|>"],
    )


def config_json(arch: str, tokenizer: Any) -> dict[str, Any]:
    """The arch's tiny config.json (the real checkpoint's key layout) wired to ``tokenizer``'s ids."""
    import transformers

    spec = get_spec(arch)
    wanted = [*spec.specials, *REASONING_TOKENS] + (["user"] if arch != "qwen2_audio" else [])
    ids = token_ids(tokenizer, wanted)
    make = qwen2_audio_config_json if arch == "qwen2_audio" else qwen2_5_omni_thinker_config_json
    return dict(make(ids, len(tokenizer)), transformers_version=transformers.__version__)


def build_config(arch: str, tokenizer: Any) -> Any:
    """The arch's tiny model config: :func:`config_json` read the way ``AutoConfig`` reads a file."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    data = config_json(arch, tokenizer)
    return CONFIG_MAPPING[data["model_type"]].from_dict(data)


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
    import transformers

    return init_model(getattr(transformers, get_spec(arch).model_class), config, seed=seed)


def _write(arch: str, out_dir: Path, *, seed: int) -> dict[str, Any]:
    """Build tokenizer, processor and model of ``arch``, save them into ``out_dir``; the marker record."""
    import transformers

    started = time.perf_counter()
    tokenizer = build_tokenizer(arch)
    processor = build_processor(arch, tokenizer)
    config = build_config(arch, tokenizer)
    model = build_model(arch, config, seed=seed)
    model.generation_config = generation_config(tokenizer)
    with quiet_hub():
        processor.save_pretrained(out_dir)
        model.save_pretrained(out_dir)
    # the real checkpoint's key layout, not the one transformers 5 writes (the same model config)
    (out_dir / "config.json").write_text(json.dumps(config_json(arch, tokenizer), indent=2, sort_keys=True) + "\n")
    return {
        "arch": arch, "seed": seed, "model_class": get_spec(arch).model_class, "config_layout": CONFIG_LAYOUT,
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "vocab_size": len(tokenizer), "transformers_version": transformers.__version__,
        "build_seconds": round(time.perf_counter() - started, 3),
    }


def read_tiny_marker(out_dir: str | Path) -> dict[str, Any] | None:
    """The :data:`MARKER` record of a tiny build (the tiny judge's too), or None."""
    return read_marker(out_dir, MARKER)


def is_complete(out_dir: str | Path, *, arch: str, seed: int) -> bool:
    """Whether ``out_dir`` holds a finished build of ``arch`` with ``seed`` (its marker says so).

    A tiny model built before its config.json took the real layout (no ``config_layout`` in the
    marker, or an older one) is not complete: :func:`ensure_tiny_model` rebuilds it.
    """
    marker = read_tiny_marker(out_dir)
    if not marker or marker.get("arch") != arch or marker.get("seed") != seed:
        return False
    return arch not in SPECS or marker.get("config_layout") == CONFIG_LAYOUT


def replaceable(out_dir: Path) -> bool:
    """Only our own (possibly half-written) tiny builds may be deleted: never a foreign directory."""
    return is_replaceable(out_dir, marker=MARKER, outputs=OUTPUT_NAMES)


def _build(arch: str, out_dir: str | Path, *, seed: int, keep_complete: bool) -> Path:
    get_spec(arch)
    return build_dir(
        out_dir, lambda staging: _write(arch, staging, seed=seed), marker=MARKER, replaceable=replaceable,
        done=lambda: keep_complete and is_complete(out_dir, arch=arch, seed=seed), what="tiny-model",
    )


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
    info = read_tiny_marker(out) or {}
    size_mb = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 2**20
    print(f"{args.arch}: {info.get('num_parameters')} parameters, vocab {info.get('vocab_size')}, "
          f"{size_mb:.1f} MB, built in {info.get('build_seconds')} s -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
