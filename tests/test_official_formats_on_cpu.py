"""Official prediction files (audio_thinker.scoring.official): format, official re-read, round trip."""

from __future__ import annotations

import doctest
import json
import re
from collections import Counter
from pathlib import Path

import pytest

from audio_thinker.data.benchmarks import AIR_BENCH, MMAR, MMAU, shared_benchmarks_dir
from audio_thinker.scoring.items import SYNTHETIC, load_eval_items
from audio_thinker.scoring.official import check_round_trip, expected_official, write_and_check, write_predictions
from audio_thinker.scoring.official_format import (
    AIR_BENCH_KEYS,
    AIR_BENCH_TASK_ID,
    OfficialScriptError,
    RoundTripError,
    Tally,
    official_filename,
)
from audio_thinker.scoring.official_read import (
    read_air_bench_official,
    read_mmar_official,
    read_mmau_official,
    read_official,
)
from audio_thinker.scoring.records import make_record
from audio_thinker.scoring.match import accuracy

# -- fixture metadata shaped like the real files -------------------------------------------------


def _mmau_row(item_id, answer="Man", task="sound", difficulty="medium", **extra):
    row = {
        "id": item_id, "audio_id": f"./test-mini-audios/{item_id}.wav",
        "question": "¿Quién habla? Identify the speaker.", "choices": ["Man", "Woman", "Child", "Robot"],
        "answer": answer, "dataset": "AudioSet", "task": task, "split": "test-mini",
        "category": "Reasoning", "sub-category": "Acoustic Source Inference", "difficulty": difficulty,
    }
    row.update(extra)
    return row


MMAU_ROWS = [
    _mmau_row("m-correct"),
    _mmau_row("m-wrong", answer="Woman", task="music", difficulty="easy"),
    _mmau_row("m-malformed-right", task="speech", difficulty="hard", category=["Reasoning"]),
    _mmau_row("m-malformed-wrong", task="speech", **{"sub-category": "Speaker Identification"}),
    _mmau_row("m-missing", task="music"),
    _mmau_row("m-no-record", difficulty="easy"),
]
# item id -> response (None: a missing item; absent: no record at all)
MMAU_RESPONSES = {
    "m-correct": "<think>low voice</think><answer>Man</answer>",
    "m-wrong": "<answer>Man</answer>",
    "m-malformed-right": "It is a man.",
    "m-malformed-wrong": "I cannot tell",
    "m-missing": None,
}


def _mmar_row(item_id, answer="Open Grassland", modality="music", category="Cultural Layer", **extra):
    row = {
        "id": item_id, "audio_path": f"./audio/{item_id}.wav", "question": "What environment?",
        "choices": ["Mountain Canyon", "Dense Forest", "Open Grassland", "City Streets"],
        "answer": answer, "modality": modality, "category": category,
        "sub-category": "Professional Knowledge and Reasoning", "language": None, "source": "youtube",
        "url": "https://example.invalid", "timestamp": "00:01:32,00:02:02", "thinking": "Mongolian …",
        "cue": ["Throat Singing"], "rubric": [{"name": "Cue", "choices": [0, 1]}],
    }
    row.update(extra)
    return row


MMAR_ROWS = [
    _mmar_row("r-correct"),
    _mmar_row("r-wrong", modality="mix-sound-speech", category="Semantic Layer"),
    _mmar_row("r-malformed", modality="speech", category="Signal Layer", **{"sub-category": "Imagination"}),
    _mmar_row("r-missing", modality="sound", category="Perception Layer"),
    _mmar_row("r-two-choices", answer="yes", choices=["yes", "no"], modality="speech",
              category="Semantic Layer"),
]
MMAR_RESPONSES = {
    "r-correct": "<think>throat singing</think><answer>Open Grassland</answer>",
    "r-wrong": "<answer>Dense Forest</answer>",
    "r-malformed": "<think>hmm<answer>open grassland</answer>",
    "r-missing": None,
    "r-two-choices": "<answer>yes</answer>",
}


