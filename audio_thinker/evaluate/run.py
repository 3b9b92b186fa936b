"""One evaluation run: items -> responses -> records -> official predictions, results, tables, plot.

The run directory (``output_dir``) holds::

    run.json                 what was evaluated (model, benchmark, prompt mode, decoding, audio), and
                             the fingerprint a resumed run must match
    records.jsonl            one EvalRecord per item (audio_thinker.scoring.records), appended batch by
                             batch, flushed to disk: a killed run loses at most the batch in flight
    <official predictions>   the benchmark's own format (audio_thinker.scoring.official)
    results.json             both accuracy figures, every table, the think-rate analysis, load
                             report, audio errors, timing
    tables.md                the tables as Markdown (also printed)
    think_rate.png           no-think rate by difficulty and accuracy by mode (paper Figure 2)

Re-running with the same ``output_dir`` resumes: items whose record has a response are kept, the
rest (never reached, or failed: missing audio, decode or generation errors) are tried again. A
run directory of a *different* configuration is refused with the keys that differ.

Bad input never stops the run: a missing or unreadable clip, a prompt longer than
``max_prompt_length`` tokens (``prompt_too_long``, never generated from: a 100k-character question
would exhaust the memory), or a prompt the model fails on, becomes a record without a response
(counted as *missing*, with the reason in ``error``); benchmark
rows that cannot be evaluated at all (malformed, duplicate id, answer not among the choices) are
excluded and listed in the load report.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audio_thinker.config import ConfigError
from audio_thinker.data.audio import AudioError, AudioStats, load_audio
from audio_thinker.data.benchmarks import BenchmarkItem
from audio_thinker.data.files import append_jsonl, atomic_write, repair_jsonl_tail
from audio_thinker.verl_ext.merge import ResolvedModel, resolve_model
from audio_thinker.evaluate.prompts import prompt_input, prompt_length_check
from audio_thinker.inference.backend import choose_backend
from audio_thinker.inference.batching import batches
from audio_thinker.inference.outputs import Generated, Generator, PromptInput
from audio_thinker.scoring.items import SYNTHETIC, load_eval_items
from audio_thinker.scoring.records import EvalRecord, make_record
from audio_thinker.scoring.results import RESULTS_FILE
from audio_thinker.evaluate.config import EvalConfig
from audio_thinker.toy.prepare import ToySection

logger = logging.getLogger(__name__)

RUN_FILE = "run.json"
RECORDS_FILE = "records.jsonl"
TABLES_FILE = "tables.md"
PLOT_FILE = "think_rate.png"


class EvaluationError(RuntimeError):
    """The run finished but evaluated nothing (every item lacks a response); the message says why."""


@dataclass
class RunOutcome:
    """What :func:`evaluate` produced."""

    output_dir: Path
    results: dict[str, Any]
    records: list[EvalRecord]
    tables_markdown: str


# ---------------------------------------------------------------------------------------- set-up


def model_label(cfg: EvalConfig, resolved: ResolvedModel) -> str:
    """``model.label``, else the model directory's name (``<run>-step<N>`` for a verl checkpoint)."""
    if cfg.model.label:
        return cfg.model.label
    if resolved.source == "verl" and resolved.checkpoint_dir:
        actor = Path(resolved.checkpoint_dir)
        run = actor.parent.parent.name if actor.name == "actor" else actor.parent.name
        return f"{run}-step{resolved.step}" if resolved.step is not None else run
    return Path(resolved.hf_dir).resolve().name


def default_output_dir(cfg: EvalConfig, label: str) -> Path:
    version = f"-{cfg.benchmark.version}" if cfg.benchmark.version else ""
    return Path("runs") / "eval" / label / f"{cfg.benchmark.name}{version}-{cfg.prompt_mode}"


def needed_prepare(cfg: EvalConfig) -> ToySection:
    """The part of ``cfg.toy`` this run uses: build only what the model/benchmark paths name."""
    p = cfg.toy

    def same(a: str | None, b: str | None) -> bool:
        return bool(a and b) and Path(a).resolve() == Path(b).resolve()  # type: ignore[arg-type]

    uses_model = same(cfg.model.path, p.warmstart_model) or same(cfg.model.path, p.tiny_model)
    uses_data = cfg.benchmark.name == SYNTHETIC and bool(p.synthetic_data) and (
        Path(cfg.benchmark.meta).resolve().parent == Path(p.synthetic_data).resolve()  # type: ignore[arg-type]
    )
    warmstart = p.warmstart_model if same(cfg.model.path, p.warmstart_model) else None
    return ToySection(
        synthetic_data=p.synthetic_data if (uses_data or warmstart) else None,
        tiny_model=p.tiny_model if uses_model else None,
        tiny_arch=p.tiny_arch,
        tiny_judge=None,
        warmstart_model=warmstart,
    )


