"""AVQA -> audio QA training rows (``data_source = "avqa"``): CLI and conversion.

``python -m audio_thinker.data.avqa --annotations train_qa.json --media DIR --out OUT`` reads the
AVQA release (a JSON list, or JSON lines, of objects with ``id``, ``video_name``,
``question_text``, ``multi_choice`` (4 options), ``answer`` (index), ``question_relation``,
``question_type``) and writes::

    OUT/audio/{video_name}.wav   16 kHz mono PCM16, one per video (shared by its questions)
    OUT/train.parquet            rows of the training schema (audio_thinker.data.rows)
    OUT/summary.json             kept/dropped counts by reason, filters, clip counts

``--media`` holds either the videos (``{video_name}.mp4``/.mkv/.webm/...) or already-extracted
audio (``{video_name}.wav``/.flac/...), searched recursively; R1-AQA style names without the
zero-padded start (``-HG3Omg_89c_30.wav`` for ``-HG3Omg_89c_000030``) are found too.

Steps: malformed annotation rows are counted by reason and skipped; each referenced clip is
loaded with :func:`audio_thinker.data.audio.load_audio` (mono, 16 kHz, cut at 30 s) and written
atomically; the paper's quality filters keep clips of at least ``min_duration_s`` (1.5 s) whose
:func:`~audio_thinker.data.audio.estimate_snr_db` exceeds ``min_snr_db`` (10 dB); questions say
"audio" instead of "video" (:func:`audio_question`, word-aware). A row whose prompt would be too
long is dropped as ``filter:prompt_too_long``: its question and choices over ``max_question_chars``
characters (4000) and, with ``--model`` (the policy's processor), its prompt in tokens (the chat
template plus the clip's audio tokens, :mod:`audio_thinker.data.prompt_length`) over
``max_prompt_length`` (verl's ``data.max_prompt_length``, 1024). Re-running skips wavs already
written (``--force`` re-extracts) and rewrites byte-identical parquet: rows are sorted by
annotation ``id`` (then video name and position), and duration/SNR are always measured on the
written wav. Every annotation row ends up either kept or dropped under exactly one reason.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import sys
import warnings
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import soundfile as sf
from tqdm import tqdm

from audio_thinker.data.audio import (
    AUDIO_SUFFIXES,
    VIDEO_SUFFIXES,
    AudioConfig,
    AudioError,
    AudioTruncatedWarning,
    estimate_snr_db,
    load_audio,
    write_wav,
)
from audio_thinker.data.prompt_length import DEFAULT_MAX_QUESTION_CHARS, PromptLengthCounter, check_question_chars
from audio_thinker.data.rows import ROW_COLUMNS, QAExample, build_prompt_messages, make_row, validate_row
from audio_thinker.prompts import PromptMode, parse_mode
from audio_thinker.rewards.accuracy import normalize_answer

DATA_SOURCE = "avqa"
FORMAT_VERSION = 1
SUMMARY_NAME = "summary.json"
N_CHOICES = 4
REQUIRED_FIELDS = ("video_name", "question_text", "multi_choice", "answer")
#: Media suffixes in order of preference when several files share a video name.
MEDIA_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".opus", ".m4a", ".aac") + tuple(
    s
    for s in (".mp4", ".mkv", ".webm", ".mov", ".avi", ".m4v", ".flv", ".mpg", ".mpeg", ".ts")
    if s in VIDEO_SUFFIXES
)
#: a tag of the response grammar inside data: a gold answer "<answer>x</answer>" would confuse parsing
_RESPONSE_TAG = re.compile(r"</?\s*(?:think|answer)\s*>", re.IGNORECASE)
_PADDED_START = re.compile(r"^(?P<yt>.+)_(?P<start>\d{6})$")
_VIDEO_WORD = re.compile(r"(?:\b(?P<art>an?|AN?)\s+)?\b(?P<word>video)(?P<plural>s)?\b", re.IGNORECASE)


@dataclass(frozen=True)
class AVQAConfig:
    """Filters and output options of the conversion (CLI flags of the same names)."""

    min_duration_s: float = 1.5
    min_snr_db: float = 10.0
    prompt_mode: str = PromptMode.ADAPTIVE.value
    split: str = "train"
    audio: AudioConfig = field(default_factory=AudioConfig)
    #: rows whose question and choices hold more characters are dropped (None: no bound)
    max_question_chars: int | None = DEFAULT_MAX_QUESTION_CHARS
    #: with a model's processor (``--model``): rows whose prompt holds more tokens are dropped
    #: (training's ``data.max_prompt_length``)
    max_prompt_length: int = 1024

    def __post_init__(self) -> None:
        parse_mode(self.prompt_mode)
        if self.max_question_chars is not None and self.max_question_chars < 1:
            raise ValueError(f"max_question_chars must be >= 1 (or None), got {self.max_question_chars}")
        if self.max_prompt_length < 1:
            raise ValueError(f"max_prompt_length must be >= 1, got {self.max_prompt_length}")
        if self.min_duration_s < 0:
            raise ValueError(f"min_duration_s must be >= 0, got {self.min_duration_s}")
        if not self.split:
            raise ValueError("split must be a non-empty name such as 'train'")


@dataclass(frozen=True)
class AVQAItem:
    """One well-formed annotation row (``position`` is its index in the annotation file)."""

    position: int
    avqa_id: int | None
    video_name: str
    question: str
    choices: tuple[str, ...]
    answer_index: int
    question_relation: str
    question_type: str


@dataclass(frozen=True)
class ClipResult:
    """What happened to one video's audio: ``error`` is an AudioError reason or None."""

    video_name: str
    wav_path: str | None = None
    duration_s: float = 0.0
    snr_db: float = 0.0
    error: str | None = None
    extracted: bool = False
    truncated: bool = False


