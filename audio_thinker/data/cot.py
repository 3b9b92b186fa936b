"""CoT rationales for the SFT-CoT / GRPO-CoT baselines (paper appendix A.2): CLI and pipeline.

``python -m audio_thinker.data.cot --rows data/avqa/train.parquet --out data/avqa_cot
--caption-model PATH --text-model PATH`` runs three stages over training rows
(:mod:`audio_thinker.data.rows`):

1. **Captions.** The base audio LALM (Qwen2-Audio-7B-Instruct in the paper) describes each clip:
   one user turn holding the audio and :data:`~audio_thinker.prompts.CAPTION_TEMPLATE`, generated
   by :class:`~audio_thinker.inference.hf.HFGenerator` (transformers, CPU or one GPU) or
   :class:`~audio_thinker.inference.vllm.VLLMGenerator` (vLLM), greedy by default.
2. **Rationales.** A large text LLM (Qwen2.5-72B-Instruct in the paper; any Hugging Face causal
   LM) gets :func:`~audio_thinker.prompts.build_cot_generation_prompt` (caption, question,
   choices, gold answer), rendered with its chat template when it has one (Qwen3's with
   ``enable_thinking=False``), else as raw text; transformers (batched, left padding) or vLLM
   (``--tensor-parallel-size``).
3. **Filter.** The output is parsed with :func:`audio_thinker.rewards.parsing.parse_response`
   on its tagged span (from the first ``<think>`` to the last ``</answer>``: chatter a chat model
   writes around the tags is trimmed and counted as ``trimmed``); it must be THINK (non-empty
   ``<think>`` then ``<answer>``) and its answer must name the gold choice
   (:func:`audio_thinker.rewards.accuracy.is_correct`). Every row ends up kept or dropped under
   exactly one reason: ``audio_error`` (clip missing or undecodable), ``generation_error``
   (caption or rationale), ``empty_caption``, ``malformed``, ``answer_mismatch``.

Output folder::

    OUT/config.json       the settings that decide the content (models, token limits, decoding,
                          templates, rows file); a run with other settings is refused
    OUT/captions.jsonl    one record per captioned row  {"key", "caption", "error", "detail", ...}
    OUT/rationales.jsonl  one record per rationalised row {"key", "caption_sha", "text", "error", ...}
    OUT/cot.parquet       kept rows of the training schema in the ``think`` prompt mode, with
                          extra_info ``rationale`` (the think text), ``caption``, ``cot_model``
                          and ``caption_model``; the other columns and keys as in the input
    OUT/summary.json      counts (kept, dropped by reason), models, settings, timing

Resumable: records are appended batch by batch (flushed and fsynced), keyed by
:func:`row_key`, and a re-run skips every row that already has its caption / rationale (a
partial last line left by a crash is cut off). Rows whose caption or rationale failed
(``audio_error``, ``generation_error``) are tried again; the others are final. A model is loaded
only when some row still needs it, so a finished run re-writes its outputs without loading any.
``--stage captions`` stops after the captions: on one GPU, run the captioner and the text LLM in
two processes (``--stage captions``, then the same command without it). With vLLM,
``--batch-size`` is both the submission chunk and the engine's ``max_num_seqs``: use 64 or more.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import logging
import os
import re
import sys
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from audio_thinker.data.audio import AudioConfig, AudioError, AudioStats, AudioTruncatedWarning, load_audio
from audio_thinker.data.rows import AUDIO_PLACEHOLDER, inline_audio, validate_row, with_prompt_mode
from audio_thinker.inference.hf import (
    Generated,
    GenerationOptions,
    PromptInput,
    decode_response,
    generate_isolating,
)
from audio_thinker.prompts import (
    CAPTION_TEMPLATE,
    COT_GENERATION_TEMPLATE,
    PROMPT_VERSION,
    PromptMode,
    build_cot_generation_prompt,
)
from audio_thinker.rewards.accuracy import is_correct
from audio_thinker.rewards.parsing import ResponseMode, parse_response, strip_eos

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
CAPTIONS_NAME = "captions.jsonl"
RATIONALES_NAME = "rationales.jsonl"
ROWS_NAME = "cot.parquet"
SUMMARY_NAME = "summary.json"
#: every drop reason, in pipeline order (all are listed in the summary, zeros included)
DROP_REASONS = ("audio_error", "generation_error", "empty_caption", "malformed", "answer_mismatch")
#: extra_info keys added to the kept rows
COT_KEYS = ("rationale", "caption", "cot_model", "caption_model")
BACKENDS = ("auto", "hf", "vllm")
STAGES = ("all", "captions")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


# ---------------------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class CotConfig:
    """What decides the generated content; recorded in ``OUT/config.json`` and checked on resume."""

    rows: str
    caption_model: str
    text_model: str
    max_caption_tokens: int = 256
    max_rationale_tokens: int = 512
    #: 0 = greedy (both stages)
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("max_caption_tokens", "max_rationale_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0 = greedy), got {self.temperature}")

    def record(self) -> dict[str, Any]:
        """The JSON record of ``OUT/config.json``: the fields plus the prompt templates' digests."""
        return {
            **asdict(self),
            "format_version": FORMAT_VERSION,
            "prompt_version": PROMPT_VERSION,
            "caption_template_sha": _sha(CAPTION_TEMPLATE),
            "cot_template_sha": _sha(COT_GENERATION_TEMPLATE),
        }

    def options(self, max_new_tokens: int, batch_size: int) -> GenerationOptions:
        return GenerationOptions(max_new_tokens=max_new_tokens, temperature=self.temperature,
                                 top_p=self.top_p, seed=self.seed, batch_size=batch_size)