def _air_row(uniq_id, n_choices=4, answer_gt="happy", task_name="Speech_emotion_recognition",
             dataset_name="iemocap", **extra):
    row = {
        "path": f"Ses01F_{uniq_id}.wav", "question": "What is the emotion?", "answer_gt": answer_gt,
        "task_name": task_name, "dataset_name": dataset_name, "uniq_id": uniq_id,
        "choice_a": "sad", "choice_b": "happy", "choice_c": "angry", "choice_d": "neutral",
    }
    for key in ("choice_a", "choice_b", "choice_c", "choice_d")[n_choices:]:
        del row[key]
    row.update(extra)
    return row


AIR_ROWS = [
    _air_row(1),
    _air_row(2, answer_gt="sad"),
    _air_row(3),
    _air_row(4, n_choices=2, task_name="Vocal_sound_classification", dataset_name="VocalSound"),
    _air_row(5, n_choices=2, task_name="Vocal_sound_classification", dataset_name="VocalSound"),
    _air_row(6),
    _air_row(7, n_choices=3, choice_d=None, answer_gt="angry"),
    _air_row(8, task_name="Audio_Grounding", dataset_name="AudioGrounding", path="clips/x.wav"),
]
AIR_RESPONSES = {
    1: "<answer>happy</answer>",  # -> "B", correct
    2: "<think>x</think><answer>(C)</answer>",  # -> "C", wrong
    3: "<answer>a horse</answer>",  # no letter: unparsed (fail_num)
    4: "<answer>C</answer>",  # 2 options answered C: counted, wrong
    5: "<answer>happy</answer>",  # 2 options, correct
    6: None,  # missing: no line
    7: "The answer is C.",  # malformed, letter C, correct
    8: "<answer>neutral</answer>",  # wrong
}


def _write_json(path: Path, rows) -> Path:
    path.write_text(json.dumps(rows, indent=1, ensure_ascii=False), encoding="utf-8")
    return path


def _write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def _records(items, responses):
    by_id = {item.item_id: item for item in items}
    return {str(k): make_record(by_id[str(k)], r, prompt_mode="adaptive") for k, r in responses.items()}


def _tally_check(benchmark, items, records, score):
    """The official figures equal the records' tally (official = correct / (items - missing - unparsed))."""
    results = [records[i.item_id].to_item_result() if i.item_id in records else None for i in items]
    acc = accuracy(r for r in results if r is not None)
    n_no_record = sum(r is None for r in results)
    assert score.total.correct == acc.n_correct
    assert score.total.counted == acc.n_items - acc.n_missing - acc.n_unparsed
    assert score.total.counted == len(items) - n_no_record - acc.n_missing - acc.n_unparsed
    return acc


# -- MMAU ----------------------------------------------------------------------------------------


def test_mmau_write_read_round_trip(tmp_path):
    meta = _write_json(tmp_path / "mmau-test-mini.json", MMAU_ROWS)
    items, _ = load_eval_items("mmau", meta, check_audio=False)
    records = _records(items, MMAU_RESPONSES)
    path, score = write_and_check(MMAU, items, records, tmp_path / "run")
    assert path == tmp_path / "run" / "mmau_predictions.json"

    # structure: every row verbatim, model_output only where there is a prediction
    text = path.read_text(encoding="utf-8")
    assert "¿Quién habla?" in text  # ensure_ascii=False
    written = json.loads(text)
    assert len(written) == len(MMAU_ROWS)
    for original, row in zip(MMAU_ROWS, written):
        record = records.get(original["id"])
        assert {k: v for k, v in row.items() if k != "model_output"} == original
        if record is None or record.prediction is None:
            assert "model_output" not in row
        else:
            assert row["model_output"] == record.prediction
    assert written[0]["model_output"] == "Man" and written[2]["model_output"] == "It is a man."
    assert written[2]["category"] == ["Reasoning"]  # kept as the file has it

    # the official figures
    assert (score.total.correct, score.total.counted) == (2, 4)
    assert score.n_rows == 6 and score.n_skipped == 2 and score.n_failed == 0 and score.report_crash is None
    assert list(score.groups) == ["task", "difficulty", "sub-category"]
    assert score.groups["task"] == {"sound": Tally(1, 1), "music": Tally(0, 1), "speech": Tally(1, 2)}
    assert list(score.groups["difficulty"]) == ["easy", "hard", "medium"]
    assert score.groups["difficulty"] == {"easy": Tally(0, 1), "hard": Tally(1, 1), "medium": Tally(1, 2)}
    assert score.groups["sub-category"] == {
        "Acoustic Source Inference": Tally(2, 3), "Speaker Identification": Tally(0, 1)}
    assert score.verdicts == {"m-correct": "correct", "m-wrong": "wrong", "m-malformed-right": "correct",
                              "m-malformed-wrong": "wrong", "m-missing": "skipped", "m-no-record": "skipped"}
    _tally_check(MMAU, items, records, score)
    assert read_official("MMAU", path) == score