def _match_case(template: str, text: str) -> str:
    """``text`` in the letter case of ``template`` (UPPER, Capitalized or lower)."""
    if len(template) > 1 and template.isupper():
        return text.upper()
    if template[:1].isupper():
        return text[:1].upper() + text[1:]
    return text


def audio_question(text: str) -> tuple[str, int]:
    """Rewrite a video question for audio; returns (new text, number of words replaced).

    Whole words only, case kept: "video" -> "audio", "videos" -> "audio clips", and the article
    before a singular "video" becomes "an" ("a video" -> "an audio"). Words that merely contain
    "video" ("videotape", "videography") are left alone. R1-AQA replaced the substring instead.

    >>> audio_question("What is the man in the video doing?")
    ('What is the man in the audio doing?', 1)
    >>> audio_question("A video of two Videos, not a videotape")
    ('An audio of two Audio clips, not a videotape', 2)
    """

    def repl(match: re.Match[str]) -> str:
        word = match.group("word")
        new = _match_case(word, "audio clips" if match.group("plural") else "audio")
        art = match.group("art")
        if art is None:
            return new
        if not match.group("plural"):
            art = _match_case(art, "an") if art.lower() == "a" else art
        return f"{art} {new}"

    return _VIDEO_WORD.subn(repl, text)


def _parse_id(value: Any) -> tuple[int | None, str | None]:
    """(id, error reason) of an annotation ``id`` field: ints and digit strings are valid."""
    if value is None:
        return None, None
    if isinstance(value, bool):
        return None, "bad_id"
    if isinstance(value, int):
        return value, None
    if isinstance(value, str) and value.strip().isdigit():
        return int(value), None
    return None, "bad_id"


def parse_annotation(raw: Any, *, position: int) -> AVQAItem | str:
    """The :class:`AVQAItem` of one annotation row, or the reason it is malformed.

    Reasons: ``not_an_object``, ``missing_field``, ``bad_id``, ``bad_video_name``,
    ``empty_question``, ``wrong_choice_count``, ``bad_choice``, ``duplicate_choices`` (also choices
    that differ only in case, spacing or surrounding punctuation: the reward could not tell them
    apart), ``answer_out_of_range`` (also for a non-integer answer), ``response_tag`` (the question
    or a choice contains a ``<think>``/``<answer>`` tag of the response grammar).
    """
    if not isinstance(raw, dict):
        return "not_an_object"
    if any(raw.get(key) is None for key in REQUIRED_FIELDS):
        return "missing_field"
    avqa_id, id_error = _parse_id(raw.get("id"))
    if id_error:
        return id_error
    name = raw["video_name"]
    if not isinstance(name, str) or not name.strip() or "/" in name or "\\" in name or name.startswith("."):
        return "bad_video_name"
    question = raw["question_text"]
    if not isinstance(question, str) or not question.strip():
        return "empty_question"
    choices = raw["multi_choice"]
    if not isinstance(choices, (list, tuple)) or len(choices) != N_CHOICES:
        return "wrong_choice_count"
    if not all(
        isinstance(c, (str, int, float)) and not isinstance(c, bool) and str(c).strip() for c in choices
    ):
        return "bad_choice"
    texts = tuple(str(c).strip() for c in choices)
    if len({normalize_answer(t, n_choices=len(texts)) for t in texts}) != len(texts):
        return "duplicate_choices"
    if any(_RESPONSE_TAG.search(text) for text in (question, *texts)):
        return "response_tag"
    answer = raw["answer"]
    if isinstance(answer, str) and answer.strip().isdigit():
        answer = int(answer)
    if isinstance(answer, bool) or not isinstance(answer, int) or not 0 <= answer < len(texts):
        return "answer_out_of_range"
    return AVQAItem(
        position=position,
        avqa_id=avqa_id,
        video_name=name.strip(),
        question=question.strip(),
        choices=texts,
        answer_index=answer,
        question_relation=str(raw.get("question_relation") or ""),
        question_type=str(raw.get("question_type") or ""),
    )