#: the files of a model directory whose content decides what is generated: weights, processor and
#: tokenizer, chat template, generation defaults, architecture
MODEL_FILE_PATTERNS = ("*.safetensors", "*.bin", "*.pt", "tokenizer*.json", "*processor*config*.json",
                       "chat_template*", "generation_config.json", "config.json")


def model_files(hf_dir: str | Path) -> dict[str, list[int]]:
    """``{relative path: [size, mtime_ns]}`` of every file in ``hf_dir`` that decides the model's output.

    Replacing the weights in place (or retraining into the same ``global_step_N``) changes this even
    though the model path stays the same.
    """
    root = Path(hf_dir).resolve()
    found: dict[str, list[int]] = {}
    for pattern in MODEL_FILE_PATTERNS:
        for path in root.rglob(pattern):
            if path.is_file():
                stat = path.stat()
                found[path.relative_to(root).as_posix()] = [stat.st_size, stat.st_mtime_ns]
    return dict(sorted(found.items()))


def _changed_files(previous: Any, current: dict[str, list[int]]) -> list[str]:
    if not isinstance(previous, dict):
        return ["(the old run recorded no model files)"]
    return sorted(k for k in set(previous) | set(current) if previous.get(k) != current.get(k))


def fingerprint(cfg: EvalConfig, resolved: ResolvedModel) -> dict[str, Any]:
    """What a resumed run must share with the records already in its directory."""
    return {
        "model": str(Path(resolved.hf_dir).resolve()),
        "model_files": model_files(resolved.hf_dir),
        "benchmark": cfg.benchmark.name,
        "meta": str(Path(cfg.benchmark.meta).resolve()),
        "audio_root": cfg.benchmark.audio_root,
        "prompt_mode": cfg.prompt_mode,
        "generation": {k: v for k, v in dataclasses.asdict(cfg.generation).items() if k != "batch_size"},
        # which ffmpeg binary decodes, and how long it may take, does not change the records
        "audio": {k: v for k, v in dataclasses.asdict(cfg.audio).items() if k not in ("ffmpeg", "ffmpeg_timeout_s")},
    }


def _check_resumable(out: Path, current: dict[str, Any], resume: bool) -> None:
    run_file = out / RUN_FILE
    if not run_file.is_file():
        if (out / RECORDS_FILE).exists():
            raise ConfigError(f"{out} holds {RECORDS_FILE} but no {RUN_FILE}: use another output_dir")
        return
    if not resume:
        raise ConfigError(f"{out} already holds an evaluation run and resume=false: use another output_dir")
    previous = json.loads(run_file.read_text()).get("fingerprint", {})
    differ = sorted(k for k in set(previous) | set(current) if previous.get(k) != current.get(k))
    if differ == ["model_files"]:
        changed = _changed_files(previous.get("model_files"), current["model_files"])
        raise ConfigError(
            f"{out} holds a run of the same model path but the model's files changed since (weights replaced or "
            f"retrained in place?): {', '.join(changed[:8])}{' ...' if len(changed) > 8 else ''}; its records "
            "belong to the old model: set output_dir to a new directory (or delete the old one) to evaluate "
            "the current files"
        )
    if differ:
        raise ConfigError(
            f"{out} holds a run of a different configuration (differs in: {', '.join(differ)}); set output_dir "
            "to a new directory, or delete the old one to start over"
        )


def read_records(path: Path) -> tuple[dict[str, EvalRecord], int]:
    """The records already written (the last one per item wins) and the number of unreadable lines."""
    records: dict[str, EvalRecord] = {}
    bad = 0
    if not path.is_file():
        return records, bad
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            try:
                record = EvalRecord.from_json(json.loads(line))
            except (ValueError, TypeError):
                bad += 1  # e.g. the half-written last line of a killed run
                continue
            records[record.item_id] = record
    return records, bad


# ------------------------------------------------------------------------------------ generation


