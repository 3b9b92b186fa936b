"""Format warm-start: teach a tiny random audio LM the response FORMAT, not the answers.

A randomly initialised model (:mod:`audio_thinker.toy.tiny`) never writes a well-formed
response, so every GRPO reward in a group is equal, every advantage is 0 and RL has no signal.
This module primes such a model with a few seconds of supervised training on targets that
have the adaptive format of DESIGN.md but carry **no answer information**::

    python -m audio_thinker.toy.warmstart --model models/tiny_qwen2_audio \\
        --data data/synthetic/train.parquet --out models/tiny_qwen2_audio_primed \\
        [--eval-data data/synthetic/val.parquet] [--steps N] [--batch-size B] [--lr LR] \\
        [--think-fraction 0.5] [--seed S] [--if-missing] [--no-progress]

or from code, :func:`ensure_primed_model` (``base_dir, data_file, out_dir, **options``).

Targets (:func:`build_target`)
    For every visit of a training row, with probability ``think_fraction`` a THINK response
    ``<think>`` + a short generic sentence naming the question type (one of
    :data:`THINK_TEMPLATES`) + ``</think><answer>CHOICE</answer>``, otherwise a NO-THINK response
    ``<answer>CHOICE</answer>``; both end with the end-of-turn token ``<|im_end|>``. CHOICE is drawn
    uniformly from the row's choices, independently of the gold answer (and re-drawn every time the
    row is visited), so the best the model can learn is "one of the listed choices, at random":
    accuracy after priming is at chance and RL has to learn the rest.

Inputs
    Exactly what training feeds the policy: the row's question and choices become the adaptive
    prompt (:func:`audio_thinker.data.rows.build_prompt_messages`), the ``<audio>`` placeholder
    becomes an audio content item holding the clip decoded by
    :func:`audio_thinker.data.audio.load_audio` (as :class:`~audio_thinker.verl_ext.dataset.AudioQADataset`
    and verl's ``RLHFDataset._build_messages`` do), the processor's chat template renders the
    prompt with the generation prompt, and the processor turns text + audio into ``input_ids``
    (expanded ``<|AUDIO|>`` placeholders), ``input_features`` and ``feature_attention_mask``. The
    response ids follow the prompt ids, as in a rollout; the loss covers the response tokens only.

Speed
    The audio path (encoder + projector) is **frozen** during priming: format is a property of
    the language model, and Qwen2-Audio's encoder always runs over a padded 30 s window (1500
    positions), which would dominate every step on CPU. Each clip's audio embeddings (what the
    language model receives at the ``<|AUDIO|>`` positions) are therefore computed once, by the
    model's own forward, and re-used every step: the training forward is the model's forward with
    those ``inputs_embeds`` (numerically the same as passing ``input_features``; a test checks it).
    Training is a plain AdamW loop in float32 on CPU, deterministic given the seed. With the
    defaults (:data:`DEFAULT_OPTIONS`: 160 steps x 16, lr 1e-2) the tiny Qwen2-Audio on the 256
    synthetic training rows primes in about 30 s on two idle CPU cores (encoding 10 s, training
    12 s, sampling 5 s); sampled at temperature 1.0, 94-99 % of its responses are well-formed
    (about half THINK) and its accuracy is at chance (0.27-0.41 measured, chance 0.375).

Output
    A complete Hugging Face model directory (weights, config, generation config, tokenizer,
    processor and chat template; loads like the base directory), built in a sibling temporary
    directory and renamed into place, with the marker :data:`MARKER` written last: the options,
    the base model's marker, fingerprints of the inputs, and figures measured after priming by
    *sampling* (temperature 1.0, no top-k / top-p, like GRPO rollouts) on up to ``eval_rows``
    held-out rows (``--eval-data``, else the last rows of the training file, which are then left
    out of training): well-formed rate, think rate, accuracy vs chance, and the wall time.

Only Qwen2-Audio models are supported (the embedded default); other architectures are refused
with a clear error.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import random
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audio_thinker.data.rows import build_prompt_messages, inline_audio
from audio_thinker.toy import tiny
from audio_thinker.prompts import PromptMode
from audio_thinker.rewards.combine import score_response
from audio_thinker.rewards.parsing import ResponseMode

__all__ = [
    "DEFAULT_OPTIONS", "END_OF_TURN", "FORMAT_VERSION", "MARKER", "SUPPORTED_MODEL_TYPES",
    "THINK_TEMPLATES", "Target", "WarmstartOptions", "build_target", "chat_messages",
    "ensure_primed_model", "is_complete", "main", "prime_model", "question_kind", "read_marker",
    "read_rows", "sample_responses", "summarize_responses",
]

#: Written last into the output directory: its presence (with matching fingerprint) marks a
#: complete priming run.
MARKER = "warmstart.json"
#: Bumped when the meaning of the options or the target format changes (re-primes old outputs).
FORMAT_VERSION = 1
#: End-of-turn token every target ends with (the generation config stops on it).
END_OF_TURN = "<|im_end|>"
#: ``config.model_type`` values this module can prime.
SUPPORTED_MODEL_TYPES = ("qwen2_audio",)
#: The prompt mode whose format is taught (DESIGN.md section 4, appendix A.1).
PROMPT_MODE = PromptMode.ADAPTIVE

#: Generic reasoning sentences for THINK targets: ``{kind}`` is the question type (the row's task
#: name in words); nothing about the answer. Kept short (mostly in-vocabulary words of the tiny
#: tokenizer) so a THINK target fits the embedded default's 48-token response budget.
THINK_TEMPLATES: tuple[str, ...] = (
    "The question is about {kind}. Let me think step by step.",
    "This is a {kind} question. I listen to the audio and compare the options.",
    "I listen for the {kind} in the audio, then choose one of the options.",
)

_COMMANDS = {
    "model": "python -m audio_thinker.toy.tiny --arch qwen2_audio --out {path}",
    "data": "python -m audio_thinker.data.synthetic --out {parent}",
}
#: Files the base directory must hold (besides the weights) for a loadable output.
_REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json", "processor_config.json")


@dataclass(frozen=True)
class WarmstartOptions:
    """Every knob of a priming run (all of them are recorded in, and matched against, the marker).

    ``steps`` optimiser steps of ``batch_size`` (row, target) pairs with AdamW at ``lr`` (linear
    warm-up over the first ``warmup_fraction`` of the steps, then linear decay to 10 %).
    ``think_fraction`` of the targets are THINK. After training, ``eval_samples`` responses are
    sampled for each of up to ``eval_rows`` held-out rows at ``eval_temperature`` with at most
    ``eval_max_new_tokens`` new tokens (the embedded default's ``max_response_length``).
    """

    steps: int = 160
    batch_size: int = 16
    lr: float = 1e-2
    think_fraction: float = 0.5
    seed: int = 0
    warmup_fraction: float = 0.1
    weight_decay: float = 0.0
    eval_rows: int = 32
    eval_samples: int = 4
    eval_temperature: float = 1.0
    eval_max_new_tokens: int = 48

    def __post_init__(self) -> None:
        positive = {"steps": self.steps, "batch_size": self.batch_size, "lr": self.lr,
                    "eval_samples": self.eval_samples, "eval_max_new_tokens": self.eval_max_new_tokens}
        for name, value in positive.items():
            if not value > 0:
                raise ValueError(f"{name} must be positive, got {value!r}")
        if not 0.0 <= self.think_fraction <= 1.0:
            raise ValueError(f"think_fraction must be in [0, 1], got {self.think_fraction!r}")
        if not 0.0 <= self.warmup_fraction < 1.0:
            raise ValueError(f"warmup_fraction must be in [0, 1), got {self.warmup_fraction!r}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if self.eval_rows < 0:
            raise ValueError(f"eval_rows must be >= 0, got {self.eval_rows!r}")
        if not self.eval_temperature > 0:
            raise ValueError(f"eval_temperature must be positive, got {self.eval_temperature!r}")

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any]) -> WarmstartOptions:
        """Build from keyword options, naming any unknown key."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise TypeError(f"unknown warm-start options {unknown}: use {sorted(known)}")
        return cls(**options)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


DEFAULT_OPTIONS = WarmstartOptions()


# ----------------------------------------------------------------------------------------------
# Targets
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One supervised response: its text (ending in :data:`END_OF_TURN`), mode and answer."""

    text: str
    mode: ResponseMode
    choice: str


def question_kind(info: Mapping[str, Any]) -> str:
    """The question type named in THINK targets: the row's task in words, else ``audio``.

    >>> question_kind({"task": "count_beeps_noisy"})
    'count beeps noisy'
    >>> question_kind({"task": ""})
    'audio'
    """
    words = re.sub(r"[_\W]+", " ", str(info.get("task") or "")).strip()
    return words or "audio"


def build_target(info: Mapping[str, Any], rng: random.Random, *, think_fraction: float) -> Target:
    """A format-only target for the row whose ``extra_info`` is ``info``.

    The mode is THINK with probability ``think_fraction``; the answer is a uniformly random
    element of ``info["choices"]``: the gold answer is never looked at.

    >>> t = build_target({"choices": ["high", "low"], "task": "pitch"}, random.Random(0), think_fraction=0.0)
    >>> t.text in ("<answer>high</answer><|im_end|>", "<answer>low</answer><|im_end|>")
    True
    """
    choices = [str(c) for c in info["choices"]]
    if not choices:
        raise ValueError("row has no choices")
    think = rng.random() < think_fraction
    template = rng.choice(THINK_TEMPLATES) if think else None
    choice = rng.choice(choices)
    answer = f"<answer>{choice}</answer>"
    if template is None:
        return Target(answer + END_OF_TURN, ResponseMode.NO_THINK, choice)
    thought = template.format(kind=question_kind(info))
    return Target(f"<think>{thought}</think>{answer}{END_OF_TURN}", ResponseMode.THINK, choice)


# ----------------------------------------------------------------------------------------------
# Rows -> model inputs
# ----------------------------------------------------------------------------------------------


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a training-schema parquet file (:mod:`audio_thinker.data.rows`) as plain dicts.

    ``extra_info`` is returned with ``choices`` as a list of str.
    """
    import pandas as pd

    frame = pd.read_parquet(path)
    rows = []
    for record in frame.to_dict(orient="records"):
        info = dict(record["extra_info"])
        info["choices"] = [str(c) for c in info["choices"]]
        record["extra_info"] = info
        record["audios"] = [str(a) for a in record["audios"]]
        rows.append(record)
    return rows


def chat_messages(row: Mapping[str, Any], audios: Sequence[Any]) -> list[dict[str, Any]]:
    """The chat messages training builds for ``row`` (adaptive prompt), with ``audios`` inlined.

    The adaptive prompt is rebuilt from ``extra_info`` (as ``AudioQADataset`` does for
    ``prompt_mode=adaptive``), then each ``<audio>`` placeholder becomes
    ``{"type": "audio", "audio": samples}`` and the text around it ``{"type": "text", ...}``
    items, like verl's ``RLHFDataset._build_messages``.
    """
    info = row["extra_info"]
    return inline_audio(build_prompt_messages(info["question"], info["choices"], mode=PROMPT_MODE), audios)


@dataclass
class _Example:
    """A row ready for priming: prompt ids and the frozen audio path's output at its audio slots."""

    row: dict[str, Any]
    prompt_ids: Any  # LongTensor[P]
    audio_embeds: Any  # FloatTensor[n_audio_tokens, hidden]


def _load_audios(row: Mapping[str, Any], audio_config: Any, stats: Any = None) -> list[Any]:
    from audio_thinker.data.audio import load_audio

    return [load_audio(path, config=audio_config, stats=stats).samples for path in row["audios"]]


def _readable(
    rows: Sequence[dict[str, Any]], audio_config: Any, stats: Any
) -> Iterator[tuple[dict[str, Any], list[Any]]]:
    """``(row, decoded clips)`` for every row whose audio decodes; the others are counted in ``stats``."""
    from audio_thinker.data.audio import AudioError

    for row in rows:
        try:
            yield row, _load_audios(row, audio_config, stats)
        except AudioError:
            continue


def _processor_inputs(processor: Any, rows: Sequence[Mapping[str, Any]], audios: Sequence[list[Any]]) -> Any:
    """Chat template + processor over a batch of rows, as the rollout prepares a prompt."""
    texts = [
        processor.apply_chat_template(chat_messages(row, clips), add_generation_prompt=True, tokenize=False)
        for row, clips in zip(rows, audios)
    ]
    flat = [clip for clips in audios for clip in clips]
    sampling_rate = int(processor.feature_extractor.sampling_rate)
    return processor(text=texts, audio=flat, sampling_rate=sampling_rate, padding=True, return_tensors="pt")


class _CaptureEmbeds:
    """Forward pre-hook on the language model recording the ``inputs_embeds`` it receives."""

    def __init__(self) -> None:
        self.value: Any = None

    def __call__(self, module: Any, args: Any, kwargs: dict[str, Any]) -> None:
        self.value = kwargs.get("inputs_embeds")


def _encode_rows(
    model: Any, processor: Any, rows: Sequence[dict[str, Any]], *, audio_config: Any, chunk: int = 16,
    stats: Any, progress: bool = False,
) -> list[_Example]:
    """Decode audio, build the prompts and run the frozen audio path once per row.

    Rows whose audio cannot be read are skipped and counted in ``stats`` (an ``AudioStats``).
    """
    import torch
    from tqdm import tqdm

    audio_id = int(model.config.audio_token_id)
    capture = _CaptureEmbeds()
    handle = model.language_model.register_forward_pre_hook(capture, with_kwargs=True)
    examples: list[_Example] = []
    try:
        for start in tqdm(range(0, len(rows), chunk), desc="encoding", disable=not progress, leave=False):
            readable = list(_readable(rows[start:start + chunk], audio_config, stats))
            if not readable:
                continue
            batch_rows, batch_audio = [r for r, _ in readable], [a for _, a in readable]
            inputs = _processor_inputs(processor, batch_rows, batch_audio)
            with torch.no_grad():
                model(**inputs)
            embeds = capture.value
            for i, row in enumerate(batch_rows):
                ids = inputs["input_ids"][i][inputs["attention_mask"][i].bool()]
                slots = inputs["input_ids"][i] == audio_id
                examples.append(_Example(row, ids.clone(), embeds[i][slots].detach().clone()))
    finally:
        handle.remove()
    return examples


def _collate(
    model: Any, examples: Sequence[_Example], responses: Sequence[Any], *, pad_id: int
) -> dict[str, Any]:
    """Right-padded ``inputs_embeds`` / ``attention_mask`` / ``labels`` for prompt + response.

    The audio slots get the cached audio embeddings (exactly what the model's forward scatters
    there); labels are -100 on the prompt and the padding, so the loss covers the response only.
    """
    import torch

    audio_id = int(model.config.audio_token_id)
    sequences = [torch.cat([ex.prompt_ids, resp]) for ex, resp in zip(examples, responses)]
    width = max(len(s) for s in sequences)
    input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
    labels = torch.full((len(sequences), width), -100, dtype=torch.long)
    for i, (ex, seq) in enumerate(zip(examples, sequences)):
        input_ids[i, : len(seq)] = seq
        attention_mask[i, : len(seq)] = 1
        labels[i, len(ex.prompt_ids): len(seq)] = seq[len(ex.prompt_ids):]
    embeds = model.get_input_embeddings()(input_ids)
    slots = (input_ids == audio_id).unsqueeze(-1).expand_as(embeds)
    audio = torch.cat([ex.audio_embeds for ex in examples]).to(embeds.dtype)
    embeds = embeds.masked_scatter(slots, audio)
    return {"inputs_embeds": embeds, "attention_mask": attention_mask, "labels": labels}


def _response_loss(model: Any, batch: Mapping[str, Any]) -> Any:
    """Mean next-token cross-entropy over the response tokens of ``batch``."""
    import torch.nn.functional as F

    logits = model(inputs_embeds=batch["inputs_embeds"], attention_mask=batch["attention_mask"]).logits
    shift_logits = logits[:, :-1].float()
    shift_labels = batch["labels"][:, 1:]
    return F.cross_entropy(shift_logits.reshape(-1, shift_logits.shape[-1]), shift_labels.reshape(-1),
                           ignore_index=-100)


def _batches(n: int, batch_size: int, rng: random.Random) -> Iterator[list[int]]:
    """Endless shuffled epochs over ``range(n)``, cut into batches (an epoch's tail rolls over)."""
    order: list[int] = []
    while True:
        while len(order) < batch_size:
            epoch = list(range(n))
            rng.shuffle(epoch)
            order.extend(epoch)
        yield order[:batch_size]
        order = order[batch_size:]


def _lr_factor(step: int, options: WarmstartOptions) -> float:
    """Linear warm-up over ``warmup_fraction`` of the steps, then linear decay to 0.1."""
    warmup = round(options.warmup_fraction * options.steps)
    if step < warmup:
        return (step + 1) / warmup
    span = max(options.steps - warmup, 1)
    return 1.0 - 0.9 * (step - warmup) / span


def _train(
    model: Any, tokenizer: Any, examples: Sequence[_Example], options: WarmstartOptions, *, progress: bool
) -> dict[str, Any]:
    """The AdamW loop over the language model (audio path frozen); returns loss figures."""
    import torch
    from tqdm import tqdm

    rng = random.Random(options.seed)
    torch.manual_seed(options.seed)
    for module in (model.audio_tower, model.multi_modal_projector):
        module.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=options.lr, weight_decay=options.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: _lr_factor(step, options))
    pad_id = int(tokenizer.pad_token_id)
    encoded: dict[str, Any] = {}

    def response_ids(text: str) -> Any:
        if text not in encoded:
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            encoded[text] = torch.tensor(ids, dtype=torch.long)
        return encoded[text]

    model.train()
    losses: list[float] = []
    batches = _batches(len(examples), options.batch_size, rng)
    bar = tqdm(range(options.steps), desc="priming", disable=not progress, leave=False)
    for _ in bar:
        chosen = [examples[i] for i in next(batches)]
        targets = [
            build_target(ex.row["extra_info"], rng, think_fraction=options.think_fraction) for ex in chosen
        ]
        batch = _collate(model, chosen, [response_ids(t.text) for t in targets], pad_id=pad_id)
        loss = _response_loss(model, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
        losses.append(float(loss.detach()))
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
    model.eval()
    tail = losses[-max(1, len(losses) // 10):]
    return {
        "loss_first": round(losses[0], 4), "loss_last": round(losses[-1], 4),
        "loss_last_10pct_mean": round(sum(tail) / len(tail), 4),
        "trainable_parameters": sum(p.numel() for p in params),
        "frozen_parameters": sum(p.numel() for p in model.parameters() if not p.requires_grad),
        "train_rows": len(examples), "targets_seen": options.steps * options.batch_size,
    }


# ----------------------------------------------------------------------------------------------
# Evaluation by sampling
# ----------------------------------------------------------------------------------------------


def sample_responses(
    model: Any, processor: Any, rows: Sequence[dict[str, Any]], *, options: WarmstartOptions,
    audio_config: Any, seed: int, chunk: int = 16, stats: Any = None,
) -> list[tuple[dict[str, Any], str]]:
    """``options.eval_samples`` sampled responses per row, through the model's full forward.

    Sampling is plain temperature sampling (no top-k / top-p) with the placeholder tokens banned,
    as in GRPO rollouts: :class:`audio_thinker.inference.hf.HFGenerator` (left-padded, cut at the
    first end-of-sequence token; the global torch RNG is left as it was).
    """
    from audio_thinker.inference.batching import batches
    from audio_thinker.inference.hf import HFGenerator
    from audio_thinker.inference.options import GenerationOptions
    from audio_thinker.inference.outputs import PromptInput

    generation = GenerationOptions(max_new_tokens=options.eval_max_new_tokens,
                                   temperature=options.eval_temperature, seed=seed)
    generator = HFGenerator(model, processor, generation)
    out: list[tuple[dict[str, Any], str]] = []
    try:
        for part in batches(rows, chunk):
            readable = list(_readable(part, audio_config, stats))
            prompts = [PromptInput(str(i), chat_messages(row, clips), clips)
                       for i, (row, clips) in enumerate(readable) for _ in range(options.eval_samples)]
            for prompt, result in zip(prompts, generator.generate(prompts)):
                if result.text is None:
                    raise RuntimeError(f"warm-start sampling failed: {result.error}")
                out.append((readable[int(prompt.item_id)][0], result.text))
    finally:
        generator.close()
    return out


def summarize_responses(samples: Sequence[tuple[Mapping[str, Any], str]]) -> dict[str, Any]:
    """Well-formed / think / no-think / malformed rates, accuracy, valid-choice rate and chance.

    ``chance_accuracy`` is the expected accuracy of a uniformly random choice on these rows.
    """
    n = len(samples)
    if n == 0:
        return {"responses": 0}
    counts = {mode: 0 for mode in ResponseMode}
    correct = valid_choice = 0
    chance = 0.0
    for row, text in samples:
        info = row["extra_info"]
        choices = [str(c) for c in info["choices"]]
        score = score_response(text, gold=str(info["answer"]), choices=choices)
        counts[score.parsed.mode] += 1
        correct += bool(score.correct)
        valid_choice += score.parsed.well_formed and score.parsed.answer in choices
        chance += 1.0 / len(choices)
    return {
        "responses": n,
        "well_formed_rate": round((n - counts[ResponseMode.MALFORMED]) / n, 4),
        "think_rate": round(counts[ResponseMode.THINK] / n, 4),
        "no_think_rate": round(counts[ResponseMode.NO_THINK] / n, 4),
        "malformed_rate": round(counts[ResponseMode.MALFORMED] / n, 4),
        "valid_choice_rate": round(valid_choice / n, 4),
        "accuracy": round(correct / n, 4),
        "chance_accuracy": round(chance / n, 4),
    }


# ----------------------------------------------------------------------------------------------
# Marker, fingerprint, atomic install
# ----------------------------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_marker(out_dir: str | Path) -> dict[str, Any] | None:
    """The :data:`MARKER` of ``out_dir`` as a dict, or None when absent or unreadable."""
    try:
        marker = json.loads((Path(out_dir) / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) else None


def _fingerprint(
    base_dir: Path, data_file: Path, eval_data: Path | None, options: WarmstartOptions
) -> dict[str, Any]:
    """What an output depends on: options, base weights, training and eval data (by content)."""
    return {
        "format_version": FORMAT_VERSION,
        "options": options.as_dict(),
        "base_weights_sha256": _sha256(base_dir / "model.safetensors"),
        "data_sha256": _sha256(data_file),
        "eval_data_sha256": _sha256(eval_data) if eval_data is not None else None,
    }


def is_complete(out_dir: str | Path, fingerprint: Mapping[str, Any] | None = None) -> bool:
    """Whether ``out_dir`` holds a finished priming run (whose fingerprint matches, if given)."""
    out_dir = Path(out_dir)
    marker = read_marker(out_dir)
    if not marker or not all((out_dir / name).is_file() for name in _REQUIRED_FILES):
        return False
    return fingerprint is None or marker.get("fingerprint") == dict(fingerprint)


def _replaceable(out_dir: Path) -> bool:
    """Only our own (possibly half-written) outputs may be deleted: never a foreign directory.

    A base model directory (it holds the tiny builder's marker) is never replaced either.
    """
    if not out_dir.exists():
        return True
    if not out_dir.is_dir():
        return False
    names = {p.name for p in out_dir.iterdir()}
    if tiny.MARKER in names:
        return False
    return MARKER in names or names <= (tiny._OUTPUT_NAMES | {MARKER})


def _install(staging: Path, out_dir: Path, *, keep: Mapping[str, Any] | None) -> None:
    """Rename the finished ``staging`` directory to ``out_dir`` (replacing an older output).

    With ``keep`` (a fingerprint), an output that a concurrent run finished first with the same
    fingerprint is kept instead.
    """
    tiny.install_dir(staging, out_dir, done=lambda: keep is not None and is_complete(out_dir, keep),
                     replaceable=_replaceable, what="warm-start output")


# ----------------------------------------------------------------------------------------------
# Entry points
# ----------------------------------------------------------------------------------------------


def _check_inputs(base_dir: Path, data_file: Path, eval_data: Path | None, out_dir: Path) -> None:
    """Clear errors, naming the command that creates what is missing."""
    if not (base_dir / "config.json").is_file() or not (base_dir / "model.safetensors").is_file():
        raise FileNotFoundError(
            f"base model not found: {base_dir} has no config.json / model.safetensors; build the tiny "
            f"model with `{_COMMANDS['model'].format(path=base_dir)}`"
        )
    for path in (data_file, eval_data):
        if path is not None and not path.is_file():
            raise FileNotFoundError(
                f"data file not found: {path}; generate the synthetic data with "
                f"`{_COMMANDS['data'].format(parent=path.parent)}`"
            )
    if out_dir == base_dir:
        raise ValueError(f"--out must differ from the base model directory ({base_dir})")


def _split_rows(
    data_file: Path, eval_data: Path | None, options: WarmstartOptions
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Training rows and held-out rows (``eval_data``'s first rows, else train's last rows)."""
    rows = read_rows(data_file)
    if eval_data is not None:
        return rows, read_rows(eval_data)[: options.eval_rows]
    held = min(options.eval_rows, len(rows) // 4)
    return rows[: len(rows) - held], rows[len(rows) - held:]


def _write(
    base_dir: Path, data_file: Path, eval_data: Path | None, staging: Path, options: WarmstartOptions,
    *, progress: bool,
) -> dict[str, Any]:
    """Load the base model, prime it, measure it and save everything into ``staging``."""
    import torch
    import transformers
    from transformers import AutoConfig, AutoProcessor
    from transformers.utils import logging as hf_logging

    from audio_thinker.data.audio import AudioConfig, AudioStats

    started = time.perf_counter()
    config = AutoConfig.from_pretrained(base_dir, local_files_only=True)
    if config.model_type not in SUPPORTED_MODEL_TYPES:
        raise ValueError(
            f"{base_dir} is a {config.model_type!r} model; the warm-start supports "
            f"{', '.join(SUPPORTED_MODEL_TYPES)}"
        )
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        processor = AutoProcessor.from_pretrained(base_dir, local_files_only=True)
        processor.save_pretrained(staging)  # saved unused: calls change tokenizer state (padding side)
        architecture = (config.architectures or ["Qwen2AudioForConditionalGeneration"])[0]
        model_class = getattr(transformers, architecture)
        model = model_class.from_pretrained(base_dir, local_files_only=True, dtype=torch.float32).eval()
        tokenizer = processor.tokenizer
        tiny.token_ids(tokenizer, [*tiny.REASONING_TOKENS, END_OF_TURN])  # single ids, or a clear error
        audio_config = AudioConfig()
        train_rows, eval_rows = _split_rows(data_file, eval_data, options)

        train_stats, eval_stats = AudioStats(), AudioStats()
        examples = _encode_rows(model, processor, train_rows, audio_config=audio_config, stats=train_stats,
                                progress=progress)
        if not examples:
            raise ValueError(f"no row of {data_file} has readable audio ({train_stats.summary()})")
        encoded = time.perf_counter()
        train_info = _train(model, tokenizer, examples, options, progress=progress)
        trained = time.perf_counter()
        samples = sample_responses(model, processor, eval_rows, options=options, audio_config=audio_config,
                                   seed=options.seed + 1, stats=eval_stats)
        figures = summarize_responses(samples)
        evaluated = time.perf_counter()

        model.requires_grad_(True)
        model.save_pretrained(staging)
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    return {
        "train": {**train_info, "audio": train_stats.as_dict()},
        "eval": {
            **figures, "rows": len(eval_rows), "samples_per_row": options.eval_samples,
            "audio": eval_stats.as_dict(),
            "source": str(eval_data) if eval_data is not None
            else f"last {len(eval_rows)} rows of {data_file}",
            "temperature": options.eval_temperature, "max_new_tokens": options.eval_max_new_tokens,
            "examples": [text for _, text in samples[:: options.eval_samples][:6]],
        },
        "seconds": {
            "encode": round(encoded - started, 2), "train": round(trained - encoded, 2),
            "eval": round(evaluated - trained, 2),
        },
        "transformers_version": transformers.__version__, "torch_version": torch.__version__,
    }


def prime_model(
    base_dir: str | Path, data_file: str | Path, out_dir: str | Path, *, eval_data: str | Path | None = None,
    progress: bool = True, keep_complete: bool = False, **options: Any,
) -> Path:
    """Prime the model in ``base_dir`` on ``data_file`` and write it to ``out_dir``; returns it.

    ``options`` are :class:`WarmstartOptions` fields. An existing output in ``out_dir`` is
    replaced (a directory holding anything else is refused). Everything is written into a sibling
    temporary directory, :data:`MARKER` last, which is then renamed to ``out_dir``.
    """
    started = time.perf_counter()
    opts = WarmstartOptions.from_mapping(options)
    base, data = Path(base_dir).absolute(), Path(data_file).absolute()
    evals = Path(eval_data).absolute() if eval_data is not None else None
    out = Path(out_dir).absolute()
    _check_inputs(base, data, evals, out)
    if not _replaceable(out):
        raise FileExistsError(f"{out} exists and is not a warm-start output: not replacing it")
    fingerprint = _fingerprint(base, data, evals, opts)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        staging.chmod(0o755)
        info = _write(base, data, evals, staging, opts, progress=progress)
        info["seconds"]["total"] = round(time.perf_counter() - started, 2)
        marker = {
            "fingerprint": fingerprint,
            "options": opts.as_dict(),
            "base_model": {"path": str(base), "marker": tiny._marker(base)},
            "data": {"train": str(data), "eval": str(evals) if evals is not None else None},
            "prompt_mode": PROMPT_MODE.value,
            "think_templates": list(THINK_TEMPLATES),
            **info,
        }
        (staging / MARKER).write_text(json.dumps(marker, indent=2, sort_keys=True) + "\n")
        _install(staging, out, keep=fingerprint if keep_complete else None)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def ensure_primed_model(
    base_dir: str | Path, data_file: str | Path, out_dir: str | Path, **options: Any
) -> Path:
    """``out_dir`` if it holds a complete priming of these inputs with these options; else prime.

    Accepts :func:`prime_model`'s keywords (``eval_data``, ``progress`` and the
    :class:`WarmstartOptions` fields). Safe to call from concurrent processes: each primes
    privately and the first to finish wins.
    """
    eval_data = options.pop("eval_data", None)
    progress = options.pop("progress", True)
    opts = WarmstartOptions.from_mapping(options)
    base, data = Path(base_dir).absolute(), Path(data_file).absolute()
    evals = Path(eval_data).absolute() if eval_data is not None else None
    out = Path(out_dir).absolute()
    _check_inputs(base, data, evals, out)
    if is_complete(out, _fingerprint(base, data, evals, opts)):
        return out
    return prime_model(base, data, out, eval_data=evals, progress=progress, keep_complete=True, **options)


# ----------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    d = DEFAULT_OPTIONS
    parser = argparse.ArgumentParser(
        prog="python -m audio_thinker.toy.warmstart",
        description="Format warm-start: prime a tiny audio LM on format-only targets (answers at chance).",
    )
    parser.add_argument("--model", required=True, type=Path, help="base model directory")
    parser.add_argument("--data", required=True, type=Path, help="training parquet (audio QA rows)")
    parser.add_argument("--out", required=True, type=Path, help="output model directory")
    parser.add_argument("--eval-data", type=Path, default=None,
                        help="held-out parquet for the after-priming figures (default: last rows of --data)")
    parser.add_argument("--steps", type=int, default=d.steps, help=f"optimiser steps (default {d.steps})")
    parser.add_argument("--batch-size", type=int, default=d.batch_size, help=f"default {d.batch_size}")
    parser.add_argument("--lr", type=float, default=d.lr, help=f"AdamW peak learning rate (default {d.lr:g})")
    parser.add_argument("--think-fraction", type=float, default=d.think_fraction,
                        help=f"share of THINK targets (default {d.think_fraction:g})")
    parser.add_argument("--seed", type=int, default=d.seed, help=f"default {d.seed}")
    parser.add_argument("--eval-rows", type=int, default=d.eval_rows, help=f"default {d.eval_rows}")
    parser.add_argument("--eval-samples", type=int, default=d.eval_samples,
                        help=f"sampled responses per held-out row (default {d.eval_samples})")
    parser.add_argument("--if-missing", action="store_true",
                        help="keep an existing complete output primed with the same inputs and options")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the process exit code."""
    args = _parse_args(argv)
    options = {
        "steps": args.steps, "batch_size": args.batch_size, "lr": args.lr,
        "think_fraction": args.think_fraction, "seed": args.seed, "eval_rows": args.eval_rows,
        "eval_samples": args.eval_samples,
    }
    prime = ensure_primed_model if args.if_missing else prime_model
    previous = read_marker(args.out)
    try:
        out = prime(args.model, args.data, args.out, eval_data=args.eval_data, progress=not args.no_progress,
                    **options)
    except (FileNotFoundError, FileExistsError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    marker = read_marker(out) or {}
    figures, seconds = marker.get("eval", {}), marker.get("seconds", {})
    state = "up to date" if args.if_missing and marker == previous else f"primed in {seconds.get('total')} s"
    print(
        f"{out}: {state}; sampled (T={figures.get('temperature')}, {figures.get('responses')} responses): "
        f"well-formed {figures.get('well_formed_rate')}, think {figures.get('think_rate')}, "
        f"accuracy {figures.get('accuracy')} (chance {figures.get('chance_accuracy')})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