def drop_conflicting_ids(items: Sequence[AVQAItem]) -> tuple[list[AVQAItem], Counter[str]]:
    """Rows that share an AVQA id: identical copies keep the first (``duplicate_row``); rows that
    disagree (another question, choice or answer) are all dropped (``conflicting_id``), since the
    gold answer is unknown. Rows without an id are kept. Order is preserved.
    """
    by_id: dict[int, list[AVQAItem]] = {}
    for item in items:
        if item.avqa_id is not None:
            by_id.setdefault(item.avqa_id, []).append(item)

    def content(item: AVQAItem) -> tuple[Any, ...]:
        return (item.video_name, item.question, item.choices, item.answer_index)

    conflicting = {key for key, group in by_id.items() if len({content(i) for i in group}) > 1}
    dropped: Counter[str] = Counter()
    kept: list[AVQAItem] = []
    seen: set[int] = set()
    for item in items:
        if item.avqa_id in conflicting:
            dropped["annotation:conflicting_id"] += 1
        elif item.avqa_id is not None and item.avqa_id in seen:
            dropped["annotation:duplicate_row"] += 1
        else:
            if item.avqa_id is not None:
                seen.add(item.avqa_id)
            kept.append(item)
    return kept, dropped


def read_annotations(path: str | Path) -> list[Any]:
    """The raw annotation rows of a JSON list file (or JSON lines); errors say how to fix."""
    text = Path(path).read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        try:
            data = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is neither a JSON list nor JSON lines: {err}") from None
    if isinstance(data, dict):
        data = data.get("data", data.get("annotations"))
    if not isinstance(data, list):
        raise ValueError(f"{path} must hold a JSON list of annotation objects (AVQA train_qa.json)")
    return data


def _name_candidates(video_name: str) -> list[str]:
    """Media file stems that may hold ``video_name`` (as is, and R1-AQA's unpadded start)."""
    names = [video_name]
    match = _PADDED_START.match(video_name)
    if match:
        names.append(f"{match.group('yt')}_{int(match.group('start'))}")
    return names


def index_media(media_dir: str | Path) -> dict[str, Path]:
    """Map file stem -> best media file under ``media_dir`` (recursive, deterministic).

    When a stem appears several times, audio beats video (see ``MEDIA_SUFFIXES``), then the
    shorter, then the alphabetically first path wins. Hidden and temporary files are ignored.
    """
    rank = {suffix: i for i, suffix in enumerate(MEDIA_SUFFIXES)}
    best: dict[str, tuple[tuple[int, int, str], Path]] = {}
    for root, dirs, files in os.walk(media_dir):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in files:
            path = Path(root) / name
            suffix = path.suffix.lower()
            if name.startswith(".") or (suffix not in rank and suffix not in AUDIO_SUFFIXES):
                continue
            key = (rank.get(suffix, len(rank)), len(str(path)), str(path))
            if path.stem not in best or key < best[path.stem][0]:
                best[path.stem] = (key, path)
    return {stem: path for stem, (_, path) in best.items()}


def find_media(video_name: str, media: dict[str, Path]) -> Path | None:
    """The media file of ``video_name`` in an :func:`index_media` map, or None."""
    for name in _name_candidates(video_name):
        if name in media:
            return media[name]
    return None


def _measure(wav: Path) -> tuple[float, float]:
    """(duration s, SNR dB) of a written wav, as re-read (so reruns agree to the bit)."""
    samples, sr = sf.read(str(wav), dtype="float32", always_2d=False)
    if samples.ndim != 1 or len(samples) == 0:
        raise ValueError(f"{wav} is not a non-empty mono wav")
    return len(samples) / sr, round(estimate_snr_db(samples, sr), 3)