@dataclass(frozen=True)
class RunOptions:
    """How the run executes (not recorded in the config: changing these is allowed on resume)."""

    backend: str = "auto"
    batch_size: int = 8
    #: torch device of the hf backend; None: cuda when available, else cpu
    device: str | None = None
    #: hf dtype; None: float32 on cpu, bfloat16 on cuda
    dtype: str | None = None
    num_threads: int | None = None
    tensor_parallel_size: int = 1
    caption_tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.85
    max_model_len: int = 8192
    stage: str = "all"

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.stage not in STAGES:
            raise ValueError(f"stage must be one of {', '.join(STAGES)}, got {self.stage!r}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.tensor_parallel_size < 1 or self.caption_tensor_parallel_size < 1:
            raise ValueError("tensor parallel sizes must be >= 1")


class CotConfigError(ValueError):
    """``OUT`` holds records made with other settings."""


# ------------------------------------------------------------------------------------ pure helpers


def _sha(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:12]


def row_key(row: Mapping[str, Any]) -> str:
    """The resume key of a row: source, split, index and a digest of its audio, question, choices
    and answer (an edited row gets a new key, so it is generated again).

    >>> row = {"data_source": "avqa", "audios": ["/a.wav"], "extra_info": {"split": "train",
    ...        "index": 3, "question": "Q?", "choices": ["x", "y"], "answer": "y"}}
    >>> key = row_key(row)
    >>> key.startswith("avqa:train:3:"), len(key.split(":")[-1])
    (True, 10)
    """
    info = row["extra_info"]
    audio = list(row.get("audios") or [info.get("audio_path")])
    payload = json.dumps([audio, info["question"], list(info["choices"]), info["answer"]], ensure_ascii=False)
    digest = hashlib.sha1(payload.encode("utf-8")).hexdigest()[:10]
    return f"{row.get('data_source', '')}:{info.get('split', '')}:{info.get('index', '')}:{digest}"


def config_diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """``{key: (old, new)}`` for every key whose value differs (absent keys read as None).

    >>> config_diff({"a": 1, "b": 2}, {"a": 1, "b": 3, "c": 4})
    {'b': (2, 3), 'c': (None, 4)}
    """
    return {k: (old.get(k), new.get(k)) for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)}


def caption_messages(samples: Any) -> list[dict[str, Any]]:
    """The captioner's chat: one user turn, the clip, then :data:`CAPTION_TEMPLATE`.

    >>> caption_messages("clip")[0]["content"][0]
    {'type': 'audio', 'audio': 'clip'}
    """
    return inline_audio([{"role": "user", "content": AUDIO_PLACEHOLDER + CAPTION_TEMPLATE}], [samples])


def clean_caption(text: str | None) -> str:
    """A generated caption without trailing end-of-sequence tokens and surrounding whitespace.

    >>> clean_caption("  A dog barks twice.<|im_end|>")
    'A dog barks twice.'
    """
    return strip_eos(text or "")


def rationale_prompt(row: Mapping[str, Any], caption: str) -> str:
    """The appendix A.2 prompt of ``row`` (before any chat template)."""
    info = row["extra_info"]
    return build_cot_generation_prompt(caption=caption, question=info["question"],
                                       choices=list(info["choices"]), answer=info["answer"])


def tagged_span(text: str) -> tuple[str, bool]:
    """The text from the first ``<think>`` to the last ``</answer>`` (end-of-sequence tokens
    stripped first), and whether anything around it was cut.

    >>> tagged_span("Sure.\\n<think>a</think><answer>b</answer> Hope it helps!<|im_end|>")
    ('<think>a</think><answer>b</answer>', True)
    >>> tagged_span("<think>a</think><answer>b</answer>")
    ('<think>a</think><answer>b</answer>', False)
    """
    body = strip_eos(text)
    start, end = body.find("<think>"), body.rfind("</answer>")
    if start < 0 or end < start:
        return body, False
    span = body[start:end + len("</answer>")]
    return span, span != body


def judge_rationale(text: str, *, answer: str, choices: Sequence[str]) -> tuple[str | None, str | None, bool]:
    """(drop reason or None, think text, trimmed) of a rationale LLM output for gold ``answer``.

    >>> judge_rationale("<think>Two beeps.</think><answer>two</answer>", answer="two", choices=["one", "two"])
    (None, 'Two beeps.', False)
    >>> judge_rationale("<think>One.</think><answer>one</answer>", answer="two", choices=["one", "two"])
    ('answer_mismatch', 'One.', False)
    >>> judge_rationale("<answer>two</answer>", answer="two", choices=["one", "two"])[0]
    'malformed'
    """
    span, trimmed = tagged_span(text)
    parsed = parse_response(span)
    if parsed.mode is not ResponseMode.THINK:
        return "malformed", None, trimmed
    if not is_correct(parsed.answer, gold=answer, choices=list(choices)):
        return "answer_mismatch", parsed.think, trimmed
    return None, parsed.think, trimmed