def build_generator(cfg: EvalConfig, backend: str, hf_dir: str) -> Generator:
    """The generator of ``backend`` (``hf`` or ``vllm``) over ``hf_dir``, set up from ``cfg``."""
    options = cfg.generation
    if backend == "vllm":
        from audio_thinker.inference.vllm import build

        return build(hf_dir, options, cfg.vllm)
    from audio_thinker.inference.hf import HFGenerator

    return HFGenerator.from_pretrained(hf_dir, options, device=cfg.hf.device, dtype=cfg.hf.dtype,
                                       attn_implementation=cfg.hf.attn_implementation,
                                       num_threads=cfg.hf.num_threads)


def generate_records(
    items: Sequence[BenchmarkItem],
    *,
    mode: str,
    make_generator: Any,
    audio_config: Any,
    batch_size: int,
    sink: Any,
    stats: AudioStats,
    progress: bool = True,
    check_prompt: Callable[[PromptInput], str | None] | None = None,
) -> tuple[list[EvalRecord], dict[str, float]]:
    """Records of ``items`` (in order), written to ``sink`` batch by batch; also timing figures.

    ``make_generator`` builds the backend on first use (a run with nothing to generate never loads
    the model). Audio that is missing or fails to decode, and a prompt that ``check_prompt`` refuses
    (its error, e.g. ``prompt_too_long: ...``), become records without a response.
    """
    from tqdm import tqdm

    generator: Generator | None = None
    out: list[EvalRecord] = []
    generate_s = 0.0
    generated = tokens = 0
    correct = answered = 0
    bar = tqdm(total=len(items), desc=f"evaluating ({mode})", unit="item", disable=not progress)
    try:
        for batch in batches(items, batch_size):
            ready: list[tuple[BenchmarkItem, PromptInput]] = []
            records: dict[str, EvalRecord] = {}
            for item in batch:
                try:
                    samples = load_audio(item.audio_path, config=audio_config, stats=stats).samples
                except AudioError as error:
                    records[item.item_id] = make_record(item, None, prompt_mode=mode,
                                                        error=f"{error.reason}: {error}")
                    continue
                prompt = prompt_input(item, mode, samples)
                refused = check_prompt(prompt) if check_prompt is not None else None
                if refused:
                    records[item.item_id] = make_record(item, None, prompt_mode=mode, error=refused)
                    continue
                ready.append((item, prompt))
            if ready:
                if generator is None:
                    generator = make_generator()
                started = time.perf_counter()
                results: list[Generated] = generator.generate([p for _, p in ready])
                generate_s += time.perf_counter() - started
                if len(results) != len(ready):
                    raise RuntimeError(f"backend returned {len(results)} results for {len(ready)} prompts")
                for (item, _), result in zip(ready, results):
                    records[item.item_id] = make_record(
                        item, result.text, prompt_mode=mode, error=result.error,
                        n_tokens=result.n_tokens, finish_reason=result.finish_reason,
                    )
                    generated += result.text is not None
                    tokens += result.n_tokens
            ordered = [records[item.item_id] for item in batch]
            append_jsonl(sink, [record.to_json() for record in ordered])
            out.extend(ordered)
            answered += sum(not r.missing for r in ordered)
            correct += sum(r.correct for r in ordered)
            bar.update(len(batch))
            bar.set_postfix(acc=f"{correct / max(answered, 1):.3f}", missing=len(out) - answered)
    finally:
        bar.close()
        if generator is not None:
            generator.close()
    timing = {
        "generate_s": round(generate_s, 3),
        "items_generated": generated,
        "generated_tokens": tokens,
        "items_per_s": round(generated / generate_s, 3) if generate_s > 0 else None,
        "tokens_per_s": round(tokens / generate_s, 1) if generate_s > 0 else None,
    }
    return out, timing


# ----------------------------------------------------------------------------------------- run