def process_clip(
    video_name: str, *, source: Path | None, wav: Path, config: AudioConfig, force: bool = False
) -> ClipResult:
    """Extract ``source`` to ``wav`` (unless a readable ``wav`` exists) and measure it."""
    if wav.is_file() and not force:
        try:
            duration, snr = _measure(wav)
            return ClipResult(video_name, str(wav), duration, snr)
        except (sf.LibsndfileError, RuntimeError, ValueError):
            pass  # unreadable leftover: extract again
    if source is None:
        return ClipResult(video_name, error="missing")
    try:
        loaded = load_audio(source, config=config)
    except AudioError as err:
        return ClipResult(video_name, error=err.reason)
    write_wav(wav, loaded.samples, loaded.sample_rate)
    duration, snr = _measure(wav)
    return ClipResult(video_name, str(wav), duration, snr, extracted=True, truncated=loaded.truncated)


def _remove_temp_files(folder: Path) -> int:
    """Delete temporary wavs left by an interrupted run; returns how many."""
    if not folder.is_dir():
        return 0
    stale = [p for p in folder.iterdir() if p.name.startswith(".") and p.name.endswith(".tmp")]
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)


def _process_all(
    names: Sequence[str],
    *,
    media: dict[str, Path],
    audio_dir: Path,
    config: AudioConfig,
    workers: int,
    force: bool,
    progress: bool,
) -> dict[str, ClipResult]:
    """Run :func:`process_clip` for every video name on a thread pool (ffmpeg runs outside
    the GIL; so do soundfile, torch and numpy); results keyed by name."""

    def job(name: str) -> ClipResult:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AudioTruncatedWarning)  # counted in the summary
            return process_clip(
                name,
                source=find_media(name, media),
                wav=audio_dir / f"{name}.wav",
                config=config,
                force=force,
            )

    results: dict[str, ClipResult] = {}
    bar = tqdm(total=len(names), desc="avqa audio", unit="clip", disable=not progress)
    with bar, ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for result in pool.map(job, names):
            results[result.video_name] = result
            bar.update(1)
    return results


def _sort_key(item: AVQAItem) -> tuple[int, int, str, int]:
    """Rows sort by annotation id (rows without one last), then video name, then position."""
    return (item.avqa_id is None, item.avqa_id or 0, item.video_name, item.position)


def _row_outcome(item: AVQAItem, clip: ClipResult, config: AVQAConfig,
                 counter: PromptLengthCounter | None = None) -> str | None:
    """Why ``item`` is dropped (``audio:<reason>`` or ``filter:<name>``), or None to keep it."""
    if clip.error is not None:
        return f"audio:{clip.error}"
    if clip.duration_s < config.min_duration_s:
        return "filter:too_short"
    if not clip.snr_db > config.min_snr_db:
        return "filter:low_snr"
    question = audio_question(item.question)[0]
    if check_question_chars(question, item.choices, max_chars=config.max_question_chars):
        return "filter:prompt_too_long"
    if counter is not None:
        messages = build_prompt_messages(question, item.choices, mode=config.prompt_mode)
        if counter.count(messages, [clip.duration_s]) > config.max_prompt_length:
            return "filter:prompt_too_long"
    return None


def build_row(item: AVQAItem, *, clip: ClipResult, index: int, config: AVQAConfig) -> dict[str, Any]:
    """The training row of ``item`` whose audio is ``clip`` (schema of audio_thinker.data.rows)."""
    question, _ = audio_question(item.question)
    example = QAExample(
        audio_path=str(clip.wav_path),
        question=question,
        choices=item.choices,
        answer=item.choices[item.answer_index],
        task=item.question_type,
    )
    extra = {
        "avqa_id": item.avqa_id,
        "video_name": item.video_name,
        "question_relation": item.question_relation,
        "question_type": item.question_type,
        "original_question": item.question,
        "snr_db": float(clip.snr_db),
        "duration_s": round(float(clip.duration_s), 6),
    }
    row = make_row(
        example,
        data_source=DATA_SOURCE,
        index=index,
        split=config.split,
        prompt_mode=config.prompt_mode,
        extra=extra,
    )
    validate_row(row)
    return row