def test_mmau_tampered_file_fails_the_round_trip(tmp_path):
    items, _ = load_eval_items("mmau", _write_json(tmp_path / "m.json", MMAU_ROWS), check_audio=False)
    records = _records(items, MMAU_RESPONSES)
    path = write_predictions(MMAU, items, records, tmp_path / "p.json")
    rows = json.loads(path.read_text())
    rows[0]["model_output"] = "Woman"
    _write_json(path, rows)
    with pytest.raises(RoundTripError, match=r"total .*m-correct: official wrong, records correct"):
        check_round_trip(MMAU, items, records, path)
    del rows[0]["model_output"]  # now skipped: a missing item the records do not have
    _write_json(path, rows)
    with pytest.raises(RoundTripError, match="rows skipped"):
        check_round_trip(MMAU, items, records, path)


def test_mmau_all_missing_reports_the_official_crash(tmp_path):
    items, _ = load_eval_items("mmau", _write_json(tmp_path / "m.json", MMAU_ROWS), check_audio=False)
    path, score = write_and_check(MMAU, items, {}, tmp_path)
    assert score.total == Tally(0, 0) and score.n_skipped == 6
    assert "ZeroDivisionError" in score.report_crash


# -- MMAR ----------------------------------------------------------------------------------------


def test_mmar_write_read_round_trip(tmp_path):
    meta = _write_jsonl(tmp_path / "MMAR-meta.jsonl", MMAR_ROWS)
    items, _ = load_eval_items("mmar", meta, check_audio=False)
    records = _records(items, MMAR_RESPONSES)
    path, score = write_and_check("MMAR", items, records, tmp_path)
    assert path.name == "mmar_predictions.json"
    written = json.loads(path.read_text(encoding="utf-8"))
    assert [row["id"] for row in written] == [row["id"] for row in MMAR_ROWS]
    for original, row in zip(MMAR_ROWS, written):
        assert "model_output" not in row
        assert {k: v for k, v in row.items() if k != "answer_prediction"} == original
        assert ("answer_prediction" in row) == (MMAR_RESPONSES[original["id"]] is not None)
    assert written[2]["answer_prediction"] == "open grassland"

    assert (score.total.correct, score.total.counted) == (3, 4)
    assert score.n_skipped == 1
    assert list(score.groups["modality"]) == [
        "sound", "music", "speech", "mix-sound-music", "mix-sound-speech", "mix-music-speech",
        "mix-sound-music-speech"]
    counted = {g: {v: t for v, t in values.items() if t.counted} for g, values in score.groups.items()}
    assert counted["modality"] == {
        "music": Tally(1, 1), "speech": Tally(2, 2), "mix-sound-speech": Tally(0, 1)}
    assert counted["category"] == {
        "Cultural Layer": Tally(1, 1), "Semantic Layer": Tally(1, 2), "Signal Layer": Tally(1, 1)}
    assert counted["sub-category"] == {
        "Professional Knowledge and Reasoning": Tally(2, 3), "Imagination": Tally(1, 1)}
    _tally_check(MMAR, items, records, score)