def evaluate(cfg: EvalConfig) -> RunOutcome:
    """Run the evaluation ``cfg`` describes (see the module docstring)."""
    from audio_thinker.scoring import official
    from audio_thinker.scoring.plot import plot_think_rate
    from audio_thinker.scoring.results import build_results, results_markdown, write_results

    started = time.time()
    toy = needed_prepare(cfg)
    if any((toy.synthetic_data, toy.tiny_model, toy.warmstart_model)):
        from audio_thinker.toy.prepare import prepare

        # the demo's data and warm-start (adaptive rows): evaluation rebuilds every prompt for its own
        # mode from the rows' question and choices, so the rows' mode never matters here
        prepare(toy, prompt_mode="adaptive")

    resolved = resolve_model(cfg.model.path, merged_dir=cfg.model.merged_dir)
    label = model_label(cfg, resolved)
    out = Path(cfg.output_dir) if cfg.output_dir else default_output_dir(cfg, label)
    out.mkdir(parents=True, exist_ok=True)
    current = fingerprint(cfg, resolved)
    _check_resumable(out, current, cfg.resume)

    items, report = load_eval_items(cfg.benchmark.name, cfg.benchmark.meta, cfg.benchmark.audio_root,
                                    check_audio=True, limit=cfg.benchmark.limit)
    print(report.summary())
    if not items:
        raise ConfigError(f"{cfg.benchmark.meta} has no item that can be evaluated (see the report above)")
    hidden = [item.item_id for item in items if item.answer is None]
    if hidden:
        raise ConfigError(
            f"{len(hidden)} items have no gold answer (e.g. {hidden[:3]}): the MMAU test split hides its answers; "
            "evaluate test-mini, or score the prediction file on the benchmark's server"
        )

    backend = choose_backend(cfg.backend)
    run_info = {
        "label": label,
        "benchmark": cfg.benchmark.name,
        "benchmark_version": cfg.benchmark.version,
        "prompt_mode": cfg.prompt_mode,
        "model": str(cfg.model.path),
        "model_dir": resolved.hf_dir,
        "model_source": resolved.source,
        "checkpoint_step": resolved.step,
        "backend": backend,
        "meta": str(cfg.benchmark.meta),
        "limit": cfg.benchmark.limit,
        "generation": dataclasses.asdict(cfg.generation),
        "max_prompt_length": cfg.max_prompt_length,
    }
    atomic_write(out / RUN_FILE, json.dumps({"run": run_info, "fingerprint": current}, indent=2))

    repaired = repair_jsonl_tail(out / RECORDS_FILE)
    if repaired:
        logger.warning("%s: cut a partial last record line (%d bytes; a killed run's last write)", out, repaired)
    done, unreadable = read_records(out / RECORDS_FILE)
    if unreadable:
        logger.warning("%s: %d unreadable record lines ignored (a killed run's last write)", out, unreadable)
    known = {item.item_id for item in items}
    stale = sorted(set(done) - known)
    if stale:
        logger.warning("%d records in %s are for items not in this run (e.g. %s); ignored", len(stale), out, stale[:3])
    todo = [item for item in items if item.item_id not in done or done[item.item_id].missing]
    kept = len(items) - len(todo)
    if kept:
        print(f"resuming {out}: {kept} items already evaluated, {len(todo)} to go")

    stats = AudioStats()
    check = None
    if todo:  # the processor counts prompt tokens (nothing to generate: nothing is loaded)
        from audio_thinker.inference.loading import load_audio_processor

        check = prompt_length_check(load_audio_processor(resolved.hf_dir), max_prompt_length=cfg.max_prompt_length,
                                    max_seconds=cfg.audio.max_seconds)
    with (out / RECORDS_FILE).open("a", encoding="utf-8") as sink:
        new, timing = generate_records(
            todo, mode=cfg.prompt_mode, make_generator=lambda: build_generator(cfg, backend, resolved.hf_dir),
            audio_config=cfg.audio, batch_size=cfg.generation.batch_size, sink=sink,
            stats=stats, progress=cfg.progress, check_prompt=check,
        )
    done.update({record.item_id: record for record in new})
    records = [done[item.item_id] for item in items]

    predictions, _ = official.write_and_check(cfg.benchmark.name, items, {r.item_id: r for r in records}, out)

    results = build_results(run_info, records, report.to_dict())
    errors = Counter((r.error or "").split(":", 1)[0] for r in records if r.error)
    results["errors"] = dict(errors)
    results["audio"] = stats.as_dict()
    results["timing"] = {**timing, "wall_s": round(time.time() - started, 3), "resumed_items": kept}
    results["files"] = {"results": RESULTS_FILE, "records": RECORDS_FILE, "predictions": predictions.name, "tables": TABLES_FILE,
                        "plot": PLOT_FILE}
    markdown = results_markdown(results)
    write_results(out, results)
    atomic_write(out / TABLES_FILE, markdown)
    plot_think_rate(results["think"], out / PLOT_FILE,
                    title=f"{label} on {cfg.benchmark.name} ({cfg.prompt_mode})")
    if all(r.missing for r in records):
        raise EvaluationError(
            f"no item of {cfg.benchmark.meta} could be evaluated (errors: {dict(errors)}); check benchmark.audio_root "
            f"and the audio files; details per item in {out / RECORDS_FILE}"
        )
    return RunOutcome(out, results, records, markdown)

