"""The tiny models' tokenizer: a byte-level BPE trained here, offline, on a built-in English corpus.

The real Qwen2 / Qwen2.5 / Qwen3 vocabularies have ~152k tokens, which would make a tiny model's
embedding tables ~40 MB. :func:`train_bpe` trains Qwen2's exact pipeline (NFC normaliser, split
regex, byte-level pre-tokenizer; ``Qwen2Tokenizer`` rebuilds it identically from ``vocab`` /
``merges``) to :data:`BPE_VOCAB_SIZE` tokens on a deterministic corpus: the prompt templates of
:mod:`audio_thinker.prompts`, audio-QA words and ``<think>``-style answers. The caller's added
tokens follow the BPE vocabulary in the real order, so every special id keeps its real *offset*
from ``<|endoftext|>``; the reasoning tags :data:`REASONING_TOKENS` come last, as non-special single
ids (they survive ``skip_special_tokens=True`` decoding, which the reward parsers rely on).
Shared by the tiny audio models (:mod:`audio_thinker.toy.tiny`) and the tiny judge
(:mod:`audio_thinker.toy.tiny_judge`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["BPE_VOCAB_SIZE", "REASONING_TOKENS", "token_ids", "train_bpe"]

_PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)  # Qwen2's split regex
#: BPE vocabulary size (256 byte symbols + merges); the added tokens come after it.
BPE_VOCAB_SIZE = 1024
#: Reasoning-format tags: single, non-special ids (kept by ``skip_special_tokens`` decoding).
REASONING_TOKENS = ("<think>", "</think>", "<answer>", "</answer>")

# the corpus: sound names, question templates and free text around the prompt templates
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


def train_bpe(specials: Sequence[str], plain_added: Sequence[str]) -> Any:
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


def token_ids(tokenizer: Any, tokens: Sequence[str]) -> dict[str, int]:
    """``{token: id}``, checking that each token is ONE id of the tokenizer's vocabulary."""
    ids: dict[str, int] = {}
    for token in tokens:
        encoded = tokenizer.encode(token, add_special_tokens=False)
        if len(encoded) != 1:
            raise ValueError(f"{token!r} is not a single token: {encoded}")
        ids[token] = encoded[0]
    return ids