@dataclass(frozen=True)
class RowOutcome:
    """The fate of one row: ``reason`` None = kept, ``"pending"`` = not rationalised yet."""

    key: str
    reason: str | None
    caption: str | None = None
    think: str | None = None
    trimmed: bool = False


def row_outcome(row: Mapping[str, Any], caption: Mapping[str, Any] | None,
                rationale: Mapping[str, Any] | None) -> RowOutcome:
    """Decide one row from its caption and rationale records (see the module docstring).

    >>> row = {"data_source": "s", "audios": ["/a"], "extra_info": {"question": "Q", "choices": ["a", "b"],
    ...        "answer": "b"}}
    >>> cap = {"caption": "A beep."}
    >>> good = {"caption_sha": _sha("A beep."), "text": "<think>t</think><answer>b</answer>"}
    >>> row_outcome(row, cap, good).reason is None
    True
    >>> row_outcome(row, {"caption": " "}, None).reason
    'empty_caption'
    >>> row_outcome(row, cap, None).reason
    'pending'
    """
    key = row_key(row)
    if caption is None:
        return RowOutcome(key, "pending")
    if caption.get("error"):
        return RowOutcome(key, str(caption["error"]))
    text = clean_caption(caption.get("caption"))
    if not text:
        return RowOutcome(key, "empty_caption")
    if rationale is None or rationale.get("caption_sha") != _sha(text):
        return RowOutcome(key, "pending", caption=text)
    if rationale.get("error"):
        return RowOutcome(key, str(rationale["error"]), caption=text)
    info = row["extra_info"]
    reason, think, trimmed = judge_rationale(str(rationale.get("text") or ""), answer=info["answer"],
                                             choices=list(info["choices"]))
    return RowOutcome(key, reason, caption=text, think=think, trimmed=trimmed)


def cot_row(
    row: Mapping[str, Any], outcome: RowOutcome, *, cot_model: str, caption_model: str
) -> dict[str, Any]:
    """The output row of a kept ``row``: ``think`` prompt mode plus the :data:`COT_KEYS`."""
    if outcome.reason is not None or outcome.think is None:
        raise ValueError(f"row {outcome.key} was not kept ({outcome.reason})")
    out = with_prompt_mode(dict(row), PromptMode.THINK)
    out["extra_info"] = {**out["extra_info"], "rationale": outcome.think, "caption": outcome.caption,
                         "cot_model": cot_model, "caption_model": caption_model}
    return out


def summarize(outcomes: Sequence[RowOutcome], *, tasks: Sequence[str] = ()) -> dict[str, Any]:
    """Counts of the outcomes: ``rows = kept + dropped_total + pending``.

    >>> s = summarize([RowOutcome("a", None), RowOutcome("b", "malformed"), RowOutcome("c", "pending")])
    >>> s["kept"], s["dropped"]["malformed"], s["dropped_total"], s["pending"], s["rows"]
    (1, 1, 1, 1, 3)
    """
    counts = Counter(o.reason for o in outcomes)
    unknown = set(counts) - {None, "pending", *DROP_REASONS}
    if unknown:
        raise ValueError(f"unknown outcome reasons {sorted(unknown)}")
    dropped = {reason: counts.get(reason, 0) for reason in DROP_REASONS}
    summary: dict[str, Any] = {
        "rows": len(outcomes),
        "kept": counts.get(None, 0),
        "dropped": dropped,
        "dropped_total": sum(dropped.values()),
        "pending": counts.get("pending", 0),
        "trimmed": sum(o.trimmed for o in outcomes if o.reason is None),
    }
    if tasks:
        kept_tasks = Counter(t for o, t in zip(outcomes, tasks) if o.reason is None)
        summary["kept_by_task"] = dict(sorted(kept_tasks.items()))
    assert summary["kept"] + summary["dropped_total"] + summary["pending"] == summary["rows"]
    return summary


def format_summary_line(summary: Mapping[str, Any]) -> str:
    """One line: kept of rows, the non-zero drops, pending, seconds.

    >>> format_summary_line({"rows": 3, "kept": 1, "dropped": {"malformed": 2, "audio_error": 0},
    ...                      "pending": 0, "timing": {"total_s": 1.5}, "out": "/o"})
    'cot: kept 1 of 3 rows; dropped malformed 2; 1.5 s -> /o'
    """
    drops = ", ".join(f"{k} {v}" for k, v in summary["dropped"].items() if v) or "none"
    pending = f"; pending {summary['pending']}" if summary.get("pending") else ""
    return (f"cot: kept {summary['kept']} of {summary['rows']} rows; dropped {drops}{pending}; "
            f"{summary['timing']['total_s']} s -> {summary['out']}")


