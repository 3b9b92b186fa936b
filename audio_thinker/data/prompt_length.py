"""How many prompt tokens a row costs: the one home of the prompt-length check.

A prompt is the chat template's rendering of the row's messages (the question, its choices and the
prompt mode's instruction, :mod:`audio_thinker.prompts`) in which every ``<|AUDIO|>`` placeholder
becomes one token per audio frame of the encoder's output. The feature extractor (Whisper's, for
Qwen2-Audio and the Qwen2.5-Omni thinker) makes one mel frame per ``hop_length`` (160) samples of
16 kHz audio, up to its window (``n_samples``: 30 s for Qwen2-Audio, 300 s for Omni); the encoder's
stride-2 convolution and stride-2 pooling then keep ``((frames - 1) // 2 + 1 - 2) // 2 + 1`` tokens
(transformers' ``_get_feat_extract_output_lengths``): 25 tokens per second, 750 for 30 s.

* :func:`count_audio_tokens` and :class:`AudioTokenRule`: audio tokens of a clip from its number of
  samples or its duration (pure). A clip whose duration is unknown costs what the longest clip the
  loader keeps costs (``audio.max_seconds``, else the extractor's window): an upper bound.
* :func:`clip_seconds`: a clip's duration from its header (``soundfile.info``), never decoding it;
  None when the header says nothing (a video, an unreadable file). :func:`seconds_to_count`: what
  a check counts for a file (a video at the cap; a corrupt wav is left to the decoder's count).
* :class:`PromptLengthCounter`: text tokens (the model's own chat template and tokenizer, passed in
  as its processor: duck-typed, nothing imported here) plus audio tokens, equal to the length of
  the ``input_ids`` the processor makes for the same prompt and clip.
* :func:`question_chars` / :func:`check_question_chars`: the bound used where no tokenizer is at
  hand (data-set conversion, benchmark loading, CoT): the question and its choices may hold at most
  ``max_question_chars`` characters (:data:`DEFAULT_MAX_QUESTION_CHARS`). It catches a pathological
  row (a 100k-character question) early; the token count, where a model is known, is the real check.

Whatever finds a prompt too long reports it under :data:`PROMPT_TOO_LONG` with the figures
(:func:`too_long_detail`) and skips the row; nothing is truncated silently.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from audio_thinker.data.rows import AUDIO_PLACEHOLDER, inline_audio

#: the reason (RowError reason, problem kind, record error) of a prompt over its bound
PROMPT_TOO_LONG = "prompt_too_long"
#: default bound on a question plus its choices, in characters, where no tokenizer counts tokens
#: (~1000 tokens of English; real AVQA/MMAU/MMAR questions are a few hundred characters at most)
DEFAULT_MAX_QUESTION_CHARS = 4000
#: Whisper's feature extractor (Qwen2-Audio, Qwen2.5-Omni): samples per mel frame, 16 kHz input
HOP_LENGTH = 160
SAMPLE_RATE = 16_000
#: Qwen2-Audio's feature window (30 s); longer input is cut by its feature extractor
QWEN2_AUDIO_WINDOW = 480_000


def count_audio_tokens(num_samples: int, *, hop_length: int = HOP_LENGTH,
                       window_samples: int | None = QWEN2_AUDIO_WINDOW) -> int:
    """Audio tokens the model's prompt holds for a clip of ``num_samples`` samples (at the
    extractor's rate), as the Qwen2-Audio / Qwen2.5-Omni processors expand ``<|AUDIO|>``.

    >>> count_audio_tokens(16_000), count_audio_tokens(480_000), count_audio_tokens(800_000)
    (25, 750, 750)
    >>> count_audio_tokens(800_000, window_samples=4_800_000), count_audio_tokens(160)
    (1250, 0)
    """
    if num_samples < 0:
        raise ValueError(f"num_samples must be >= 0, got {num_samples}")
    kept = num_samples if window_samples is None else min(num_samples, window_samples)
    frames = -(-kept // hop_length)  # the feature attention mask: one frame per started hop
    after_conv = (frames - 1) // 2 + 1
    return max(0, (after_conv - 2) // 2 + 1)


@dataclass(frozen=True)
class AudioTokenRule:
    """Audio tokens of a clip from its duration: the feature extractor's rate, hop and window, and
    the loader's cap (``audio.max_seconds``: the loader cuts longer clips; None: no cap)."""

    sample_rate: int = SAMPLE_RATE
    hop_length: int = HOP_LENGTH
    window_samples: int | None = QWEN2_AUDIO_WINDOW
    max_seconds: float | None = 30.0

    @classmethod
    def from_processor(cls, processor: Any, *, max_seconds: float | None = 30.0) -> AudioTokenRule:
        """The rule of a processor's feature extractor (Whisper's attributes; defaults otherwise)."""
        extractor = getattr(processor, "feature_extractor", None)
        return cls(sample_rate=int(getattr(extractor, "sampling_rate", SAMPLE_RATE)),
                   hop_length=int(getattr(extractor, "hop_length", HOP_LENGTH)),
                   window_samples=getattr(extractor, "n_samples", QWEN2_AUDIO_WINDOW),
                   max_seconds=max_seconds)

    def samples(self, seconds: float | None) -> int:
        """Samples the loader hands the processor for a clip of ``seconds`` (rounded up; None, an
        unknown duration: the longest clip the loader keeps, or the extractor's window).

        >>> AudioTokenRule().samples(1.0), AudioTokenRule().samples(None), AudioTokenRule().samples(95.0)
        (16000, 480000, 480000)
        """
        cap = None if self.max_seconds is None else math.ceil(self.max_seconds * self.sample_rate)
        if seconds is None or not math.isfinite(seconds):
            if cap is None and self.window_samples is None:
                raise ValueError("a clip of unknown duration without audio.max_seconds or a feature window "
                                 "has no bound: set audio.max_seconds")
            return cap if cap is not None else int(self.window_samples)  # type: ignore[arg-type]
        wanted = math.ceil(max(0.0, seconds) * self.sample_rate)
        return wanted if cap is None else min(wanted, cap)

    def tokens(self, seconds: float | None) -> int:
        """Audio tokens of a clip of ``seconds`` (None: unknown, counted at the cap).

        >>> AudioTokenRule().tokens(30.0), AudioTokenRule().tokens(2.0), AudioTokenRule().tokens(None)
        (750, 50, 750)
        """
        return self.tokens_of_samples(self.samples(seconds))

    def tokens_of_samples(self, num_samples: int) -> int:
        """Audio tokens of a decoded clip of ``num_samples`` samples."""
        return count_audio_tokens(num_samples, hop_length=self.hop_length, window_samples=self.window_samples)


