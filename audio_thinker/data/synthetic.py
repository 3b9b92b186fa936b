"""The synthetic audio QA data set (``data_source = "synthetic_aqa"``): CLI and file output.

``python -m audio_thinker.data.synthetic --out DIR --train N --val M --seed S`` writes::

    DIR/audio/train/000000.wav ...   16 kHz mono PCM16 clips (1-3 s)
    DIR/audio/val/000000.wav ...
    DIR/train.parquet                rows of the training schema (audio_thinker.data.rows)
    DIR/val.parquet
    DIR/manifest.json                arguments, files and counts per task/difficulty/answer

The tasks, their difficulty and how labels are balanced live in the pure module
:mod:`audio_thinker.data.synthetic_tasks`. Everything is a deterministic function of the seed:
re-running with the same arguments rewrites byte-identical files (unchanged files are not even
touched), whatever ``--workers``; wavs past the requested count left by an earlier, larger run
are removed. Rows store the **absolute, resolved** wav path (``audios`` and
``extra_info.audio_path``), which is what verl's dataset opens; after moving the folder,
regenerate it (fast) or rewrite the paths.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pandas as pd
import soundfile as sf
from tqdm import tqdm

from audio_thinker.data.rows import QAExample, make_row, validate_row
from audio_thinker.data.synthetic_tasks import (
    SAMPLE_RATE,
    SPLITS,
    ExamplePlan,
    describe_tasks,
    plan_example,
    synthesize_example,
)
from audio_thinker.prompts import PromptMode, parse_mode

DATA_SOURCE = "synthetic_aqa"
MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1
_WAV_NAME = re.compile(r"^\d{6}\.wav$")


def wav_path(out_dir: str | Path, *, split: str, index: int) -> Path:
    """Where clip ``index`` of ``split`` lives: ``{out_dir}/audio/{split}/{index:06d}.wav``."""
    return Path(out_dir).resolve() / "audio" / split / f"{index:06d}.wav"


def encode_wav(samples: Any, *, sample_rate: int = SAMPLE_RATE) -> bytes:
    """16-bit PCM WAV bytes of ``samples`` (deterministic: no timestamps in the header)."""
    buffer = io.BytesIO()
    sf.write(buffer, samples, sample_rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def _write_if_changed(path: Path, data: bytes) -> bool:
    """Atomically write ``data`` to ``path`` unless it already holds exactly that."""
    if path.is_file() and path.read_bytes() == data:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return True


def _render_clip(job: tuple[int, str, int, str]) -> bool:
    """Worker: synthesize one clip and write its wav; returns whether the file changed."""
    seed, split, index, path = job
    plan = plan_example(seed=seed, split=split, index=index)
    return _write_if_changed(Path(path), encode_wav(synthesize_example(plan, seed=seed)))


def _render_all(jobs: list[tuple[int, str, int, str]], *, workers: int) -> Iterator[bool]:
    """Render ``jobs`` in order, in-process or on a pool of ``workers`` processes."""
    if workers <= 1:
        yield from map(_render_clip, jobs)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        yield from pool.map(_render_clip, jobs, chunksize=8)


def build_row(
    plan: ExamplePlan, *, audio_path: str, seed: int, prompt_mode: str | PromptMode
) -> dict[str, Any]:
    """The training row of ``plan`` (schema of :mod:`audio_thinker.data.rows`)."""
    example = QAExample(
        audio_path=audio_path,
        question=plan.question,
        choices=plan.choices,
        answer=plan.answer,
        task=plan.task,
        difficulty=plan.difficulty,
    )
    row = make_row(
        example,
        data_source=DATA_SOURCE,
        index=plan.index,
        split=plan.split,
        prompt_mode=prompt_mode,
        extra={"template_id": plan.template_id, "seed": seed},
    )
    validate_row(row)
    return row


def _remove_stale_wavs(folder: Path, *, keep: int) -> None:
    """Delete ``NNNNNN.wav`` files with an index >= ``keep`` (left by a larger earlier run)."""
    if folder.is_dir():
        for path in folder.iterdir():
            if _WAV_NAME.match(path.name) and int(path.stem) >= keep:
                path.unlink()


def _write_split(
    out: Path,
    *,
    split: str,
    n: int,
    seed: int,
    prompt_mode: PromptMode,
    workers: int,
    progress: bool,
) -> list[ExamplePlan]:
    """Write the wavs and the parquet of one split; return its plans."""
    plans = [plan_example(seed=seed, split=split, index=i) for i in range(n)]
    paths = [str(wav_path(out, split=split, index=i)) for i in range(n)]
    jobs = [(seed, split, i, paths[i]) for i in range(n)]
    bar = tqdm(total=n, desc=f"synthetic_aqa {split}", unit="clip", disable=not progress)
    with bar:
        for _ in _render_all(jobs, workers=workers):
            bar.update(1)
    _remove_stale_wavs(out / "audio" / split, keep=n)
    rows = [
        build_row(p, audio_path=path, seed=seed, prompt_mode=prompt_mode) for p, path in zip(plans, paths)
    ]
    buffer = io.BytesIO()
    pd.DataFrame(rows).to_parquet(buffer, index=False, engine="pyarrow")
    _write_if_changed(out / f"{split}.parquet", buffer.getvalue())
    return plans


def _counts(plans: Sequence[ExamplePlan]) -> dict[str, Any]:
    """Counts of one split per task, difficulty, (task, answer) and answer position."""
    by_answer: dict[str, dict[str, int]] = {}
    for p in plans:
        by_answer.setdefault(p.task, {}).setdefault(p.answer, 0)
        by_answer[p.task][p.answer] += 1
    return {
        "total": len(plans),
        "by_task": dict(sorted(Counter(p.task for p in plans).items())),
        "by_difficulty": dict(sorted(Counter(p.difficulty for p in plans).items())),
        "by_answer": {t: dict(sorted(c.items())) for t, c in sorted(by_answer.items())},
        "by_answer_index": {str(k): v for k, v in sorted(Counter(p.answer_index for p in plans).items())},
    }


def generate_dataset(
    out_dir: str | Path,
    *,
    n_train: int,
    n_val: int,
    seed: int,
    prompt_mode: str | PromptMode = PromptMode.ADAPTIVE,
    workers: int = 1,
    progress: bool = True,
) -> dict[str, Any]:
    """Write the synthetic data set to ``out_dir`` and return its manifest (also saved as
    ``{out_dir}/manifest.json``). Same arguments -> byte-identical files, for any ``workers``.
    """
    if n_train < 1 or n_val < 1:
        raise ValueError(f"need n_train >= 1 and n_val >= 1, got {n_train} and {n_val}")
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    mode = parse_mode(prompt_mode)
    out = Path(out_dir).resolve()
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is an existing file, not a folder: pass a folder (it is created if missing)")
    out.mkdir(parents=True, exist_ok=True)
    sizes = {"train": n_train, "val": n_val}
    counts: dict[str, Any] = {}
    for split in SPLITS:
        plans = _write_split(
            out,
            split=split,
            n=sizes[split],
            seed=seed,
            prompt_mode=mode,
            workers=workers,
            progress=progress,
        )
        counts[split] = _counts(plans)
    manifest: dict[str, Any] = {
        "data_source": DATA_SOURCE,
        "format_version": FORMAT_VERSION,
        "args": {"n_train": n_train, "n_val": n_val, "seed": seed, "prompt_mode": mode.value},
        "sample_rate": SAMPLE_RATE,
        "out_dir": str(out),
        "files": {split: f"{split}.parquet" for split in SPLITS},
        "counts": counts,
        "tasks": describe_tasks(),
    }
    text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    _write_if_changed(out / MANIFEST_NAME, text.encode("utf-8"))
    return manifest


def is_generated(
    out_dir: str | Path,
    *,
    n_train: int,
    n_val: int,
    seed: int,
    prompt_mode: str | PromptMode = PromptMode.ADAPTIVE,
) -> bool:
    """Whether ``out_dir`` already holds this data set (manifest with the same arguments and
    folder, both parquet files and every wav); a cheap check before :func:`generate_dataset`."""
    out = Path(out_dir).resolve()
    try:
        manifest = json.loads((out / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    args = {"n_train": n_train, "n_val": n_val, "seed": seed, "prompt_mode": parse_mode(prompt_mode).value}
    if manifest.get("args") != args or manifest.get("out_dir") != str(out):
        return False
    if manifest.get("format_version") != FORMAT_VERSION:
        return False
    sizes = {"train": n_train, "val": n_val}
    return all(
        (out / f"{split}.parquet").is_file()
        and all(wav_path(out, split=split, index=i).is_file() for i in range(sizes[split]))
        for split in SPLITS
    )


def _parser() -> argparse.ArgumentParser:
    """Command-line arguments of ``python -m audio_thinker.data.synthetic``."""
    parser = argparse.ArgumentParser(
        prog="python -m audio_thinker.data.synthetic",
        description="Write the synthetic audio multiple-choice QA data set (wav + parquet).",
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--train", type=int, default=256, help="train examples (default 256)")
    parser.add_argument("--val", type=int, default=64, help="val examples (default 64)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--prompt-mode",
        default=PromptMode.ADAPTIVE.value,
        choices=[m.value for m in PromptMode],
        help="prompt template of the rows (default adaptive)",
    )
    parser.add_argument("--workers", type=int, default=1, help="processes (default 1)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; prints a one-line summary and returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        manifest = generate_dataset(
            args.out,
            n_train=args.train,
            n_val=args.val,
            seed=args.seed,
            prompt_mode=args.prompt_mode,
            workers=args.workers,
            progress=not args.no_progress,
        )
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    counts = manifest["counts"]
    print(
        f"wrote {counts['train']['total']} train + {counts['val']['total']} val examples "
        f"to {manifest['out_dir']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
