"""Benchmark metadata loaders (audio_thinker.data.benchmarks): fixtures, bad rows, real files."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from audio_thinker.data.benchmarks import (
    AIR_BENCH,
    BENCHMARKS_DIR_ENV,
    GROUP_FIELDS,
    MMAR,
    MMAU,
    PROBLEM_EXCLUDES,
    BenchmarkFormatError,
    LoadReport,
    canonical_name,
    load_air_bench,
    load_benchmark,
    load_mmar,
    load_mmau,
    shared_benchmarks_dir,
)

# -- fixtures in the shape of each real file -----------------------------------------------------


def _mmau_row(item_id, answer="Man", choices=("Man", "Woman", "Child", "Robot"), **extra):
    row = {
        "id": item_id, "audio_id": f"./test-mini-audios/{item_id}.wav", "question": "Who speaks?",
        "choices": list(choices), "answer": answer, "dataset": "AudioSet", "task": "sound",
        "split": "test-mini", "category": "Reasoning", "sub-category": "Acoustic Source Inference",
        "difficulty": "medium",
    }
    row.update(extra)
    return row


MMAU_ROWS = [
    _mmau_row("ok-1"),
    _mmau_row("ok-2", answer="Woman", difficulty="hard", category=["Reasoning"]),  # list category
    _mmau_row("dup-choices", choices=("Man", "Man", "Child", "Robot")),
    _mmau_row("no-answer-in-choices", answer="Dog"),
    _mmau_row("ok-1", answer="Woman"),  # duplicate id
    _mmau_row("no-question", question=None),
    _mmau_row("one-choice", choices=("Man",)),
    _mmau_row("no-difficulty", difficulty=None),
    _mmau_row("hidden", answer=None, split="test"),
    _mmau_row("number-choices", answer=2, choices=(1, 2, 3)),
    ["not", "an", "object"],
]


def _write_json(path: Path, rows) -> Path:
    path.write_text(json.dumps(rows, indent=1), encoding="utf-8")
    return path


def _mmar_row(item_id, **extra):
    row = {
        "id": item_id, "audio_path": f"./audio/{item_id}.wav", "question": "What environment?",
        "choices": ["Mountain Canyon", "Dense Forest", "Open Grassland", "City Streets"],
        "answer": "Open Grassland", "modality": "music", "category": "Cultural Layer",
        "sub-category": "Professional Knowledge and Reasoning", "language": None, "source": "youtube",
        "url": "https://example.invalid", "timestamp": "00:01:32,00:02:02", "thinking": "...",
        "cue": ["Throat Singing"], "rubric": [],
    }
    row.update(extra)
    return row


def _air_row(uniq_id, n_choices=4, task_name="Speech_emotion_recognition", **extra):
    row = {
        "path": f"{uniq_id}.wav", "question": "What is the emotion?", "answer_gt": "happy",
        "task_name": task_name, "dataset_name": "iemocap", "uniq_id": uniq_id,
        "choice_a": "sad", "choice_b": "happy", "choice_c": "angry", "choice_d": "neutral",
    }
    for key in ("choice_a", "choice_b", "choice_c", "choice_d")[n_choices:]:
        del row[key]
    row.update(extra)
    return row


AIR_ROWS = [
    _air_row(1),
    _air_row(2, n_choices=2),
    _air_row(3, n_choices=3, choice_d=None),
    _air_row(4, task_name="Audio_Grounding", path="clips/x.wav", dataset_name="AudioGrounding"),
    _air_row(5, choice_c=None),  # gap: c null but d present
    _air_row(6, answer_gt="bored"),
    _air_row(7, task_name=None),
    _air_row(8, choice_b="sad"),  # "happy" no longer a choice
]


# -- MMAU ----------------------------------------------------------------------------------------


def test_mmau_fixture_items_and_report(tmp_path):
    meta = _write_json(tmp_path / "mmau-test-mini.json", MMAU_ROWS)
    items, report = load_mmau(meta)
    assert [i.item_id for i in items] == [
        "ok-1", "ok-2", "dup-choices", "no-difficulty", "hidden", "number-choices"
    ]
    first = items[0]
    assert first.audio_path == str(tmp_path / "test-mini-audios" / "ok-1.wav")
    assert first.choices == ("Man", "Woman", "Child", "Robot") and first.answer == "Man"
    assert dict(first.groups) == {
        "task": "sound", "difficulty": "medium", "category": "Reasoning",
        "sub-category": "Acoustic Source Inference", "dataset": "AudioSet",
    }
    assert items[1].groups["category"] == "Reasoning" and items[1].answer_letter == "B"
    assert "difficulty" not in items[3].groups
    assert items[4].answer is None and items[5].choices == ("1", "2", "3")
    assert report.n_rows == 11 and report.n_items == 6 and report.n_excluded == 5
    assert report.counts() == {
        "group_normalized": 1, "duplicate_choices": 1, "answer_not_in_choices": 1,
        "duplicate_id": 1, "malformed_row": 3, "missing_group": 1, "answer_hidden": 1,
        "non_string_value": 4,
    }
    assert report.ids("malformed_row") == ["no-question", "one-choice", None]
    assert report.ids("duplicate_id") == ["ok-1"]
    assert [p.where for p in report.problems if p.kind == "malformed_row"] == ["row 6", "row 7", "row 11"]
    assert all(p.excluded == PROBLEM_EXCLUDES[p.kind] for p in report.problems)
    text = report.summary()
    assert "6 items from 11 rows" in text and "5 excluded" in text
    assert "answer_not_in_choices: 1 (excluded): no-answer-in-choices" in text
    assert "duplicate_choices: 1 (kept): dup-choices" in text
    json.dumps(report.to_dict())


def test_audio_root_and_check_audio(tmp_path):
    (tmp_path / "meta").mkdir()
    meta = _write_json(tmp_path / "meta" / "m.json", [_mmau_row("a"), _mmau_row("b")])
    root = tmp_path / "audio-root"
    (root / "test-mini-audios").mkdir(parents=True)
    (root / "test-mini-audios" / "a.wav").write_bytes(b"RIFF")
    items, report = load_mmau(meta, root, check_audio=True)
    assert [i.audio_path for i in items] == [str(root / "test-mini-audios" / f"{x}.wav") for x in "ab"]
    assert report.ids("missing_audio") == ["b"] and report.n_items == 2 and report.audio_checked
    _, unchecked = load_mmau(meta, root)
    assert unchecked.counts() == {} and not unchecked.audio_checked


# -- MMAR (JSON lines) ---------------------------------------------------------------------------


def test_mmar_fixture_jsonl_with_blank_lines_and_bad_rows(tmp_path):
    lines = [
        json.dumps(_mmar_row("m1")),
        "",
        json.dumps(_mmar_row("m2", modality="mix-sound-speech", **{"sub-category": None})),
        json.dumps(_mmar_row("m3", choices="Open Grassland")),
        json.dumps(_mmar_row("m4", audio_path=None)),
        json.dumps(42),
    ]
    meta = tmp_path / "MMAR-meta.jsonl"
    meta.write_text("\n".join(lines) + "\n", encoding="utf-8")
    items, report = load_mmar(meta)
    assert [i.item_id for i in items] == ["m1", "m2"]
    assert items[0].audio_path == str(tmp_path / "audio" / "m1.wav")
    assert dict(items[1].groups) == {"modality": "mix-sound-speech", "category": "Cultural Layer"}
    assert report.ids("malformed_row") == ["m3", "m4", None]
    assert [p.where for p in report.problems if p.kind == "malformed_row"] == ["line 4", "line 5", "line 6"]
    assert report.ids("missing_group") == ["m2"] and report.n_rows == 5


def test_invalid_json_line_names_the_line(tmp_path):
    meta = tmp_path / "MMAR-meta.jsonl"
    meta.write_text(json.dumps(_mmar_row("m1")) + "\n{\"id\": \"m2\", oops}\n", encoding="utf-8")
    with pytest.raises(BenchmarkFormatError, match=r"MMAR-meta.jsonl: invalid JSON on line 2"):
        load_mmar(meta)
    bad_list = tmp_path / "mmau.json"
    bad_list.write_text('[\n {"id": 1},\n {"id": 2,,}\n]', encoding="utf-8")
    with pytest.raises(BenchmarkFormatError, match=r"invalid JSON at line 3"):
        load_mmau(bad_list)


# -- AIR-Bench foundation ------------------------------------------------------------------------


def test_air_bench_fixture(tmp_path):
    meta = _write_json(tmp_path / "Foundation_meta.json", AIR_ROWS)
    items, report = load_air_bench(meta, tmp_path / "Foundation")
    by_id = {i.item_id: i for i in items}
    assert sorted(by_id) == ["1", "2", "3", "4"]
    root = tmp_path / "Foundation"
    assert by_id["1"].audio_path == str(root / "Speech_emotion_recognition_iemocap" / "1.wav")
    assert by_id["1"].choices == ("sad", "happy", "angry", "neutral") and by_id["1"].answer_letter == "B"
    assert by_id["2"].choices == ("sad", "happy") and by_id["3"].choices == ("sad", "happy", "angry")
    assert by_id["4"].audio_path == str(root / "Audio_Grounding_AudioGrounding" / "clips" / "x.flac")
    assert dict(by_id["1"].groups) == {"task_name": "Speech_emotion_recognition", "dataset_name": "iemocap"}
    assert report.ids("malformed_row") == ["5", "7"]
    assert report.ids("answer_not_in_choices") == ["6", "8"]
    assert report.n_excluded == 4 and report.n_items == 4


# -- dispatcher, names, the shared folder -------------------------------------------------------


def test_load_benchmark_dispatch_and_names(tmp_path):
    meta = _write_json(tmp_path / "Foundation_meta.json", AIR_ROWS[:1])
    items, report = load_benchmark("AIR_Bench", meta)
    assert items[0].benchmark == AIR_BENCH and isinstance(report, LoadReport)
    assert canonical_name("MMAU") == MMAU and canonical_name("mmar") == MMAR
    with pytest.raises(ValueError, match="unknown benchmark 'mmlu'"):
        load_benchmark("mmlu", meta)
    with pytest.raises(ValueError, match="unknown problem kind"):
        report.ids("nonsense")


def test_items_are_hashable_and_frozen(tmp_path):
    items, _ = load_mmau(_write_json(tmp_path / "m.json", [_mmau_row("a")]))
    assert len({items[0], items[0]}) == 1
    with pytest.raises(AttributeError):
        items[0].answer = "Woman"  # type: ignore[misc]


def test_shared_benchmarks_dir_env_override(tmp_path, monkeypatch):
    monkeypatch.setenv(BENCHMARKS_DIR_ENV, str(tmp_path))
    assert shared_benchmarks_dir() == tmp_path
    monkeypatch.setenv(BENCHMARKS_DIR_ENV, str(tmp_path / "absent"))
    assert shared_benchmarks_dir() is None


# -- the real files ------------------------------------------------------------------------------

REAL = {
    "mmau-test-mini.v05.15.25.json": MMAU,
    "mmau-test-mini.v1_2025-03-25.json": MMAU,
    "MMAR-meta.jsonl": MMAR,
}
# file -> (group field -> Counter of values), spot checks of the released files
REAL_GROUP_COUNTS = {
    "mmau-test-mini.v05.15.25.json": {
        "task": {"sound": 333, "music": 334, "speech": 333},
        "difficulty": {"easy": 224, "medium": 540, "hard": 236},
        "category": {"Reasoning": 677, "Information Extraction": 323},
    },
    "mmau-test-mini.v1_2025-03-25.json": {
        "task": {"sound": 333, "music": 334, "speech": 333},
        "difficulty": {"easy": 258, "medium": 510, "hard": 232},
        "category": {"Reasoning": 706, "Information Extraction": 294},
    },
    "MMAR-meta.jsonl": {
        "modality": {
            "speech": 294, "mix-sound-speech": 218, "music": 206, "sound": 165, "mix-music-speech": 82,
            "mix-sound-music-speech": 24, "mix-sound-music": 11,
        },
        "category": {
            "Semantic Layer": 412, "Perception Layer": 404, "Cultural Layer": 141, "Signal Layer": 43,
        },
    },
}
REAL_PROBLEM_COUNTS = {
    "mmau-test-mini.v05.15.25.json": {"duplicate_choices": 27, "group_normalized": 13},
    "mmau-test-mini.v1_2025-03-25.json": {"duplicate_choices": 20, "group_normalized": 13},
    "MMAR-meta.jsonl": {},
}
REAL_N_CHOICES = {
    "mmau-test-mini.v05.15.25.json": {4: 948, 2: 27, 5: 24, 8: 1},
    "mmau-test-mini.v1_2025-03-25.json": {4: 990, 2: 10},
    "MMAR-meta.jsonl": {4: 815, 2: 171, 3: 10, 5: 3, 6: 1},
}


@pytest.mark.parametrize("filename", sorted(REAL))
def test_real_file_counts_groups_and_problems(filename, real_benchmark):
    items, report = real_benchmark(REAL[filename], filename)
    assert report.n_rows == report.n_items == len(items) == 1000 and report.n_excluded == 0
    assert len({i.item_id for i in items}) == 1000
    assert report.counts() == REAL_PROBLEM_COUNTS[filename]
    fields = GROUP_FIELDS[REAL[filename]]
    assert all(set(i.groups) == set(fields) for i in items)  # every grouping field on every item
    for name, expected in REAL_GROUP_COUNTS[filename].items():
        assert Counter(i.groups[name] for i in items) == expected
    assert Counter(len(i.choices) for i in items) == REAL_N_CHOICES[filename]
    assert all(i.answer in i.choices and Path(i.audio_path).is_absolute() for i in items)
    assert all(Path(i.audio_path).suffix == ".wav" for i in items)


def test_real_mmau_versions_differ_on_shared_ids(real_benchmark):
    v05, _ = real_benchmark(MMAU, "mmau-test-mini.v05.15.25.json")
    v1, _ = real_benchmark(MMAU, "mmau-test-mini.v1_2025-03-25.json")
    a, b = {i.item_id: i for i in v05}, {i.item_id: i for i in v1}
    shared = set(a) & set(b)
    assert len(shared) == 894
    def content(item):
        return item.question, item.choices, item.answer

    # same id, different question/choices/answer: results of one version never score the other
    assert sum(content(a[k]) != content(b[k]) for k in shared) == 258
    assert sum(a[k].answer != b[k].answer for k in shared) == 209


# -- paths from metadata stay under the audio root -------------------------------------------------


@pytest.mark.parametrize("loader, row_of, key", [
    (load_mmau, lambda i, p: _mmau_row(i, audio_id=p), "audio_id"),
    (load_mmar, lambda i, p: {"id": i, "audio_path": p, "question": "q?", "choices": ["a", "b"], "answer": "a",
                               "modality": "sound", "category": "Signal Layer", "sub-category": "x"}, "audio_path"),
])
def test_audio_paths_that_leave_the_root_are_bad_rows(tmp_path, loader, row_of, key):
    """``../`` and absolute paths in metadata are reported and excluded, never opened."""
    rows = [row_of("ok", "./clips/ok.wav"), row_of("up", "../../../etc/passwd"), row_of("abs", "/etc/passwd"),
            row_of("sneaky", "clips/../../outside.wav"), row_of("inside", "clips/../clips/in.wav")]
    meta = tmp_path / "meta.jsonl"
    if loader is load_mmar:
        meta.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    else:
        meta = _write_json(tmp_path / "meta.json", rows)
    items, report = loader(meta, tmp_path / "root")
    assert sorted(i.item_id for i in items) == ["inside", "ok"]
    assert sorted(report.ids("audio_path_escapes")) == ["abs", "sneaky", "up"]
    assert all(i.audio_path.startswith(str(tmp_path / "root") + "/") for i in items)
    assert PROBLEM_EXCLUDES["audio_path_escapes"] and report.n_excluded == 3


def test_air_bench_path_cannot_escape_its_task_folder(tmp_path):
    row = {"uniq_id": 1, "path": "../../../../etc/passwd", "question": "q", "choice_a": "x", "choice_b": "y",
           "answer_gt": "x", "task_name": "Speech_emotion_recognition", "dataset_name": "iemocap"}
    items, report = load_air_bench(_write_json(tmp_path / "m.json", [row]), tmp_path / "Foundation")
    assert items == [] and report.ids("audio_path_escapes") == ["1"]


# -- overlong questions ----------------------------------------------------------------------------


@pytest.mark.parametrize("loader, row", [(load_mmau, _mmau_row("long", question="Why? " * 20_000)),
                                         (load_air_bench, _air_row(9, question="Why? " * 20_000))])
def test_an_overlong_question_is_reported_not_dropped(tmp_path, loader, row):
    """A 100k-character question is counted and named in the report (kept: evaluation records it
    missing with the reason); the bound is a parameter, None switches it off."""
    ok = _mmau_row("ok") if loader is load_mmau else _air_row(1)
    meta = _write_json(tmp_path / "m.json", [ok, row])
    items, report = loader(meta)
    long_id = str(row.get("id", row.get("uniq_id")))
    assert len(items) == 2 and report.counts() == {"prompt_too_long": 1}
    assert report.ids("prompt_too_long") == [long_id] and not PROBLEM_EXCLUDES["prompt_too_long"]
    assert "characters > max_question_chars=4000" in report.problems[0].detail
    assert f"prompt_too_long: 1 (kept): {long_id}" in report.summary()
    assert loader(meta, max_question_chars=None)[1].counts() == {}
    assert loader(meta, max_question_chars=200_000)[1].counts() == {}


def test_synthetic_items_report_an_overlong_question(tmp_path):
    import pandas as pd

    from audio_thinker.data.synthetic import generate_dataset
    from audio_thinker.scoring.items import load_eval_items

    generate_dataset(tmp_path / "data", n_train=1, n_val=3, seed=0, progress=False)
    rows = pd.read_parquet(tmp_path / "data" / "val.parquet")
    rows.at[2, "extra_info"] = {**rows.at[2, "extra_info"], "question": "Why? " * 20_000}
    rows.to_parquet(tmp_path / "long.parquet")
    items, report = load_eval_items("synthetic", tmp_path / "long.parquet")
    assert len(items) == 3 and report.ids("prompt_too_long") == [items[2].item_id]