def test_mmar_reads_json_lines_by_extension(tmp_path):
    rows = [dict(row, answer_prediction=row["answer"]) for row in MMAR_ROWS]
    score = read_mmar_official(_write_jsonl(tmp_path / "pred.jsonl", rows))
    assert score.total == Tally(5, 5)
    with pytest.raises(OfficialScriptError, match=r"\*\.json"):
        read_mmar_official(_write_jsonl(tmp_path / "pred.txt", rows))


# -- AIR-Bench -----------------------------------------------------------------------------------


def test_air_bench_write_read_round_trip(tmp_path):
    meta = _write_json(tmp_path / "Foundation_meta.json", AIR_ROWS)
    items, _ = load_eval_items("air-bench", meta, check_audio=False)
    records = _records(items, AIR_RESPONSES)
    assert [records[str(i)].prediction for i in (1, 2, 3, 4, 5)] == ["B", "C", "a horse", "C", "B"]
    assert records["3"].unparsed and records["6"].missing
    path, score = write_and_check(AIR_BENCH, items, records, tmp_path)
    assert path.name == "Foundation_result_modelx.jsonl" == official_filename("airbench")

    raw_lines = path.read_text(encoding="utf-8").splitlines()
    lines = [json.loads(line) for line in raw_lines]
    assert [line["uniq_id"] for line in lines] == [1, 2, 3, 4, 5, 7, 8]  # the missing item has no line
    by_id = {row["uniq_id"]: row for row in AIR_ROWS}
    for line in lines:
        assert tuple(line) == AIR_BENCH_KEYS  # exactly the inference script's keys (and order)
        row = by_id[line["uniq_id"]]
        assert {k: v for k, v in line.items() if k != "response"} == {
            k: row.get(k) for k in AIR_BENCH_KEYS if k != "response"}
        assert line["response"] == records[str(line["uniq_id"])].prediction
    assert lines[3]["choice_c"] is None and lines[3]["choice_d"] is None  # 2-option item
    assert lines[-1]["path"] == "clips/x.wav"  # the row's path, not the .flac the audio is read from

    assert (score.total_sum, score.fail_num, score.total.correct) == (6, 1, 3)
    assert score.groups[AIR_BENCH_TASK_ID] == {
        "Speech_emotion_recognition_iemocap": Tally(2, 3),
        "Vocal_sound_classification_VocalSound": Tally(1, 2),
        "Audio_Grounding_AudioGrounding": Tally(0, 1),
    }
    assert score.verdicts["3"] == "failed" and "6" not in score.verdicts
    assert score.report_crash is None
    acc = _tally_check(AIR_BENCH, items, records, score)
    assert acc.n_unparsed == score.fail_num == 1


def test_air_bench_task_with_only_unparsed_lines(tmp_path):
    items, _ = load_eval_items("air-bench", _write_json(tmp_path / "meta.json", AIR_ROWS), check_audio=False)
    responses = dict(AIR_RESPONSES, **{"8": "no idea"})
    records = _records(items, {str(k): v for k, v in responses.items()})
    _, score = write_and_check(AIR_BENCH, items, records, tmp_path)
    assert score.groups[AIR_BENCH_TASK_ID]["Audio_Grounding_AudioGrounding"] == Tally(0, 0)
    assert "KeyError" in score.report_crash and "Audio_Grounding_AudioGrounding" in score.report_crash
    assert score.fail_num == 2


# -- synthetic -----------------------------------------------------------------------------------


