"""A tiny, randomly initialised judge of the REAL Qwen3-8B-Base architecture, built fully offline.

``python -m audio_thinker.toy.tiny_judge --out DIR [--seed S] [--prime-steps N]`` writes a
directory that loads through the code path the real judge uses (``AutoTokenizer`` /
``AutoModelForCausalLM`` ``.from_pretrained(DIR)``): a ``Qwen3ForCausalLM`` 64 wide and 2 layers
deep (2 query heads, 1 KV head, ``head_dim`` 32, the least vLLM's CPU attention accepts; QK-norm,
untied embeddings: the 8B release's layout at toy size).

Why it exists: the judge pool's ``hf`` backend (:mod:`reward_workers.hf_worker`) must be tested
end to end on CPU without downloads. Its verdicts are random (mostly unparseable, which exercises
the worst-verdict rule); what the tests check is the plumbing: prompts in, batched left-padded
generation, continuations out, parsing, retries and restarts.

Verdict-format priming (``prime_steps`` > 0; the CPU demo uses :data:`DEMO_PRIME_STEPS`)
    A random judge's continuations never parse, so a demo with it only ever exercises the
    worst-verdict rule of R_c/R_t. Priming is a short supervised run (plain AdamW in float32
    on CPU, deterministic given ``seed``): ``prime_steps`` batches of :data:`PRIME_BATCH_SIZE`
    judge prompts (:func:`audio_thinker.rewards.judge_prompts.build_judge_prompt`, both kinds, on
    made-up questions, choices and reasonings), each followed by a verdict line drawn at random
    (`` Yes\\n`` / `` No\\n``; `` 0.0\\n`` .. `` 1.0\\n``, the form of the prompts' few-shot
    examples), with the loss on the verdict tokens only (the training loop is
    :func:`audio_thinker.toy.loop.fit`, shared with the policy's warm-start). Like the policy's format warm-start
    (:mod:`audio_thinker.toy.warmstart`) it teaches the FORMAT, not the judgement: the verdicts
    it learns carry no information about the case (greedy decoding gives the same verdict for
    nearly every prompt). After priming, the greedy continuations (the judge pool's generation,
    8 new tokens) of :data:`PRIME_EVAL_PROMPTS` fresh prompts are parsed, and the parse rates
    (per kind, ``all``) and the share of exactly well-formed first lines (``well_formed``) are
    written into the marker with the loss figures and timings. The 2-layer model learns the
    verdict's first tokens quickly but hardly what precedes the current token, so a quality
    verdict may run on after its two digits (`` 0.0.0.0``), which the strict verdict parser refuses
    (a number written in a way it does not read exactly). Telling the two kinds apart (both prompts
    end in ``:``) also takes a while: at 30-60 steps some seeds answer the consistency prompt with a
    score. With the defaults (160 steps of 4 prompts, lr 2e-2; about 30 s on two shared CPU cores)
    100 % of fresh prompts parse for seed 0, every consistency verdict is `` Yes`` or `` No`` and
    every quality verdict well-formed; at 80 steps the quality verdicts of this 2-head model still
    ran on (`` 0.0.0.0``: 50 % parsed).

The tokenizer is the tiny models' locally trained byte-level BPE (:mod:`audio_thinker.toy.tokenizer`)
with Qwen3's added tokens appended in the real order, so each keeps its real offset from ``<|endoftext|>`` (``<think>`` is base + 24 as in
Qwen3's 151667 = 151643 + 24). As in the real *base* model, ``<|endoftext|>`` is eos and pad.
The build is crash-safe and deterministic exactly like the audio tiny models (same marker file,
same staging-directory rename: :mod:`audio_thinker.toy.builds`), with ``arch`` recorded as :data:`JUDGE_ARCH` and ``prime_steps``
recorded too: :func:`ensure_tiny_judge` rebuilds a directory whose ``seed`` or ``prime_steps``
differs (a marker from before priming existed counts as ``prime_steps`` 0).
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from audio_thinker.toy.builds import build_dir, init_model, quiet_hub
from audio_thinker.toy.loop import fit, loss_figures
from audio_thinker.toy.tiny import MARKER, is_complete, read_tiny_marker, replaceable
from audio_thinker.toy.tokenizer import token_ids, train_bpe

__all__ = [
    "DEMO_PRIME_STEPS", "JUDGE_ARCH", "build_judge_config", "build_judge_tokenizer", "build_tiny_judge",
    "ensure_tiny_judge", "is_complete_judge", "measure_parse_rate",
]

#: ``arch`` written into the marker file of a tiny judge build
JUDGE_ARCH = "qwen3_judge"

#: verdict-format priming steps of the demo judge (what ``audio_thinker.toy.prepare`` builds)
DEMO_PRIME_STEPS = 160
#: judge prompts per priming step (half consistency, half quality) and AdamW's peak learning rate
PRIME_BATCH_SIZE = 4
PRIME_LR = 2e-2
#: fresh prompts the parse rate written into the marker is measured on after priming
PRIME_EVAL_PROMPTS = 32

#: Qwen3 added tokens, in id order: special ones (real ids 151643..151656) ...
_QWEN3_SPECIALS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
)
#: ... then plain ones (151657..151666); ``train_bpe`` appends ``<think>``/``</think>`` (151667/8)
#: and ``<answer>``/``</answer>`` (not in Qwen3; harmless extra ids) after these.
_QWEN3_PLAIN_ADDED = (
    "<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>",
    "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>", "<tool_response>", "</tool_response>",
)
#: Qwen3-8B-Base handles 32k tokens; the few-shot judge prompts need a few thousand tiny-BPE tokens.
_MAX_POSITIONS = 32768


def build_judge_tokenizer() -> Any:
    """A ``Qwen2Tokenizer`` (Qwen3's tokenizer class) on the tiny BPE; eos = pad = ``<|endoftext|>``."""
    from transformers import Qwen2Tokenizer

    return Qwen2Tokenizer(
        tokenizer_object=train_bpe(_QWEN3_SPECIALS, _QWEN3_PLAIN_ADDED),
        bos_token=None, unk_token=None, eos_token="<|endoftext|>", pad_token="<|endoftext|>",
        extra_special_tokens=list(_QWEN3_SPECIALS[1:]), model_max_length=_MAX_POSITIONS,
        errors="replace", split_special_tokens=False, clean_up_tokenization_spaces=False,
    )


def build_judge_config(tokenizer: Any) -> Any:
    """Tiny ``Qwen3Config`` (real 8B: 4096 wide, 36 layers, 32/8 heads, head_dim 128, untied)."""
    from transformers import Qwen3Config

    ids = token_ids(tokenizer, ["<|endoftext|>"])
    config = Qwen3Config(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, head_dim=32, hidden_act="silu",
        max_position_embeddings=_MAX_POSITIONS, rms_norm_eps=1e-6, tie_word_embeddings=False,
        rope_parameters={"rope_type": "default", "rope_theta": 1e6}, attention_bias=False,
        use_sliding_window=False, initializer_range=0.02,
        bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|endoftext|>"],
        pad_token_id=ids["<|endoftext|>"],
    )
    config.architectures = ["Qwen3ForCausalLM"]
    config.dtype = "float32"
    return config


# ----------------------------------------------------------------------------------------------
# Verdict-format priming
# ----------------------------------------------------------------------------------------------

_SOURCES = (
    "tone", "beep", "voice", "speaker", "melody", "drum", "bird", "engine", "bell", "piano",
    "violin", "crowd", "dog", "chord", "rhythm", "siren", "flute", "guitar", "clap", "whistle",
)
_ADJECTIVES = (
    "higher", "lower", "louder", "quieter", "longer", "shorter", "faster", "slower", "brighter",
    "closer", "sharper", "softer",
)
_NUMBERS = ("one", "two", "three", "four", "five", "six")
_PLACES = ("start", "middle", "end", "first half", "second half", "background")
_QUESTIONS = (
    "Which {src} is {adj}?", "How many {src}s are there?", "Is the {src} {adj} or {adj2}?",
    "What is the main sound source?", "Which sound comes first, the {src} or the {src2}?",
    "Does the {src} get {adj} over time?", "Where in the clip is the {src} {adj}?",
    "What plays the melody?", "Which half of the clip is {adj}?", "How many times does the {src} repeat?",
)
_SENTENCES = (
    "I hear a {src} at the {place}.", "The {src} sounds {adj} than the {src2}.",
    "There are {num} {src}s in the clip.", "So the answer is {choice}.",
    "It is hard to tell, maybe {choice}.", "The pitch goes {dir} over time.",
    "Let me compare the options.", "I count {num} events with silence in between.",
    "The {src} at the {place} is {adj}.", "This rules out {choice}.", "I think it is {choice}.",
    "The sound is steady and clear.", "There is some noise in the {place}.",
    "The first one is {adj} and the second one is {adj2}.", "Nothing changes after the {place}.",
    "The question asks about the {src}.", "Maybe {choice}, maybe not.",
)
_DIRECTIONS = ("up", "down", "up and down")


def _synthetic_case(rng: random.Random) -> dict[str, Any]:
    """A made-up judge case (question, choices, think, answer) of varied length and content."""
    src, src2 = rng.sample(_SOURCES, 2)
    adj, adj2 = rng.sample(_ADJECTIVES, 2)
    fill = {"src": src, "src2": src2, "adj": adj, "adj2": adj2}
    pool = rng.choice((_NUMBERS, _ADJECTIVES, _SOURCES, _PLACES, ("yes", "no"), ("the first", "the second")))
    choices = rng.sample(pool, min(len(pool), rng.randint(2, 4)))
    if rng.random() < 0.2:
        choices.append("none of them")
    sentences = []
    for _ in range(rng.randint(0, 6)):
        a, b = rng.sample(_ADJECTIVES, 2)
        sentences.append(rng.choice(_SENTENCES).format(
            src=rng.choice(_SOURCES), src2=rng.choice(_SOURCES), adj=a, adj2=b,
            place=rng.choice(_PLACES), num=rng.choice(_NUMBERS), dir=rng.choice(_DIRECTIONS),
            choice=rng.choice(choices)))
    answer = rng.choice(choices) if rng.random() < 0.9 else rng.choice(_SOURCES)
    return {"question": rng.choice(_QUESTIONS).format(**fill), "choices": choices,
            "think": " ".join(sentences), "answer": answer}


def _verdict_target(kind: str, rng: random.Random) -> str:
    """A well-formed verdict line, drawn at random (it carries no judgement): `` Yes``/`` No`` or
    `` 0.0`` .. `` 1.0``, with the newline that ends the judge's generation."""
    if kind == "consistency":
        return f" {rng.choice(('Yes', 'No'))}\n"
    return f" {rng.randrange(11) / 10:.1f}\n"


def _judge_prompts(rng: random.Random, n: int) -> list[tuple[str, str]]:
    """``n`` (kind, prompt) pairs alternating between the two judge kinds."""
    from audio_thinker.rewards.judge_prompts import build_judge_prompt

    kinds = ("consistency", "quality")
    return [(kinds[i % 2], build_judge_prompt(kinds[i % 2], **_synthetic_case(rng))) for i in range(n)]


def _verdict_loss(model: Any, tokenizer: Any, rows: Sequence[tuple[list[int], list[int]]]) -> Any:
    """Cross-entropy of the verdict tokens of ``rows`` ((prompt ids, verdict ids) pairs).

    Their logits are computed at those positions alone (the language-model head over a thousand
    prompt positions would dominate each step).
    """
    import torch

    pad = int(tokenizer.pad_token_id)
    width = max(len(p) + len(t) for p, t in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    where_b, where_t, labels = [], [], []
    for b, (prompt_ids, target_ids) in enumerate(rows):  # right padding: positions start at 0
        seq = prompt_ids + target_ids
        ids[b, : len(seq)] = torch.tensor(seq)
        mask[b, : len(seq)] = 1
        for j, token in enumerate(target_ids):
            where_b.append(b)
            where_t.append(len(prompt_ids) + j - 1)  # the position that predicts ``token``
            labels.append(token)
    hidden = model.model(input_ids=ids, attention_mask=mask).last_hidden_state
    logits = model.lm_head(hidden[torch.tensor(where_b), torch.tensor(where_t)])
    return torch.nn.functional.cross_entropy(logits, torch.tensor(labels))


def _prime(model: Any, tokenizer: Any, *, steps: int, seed: int) -> dict[str, Any]:
    """Teach the random judge the verdict FORMAT: AdamW on (judge prompt, random verdict) pairs."""
    import torch

    rng = random.Random(seed)
    torch.manual_seed(seed)

    def batch_loss(step: int) -> Any:
        rows = []
        for kind, prompt in _judge_prompts(rng, PRIME_BATCH_SIZE):
            prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
            target_ids = tokenizer(_verdict_target(kind, rng), add_special_tokens=False)["input_ids"]
            rows.append((prompt_ids, target_ids))
        return _verdict_loss(model, tokenizer, rows)

    warmup = max(1, steps // 10)
    losses = fit(
        model, [p for p in model.parameters() if p.requires_grad], batch_loss, steps=steps, lr=PRIME_LR,
        lr_factor=lambda step: min(1.0, (step + 1) / warmup) * max(0.1, 1.0 - step / steps),
    )
    return {"steps": steps, "batch_size": PRIME_BATCH_SIZE, "lr": PRIME_LR, **loss_figures(losses)}


def measure_parse_rate(model: Any, tokenizer: Any, *, n: int = 32, seed: int = 0) -> dict[str, float]:
    """Share of ``n`` fresh judge prompts (half of each kind) whose greedy continuation parses.

    Generation is the judge pool's own (:func:`audio_thinker.inference.continuations.generate_continuations`
    with its default parameters: greedy, 8 new tokens, stop at the end of the first line).
    Returned: ``consistency``, ``quality`` and ``all`` (parse rates), and ``well_formed``: the
    share whose first line is exactly a verdict of the primed form (``Yes``/``No``, ``0.0``..``1.0``).
    """
    from audio_thinker.rewards.judge_parsing import first_line, parse_consistency, parse_quality
    from audio_thinker.rewards.verdict import GenerationParams
    from audio_thinker.inference.continuations import generate_continuations

    # a stream the priming never draws from (it uses ``random.Random(seed)``)
    prompts = _judge_prompts(random.Random(f"tiny-judge-eval-{seed}"), n)
    texts: list[str] = []
    side = tokenizer.padding_side  # generate_continuations pads on the left; keep the saved default
    try:
        for i in range(0, len(prompts), 8):
            batch = prompts[i: i + 8]
            texts += generate_continuations(model, tokenizer, [p for _, p in batch], GenerationParams())
    finally:
        tokenizer.padding_side = side
    parsers = {"consistency": parse_consistency, "quality": parse_quality}
    forms = {"consistency": re.compile(r"Yes|No"), "quality": re.compile(r"0\.\d|1\.0")}
    parsed: dict[str, list[bool]] = {"consistency": [], "quality": []}
    exact = 0
    for (kind, _), text in zip(prompts, texts):
        parsed[kind].append(parsers[kind](text) is not None)
        exact += bool(forms[kind].fullmatch(first_line(text)))
    rates = {kind: round(sum(ok) / len(ok), 4) for kind, ok in parsed.items() if ok}
    rates["all"] = round(sum(sum(ok) for ok in parsed.values()) / len(prompts), 4)
    rates["well_formed"] = round(exact / len(prompts), 4)
    return rates


def _write(out_dir: Path, *, seed: int, prime_steps: int = 0) -> dict[str, Any]:
    """Build (and prime) the judge, save it into ``out_dir``; the marker record."""
    import transformers
    from transformers import GenerationConfig, Qwen3ForCausalLM

    started = time.perf_counter()
    tokenizer = build_judge_tokenizer()
    config = build_judge_config(tokenizer)
    model = init_model(Qwen3ForCausalLM, config, seed=seed)
    eos = config.eos_token_id
    model.generation_config = GenerationConfig(bos_token_id=eos, eos_token_id=eos, pad_token_id=eos)
    info: dict[str, Any] = {"prime_steps": prime_steps}
    if prime_steps:
        primed = time.perf_counter()
        info["prime"] = _prime(model, tokenizer, steps=prime_steps, seed=seed)
        info["prime"]["seconds"] = round(time.perf_counter() - primed, 3)
        measured = time.perf_counter()
        info["parse_rate"] = measure_parse_rate(model, tokenizer, n=PRIME_EVAL_PROMPTS, seed=seed)
        info["parse_rate"]["prompts"] = PRIME_EVAL_PROMPTS
        info["parse_rate"]["seconds"] = round(time.perf_counter() - measured, 3)
    with quiet_hub():
        tokenizer.save_pretrained(out_dir)
        model.save_pretrained(out_dir)
    return {
        "arch": JUDGE_ARCH, "seed": seed, "model_class": "Qwen3ForCausalLM",
        "num_parameters": sum(p.numel() for p in model.parameters()), "vocab_size": len(tokenizer),
        "transformers_version": transformers.__version__,
        "build_seconds": round(time.perf_counter() - started, 3), **info,
    }


def is_complete_judge(out_dir: str | Path, *, seed: int = 0, prime_steps: int = 0) -> bool:
    """Whether ``out_dir`` holds a finished tiny judge built with ``seed`` and ``prime_steps``.

    A marker without ``prime_steps`` (written before priming existed) counts as unprimed (0).
    """
    if not is_complete(out_dir, arch=JUDGE_ARCH, seed=seed):
        return False
    marker = read_tiny_marker(out_dir)
    return marker is not None and marker.get("prime_steps", 0) == prime_steps


def _build(out_dir: str | Path, *, seed: int, prime_steps: int, keep_complete: bool) -> Path:
    """:func:`audio_thinker.toy.builds.build_dir`; a concurrent build only counts when its
    ``prime_steps`` matches too."""
    if prime_steps < 0:
        raise ValueError(f"prime_steps must be >= 0, got {prime_steps!r}")
    return build_dir(
        out_dir, lambda staging: _write(staging, seed=seed, prime_steps=prime_steps), marker=MARKER,
        replaceable=replaceable, what="tiny-model",
        done=lambda: keep_complete and is_complete_judge(out_dir, seed=seed, prime_steps=prime_steps),
    )


def build_tiny_judge(out_dir: str | Path, *, seed: int = 0, prime_steps: int = 0) -> Path:
    """Build the tiny Qwen3 judge into ``out_dir`` (an older tiny build there is replaced).

    ``prime_steps`` > 0 primes its verdict format (see the module docstring) with that many steps.
    """
    return _build(out_dir, seed=seed, prime_steps=prime_steps, keep_complete=False)


def ensure_tiny_judge(out_dir: str | Path, *, seed: int = 0, prime_steps: int = 0) -> Path:
    """``out_dir`` if it holds a complete tiny judge with ``seed`` and ``prime_steps``; else build
    it (concurrency-safe)."""
    if is_complete_judge(out_dir, seed=seed, prime_steps=prime_steps):
        return Path(out_dir).absolute()
    return _build(out_dir, seed=seed, prime_steps=prime_steps, keep_complete=True)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the process exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m audio_thinker.toy.tiny_judge",
        description="Build a tiny random judge of the Qwen3-8B-Base architecture (offline).",
    )
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument("--seed", type=int, default=0, help="weight-init and priming seed (default 0)")
    parser.add_argument("--prime-steps", type=int, default=0, metavar="N",
                        help=f"verdict-format priming steps (default 0: random judge; the demo uses "
                             f"{DEMO_PRIME_STEPS})")
    args = parser.parse_args(argv)
    if args.prime_steps < 0:
        parser.error("--prime-steps must be >= 0")
    try:
        out = build_tiny_judge(args.out, seed=args.seed, prime_steps=args.prime_steps)
    except FileExistsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    info = read_tiny_marker(out) or {}
    print(f"{JUDGE_ARCH}: {info['num_parameters']} parameters, vocab {info['vocab_size']}, "
          f"built in {info['build_seconds']} s -> {out}")
    if info.get("prime_steps"):
        rate = info["parse_rate"]
        print(f"primed {info['prime_steps']} steps in {info['prime']['seconds']} s; greedy verdicts parse on "
              f"{rate['all']:.0%} of {rate['prompts']} fresh prompts (consistency {rate['consistency']:.0%}, "
              f"quality {rate['quality']:.0%})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
