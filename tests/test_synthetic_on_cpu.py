"""The synthetic audio QA data set: labels recoverable from audio, balanced text, determinism.

The oracle below is an independent, deliberately small signal-processing reader of the
waveforms (FFT peak frequency, RMS / in-band envelopes, onset counting, per-note pitch and
durations). It shares no code with the generator: if it recovers every label, the answer is in
the audio; the balance tests show it is not in the text.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from audio_thinker.data.rows import QAExample, make_row, validate_row
from audio_thinker.data.synthetic import DATA_SOURCE, generate_dataset, is_generated
from audio_thinker.data.synthetic_tasks import (
    TASK_NAMES,
    TASKS,
    plan_example,
    synthesize_example,
)

SR = 16_000
REPO = Path(__file__).resolve().parents[1]

# --------------------------------------------------------------------------- the oracle


def _frames(x: np.ndarray, *, frame: int, hop: int) -> np.ndarray:
    """Overlapping frames of ``x`` as rows (the tail shorter than a frame is dropped)."""
    n = 1 + max(len(x) - frame, 0) // hop
    idx = np.arange(frame)[None, :] + hop * np.arange(n)[:, None]
    return x[idx]


def peak_frequency(x: np.ndarray) -> float:
    """Frequency (Hz) of the largest Hann-windowed FFT peak above 60 Hz."""
    n_fft = 1 << int(np.ceil(np.log2(4 * len(x))))
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x)), n_fft))
    freqs = np.fft.rfftfreq(n_fft, 1 / SR)
    spectrum[freqs < 60] = 0
    return float(freqs[int(np.argmax(spectrum))])


def rms_envelope(x: np.ndarray, *, frame: int = 256, hop: int = 80) -> np.ndarray:
    """Frame RMS (16 ms frames, 5 ms hop)."""
    return np.sqrt(np.mean(_frames(x, frame=frame, hop=hop) ** 2, axis=1))


def band_envelope(x: np.ndarray, *, frame: int = 512, hop: int = 128) -> np.ndarray:
    """Magnitude envelope in +-3 bins around the strongest spectral line (noise rejection)."""
    spec = np.abs(np.fft.rfft(_frames(x, frame=frame, hop=hop) * np.hanning(frame), axis=1))
    mean_power = np.mean(spec**2, axis=0)
    mean_power[: int(60 * frame / SR) + 1] = 0
    peak = int(np.argmax(mean_power))
    return np.sqrt(np.sum(spec[:, max(peak - 3, 0) : peak + 4] ** 2, axis=1))


def segments(env: np.ndarray, *, min_len: int = 3, min_gap: int = 2) -> list[tuple[int, int]]:
    """Runs of frames above a threshold a quarter of the way from noise floor to peak."""
    floor, top = np.percentile(env, 5), np.percentile(env, 99.5)
    above = env > floor + 0.25 * (top - floor)
    edges = np.diff(np.concatenate([[0], above.astype(int), [0]]))
    runs = list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)))
    merged: list[list[int]] = []
    for start, end in runs:
        if merged and start - merged[-1][1] < min_gap:
            merged[-1][1] = end
        else:
            merged.append([start, end])
    return [(s, e) for s, e in merged if e - s >= min_len]


def note_pitches(x: np.ndarray, *, hop: int = 80, frame: int = 256) -> list[float]:
    """Peak frequency of each note (notes found on the RMS envelope)."""
    found = segments(rms_envelope(x, frame=frame, hop=hop))
    return [peak_frequency(x[s * hop : (e - 1) * hop + frame]) for s, e in found]


def oracle(task: str, x: np.ndarray) -> str:
    """Read the answer of ``task`` off the waveform ``x`` (canonical choice text)."""
    if task == "pitch_high_low":
        return "high" if peak_frequency(x) > 700 else "low"
    if task in ("count_beeps_clean", "count_beeps"):
        return str(len(segments(rms_envelope(x))))
    if task == "count_beeps_noisy":
        return str(len(segments(band_envelope(x))))
    if task == "compare_two_tones":
        pitches = note_pitches(x)
        if len(pitches) != 2:
            return f"{len(pitches)} tones"
        first, second = pitches
        return "the first tone" if first > second else "the second tone"
    if task == "louder_half":
        half = len(x) // 2
        louder_first = np.mean(x[:half] ** 2) > np.mean(x[half:] ** 2)
        return "the first half" if louder_first else "the second half"
    if task == "melody_contour":
        steps = np.diff(12 * np.log2(note_pitches(x)))
        if (steps > 1).all():
            return "ascending"
        return "descending" if (steps < -1).all() else "neither"
    if task == "longest_tone":
        lengths = [e - s for s, e in segments(rms_envelope(x))]
        if len(lengths) != 3:
            return f"{len(lengths)} tones"
        return ("the first tone", "the second tone", "the third tone")[int(np.argmax(lengths))]
    raise KeyError(task)


# --------------------------------------------------------------------------- labels from audio

N_ORACLE = 60  # examples per task through the real pipeline (2,000 per task also gave 0 errors)


@pytest.mark.parametrize("task", TASK_NAMES)
def test_oracle_recovers_every_label_through_the_pipeline(task: str) -> None:
    """Every label is recoverable from the waveform: 100 % for every task, hard ones included.

    The hard tasks stay oracle-exact by construction: noisy beeps sit at -2..4 dB broadband SNR
    but a single spectral line, so an in-band envelope sees them ~20 dB above the noise, and
    the melody / duration tasks keep 10-20 dB SNR with >= 40 ms silent gaps between notes.
    """
    offset = TASK_NAMES.index(task)
    wrong = []
    for k in range(N_ORACLE):
        plan = plan_example(seed=11, split="train", index=offset + k * len(TASK_NAMES))
        assert plan.task == task
        x = synthesize_example(plan, seed=11)
        assert x.dtype == np.float32 and len(x) == round(TASKS[task].clip_s * SR)
        assert 0.05 < np.abs(x).max() <= 0.9 + 1e-6, "headroom, never clipped"
        if oracle(task, x) != plan.answer:
            wrong.append((plan.index, plan.answer, oracle(task, x)))
    assert not wrong, wrong


@pytest.mark.parametrize("task", TASK_NAMES)
def test_synthesizers_draw_a_label_when_none_is_given(task: str) -> None:
    """``synthesize_<task>(rng)`` picks a label itself; every label occurs and is readable."""
    seen = Counter()
    for k in range(30):
        x, label = TASKS[task].synthesize(np.random.default_rng([5, k]))
        assert label in TASKS[task].choices
        assert oracle(task, x) == label
        seen[label] += 1
    assert set(seen) == set(TASKS[task].choices)
    with pytest.raises(ValueError, match="not one of"):
        TASKS[task].synthesize(np.random.default_rng(0), label="banana")


def test_clean_clips_start_and_end_silent_and_fade_in() -> None:
    """Notes fade in and out (no clicks); clean tasks have exact silence at the clip edges."""
    for task in ("pitch_high_low", "count_beeps_clean", "compare_two_tones", "count_beeps"):
        x, _ = TASKS[task].synthesize(np.random.default_rng(3))
        assert x[0] == 0 and x[-1] == 0
        onset = int(np.flatnonzero(x)[0])
        assert np.abs(x[onset : onset + 16]).max() < 0.05 * np.abs(x).max()


# --------------------------------------------------------------------------- text balance


@functools.cache
def _plans(seed: int, split: str, n: int) -> list:
    return [plan_example(seed=seed, split=split, index=i) for i in range(n)]


@pytest.mark.parametrize("n", [37, 256, 1000])
def test_answers_balanced_per_template_and_positions_per_task(n: int) -> None:
    """Per (task, template) the answer counts differ by at most one; so do answer positions
    per task; and every row of a template shows the same question and choice set."""
    for split in ("train", "val"):
        answers: dict[tuple[str, int], Counter] = defaultdict(Counter)
        positions: dict[str, Counter] = defaultdict(Counter)
        for p in _plans(3, split, n):
            answers[p.task, p.template_id][p.answer] += 1
            positions[p.task][p.answer_index] += 1
            assert p.question == TASKS[p.task].phrasings[p.template_id]
            assert sorted(p.choices) == sorted(TASKS[p.task].choices)
        for key, counts in answers.items():
            full = [counts.get(c, 0) for c in TASKS[key[0]].choices]
            assert max(full) - min(full) <= 1, (key, counts)
        for task, counts in positions.items():
            full = [counts.get(i, 0) for i in range(len(TASKS[task].choices))]
            assert max(full) - min(full) <= 1, (task, counts)


def _text_only_accuracy(fit: list, score: list, key) -> tuple[float, float]:
    """Fit 'majority answer given key(plan)' on ``fit``; return (accuracy, chance) on ``score``."""
    table: dict = defaultdict(Counter)
    for p in fit:
        table[key(p)][p.answer] += 1
    hits = 0
    for p in score:
        counts = table.get(key(p))
        hits += bool(counts) and counts.most_common(1)[0][0] == p.answer
    chance = float(np.mean([1 / len(p.choices) for p in score]))
    return hits / len(score), chance


@pytest.mark.parametrize(
    "feature",
    [
        lambda p: (p.question, p.choices),  # question text + full choice order
        lambda p: (p.question, len(p.choices)),  # question text only
        lambda p: (p.task, p.template_id, p.choices[0]),  # first shown choice
    ],
    ids=["question+choice_order", "question", "first_choice"],
)
def test_text_only_classifier_is_at_chance(feature) -> None:
    """A text-only classifier fit on one set scores <= chance + 5 points on another."""
    for fit, score in (
        (_plans(0, "train", 4000), _plans(1, "val", 4000)),
        (_plans(0, "train", 4000), _plans(0, "val", 4000)),
        (_plans(2, "train", 256), _plans(2, "val", 4000)),
    ):
        accuracy, chance = _text_only_accuracy(fit, score, feature)
        assert accuracy <= chance + 0.05, (accuracy, chance)


# --------------------------------------------------------------------------- files and CLI


def _digests(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root``, keyed by relative path."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _rows(path: Path) -> list[dict]:
    return pq.read_table(path).to_pylist()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("synthetic") / "data"
    manifest = generate_dataset(out, n_train=48, n_val=24, seed=5, progress=False)
    return out, manifest


def test_rows_validate_and_point_at_absolute_wavs(dataset: tuple[Path, dict]) -> None:
    """Rows follow the schema; audio paths are absolute, resolved and hold 16 kHz mono clips
    whose label the oracle reads back after PCM16 quantisation."""
    out, _ = dataset
    for split, n in (("train", 48), ("val", 24)):
        rows = _rows(out / f"{split}.parquet")
        assert [r["extra_info"]["index"] for r in rows] == list(range(n))
        for row in rows:
            validate_row(row)
            info = row["extra_info"]
            assert row["data_source"] == DATA_SOURCE and info["split"] == split
            assert info["prompt_mode"] == "adaptive" and info["seed"] == 5
            path = Path(row["audios"][0])
            assert path.is_absolute() and path == path.resolve() and str(path) == info["audio_path"]
            assert path == out.resolve() / "audio" / split / f"{info['index']:06d}.wav"
            x, sr = sf.read(path, dtype="float32")
            assert sr == SR and x.ndim == 1
            assert oracle(info["task"], x) == info["answer"]
            assert info["choices"][info["answer_index"]] == info["answer"]


def test_manifest_counts_match_the_parquet(dataset: tuple[Path, dict]) -> None:
    out, manifest = dataset
    assert json.loads((out / "manifest.json").read_text()) == manifest
    assert manifest["args"] == {"n_train": 48, "n_val": 24, "seed": 5, "prompt_mode": "adaptive"}
    assert [t["task"] for t in manifest["tasks"]] == list(TASK_NAMES)
    for split in ("train", "val"):
        infos = [r["extra_info"] for r in _rows(out / manifest["files"][split])]
        counts = manifest["counts"][split]
        assert counts["total"] == len(infos)
        assert counts["by_task"] == dict(Counter(i["task"] for i in infos))
        assert counts["by_difficulty"] == dict(Counter(i["difficulty"] for i in infos))
        by_answer = defaultdict(Counter)
        for i in infos:
            by_answer[i["task"]][i["answer"]] += 1
        assert counts["by_answer"] == {t: dict(c) for t, c in by_answer.items()}
        assert counts["by_answer_index"] == {
            str(k): v for k, v in Counter(i["answer_index"] for i in infos).items()
        }
        wavs = sorted((out / "audio" / split).iterdir())
        assert [w.name for w in wavs] == [f"{i:06d}.wav" for i in range(len(infos))]


def test_rerun_is_byte_identical_and_worker_count_does_not_matter(
    dataset: tuple[Path, dict], tmp_path: Path
) -> None:
    """Same seed -> identical bytes (in place, untouched mtimes; and elsewhere with 2 workers)."""
    out, manifest = dataset
    before = _digests(out)
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    assert generate_dataset(out, n_train=48, n_val=24, seed=5, progress=False) == manifest
    assert _digests(out) == before
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == mtimes

    other = tmp_path / "elsewhere"
    generate_dataset(other, n_train=48, n_val=24, seed=5, workers=2, progress=False)
    moved = _digests(other)
    assert {k: v for k, v in moved.items() if k.endswith(".wav")} == {
        k: v for k, v in before.items() if k.endswith(".wav")
    }
    for split in ("train", "val"):  # parquet differs only by the absolute folder
        relocated = [
            json.loads(json.dumps(r).replace(str(other.resolve()), str(out.resolve())))
            for r in _rows(other / f"{split}.parquet")
        ]
        assert relocated == _rows(out / f"{split}.parquet")


def test_seeds_differ_and_train_val_are_disjoint(dataset: tuple[Path, dict], tmp_path: Path) -> None:
    out, _ = dataset
    digests = _digests(out)
    train = {v for k, v in digests.items() if k.startswith("audio/train/")}
    val = {v for k, v in digests.items() if k.startswith("audio/val/")}
    assert len(train) == 48 and len(val) == 24 and not train & val
    generate_dataset(tmp_path, n_train=48, n_val=24, seed=6, progress=False)
    reseeded = {v for k, v in _digests(tmp_path).items() if k.endswith(".wav")}
    assert not reseeded & (train | val)
    assert _rows(tmp_path / "val.parquet") != _rows(out / "val.parquet")


def test_is_generated_checks_args_and_files(dataset: tuple[Path, dict], tmp_path: Path) -> None:
    out, _ = dataset
    assert is_generated(out, n_train=48, n_val=24, seed=5)
    assert not is_generated(out, n_train=48, n_val=24, seed=6)
    assert not is_generated(out, n_train=48, n_val=24, seed=5, prompt_mode="think")
    assert not is_generated(tmp_path, n_train=48, n_val=24, seed=5)
    generate_dataset(tmp_path, n_train=3, n_val=2, seed=5, progress=False)
    assert is_generated(tmp_path, n_train=3, n_val=2, seed=5)
    (tmp_path / "audio" / "val" / "000001.wav").unlink()
    assert not is_generated(tmp_path, n_train=3, n_val=2, seed=5)


def test_smaller_rerun_removes_stale_clips_and_bad_args_fail(tmp_path: Path) -> None:
    generate_dataset(tmp_path, n_train=20, n_val=10, seed=1, progress=False)
    (tmp_path / "audio" / "train" / "notes.txt").write_text("keep me")
    generate_dataset(tmp_path, n_train=9, n_val=10, seed=1, progress=False)
    names = sorted(p.name for p in (tmp_path / "audio" / "train").iterdir())
    assert names == [f"{i:06d}.wav" for i in range(9)] + ["notes.txt"]
    with pytest.raises(ValueError):
        generate_dataset(tmp_path, n_train=0, n_val=1, seed=1, progress=False)
    with pytest.raises(ValueError, match="prompt mode"):
        generate_dataset(tmp_path, n_train=1, n_val=1, seed=1, prompt_mode="x", progress=False)


def test_cli_end_to_end(tmp_path: Path) -> None:
    """``python -m audio_thinker.data.synthetic`` writes the set, with a tqdm progress bar."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "audio_thinker.data.synthetic", "--out", str(tmp_path / "d")]
    args = ["--train", "16", "--val", "8", "--seed", "4", "--prompt-mode", "direct"]
    done = subprocess.run(cmd + args, env=env, cwd=tmp_path, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "wrote 16 train + 8 val" in done.stdout and "clip" in done.stderr
    manifest = json.loads((tmp_path / "d" / "manifest.json").read_text())
    assert manifest["args"] == {"n_train": 16, "n_val": 8, "seed": 4, "prompt_mode": "direct"}
    rows = _rows(tmp_path / "d" / "train.parquet")
    assert len(rows) == 16 and all(r["extra_info"]["prompt_mode"] == "direct" for r in rows)
    assert "<think>" not in rows[0]["prompt"][0]["content"]
    bad = subprocess.run(
        cmd + ["--train", "0"], env=env, cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert bad.returncode == 2 and "n_train" in bad.stderr
    (tmp_path / "a-file").write_text("not a folder")
    onto_file = subprocess.run([sys.executable, "-m", "audio_thinker.data.synthetic", "--out", str(tmp_path / "a-file")],
                               env=env, cwd=tmp_path, capture_output=True, text=True, check=False)
    assert onto_file.returncode == 2 and "existing file, not a folder" in onto_file.stderr, onto_file.stderr
    assert "Traceback" not in onto_file.stderr and (tmp_path / "a-file").read_text() == "not a folder"


def test_validate_row_names_every_problem_and_never_crashes() -> None:
    """One validation for every prompt mode: a row it passes rebuilds in each mode; anything
    malformed is a RowError (a ValueError) with a counter reason, never KeyError/TypeError."""
    import copy

    from audio_thinker.data.rows import ROW_ERRORS, RowError, with_prompt_mode
    from audio_thinker.prompts import PromptMode

    example = QAExample(audio_path="/a.wav", question="Which is higher?", choices=("first", "second"),
                        answer="second")
    good = make_row(example, data_source=DATA_SOURCE, index=0, split="train")
    for mode in PromptMode:
        validate_row(with_prompt_mode(good, mode))

    def broken(edit) -> dict:
        row = copy.deepcopy(good)
        edit(row)
        return row

    cases = {
        "not_a_row": ["not a row"],
        "missing_columns": [broken(lambda r: r.pop("prompt"))],
        "bad_prompt": [broken(lambda r: r.update(prompt=["<audio>text"])), broken(lambda r: r.update(prompt=[]))],
        "audio_mismatch": [broken(lambda r: r.update(audios=None)), broken(lambda r: r.update(audios=[]))],
        "bad_extra_info": [broken(lambda r: r.update(extra_info=None))],
        "missing_field": [broken(lambda r: r["extra_info"].pop("question")),
                          broken(lambda r: r["extra_info"].update(question=None))],
        "bad_question": [broken(lambda r: r["extra_info"].update(question="  ")),
                         broken(lambda r: r["extra_info"].update(question=7)),
                         broken(lambda r: r["extra_info"].update(choices=["second"])),
                         broken(lambda r: r["extra_info"].update(choices="second"))],
        "ground_truth_mismatch": [broken(lambda r: r["reward_model"].update(ground_truth="first"))],
        "answer_not_in_choices": [broken(lambda r: (r["extra_info"].update(answer="third"),
                                                    r["reward_model"].update(ground_truth="third")))],
    }
    assert set(cases) == set(ROW_ERRORS)
    for reason, rows in cases.items():
        for row in rows:
            with pytest.raises(RowError) as info:
                validate_row(row)
            assert isinstance(info.value, ValueError) and info.value.reason == reason, (reason, row)