def test_synthetic_write_read_round_trip(tmp_path):
    pd = pytest.importorskip("pandas")
    from audio_thinker.data.rows import QAExample, make_row

    examples = [
        QAExample("/a/0.wav", "Which pitch?", ("low", "high"), "low", "tone_pitch", "easy"),
        QAExample("/a/1.wav", "How many beeps?", ("1", "2", "3"), "3", "beep_count", "medium"),
        QAExample("/a/2.wav", "How many beeps?", ("1", "2", "3"), "2", "beep_count", "medium"),
        QAExample("/a/3.wav", "Which pitch?", ("low", "high"), "high", "tone_pitch", "easy"),
    ]
    frame = pd.DataFrame([make_row(e, data_source="synthetic_aqa", index=i, split="val")
                          for i, e in enumerate(examples)])
    meta = tmp_path / "val.parquet"
    frame.to_parquet(meta)
    items, _ = load_eval_items("synthetic", meta, check_audio=False)
    ids = [item.item_id for item in items]
    records = _records(items, {ids[0]: "<think>x</think><answer>low</answer>",
                               ids[1]: "<answer>2</answer>", ids[2]: None})
    path, score = write_and_check(SYNTHETIC, items, records, tmp_path)
    assert path.name == "synthetic_predictions.json"
    written = json.loads(path.read_text())
    assert written[0] == {"id": "val-000000", "audio_path": "/a/0.wav", "question": "Which pitch?",
                          "choices": ["low", "high"], "answer": "low", "task": "tone_pitch",
                          "difficulty": "easy", "model_output": "low"}
    assert ["model_output" in row for row in written] == [True, True, False, False]
    assert score.total == Tally(1, 2) and score.n_skipped == 2
    assert score.groups == {"task": {"tone_pitch": Tally(1, 1), "beep_count": Tally(0, 1)},
                            "difficulty": {"easy": Tally(1, 1), "medium": Tally(0, 1)}}
    _tally_check(SYNTHETIC, items, records, score)


# -- error cases ---------------------------------------------------------------------------------


def test_null_prediction_is_a_clear_error(tmp_path):
    rows = [dict(MMAU_ROWS[0], model_output="Man"), dict(MMAU_ROWS[1], model_output=None)]
    with pytest.raises(OfficialScriptError, match=r"row 2 \(id 'm-wrong'\).*None, not a string"):
        read_mmau_official(_write_json(tmp_path / "p.json", rows))
    mmar = [dict(MMAR_ROWS[0], answer_prediction=None)]
    with pytest.raises(OfficialScriptError, match="r-correct"):
        read_mmar_official(_write_json(tmp_path / "q.json", mmar))
    air = [dict(_air_row(9), response=None)]
    with pytest.raises(OfficialScriptError, match=r"line 1 \(uniq_id 9\).*'response'"):
        read_air_bench_official(_write_jsonl(tmp_path / "r.jsonl", air))


def test_air_bench_gold_not_among_choices_is_a_clear_error(tmp_path):
    line = {k: _air_row(11, answer_gt="bored").get(k) for k in AIR_BENCH_KEYS if k != "response"}
    with pytest.raises(OfficialScriptError, match=r"uniq_id 11.*answer_gt 'bored'.*exits"):
        read_air_bench_official(_write_jsonl(tmp_path / "a.jsonl", [dict(line, response="A")]))
    # the official script computes the gold letter only for a readable letter: no exit then
    score = read_air_bench_official(_write_jsonl(tmp_path / "b.jsonl", [dict(line, response="what?")]))
    assert score.fail_num == 1 and score.total_sum == 0


def test_values_outside_the_official_dictionaries_are_errors(tmp_path):
    rows = [dict(_mmau_row("x", task="tone_pitch"), model_output="Man")]
    with pytest.raises(OfficialScriptError, match=r"task 'tone_pitch'.*KeyError"):
        read_mmau_official(_write_json(tmp_path / "p.json", rows))
    rows = [{k: v for k, v in _mmau_row("y").items() if k != "difficulty"} | {"model_output": "Man"}]
    with pytest.raises(OfficialScriptError, match="no 'difficulty' key"):
        read_mmau_official(_write_json(tmp_path / "q.json", rows))