def _write_if_changed(path: Path, data: bytes) -> None:
    """Atomically write ``data`` to ``path`` unless it already holds exactly that."""
    if path.is_file() and path.read_bytes() == data:
        return
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _parquet_bytes(rows: list[dict[str, Any]]) -> bytes:
    buffer = io.BytesIO()
    pd.DataFrame(rows, columns=list(ROW_COLUMNS)).to_parquet(buffer, index=False, engine="pyarrow")
    return buffer.getvalue()


def _clip_counts(results: Iterable[ClipResult]) -> dict[str, Any]:
    results = list(results)
    errors = Counter(r.error for r in results if r.error)
    durations = np.array([r.duration_s for r in results if r.error is None])
    return {
        "referenced": len(results),
        "usable": int(len(durations)),
        "errors": dict(sorted(errors.items())),
        "total_audio_hours": round(float(durations.sum()) / 3600, 4) if len(durations) else 0.0,
        "this_run": {
            "extracted": sum(r.extracted for r in results),
            "reused": sum(r.error is None and not r.extracted for r in results),
            "truncated": sum(r.truncated for r in results),
        },
    }


def convert_avqa(
    *,
    annotations: str | Path,
    media_dir: str | Path,
    out_dir: str | Path,
    config: AVQAConfig = AVQAConfig(),
    workers: int = 1,
    force: bool = False,
    progress: bool = True,
    counter: PromptLengthCounter | None = None,
) -> dict[str, Any]:
    """Convert AVQA to ``out_dir`` (see the module docstring); returns the summary dict, also
    written to ``{out_dir}/summary.json``. Same inputs -> byte-identical ``train.parquet``.
    ``counter`` (the policy's processor) also bounds each prompt in tokens (``config.max_prompt_length``)."""
    media_path = Path(media_dir).expanduser().resolve()
    if not media_path.is_dir():
        raise ValueError(
            f"media folder {media_path} does not exist: pass --media DIR with the AVQA videos or audio"
        )
    raw_rows = read_annotations(annotations)
    out = Path(out_dir).expanduser().resolve()
    audio_dir = out / "audio"
    audio_dir.mkdir(parents=True, exist_ok=True)
    _remove_temp_files(audio_dir)
    dropped: Counter[str] = Counter()
    items: list[AVQAItem] = []
    for position, raw in enumerate(raw_rows):
        parsed = parse_annotation(raw, position=position)
        if isinstance(parsed, str):
            dropped[f"annotation:{parsed}"] += 1
        else:
            items.append(parsed)
    items, duplicates = drop_conflicting_ids(items)
    dropped.update(duplicates)
    items.sort(key=_sort_key)
    names = sorted({item.video_name for item in items})
    clips = _process_all(
        names,
        media=index_media(media_path),
        audio_dir=audio_dir,
        config=config.audio,
        workers=workers,
        force=force,
        progress=progress,
    )
    rows: list[dict[str, Any]] = []
    kept: list[AVQAItem] = []
    for item in items:
        reason = _row_outcome(item, clips[item.video_name], config, counter)
        if reason:
            dropped[reason] += 1
            continue
        rows.append(build_row(item, clip=clips[item.video_name], index=len(rows), config=config))
        kept.append(item)
    _write_if_changed(out / f"{config.split}.parquet", _parquet_bytes(rows))
    summary = _summary(
        raw_count=len(raw_rows),
        kept=kept,
        dropped=dropped,
        clips=clips,
        config=config,
        paths={"annotations": str(Path(annotations).resolve()), "media": str(media_path), "out": str(out)},
    )
    summary["prompt_length_counted_in"] = "tokens and characters" if counter is not None else "characters"
    _write_if_changed(out / SUMMARY_NAME, (json.dumps(summary, indent=2, sort_keys=True) + "\n").encode())
    return summary


def _summary(
    *,
    raw_count: int,
    kept: list[AVQAItem],
    dropped: Counter[str],
    clips: dict[str, ClipResult],
    config: AVQAConfig,
    paths: dict[str, str],
) -> dict[str, Any]:
    """The summary dict: every annotation row is counted once, kept or under one reason."""
    assert len(kept) + sum(dropped.values()) == raw_count, "every annotation row must be counted once"
    return {
        "data_source": DATA_SOURCE,
        "format_version": FORMAT_VERSION,
        "annotations": raw_count,
        "kept": len(kept),
        "dropped": dict(sorted(dropped.items())),
        "dropped_total": sum(dropped.values()),
        "questions_rewritten": sum(audio_question(item.question)[1] > 0 for item in kept),
        "kept_by_question_relation": dict(sorted(Counter(i.question_relation for i in kept).items())),
        "kept_by_question_type": dict(sorted(Counter(i.question_type for i in kept).items())),
        "kept_videos": len({i.video_name for i in kept}),
        "clips": _clip_counts(clips[name] for name in sorted(clips)),
        "config": asdict(config),
        "paths": paths,
        "files": {"rows": f"{config.split}.parquet", "audio": "audio/"},
    }