def latest_records(lines: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The last record per ``key`` of JSON lines; blank and unreadable lines are skipped.

    >>> latest_records(['{"key": "a", "v": 1}', 'garbage', '{"key": "a", "v": 2}'])
    {'a': {'key': 'a', 'v': 2}}
    """
    out: dict[str, dict[str, Any]] = {}
    for line in lines:
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and "key" in record:
            out[str(record["key"])] = record
    return out


# -------------------------------------------------------------------------------------- file I/O


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a training parquet as plain Python objects, each checked against the schema."""
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"rows file {path} not found: make training rows with python -m audio_thinker.data.avqa "
            "or python -m audio_thinker.data.synthetic"
        )
    rows = pq.read_table(path).to_pylist()
    for position, row in enumerate(rows):
        try:
            validate_row(row)
        except (ValueError, KeyError, TypeError) as err:
            raise ValueError(f"{path}: row {position} is not a training row: {err}") from None
    return rows


def _repair_jsonl(path: Path) -> None:
    """Cut a partial last line (a crash mid-write) so that appending starts on a fresh line."""
    if not path.is_file():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with path.open("r+b") as handle:
            handle.truncate(data.rfind(b"\n") + 1)


def _load_jsonl(path: Path) -> dict[str, dict[str, Any]]:
    if not path.is_file():
        return {}
    with path.open(encoding="utf-8") as handle:
        return latest_records(handle)


