"""The two generation stages and the run that ties them to the output folder.

Each stage generates only for the rows that still need it (a missing record, or a failed one:
``audio_error``, ``generation_error``), appends its records batch by batch, and builds its model
on first use, so a finished run re-writes its outputs without loading any model. Generation is
:mod:`audio_thinker.inference` (transformers or vLLM, chosen by ``RunOptions.backend``).
"""

from __future__ import annotations

import json
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, Protocol

from audio_thinker.data.files import append_jsonl, atomic_write, repair_jsonl_tail
from audio_thinker.data.audio import AudioConfig, AudioError, AudioStats, AudioTruncatedWarning, load_audio
from audio_thinker.data.cot import store
from audio_thinker.data.cot.filter import (
    caption_messages,
    clean_caption,
    cot_row,
    judge_rationale,
    rationale_prompt,
    row_key,
    row_outcome,
    summarize,
)
from audio_thinker.data.cot.settings import FORMAT_VERSION, CotConfig, RunOptions, digest
from audio_thinker.data.rows import RowError
from audio_thinker.inference.backend import choose_backend, release, resolve_device_and_dtype
from audio_thinker.inference.batching import batches
from audio_thinker.inference.outputs import Generated, PromptInput


class CaptionGenerator(Protocol):
    """An audio model backend (:class:`~audio_thinker.inference.hf.HFGenerator`, vLLM)."""

    def generate(self, prompts: Sequence[PromptInput]) -> list[Generated]: ...


class TextGenerator(Protocol):
    """A text LLM backend: one :class:`Generated` per A.2 prompt string, in order."""

    def generate(self, prompts: Sequence[str]) -> list[Generated]: ...


def _factory(config: CotConfig, run: RunOptions, *, model: str, max_new_tokens: int,
             tensor_parallel_size: int, audio: bool) -> Callable[[], Any]:
    """A factory of one stage's generator (built on first use)."""

    def make() -> Any:
        options = config.options(max_new_tokens, run.batch_size)
        if choose_backend(run.backend) == "vllm":
            from audio_thinker.inference import vllm

            engine = vllm.VLLMGenerator if audio else vllm.VLLMTextGenerator
            return engine(model, options, run.vllm_options(tensor_parallel_size))
        from audio_thinker.inference import hf

        device, dtype = resolve_device_and_dtype(run.device, run.dtype)
        generator = hf.HFGenerator if audio else hf.HFTextGenerator
        return generator.from_pretrained(model, options, device=device, dtype=dtype,
                                         num_threads=run.num_threads)

    return make


def default_captioner(config: CotConfig, run: RunOptions) -> Callable[[], CaptionGenerator]:
    """A factory of the caption backend of ``run`` (the audio model)."""
    return _factory(config, run, model=config.caption_model, max_new_tokens=config.max_caption_tokens,
                    tensor_parallel_size=run.caption_tensor_parallel_size, audio=True)


def default_text_generator(config: CotConfig, run: RunOptions) -> Callable[[], TextGenerator]:
    """A factory of the rationale backend of ``run`` (the text LLM)."""
    return _factory(config, run, model=config.text_model, max_new_tokens=config.max_rationale_tokens,
                    tensor_parallel_size=run.tensor_parallel_size, audio=False)


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
        release(self.generator)
        self.generator = None


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


def _caption_stage(rows: Sequence[dict[str, Any]], keys: Sequence[str], captions: dict[str, dict[str, Any]],
                   *, path: Path, make: Callable[[], CaptionGenerator], batch_size: int,
                   audio: AudioConfig, stats: AudioStats, progress: bool) -> dict[str, Any]:
    from tqdm import tqdm

    todo = [i for i, key in enumerate(keys) if _needs_caption(captions.get(key))]
    backend = _Lazy(make)
    generated = 0
    bar = tqdm(total=len(keys), initial=len(keys) - len(todo), desc="cot captions", unit="row",
               disable=not progress)
    repair_jsonl_tail(path)
    try:
        with bar, path.open("a", encoding="utf-8") as sink:
            for batch in batches(todo, batch_size):
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
                append_jsonl(sink, ordered, sort_keys=True)
                captions.update((record["key"], record) for record in ordered)
                bar.update(len(batch))
    finally:
        backend.release()
    return {"generated": generated, "reused": len(keys) - len(todo), "load_s": backend.load_s,
            "generate_s": backend.generate_s}