def test_writer_rejects_mismatched_records(tmp_path):
    items, _ = load_eval_items("mmau", _write_json(tmp_path / "m.json", MMAU_ROWS), check_audio=False)
    records = _records(items, MMAU_RESPONSES)
    other, _ = load_eval_items("mmau", _write_json(tmp_path / "o.json", [_mmau_row("elsewhere")]),
                               check_audio=False)
    records["elsewhere"] = make_record(other[0], "Man", prompt_mode="direct")
    with pytest.raises(ValueError, match="not among the items"):
        write_predictions(MMAU, items, records, tmp_path / "p.json")
    with pytest.raises(ValueError, match="not mmar items"):
        write_predictions(MMAR, items, {}, tmp_path / "p.json")
    assert not (tmp_path / "p.json").exists()


def test_module_doctests():
    from audio_thinker.scoring import official_format

    result = doctest.testmod(official_format, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


# -- the real metadata ---------------------------------------------------------------------------

_WORD = re.compile(r"\b\w+\b")


def _tokens(text):
    return set(_WORD.findall(text.lower()))


def _real(filename):
    folder = shared_benchmarks_dir()
    if folder is None or not (folder / filename).is_file():
        pytest.skip(f"real benchmark metadata {filename} not found (shared/benchmarks)")
    return folder / filename


@pytest.mark.parametrize(("benchmark", "filename", "fields"), [
    (MMAU, "mmau-test-mini.v1_2025-03-25.json", ("task", "difficulty", "sub-category")),
    (MMAU, "mmau-test-mini.v05.15.25.json", ("task", "difficulty", "sub-category")),
    (MMAR, "MMAR-meta.jsonl", ("modality", "category", "sub-category")),
])
def test_real_metadata_round_trip(tmp_path, benchmark, filename, fields):
    items, _ = load_eval_items(benchmark, _real(filename), check_audio=False)
    assert len(items) == 1000
    missing = {i for i in range(len(items)) if i % 100 in (13, 58)}  # 20 missing, 10 of them even
    records, expected_correct = {}, set()
    for index, item in enumerate(items):
        if index in missing:
            records[item.item_id] = make_record(item, None, prompt_mode="direct", error="missing_audio: x")
            continue
        if index % 2 == 0:
            prediction = item.answer
            assert _tokens(prediction)
            expected_correct.add(index)
        else:
            prediction = next(c for c in item.choices if _tokens(c) != _tokens(item.answer))
        records[item.item_id] = make_record(item, f"<answer>{prediction}</answer>", prompt_mode="direct")
    path, score = write_and_check(benchmark, items, records, tmp_path)

    counted = [i for i in range(len(items)) if i not in missing]
    assert score.total == Tally(len(expected_correct), len(counted)) == Tally(490, 980)
    assert score.n_skipped == len(missing) and score.n_rows == 1000 and score.report_crash is None
    for field in fields:  # expected per group straight from the raw rows
        correct = Counter(items[i].row[field] for i in expected_correct)
        total = Counter(items[i].row[field] for i in counted)
        got = {v: t for v, t in score.groups[field].items() if t.counted}
        assert got == {v: Tally(correct[v], n) for v, n in total.items()}, field
    if benchmark == MMAU:
        assert set(score.groups["task"]) == {"sound", "music", "speech"}
        assert sum(t.counted for t in score.groups["difficulty"].values()) == 980
    else:
        assert len(score.groups["modality"]) == 7 and len(score.groups["category"]) == 4
    acc, _ = expected_official(benchmark, items, records)
    assert (acc.n_items, acc.n_missing, acc.n_correct, acc.official) == (1000, 20, 490, 0.5)
    written = json.loads(path.read_text(encoding="utf-8"))
    key = "model_output" if benchmark == MMAU else "answer_prediction"
    assert [i for i, row in enumerate(written) if key not in row] == sorted(missing)
    assert all({k: v for k, v in row.items() if k != key} == item.row for row, item in zip(written, items))