def _append(handle: Any, records: Iterable[Mapping[str, Any]]) -> None:
    for record in records:
        handle.write(json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n")
    handle.flush()
    os.fsync(handle.fileno())


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _check_config(out: Path, record: dict[str, Any]) -> None:
    """Write ``OUT/config.json``, or refuse when it (or records without it) says otherwise."""
    path = out / CONFIG_NAME
    if path.is_file():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as err:
            raise CotConfigError(f"{path} is unreadable ({err}); use a new --out") from None
        diff = config_diff(old, record)
        if diff:
            listed = "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in diff.items())
            raise CotConfigError(
                f"{out} holds CoT records made with other settings ({listed}): use a new --out, "
                "or delete the folder to start over"
            )
        return
    if any((out / name).is_file() for name in (CAPTIONS_NAME, RATIONALES_NAME)):
        raise CotConfigError(f"{out} holds CoT records but no {CONFIG_NAME}: use a new --out")
    _atomic_write(path, (json.dumps(record, indent=2, sort_keys=True) + "\n").encode())


def _parquet_bytes(rows: list[dict[str, Any]], input_schema: Any) -> bytes:
    """The output parquet; an empty one keeps the input schema (extra_info gains COT_KEYS)."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    if rows:
        table = pa.Table.from_pylist(rows)
    else:
        fields = []
        for f in input_schema:
            if f.name == "extra_info" and pa.types.is_struct(f.type):
                names = {sub.name for sub in f.type}
                extra = [pa.field(k, pa.string()) for k in COT_KEYS if k not in names]
                f = pa.field(f.name, pa.struct(list(f.type) + extra))
            fields.append(f)
        table = pa.schema(fields).empty_table()
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


# ------------------------------------------------------------------------------------- generators


class CaptionGenerator(Protocol):
    """An audio model backend (:class:`~audio_thinker.inference.hf.HFGenerator`, vLLM)."""

    def generate(self, prompts: Sequence[PromptInput]) -> list[Generated]: ...


class TextGenerator(Protocol):
    """A text LLM backend: one :class:`Generated` per A.2 prompt string, in order."""

    def generate(self, prompts: Sequence[str]) -> list[Generated]: ...


def render_text_prompt(tokenizer: Any, text: str) -> str:
    """``text`` as one user turn of the tokenizer's chat template (generation prompt appended;
    Qwen3's ``enable_thinking=False``), or unchanged when the tokenizer has no template.

    >>> class Raw:
    ...     chat_template = None
    >>> render_text_prompt(Raw(), "Hi")
    'Hi'
    """
    if not getattr(tokenizer, "chat_template", None):
        return text
    return tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                         add_generation_prompt=True, enable_thinking=False)


def _encode(tokenizer: Any, text: str) -> list[int]:
    rendered = render_text_prompt(tokenizer, text)
    templated = bool(getattr(tokenizer, "chat_template", None))
    return list(tokenizer(rendered, add_special_tokens=not templated)["input_ids"])


class HFTextGenerator:
    """transformers causal LM, batched with left padding; a failing batch is retried per prompt."""

    def __init__(self, model_path: str, options: GenerationOptions, *, device: str = "cpu",
                 dtype: str = "float32", num_threads: int | None = None) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from audio_thinker.inference.hf import eos_token_ids

        if num_threads:
            torch.set_num_threads(int(num_threads))
        self.options = options
        self.device = torch.device(device)
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.tokenizer.padding_side = "left"
        torch_dtype = "auto" if dtype == "auto" else getattr(torch, dtype)
        model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch_dtype)
        self.model = model.to(self.device).eval()
        self.model.requires_grad_(False)
        self.stop_ids = eos_token_ids(self.model, self.tokenizer)
        if not self.stop_ids:
            raise ValueError(f"{model_path}: no eos_token_id in its generation config or tokenizer")
        pad = self.tokenizer.pad_token_id
        self.pad_id = int(pad) if pad is not None else min(self.stop_ids)
        self._calls = 0

    def _generate_batch(self, prompts: Sequence[str]) -> list[Generated]:
        import torch

        encoded = [_encode(self.tokenizer, p) for p in prompts]
        width = max(len(ids) for ids in encoded)
        ids = torch.full((len(encoded), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(encoded), width), dtype=torch.long)
        for row, seq in enumerate(encoded):  # left padding
            ids[row, width - len(seq):] = torch.tensor(seq, dtype=torch.long)
            mask[row, width - len(seq):] = 1
        kwargs: dict[str, Any] = {"max_new_tokens": self.options.max_new_tokens,
                                  "eos_token_id": sorted(self.stop_ids), "pad_token_id": self.pad_id}
        if self.options.greedy:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:
            kwargs.update(do_sample=True, temperature=self.options.temperature, top_p=self.options.top_p,
                          top_k=self.options.top_k if self.options.top_k > 0 else 0)
            torch.manual_seed(self.options.seed + self._calls)
        self._calls += 1
        with torch.no_grad():
            out = self.model.generate(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                                      **kwargs)
        return [decode_response(self.tokenizer, new, self.stop_ids, self.pad_id)
                for new in out[:, width:].tolist()]

    def generate(self, prompts: Sequence[str]) -> list[Generated]:
        """One result per prompt; a failing batch is retried one prompt at a time."""
        return generate_isolating(self._generate_batch, prompts)

    def close(self) -> None:
        self.model = None


class VLLMTextGenerator:
    """``vllm.LLM`` over a text model (``tensor_parallel_size`` GPUs), token ids in and out."""

    def __init__(self, model_path: str, options: GenerationOptions, engine: Any) -> None:
        from transformers import AutoTokenizer

        from audio_thinker.inference.hf import eos_token_ids
        from audio_thinker.inference.vllm import (
            VLLMGenerator,
            engine_kwargs,
            import_vllm,
            sampling_kwargs,
        )

        vllm = import_vllm()
        self.options = options
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        kwargs = engine_kwargs(model_path, engine, seed=options.seed)
        kwargs.pop("limit_mm_per_prompt", None)  # a text model takes no audio
        self.llm = vllm.LLM(**kwargs)
        self.stop_ids = eos_token_ids(None, self.tokenizer) | VLLMGenerator._generation_eos(model_path)
        self.pad_id = self.tokenizer.pad_token_id
        self.sampling = vllm.SamplingParams(**sampling_kwargs(options, sorted(self.stop_ids)))

    def generate(self, prompts: Sequence[str]) -> list[Generated]:
        """One result per prompt; a failing chunk is retried one prompt at a time."""
        return generate_isolating(self._generate_batch, prompts)

    def _generate_batch(self, prompts: Sequence[str]) -> list[Generated]:
        from audio_thinker.inference.vllm import finish

        requests = [{"prompt_token_ids": _encode(self.tokenizer, p)} for p in prompts]
        outputs = self.llm.generate(requests, self.sampling, use_tqdm=False)
        decode = lambda ids: self.tokenizer.decode(ids, skip_special_tokens=False)  # noqa: E731
        return [finish(list(o.outputs[0].token_ids), self.stop_ids, self.pad_id, decode,
                       self.options.max_new_tokens) for o in outputs]

    def close(self) -> None:
        self.llm = None


def choose_backend(backend: str) -> str:
    """``hf`` or ``vllm`` (``auto``: vllm when CUDA and vLLM are both available)."""
    if backend != "auto":
        return backend
    import importlib.util

    import torch

    return "vllm" if torch.cuda.is_available() and importlib.util.find_spec("vllm") is not None else "hf"


def _device_and_dtype(run: RunOptions) -> tuple[str, str]:
    import torch

    device = run.device or ("cuda" if torch.cuda.is_available() else "cpu")
    return device, run.dtype or ("float32" if device == "cpu" else "bfloat16")


def _vllm_options(run: RunOptions, tensor_parallel_size: int) -> Any:
    from audio_thinker.inference.vllm import VLLMOptions

    return VLLMOptions(tensor_parallel_size=tensor_parallel_size,
                       gpu_memory_utilization=run.gpu_memory_utilization, max_model_len=run.max_model_len,
                       max_num_seqs=max(run.batch_size, 1), dtype=run.dtype or "bfloat16")


def default_captioner(config: CotConfig, run: RunOptions) -> Callable[[], CaptionGenerator]:
    """A factory of the caption backend of ``run`` (built on first use)."""

    def make() -> CaptionGenerator:
        options = config.options(config.max_caption_tokens, run.batch_size)
        if choose_backend(run.backend) == "vllm":
            from audio_thinker.inference.vllm import build

            return build(config.caption_model, options, _vllm_options(run, run.caption_tensor_parallel_size))
        from audio_thinker.inference.hf import HFGenerator

        device, dtype = _device_and_dtype(run)
        return HFGenerator(config.caption_model, options, device=device, dtype=dtype,
                           num_threads=run.num_threads)

    return make


def default_text_generator(config: CotConfig, run: RunOptions) -> Callable[[], TextGenerator]:
    """A factory of the rationale backend of ``run`` (built on first use)."""

    def make() -> TextGenerator:
        options = config.options(config.max_rationale_tokens, run.batch_size)
        if choose_backend(run.backend) == "vllm":
            return VLLMTextGenerator(config.text_model, options, _vllm_options(run, run.tensor_parallel_size))
        device, dtype = _device_and_dtype(run)
        return HFTextGenerator(config.text_model, options, device=device, dtype=dtype,
                               num_threads=run.num_threads)

    return make


def _release(generator: Any) -> None:
    """Drop a backend and give its GPU memory back before the next model loads (best effort)."""
    if generator is None:
        return
    llm = getattr(generator, "llm", None)
    engine = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
    if engine is not None and hasattr(engine, "shutdown"):
        try:
            engine.shutdown()
        except Exception as error:  # pragma: no cover - vLLM version specific
            logger.warning("vLLM engine shutdown failed: %r", error)
    close = getattr(generator, "close", None)
    if callable(close):
        close()
    del llm, engine
    gc.collect()
    if "torch" in sys.modules:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def check_model(path: str, *, what: str, flag: str) -> str:
    """``path`` resolved when it is a local folder with a ``config.json``; a Hugging Face hub id
    (``org/name``) that is not a local path is passed on as is; anything else is an error."""
    local = Path(path).expanduser()
    if local.exists():
        if not (local / "config.json").is_file():
            raise FileNotFoundError(f"{flag} {path}: no config.json there; pass a Hugging Face {what} folder")
        return str(local.resolve())
    if _HUB_ID.match(path):
        return path
    raise FileNotFoundError(f"{flag} {path} not found: pass a Hugging Face {what} folder (or a hub id)")


# ----------------------------------------------------------------------------------------- stages


def _batches(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _needs_caption(record: Mapping[str, Any] | None) -> bool:
    return record is None or record.get("error") in ("audio_error", "generation_error")


def _caption_record(key: str, audio_path: str, result: Generated | None = None,
                    audio_error: AudioError | None = None) -> dict[str, Any]:
    """The captions.jsonl record of one row: an audio error, or one generation result."""
    record: dict[str, Any] = {"key": key, "audio_path": audio_path, "caption": None, "error": None,
                              "detail": None, "n_tokens": 0, "finish_reason": None}
    if audio_error is not None:
        record.update(error="audio_error", detail=f"{audio_error.reason}: {audio_error}")
    elif result is None or result.text is None or result.error:
        record.update(error="generation_error", detail=str((result and result.error) or "no text"))
    else:
        record["caption"] = clean_caption(result.text)
    if result is not None:
        record.update(n_tokens=result.n_tokens, finish_reason=result.finish_reason)
    return record


def _load_clip(path: str, audio: AudioConfig, stats: AudioStats) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AudioTruncatedWarning)  # counted in stats
        return load_audio(path, config=audio, stats=stats).samples


class _Lazy:
    """A backend built on first use; its load and generation times are measured."""

    def __init__(self, make: Callable[[], Any]) -> None:
        self.make = make
        self.generator: Any = None
        self.load_s = 0.0
        self.generate_s = 0.0

    def generate(self, prompts: Sequence[Any]) -> list[Generated]:
        if self.generator is None:
            started = time.perf_counter()
            self.generator = self.make()
            self.load_s += time.perf_counter() - started
        started = time.perf_counter()
        results = list(self.generator.generate(prompts))
        self.generate_s += time.perf_counter() - started
        if len(results) != len(prompts):
            raise RuntimeError(f"generation backend: {len(results)} results for {len(prompts)} prompts")
        return results

    def release(self) -> None:
        _release(self.generator)
        self.generator = None


def _caption_stage(rows: Sequence[dict[str, Any]], keys: Sequence[str], captions: dict[str, dict[str, Any]],
                   *, path: Path, make: Callable[[], CaptionGenerator], batch_size: int,
                   audio: AudioConfig, stats: AudioStats, progress: bool) -> dict[str, Any]:
    from tqdm import tqdm

    todo = [i for i, key in enumerate(keys) if _needs_caption(captions.get(key))]
    backend = _Lazy(make)
    generated = 0
    bar = tqdm(total=len(keys), initial=len(keys) - len(todo), desc="cot captions", unit="row",
               disable=not progress)
    _repair_jsonl(path)
    try:
        with bar, path.open("a", encoding="utf-8") as sink:
            for batch in _batches(todo, batch_size):
                records: dict[int, dict[str, Any]] = {}
                ready: list[tuple[int, PromptInput]] = []
                for i in batch:
                    audio_path = str(rows[i]["audios"][0])
                    try:
                        samples = _load_clip(audio_path, audio, stats)
                    except AudioError as err:
                        records[i] = _caption_record(keys[i], audio_path, audio_error=err)
                        continue
                    ready.append((i, PromptInput(keys[i], caption_messages(samples), [samples])))
                results = backend.generate([p for _, p in ready]) if ready else []
                for (i, _), result in zip(ready, results):
                    records[i] = _caption_record(keys[i], str(rows[i]["audios"][0]), result)
                generated += len(results)
                ordered = [records[i] for i in batch]
                _append(sink, ordered)
                captions.update((record["key"], record) for record in ordered)
                bar.update(len(batch))
    finally:
        backend.release()
    return {"generated": generated, "reused": len(keys) - len(todo), "load_s": backend.load_s,
            "generate_s": backend.generate_s}


def _rationale_record(key: str, caption: str, result: Generated) -> dict[str, Any]:
    """The rationales.jsonl record of one generation result."""
    failed = result.text is None or bool(result.error)
    return {"key": key, "caption_sha": _sha(caption), "text": result.text,
            "error": "generation_error" if failed else None,
            "detail": str(result.error or "no text") if failed else None,
            "outcome": "generation_error" if failed else None,
            "n_tokens": result.n_tokens, "finish_reason": result.finish_reason}


def _rationale_stage(rows: Sequence[dict[str, Any]], keys: Sequence[str], captions: dict[str, dict[str, Any]],
                     rationales: dict[str, dict[str, Any]], *, path: Path, make: Callable[[], TextGenerator],
                     batch_size: int, progress: bool) -> dict[str, Any]:
    from tqdm import tqdm

    todo: list[tuple[int, str]] = []  # (row, caption) of the rows to generate now
    eligible = 0
    for i, key in enumerate(keys):
        outcome = row_outcome(rows[i], captions.get(key), rationales.get(key))
        if outcome.caption is None:
            continue  # no usable caption: no rationale
        eligible += 1
        if outcome.reason in ("pending", "generation_error"):
            todo.append((i, outcome.caption))
    backend = _Lazy(make)
    bar = tqdm(total=eligible, initial=eligible - len(todo), desc="cot rationales", unit="row",
               disable=not progress)
    _repair_jsonl(path)
    try:
        with bar, path.open("a", encoding="utf-8") as sink:
            for batch in _batches(todo, batch_size):
                results = backend.generate([rationale_prompt(rows[i], caption) for i, caption in batch])
                records = []
                for (i, caption), result in zip(batch, results):
                    record = _rationale_record(keys[i], caption, result)
                    if record["error"] is None:  # for reading the file; every run re-judges the text
                        gold = rows[i]["extra_info"]
                        reason = judge_rationale(record["text"], answer=gold["answer"],
                                                 choices=list(gold["choices"]))[0]
                        record["outcome"] = reason or "kept"
                    records.append(record)
                _append(sink, records)
                rationales.update((record["key"], record) for record in records)
                bar.update(len(batch))
    finally:
        backend.release()
    return {"generated": len(todo), "reused": eligible - len(todo), "load_s": backend.load_s,
            "generate_s": backend.generate_s}


# --------------------------------------------------------------------------------------- pipeline


def generate_cot(
    config: CotConfig,
    out_dir: str | Path,
    *,
    run: RunOptions = RunOptions(),
    limit: int | None = None,
    audio: AudioConfig = AudioConfig(),
    progress: bool = True,
    make_captioner: Callable[[], CaptionGenerator] | None = None,
    make_text_generator: Callable[[], TextGenerator] | None = None,
) -> dict[str, Any]:
    """Run the pipeline of the module docstring into ``out_dir``; returns the summary (also saved).

    ``make_captioner`` / ``make_text_generator`` build the backends on first use (default: from
    ``run``); a test passes scripted generators here.
    """
    started = time.perf_counter()
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    import pyarrow.parquet as pq

    rows_path = Path(config.rows)
    all_rows = read_rows(rows_path)
    input_schema = pq.read_schema(rows_path)
    rows = all_rows[:limit] if limit is not None else all_rows
    keys = [row_key(row) for row in rows]
    out = Path(out_dir).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    _check_config(out, config.record())
    captions = _load_jsonl(out / CAPTIONS_NAME)
    rationales = _load_jsonl(out / RATIONALES_NAME)
    stats = AudioStats()
    caption_info = _caption_stage(
        rows, keys, captions, path=out / CAPTIONS_NAME,
        make=make_captioner or default_captioner(config, run), batch_size=run.batch_size,
        audio=audio, stats=stats, progress=progress,
    )
    rationale_info: dict[str, Any] = {"generated": 0, "reused": 0, "load_s": 0.0, "generate_s": 0.0}
    if run.stage == "all":
        rationale_info = _rationale_stage(
            rows, keys, captions, rationales, path=out / RATIONALES_NAME,
            make=make_text_generator or default_text_generator(config, run), batch_size=run.batch_size,
            progress=progress,
        )
    outcomes = [row_outcome(row, captions.get(k), rationales.get(k)) for row, k in zip(rows, keys)]
    summary = summarize(outcomes, tasks=[str(row["extra_info"].get("task") or "") for row in rows])
    files = {"config": CONFIG_NAME, "captions": CAPTIONS_NAME, "rationales": RATIONALES_NAME,
             "summary": SUMMARY_NAME}
    if run.stage == "all":
        kept = [cot_row(row, o, cot_model=config.text_model, caption_model=config.caption_model)
                for row, o in zip(rows, outcomes) if o.reason is None]
        _atomic_write(out / ROWS_NAME, _parquet_bytes(kept, input_schema))
        files["rows"] = ROWS_NAME
    summary.update({
        "format_version": FORMAT_VERSION,
        "rows_in_file": len(all_rows),
        "limit": limit,
        "models": {"caption_model": config.caption_model, "text_model": config.text_model},
        "config": config.record(),
        "run": {**asdict(run), "backend_used": _backend_used(
            run, caption_info, rationale_info, custom=bool(make_captioner or make_text_generator))},
        "this_run": {
            "captions_generated": caption_info["generated"], "captions_reused": caption_info["reused"],
            "rationales_generated": rationale_info["generated"],
            "rationales_reused": rationale_info["reused"],
            "audio": stats.as_dict(),
        },
        "timing": {
            "caption_load_s": round(caption_info["load_s"], 3),
            "caption_generate_s": round(caption_info["generate_s"], 3),
            "rationale_load_s": round(rationale_info["load_s"], 3),
            "rationale_generate_s": round(rationale_info["generate_s"], 3),
            "total_s": round(time.perf_counter() - started, 3),
        },
        "finish_reasons": {
            "caption": _finish_counts(captions.get(k) for k in keys),
            "rationale": _finish_counts(rationales.get(k) for k in keys),
        },
        "files": files,
        "out": str(out),
    })
    _atomic_write(out / SUMMARY_NAME, (json.dumps(summary, indent=2, sort_keys=True) + "\n").encode())
    return summary


def _backend_used(run: RunOptions, *infos: Mapping[str, Any], custom: bool) -> str | None:
    """The backend that generated something this run (None when everything was reused; ``custom``
    when the caller passed its own generators)."""
    if not any(info["generated"] for info in infos):
        return None
    if custom:
        return "custom"
    return run.backend if run.backend != "auto" else choose_backend("auto")


def _finish_counts(records: Iterable[Mapping[str, Any] | None]) -> dict[str, int]:
    counts = Counter(r.get("finish_reason") for r in records if r is not None and r.get("finish_reason"))
    return dict(sorted(counts.items()))


# -------------------------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    """Command-line arguments of ``python -m audio_thinker.data.cot``."""
    run, cfg = RunOptions(), CotConfig(rows="", caption_model="", text_model="")
    p = argparse.ArgumentParser(
        prog="python -m audio_thinker.data.cot",
        description="Generate CoT rationales (paper A.2): captions by the audio model, rationales by a text "
                    "LLM, filtered to the gold answer; writes OUT/cot.parquet (think prompt mode).",
    )
    p.add_argument("--rows", required=True, help="training rows parquet (e.g. data/avqa/train.parquet)")
    p.add_argument("--out", required=True, help="output folder (resumable)")
    p.add_argument("--caption-model", required=True, help="audio model folder (Qwen2-Audio-7B-Instruct)")
    p.add_argument("--text-model", required=True, help="text LLM folder or hub id (Qwen2.5-72B-Instruct)")
    p.add_argument("--backend", choices=BACKENDS, default=run.backend,
                   help="auto: vllm when CUDA and vLLM are available, else hf (transformers)")
    p.add_argument("--batch-size", type=int, default=run.batch_size, help="prompts per generation call")
    p.add_argument("--max-caption-tokens", type=int, default=cfg.max_caption_tokens)
    p.add_argument("--max-rationale-tokens", type=int, default=cfg.max_rationale_tokens)
    p.add_argument("--temperature", type=float, default=cfg.temperature, help="0 = greedy (default)")
    p.add_argument("--top-p", type=float, default=cfg.top_p)
    p.add_argument("--seed", type=int, default=cfg.seed)
    p.add_argument("--limit", type=int, default=None, help="only the first N rows")
    p.add_argument("--tensor-parallel-size", type=int, default=run.tensor_parallel_size,
                   help="GPUs of the text LLM (vllm)")
    p.add_argument("--caption-tensor-parallel-size", type=int, default=run.caption_tensor_parallel_size,
                   help="GPUs of the audio model (vllm)")
    p.add_argument("--gpu-memory-utilization", type=float, default=run.gpu_memory_utilization)
    p.add_argument("--max-model-len", type=int, default=run.max_model_len)
    p.add_argument("--device", default=None, help="hf torch device (default: cuda when available, else cpu)")
    p.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16", "auto"],
                   help="model dtype (default: float32 on cpu, bfloat16 on GPU)")
    p.add_argument("--num-threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--stage", choices=STAGES, default=run.stage,
                   help="captions: stop after the captions (then re-run without it for the rationales)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point: runs the pipeline, prints the summary line and returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        config = CotConfig(
            rows=str(Path(args.rows).expanduser().resolve()),
            caption_model=check_model(args.caption_model, what="audio model", flag="--caption-model"),
            text_model=check_model(args.text_model, what="causal LM", flag="--text-model"),
            max_caption_tokens=args.max_caption_tokens, max_rationale_tokens=args.max_rationale_tokens,
            temperature=args.temperature, top_p=args.top_p, seed=args.seed,
        )
        run = RunOptions(
            backend=args.backend, batch_size=args.batch_size, device=args.device, dtype=args.dtype,
            num_threads=args.num_threads, tensor_parallel_size=args.tensor_parallel_size,
            caption_tensor_parallel_size=args.caption_tensor_parallel_size,
            gpu_memory_utilization=args.gpu_memory_utilization, max_model_len=args.max_model_len,
            stage=args.stage,
        )
        summary = generate_cot(config, args.out, run=run, limit=args.limit, progress=not args.no_progress)
    except (ValueError, OSError, RuntimeError, ImportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(format_summary_line(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