def clip_seconds(path: str | os.PathLike[str]) -> float | None:
    """The duration of the clip at ``path`` from its header (no decoding), or None when unknown
    (a video container, an unreadable or missing file)."""
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except Exception:  # noqa: BLE001 - soundfile raises several types; unknown means "count the cap"
        return None
    if not info.samplerate or info.frames <= 0:
        return None
    return info.frames / info.samplerate


def seconds_to_count(path: str | os.PathLike[str]) -> float | None:
    """The duration a length check counts for the clip at ``path``: its header's; None (count the
    cap) for a file whose header says nothing and that only ffmpeg decodes (a video, an unknown
    suffix); 0 for an audio file (``.wav``, ``.flac``, ...) whose header is unreadable: it fails
    when decoded and is counted and skipped then, as a corrupt clip, not as a long prompt."""
    seconds = clip_seconds(path)
    if seconds is not None:
        return seconds
    from audio_thinker.data.audio import AUDIO_SUFFIXES

    return 0.0 if Path(path).suffix.lower() in AUDIO_SUFFIXES else None


def _chat(messages: Sequence[Mapping[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """Messages as a chat template renders them (``<audio>`` placeholders inlined), and how many
    audio items they hold."""
    listed = [dict(m) for m in messages]
    n_placeholders = sum(str(m.get("content", "")).count(AUDIO_PLACEHOLDER) for m in listed
                         if isinstance(m.get("content"), str))
    if n_placeholders:
        listed = inline_audio(listed, [""] * n_placeholders)
    n_audio = sum(1 for m in listed if isinstance(m.get("content"), list)
                  for part in m["content"] if isinstance(part, Mapping) and part.get("type") == "audio")
    return listed, n_audio


class PromptLengthCounter:
    """Prompt tokens of a chat (with its clips) for one model: the processor's chat template and
    tokenizer for the text, :class:`AudioTokenRule` for the audio.

    ``processor`` is the model's processor (``apply_chat_template``, ``tokenizer``,
    ``feature_extractor``); ``chat_template_kwargs`` go to ``apply_chat_template`` (verl's
    ``data.apply_chat_template_kwargs``). Messages may hold ``<audio>`` placeholders (rows) or
    inlined ``{"type": "audio"}`` items (evaluation prompts).
    """

    def __init__(self, processor: Any, *, max_seconds: float | None = 30.0,
                 chat_template_kwargs: Mapping[str, Any] | None = None) -> None:
        self.processor = processor
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.audio = AudioTokenRule.from_processor(processor, max_seconds=max_seconds)
        self.chat_template_kwargs = dict(chat_template_kwargs or {})

    def text_tokens(self, messages: Sequence[Mapping[str, Any]]) -> int:
        """Tokens of the rendered prompt other than the clips' (each ``<|AUDIO|>`` not counted)."""
        chat, n_audio = _chat(messages)
        rendered = self.processor.apply_chat_template(chat, add_generation_prompt=True, tokenize=False,
                                                      **self.chat_template_kwargs)
        ids = self.tokenizer(rendered, add_special_tokens=False)["input_ids"]
        return len(ids) - n_audio

    def count(self, messages: Sequence[Mapping[str, Any]], seconds: Sequence[float | None]) -> int:
        """Prompt tokens of ``messages`` with clips of ``seconds`` (None: unknown, counted at the cap)."""
        return self.text_tokens(messages) + sum(self.audio.tokens(s) for s in seconds)

    def count_samples(self, messages: Sequence[Mapping[str, Any]], num_samples: Sequence[int]) -> int:
        """Prompt tokens of ``messages`` with decoded clips of ``num_samples`` samples each."""
        return self.text_tokens(messages) + sum(self.audio.tokens_of_samples(n) for n in num_samples)


def too_long_detail(n_tokens: int, limit: int, key: str) -> str:
    """The message of a prompt over its bound: the figures and the key that raises it.

    >>> too_long_detail(25_130, 1024, "data.max_prompt_length")
    'prompt of 25130 tokens > data.max_prompt_length=1024 (raise data.max_prompt_length to keep it)'
    """
    return f"prompt of {n_tokens} tokens > {key}={limit} (raise {key} to keep it)"


def question_chars(question: str, choices: Sequence[Any]) -> int:
    """Characters of a question and its choices (what varies between rows of one prompt mode).

    >>> question_chars("Loud?", ["yes", "no"])
    10
    """
    return len(str(question)) + sum(len(str(c)) for c in choices)


def check_question_chars(question: str, choices: Sequence[Any], *, max_chars: int | None) -> str | None:
    """None when the question and choices fit ``max_chars`` (None: no bound), else why not.

    >>> check_question_chars("Q" * 5000, ["a", "b"], max_chars=4000)
    'question and choices of 5002 characters > max_question_chars=4000'
    >>> check_question_chars("Loud?", ["yes", "no"], max_chars=4000) is None
    True
    """
    if max_chars is None:
        return None
    n = question_chars(question, choices)
    return None if n <= max_chars else f"question and choices of {n} characters > max_question_chars={max_chars}"