def _rationale_record(key: str, caption: str, result: Generated) -> dict[str, Any]:
    """The rationales.jsonl record of one generation result."""
    failed = result.text is None or bool(result.error)
    return {"key": key, "caption_sha": digest(caption), "text": result.text,
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
    repair_jsonl_tail(path)
    try:
        with bar, path.open("a", encoding="utf-8") as sink:
            for batch in batches(todo, batch_size):
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
                append_jsonl(sink, records, sort_keys=True)
                rationales.update((record["key"], record) for record in records)
                bar.update(len(batch))
    finally:
        backend.release()
    return {"generated": len(todo), "reused": eligible - len(todo), "load_s": backend.load_s,
            "generate_s": backend.generate_s}


def generate_cot(
    config: CotConfig,
    out_dir: str | Path,
    *,
    run: RunOptions | None = None,
    limit: int | None = None,
    audio: AudioConfig | None = None,
    progress: bool = True,
    make_captioner: Callable[[], CaptionGenerator] | None = None,
    make_text_generator: Callable[[], TextGenerator] | None = None,
) -> dict[str, Any]:
    """Run the pipeline of :mod:`audio_thinker.data.cot` into ``out_dir``; returns the summary (also saved).

    ``run``: how to run (default :class:`RunOptions`); ``audio``: decoding of the clips (default
    :class:`AudioConfig`). ``make_captioner`` / ``make_text_generator`` build the backends on first
    use (default: from ``run``); a test passes scripted generators here.
    """
    started = time.perf_counter()
    run = run or RunOptions()
    audio = audio or AudioConfig()
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    import pyarrow.parquet as pq

    rows_path = Path(config.rows)
    all_rows, invalid = store.read_rows(rows_path, max_question_chars=run.max_question_chars)
    input_schema = pq.read_schema(rows_path)
    rows = all_rows[:limit] if limit is not None else all_rows
    keys = [row_key(row) for row in rows]
    out = Path(out_dir).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    store.check_config(out, config.record())
    captions = store.load_jsonl(out / store.CAPTIONS_NAME)
    rationales = store.load_jsonl(out / store.RATIONALES_NAME)
    stats = AudioStats()
    caption_info = _caption_stage(
        rows, keys, captions, path=out / store.CAPTIONS_NAME,
        make=make_captioner or default_captioner(config, run), batch_size=run.batch_size,
        audio=audio, stats=stats, progress=progress,
    )
    rationale_info: dict[str, Any] = {"generated": 0, "reused": 0, "load_s": 0.0, "generate_s": 0.0}
    if run.stage == "all":
        rationale_info = _rationale_stage(
            rows, keys, captions, rationales, path=out / store.RATIONALES_NAME,
            make=make_text_generator or default_text_generator(config, run), batch_size=run.batch_size,
            progress=progress,
        )
    outcomes = [row_outcome(row, captions.get(k), rationales.get(k)) for row, k in zip(rows, keys)]
    summary = summarize(outcomes, tasks=[str(row["extra_info"].get("task") or "") for row in rows])
    files = {"config": store.CONFIG_NAME, "captions": store.CAPTIONS_NAME,
             "rationales": store.RATIONALES_NAME, "summary": store.SUMMARY_NAME}
    if run.stage == "all":
        kept = [cot_row(row, o, cot_model=config.text_model, caption_model=config.caption_model)
                for row, o in zip(rows, outcomes) if o.reason is None]
        atomic_write(out / store.ROWS_NAME, store.parquet_bytes(kept, input_schema))
        files["rows"] = store.ROWS_NAME
    summary.update({
        "format_version": FORMAT_VERSION,
        "rows_in_file": len(all_rows) + len(invalid),
        **_invalid_counts(invalid),
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
    summary_text = json.dumps(summary, indent=2, sort_keys=True) + "\n"
    atomic_write(out / store.SUMMARY_NAME, summary_text.encode())
    return summary


def _invalid_counts(invalid: Sequence[tuple[int, RowError]]) -> dict[str, Any]:
    """``invalid_rows`` (count per reason) and ``invalid_examples`` (the first row per reason)."""
    counts = Counter(err.reason for _, err in invalid)
    examples: dict[str, str] = {}
    for position, err in invalid:
        examples.setdefault(err.reason, f"row {position}: {err}")
    return {"invalid_rows": dict(sorted(counts.items())), "invalid_examples": dict(sorted(examples.items()))}


def _backend_used(run: RunOptions, *infos: Mapping[str, Any], custom: bool) -> str | None:
    """The backend that generated something this run (None when everything was reused; ``custom``
    when the caller passed its own generators)."""
    if not any(info["generated"] for info in infos):
        return None
    if custom:
        return "custom"
    return choose_backend(run.backend)


def _finish_counts(records: Iterable[Mapping[str, Any] | None]) -> dict[str, int]:
    counts = Counter(r.get("finish_reason") for r in records if r is not None and r.get("finish_reason"))
    return dict(sorted(counts.items()))