def format_summary(summary: dict[str, Any]) -> str:
    """A small plain-text table of the summary (kept, then each drop reason)."""
    entries = [("kept", summary["kept"])]
    entries += [(f"dropped {reason}", count) for reason, count in summary["dropped"].items()]
    width = max(len(label) for label, _ in [*entries, ("annotations", 0)]) + 2
    rule = "-" * (width + 8)
    lines = [f"{'outcome':<{width}}{'rows':>8}", rule]
    lines += [f"{label:<{width}}{count:>8}" for label, count in entries]
    lines += [rule, f"{'annotations':<{width}}{summary['annotations']:>8}"]
    clips = summary["clips"]
    lines.append(
        f"videos: {clips['referenced']} referenced, {clips['usable']} usable, "
        f"{clips['this_run']['extracted']} extracted now, {clips['this_run']['reused']} reused, "
        f"{clips['this_run']['truncated']} truncated; questions rewritten: {summary['questions_rewritten']}"
    )
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    """Command-line arguments of ``python -m audio_thinker.data.avqa``."""
    defaults = AVQAConfig()
    p = argparse.ArgumentParser(
        prog="python -m audio_thinker.data.avqa",
        description="Convert AVQA (videos or extracted audio + train_qa.json) to audio QA training rows.",
    )
    p.add_argument("--annotations", required=True, help="AVQA annotation file (train_qa.json)")
    p.add_argument(
        "--media", required=True, help="folder with {video_name}.mp4/.mkv/.webm or .wav/.flac files"
    )
    p.add_argument("--out", required=True, help="output folder (audio/, <split>.parquet, summary.json)")
    p.add_argument("--workers", type=int, default=1, help="parallel clip extractions (default 1)")
    p.add_argument(
        "--min-duration", type=float, default=defaults.min_duration_s, help="keep clips >= this (s)"
    )
    p.add_argument(
        "--min-snr-db", type=float, default=defaults.min_snr_db, help="keep clips with SNR > this (dB)"
    )
    p.add_argument("--max-seconds", type=float, default=defaults.audio.max_seconds, help="model window (s)")
    p.add_argument("--on-too-long", choices=["truncate", "reject"], default=defaults.audio.on_too_long)
    p.add_argument("--prompt-mode", default=defaults.prompt_mode, choices=[m.value for m in PromptMode])
    p.add_argument("--max-question-chars", type=int, default=defaults.max_question_chars,
                   help="drop rows whose question and choices hold more characters (prompt_too_long)")
    p.add_argument("--model", default=None,
                   help="the policy's model folder: also drop rows whose prompt (chat template + audio tokens) "
                        "exceeds --max-prompt-length tokens")
    p.add_argument("--max-prompt-length", type=int, default=defaults.max_prompt_length,
                   help="training's data.max_prompt_length (with --model)")
    p.add_argument(
        "--split", default=defaults.split, help="split name of the rows and parquet (default train)"
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="re-extract every clip even if its wav exists (do so after changing --max-seconds/--on-too-long)",
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point: converts, prints the summary table and returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        config = AVQAConfig(
            min_duration_s=args.min_duration,
            min_snr_db=args.min_snr_db,
            prompt_mode=args.prompt_mode,
            split=args.split,
            audio=AudioConfig(max_seconds=args.max_seconds, on_too_long=args.on_too_long),
            max_question_chars=args.max_question_chars,
            max_prompt_length=args.max_prompt_length,
        )
        counter = None
        if args.model:
            from transformers import AutoProcessor

            counter = PromptLengthCounter(AutoProcessor.from_pretrained(args.model), max_seconds=args.max_seconds)
        summary = convert_avqa(
            annotations=args.annotations,
            media_dir=args.media,
            out_dir=args.out,
            config=config,
            workers=args.workers,
            force=args.force,
            progress=not args.no_progress,
            counter=counter,
        )
    except (ValueError, OSError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(format_summary(summary))
    print(f"wrote {summary['kept']} rows to {summary['paths']['out']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
