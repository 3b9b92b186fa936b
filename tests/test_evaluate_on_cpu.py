"""``python -m audio_thinker.evaluate`` end to end on CPU: a tiny random Qwen2-Audio, real files.

The synthetic set, an MMAU test-mini file and an AIR-Bench foundation file (both shaped like the
real ones, pointing at synthetic clips), with bad inputs planted: a deleted clip, a corrupt clip, a
row whose answer is not among its choices. Every run must finish, count and report the bad items,
and write results whose every figure can be recomputed from the per-item records, a predictions
file the official readers accept, tables, and the think-rate plot. Then resume and refusal.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from audio_thinker.config import ConfigError
from audio_thinker.scoring.official_format import official_filename
from audio_thinker.scoring.official_read import read_official
from audio_thinker.scoring.records import EvalRecord
from audio_thinker.scoring.match import accuracy
from audio_thinker.evaluate.config import load_eval_config
from audio_thinker.evaluate.run import RECORDS_FILE, evaluate, read_records

REPO = Path(__file__).resolve().parents[1]
NO_PREPARE = {"synthetic_data": None, "tiny_model": None, "warmstart_model": None, "tiny_judge": None}


@pytest.fixture(scope="module")
def assets(tmp_path_factory, tiny_model_dir):
    from audio_thinker.data.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("evaluate")
    model = tiny_model_dir("qwen2_audio")
    data = root / "data"
    generate_dataset(data, n_train=4, n_val=12, seed=1, progress=False)
    wavs = sorted((data / "audio" / "val").glob("*.wav"))
    (wavs[3]).unlink()  # a missing clip
    (wavs[5]).write_bytes(b"RIFF\x00\x00not really a wav file")  # a corrupt clip
    return {"root": root, "model": model, "data": data, "wavs": wavs}


def _config(assets, out: Path, **overrides):
    base = {
        "model": {"path": str(assets["model"])},
        "benchmark": {"name": "synthetic", "meta": str(assets["data"] / "val.parquet")},
        "generation": {"max_new_tokens": 12, "batch_size": 4},
        "output_dir": str(out),
        "toy": NO_PREPARE,
        "progress": False,
    }
    for key, value in overrides.items():
        if isinstance(value, dict):
            base[key] = {**base.get(key, {}), **value}
        else:
            base[key] = value
    return load_eval_config(base)


def _records(out: Path) -> list[EvalRecord]:
    return [EvalRecord.from_json(json.loads(line)) for line in (out / RECORDS_FILE).read_text().splitlines()]


def _table(results: dict, title_part: str) -> dict:
    matches = [t for t in results["tables"] if title_part in t["title"]]
    assert matches, [t["title"] for t in results["tables"]]
    return matches[0]


def _check_consistent(out: Path, results: dict, records: list[EvalRecord], benchmark: str) -> None:
    for name in ("run.json", "records.jsonl", "results.json", "tables.md", "think_rate.png",
                 official_filename(benchmark)):
        assert (out / name).is_file(), name
    assert (out / "think_rate.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the overall figures are the records' tally
    tally = accuracy(r.to_item_result() for r in records)
    assert results["overall"]["n_items"] == len(records)
    assert results["overall"]["n_correct"] == tally.n_correct
    assert results["overall"]["n_missing"] == tally.n_missing
    assert results["overall"]["official"] == pytest.approx(tally.official)
    assert results["overall"]["ours"] == pytest.approx(tally.ours)
    # every breakdown's counts sum to the items having that field; each row's accuracy recomputes
    for table in results["tables"]:
        columns = table["columns"]
        if "n" not in columns or "correct" not in columns:
            continue
        key = columns[0]
        rows = [dict(zip(columns, row)) for row in table["rows"] if row[0] != "Avg"]
        with_field = [r for r in records if key in r.groups]
        if with_field and all(row[key] in {r.groups[key] for r in with_field} for row in rows):
            assert sum(row["n"] for row in rows) == len(with_field), table["title"]
            for row in rows:
                group = [r for r in with_field if r.groups[key] == row[key]]
                acc = accuracy(r.to_item_result() for r in group)
                assert row["n"] == len(group) and row["correct"] == acc.n_correct, (table["title"], row)
    # the think report counts every response once per difficulty, rates sum to 1
    think = results["think"]
    answered = [r for r in records if not r.missing]
    assert think["n_responses"] == len(answered) and think["n_missing"] == len(records) - len(answered)
    for entry in think["groups"].values():
        if entry["n"]:
            total = entry["think_rate"] + entry["no_think_rate"] + entry["malformed_rate"]
            assert total == pytest.approx(1.0)
    # the official reader of the written predictions file agrees with our tally
    score = read_official(benchmark, out / official_filename(benchmark))
    assert score.total.correct == tally.n_correct
    assert score.total.counted == tally.n_official


def test_synthetic_run_counts_bad_audio_and_is_consistent(assets, tmp_path):
    out = tmp_path / "synthetic"
    outcome = evaluate(_config(assets, out))
    records = _records(out)
    assert [r.item_id for r in records] == [r.item_id for r in outcome.records]
    assert len(records) == 12
    by_id = {r.item_id: r for r in records}
    missing = by_id["val-000003"]
    assert missing.missing and missing.response is None and missing.error.startswith("missing")
    corrupt = by_id["val-000005"]
    assert corrupt.missing and corrupt.error and not corrupt.error.startswith("missing")
    assert sum(r.missing for r in records) == 2
    results = json.loads((out / "results.json").read_text())
    assert results["load_report"]["counts"] == {"missing_audio": 1}
    assert sum(results["errors"].values()) == 2
    assert results["timing"]["items_generated"] == 10
    assert results["run"]["label"] == "model" and results["run"]["backend"] == "hf"
    for record in records:
        if not record.missing:
            assert record.n_tokens <= 13 and record.finish_reason in ("stop", "length")
            assert "<|AUDIO|>" not in record.response
    _check_consistent(out, results, records, "synthetic")
    tables = (out / "tables.md").read_text()
    assert "Synthetic by difficulty" in tables and "Think rate by difficulty" in tables


def test_resume_skips_done_items_and_refuses_another_config(assets, tmp_path):
    out = tmp_path / "resume"
    evaluate(_config(assets, out))
    first = {r.item_id: r for r in _records(out)}
    # a kill mid-run: keep 5 records and half of the sixth line
    lines = (out / RECORDS_FILE).read_text().splitlines()
    (out / RECORDS_FILE).write_text("\n".join(lines[:5]) + "\n" + lines[5][: len(lines[5]) // 2])
    done, bad = read_records(out / RECORDS_FILE)
    assert len(done) == 5 and bad == 1
    again = evaluate(_config(assets, out))
    kept = sum(not r.missing for r in list(first.values())[:5])
    assert again.results["timing"]["resumed_items"] == kept
    answerable = sum(not r.missing for r in first.values())
    assert again.results["timing"]["items_generated"] == answerable - kept
    assert [r.item_id for r in again.records] == list(first)
    # the partial line was cut before appending: no record is glued onto it and lost
    done, bad = read_records(out / RECORDS_FILE)
    assert bad == 0 and set(done) == set(first)
    assert all(json.loads(line) for line in (out / RECORDS_FILE).read_text().splitlines())
    # nothing left to generate: the model is not even loaded
    third = evaluate(_config(assets, out))
    assert third.results["timing"]["items_generated"] == 0
    assert third.results["overall"]["n_items"] == 12
    with pytest.raises(ConfigError, match="prompt_mode"):
        evaluate(_config(assets, out, prompt_mode="think"))
    with pytest.raises(ConfigError, match="resume=false"):
        evaluate(_config(assets, out, resume=False))


def _mmau_file(assets, root: Path) -> Path:
    audio = root / "test-mini-audios"
    audio.mkdir(parents=True)
    rows = []
    tasks = ["sound", "music", "speech", "sound", "music", "speech"]
    difficulties = ["easy", "medium", "hard", "medium", "easy", "hard"]
    for i in range(6):
        shutil.copy(assets["wavs"][i if i not in (3, 5) else i + 1], audio / f"q{i}.wav")
        rows.append({
            "id": f"q{i}", "audio_id": f"./test-mini-audios/q{i}.wav", "question": "What is heard?",
            "choices": ["high", "low", "a beep", "silence"], "answer": "low", "dataset": "Synthetic",
            "task": tasks[i], "split": "test-mini", "category": "Reasoning", "sub-category": "Counting",
            "difficulty": difficulties[i],
        })
    rows[2]["audio_id"] = "./test-mini-audios/absent.wav"  # audio missing
    rows.append({**rows[0], "id": "bad", "answer": "not a choice"})  # excluded, reported
    meta = root / "mmau-test-mini.json"
    meta.write_text(json.dumps(rows))
    return meta


def test_mmau_file_with_bad_rows(assets, tmp_path):
    meta = _mmau_file(assets, tmp_path / "mmau")
    out = tmp_path / "mmau_run"
    outcome = evaluate(_config(assets, out, benchmark={"name": "mmau", "meta": str(meta), "version": "fixture"},
                               prompt_mode="direct"))
    records = _records(out)
    assert [r.item_id for r in records] == [f"q{i}" for i in range(6)]
    results = outcome.results
    assert results["load_report"]["counts"] == {"answer_not_in_choices": 1, "missing_audio": 1}
    assert results["load_report"]["n_excluded"] == 1
    assert {r.item_id for r in records if r.missing} == {"q2"}
    _check_consistent(out, results, records, "mmau")
    predictions = json.loads((out / "mmau_predictions.json").read_text())
    assert [p["id"] for p in predictions] == [f"q{i}" for i in range(6)]
    assert "model_output" not in predictions[2]  # missing: the official script skips it
    assert all("model_output" in p for i, p in enumerate(predictions) if i != 2)
    by_task = _table(results, "task")
    assert [row[0] for row in by_task["rows"]] == ["sound", "music", "speech", "Avg"]
    assert set(results["headline"]) >= {"sound", "music", "speech", "avg"}


def test_air_bench_predictions_are_letters(assets, tmp_path):
    root = tmp_path / "air"
    folder = root / "Sound_AQA_avqa"
    folder.mkdir(parents=True)
    rows = []
    for i in range(4):
        shutil.copy(assets["wavs"][i if i != 3 else 6], folder / f"{i}.wav")
        rows.append({"uniq_id": i, "path": f"{i}.wav", "question": "What is heard?", "choice_a": "high",
                     "choice_b": "low", "choice_c": "a beep", "choice_d": "silence", "answer_gt": "low",
                     "task_name": "Sound_AQA", "dataset_name": "avqa"})
    meta = root / "Foundation_meta.json"
    meta.write_text(json.dumps(rows))
    out = tmp_path / "air_run"
    outcome = evaluate(_config(assets, out, benchmark={"name": "air-bench", "meta": str(meta)}))
    records = _records(out)
    _check_consistent(out, outcome.results, records, "air-bench-foundation")
    lines = [json.loads(x) for x in (out / "Foundation_result_modelx.jsonl").read_text().splitlines()]
    assert len(lines) == 4 and {"uniq_id", "response", "answer_gt", "task_name"} <= set(lines[0])
    for record, line in zip(records, lines):
        assert line["response"] == record.prediction
        choice = {"high": "A", "low": "B", "a beep": "C", "silence": "D"}.get(record.extracted_answer or "")
        if choice:  # an answer naming a choice is written as its letter
            assert record.prediction == choice
    assert any(t["title"].startswith("AIR") for t in outcome.results["tables"])


def test_command_line(assets, tmp_path):
    out = tmp_path / "cli"
    command = [
        sys.executable, "-m", "audio_thinker.evaluate", f"model.path={assets['model']}",
        f"benchmark.meta={assets['data'] / 'val.parquet'}", "benchmark.limit=4", "generation.max_new_tokens=8",
        f"output_dir={out}", "progress=false", "toy.synthetic_data=null", "toy.tiny_model=null",
        "toy.warmstart_model=null", "model.label=tiny",
    ]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "## tiny: synthetic (adaptive prompt)" in result.stdout
    assert f"results: {out}" in result.stdout
    assert len(_records(out)) == 4
    compare = subprocess.run([sys.executable, "-m", "audio_thinker.evaluate.compare", str(out)], cwd=REPO,
                             capture_output=True, text=True, timeout=120, check=False)
    assert compare.returncode == 0, compare.stderr
    assert "| tiny |" in compare.stdout
    bad = subprocess.run([*command[:3], "prompt_mode=sometimes"], cwd=REPO, capture_output=True, text=True,
                         timeout=300, check=False)
    assert bad.returncode == 1 and "prompt_mode='sometimes' is not valid" in bad.stderr


def test_resume_refuses_weights_replaced_in_place(assets, tmp_path):
    """Same model path, new weights (retrained into the same directory): the old records are not reused."""
    import shutil

    from safetensors.torch import load_file, save_file

    model = tmp_path / "model"
    shutil.copytree(assets["model"], model)
    out = tmp_path / "run"
    small = {"model": {"path": str(model)}, "benchmark": {"limit": 2}, "generation": {"max_new_tokens": 2}}
    evaluate(_config(assets, out, **small))
    again = evaluate(_config(assets, out, **small))  # untouched files: resumes, generates nothing
    assert again.results["timing"]["items_generated"] == 0
    weights = model / "model.safetensors"
    tensors = load_file(weights)
    save_file({k: v + 0.01 if v.is_floating_point() else v for k, v in tensors.items()}, weights,
              metadata={"format": "pt"})
    with pytest.raises(ConfigError, match=r"model's files changed.*model\.safetensors.*new directory"):
        evaluate(_config(assets, out, **small))


def test_an_overlong_question_is_missing_with_its_reason_and_the_rest_is_evaluated(assets, tmp_path):
    """A 100k-character question (it once took an evaluation to 19 GB and an OOM kill) is never
    generated from: its record is missing with ``prompt_too_long`` and the figures; the others run."""
    import pandas as pd

    rows = pd.read_parquet(assets["data"] / "val.parquet")
    rows.at[1, "extra_info"] = {**rows.at[1, "extra_info"], "question": "Why? " * 20_000}
    meta = tmp_path / "overlong.parquet"
    rows.to_parquet(meta)
    out = tmp_path / "overlong"
    outcome = evaluate(_config(assets, out, benchmark={"meta": str(meta), "limit": 3}))
    by_id = {r.item_id: r for r in _records(out)}
    overlong = by_id["val-000001"]
    assert overlong.missing and overlong.response is None
    assert overlong.error.startswith("prompt_too_long: prompt of ") and "tokens > max_prompt_length=4096" in overlong.error
    assert int(overlong.error.split("prompt of ")[1].split(" tokens")[0]) > 20_000
    assert not by_id["val-000000"].missing and not by_id["val-000002"].missing
    assert outcome.results["errors"] == {"prompt_too_long": 1}
    assert outcome.results["load_report"]["counts"] == {"prompt_too_long": 1}  # the loader's character bound
    assert outcome.results["timing"]["items_generated"] == 2
    assert outcome.results["overall"]["n_missing"] == 1
    assert json.loads((out / "run.json").read_text())["run"]["max_prompt_length"] == 4096
