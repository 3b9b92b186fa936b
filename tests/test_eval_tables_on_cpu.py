"""Evaluation tables, the think-rate analysis and figure, results.json and the run comparison."""

import doctest
import importlib
import json
import math
import random

import pytest

from audio_thinker.data.benchmarks import BenchmarkItem
from audio_thinker.scoring.plot import plot_think_rate
from audio_thinker.scoring.records import make_record
from audio_thinker.scoring.results import build_results, results_markdown, write_results
from audio_thinker.scoring.tables import (
    AIR_DOMAINS,
    MMAR_CATEGORIES,
    MMAR_MODALITIES,
    Table,
    benchmark_tables,
    headline,
    overall,
)
from audio_thinker.scoring.thinking import MODES, think_markdown, think_metrics, think_report
from audio_thinker.evaluate import compare

CHOICES = ("Man", "Woman", "Child", "Robot")
# response kinds: (text, mode) -- the gold answer is always "Man"
RESPONSES = {
    "think_right": "<think>low pitch</think><answer>Man</answer>",
    "think_wrong": "<think>high pitch</think><answer>Woman</answer>",
    "plain_right": "<answer>Man</answer>",
    "plain_wrong": "<answer>Child</answer>",
    "malformed_right": "It is a man.",  # officially correct, malformed for training
    "malformed_wrong": "no idea",
    "unparsed": "<answer>a horse</answer>",  # AIR-Bench: names no choice -> no letter
    "missing": None,
}


def _records(benchmark, group_sets, n, seed, kinds=None):
    rng = random.Random(seed)
    kinds = kinds or [k for k in RESPONSES if k != "unparsed"]
    out = []
    for i in range(n):
        groups = {name: rng.choice(values) for name, values in group_sets.items()}
        groups = {k: v for k, v in groups.items() if v is not None}
        item = BenchmarkItem(benchmark, f"{benchmark}-{i}", f"/a/{i}.wav", "Who speaks?", CHOICES, "Man",
                             groups)
        out.append(make_record(item, RESPONSES[rng.choice(kinds)], prompt_mode="adaptive"))
    return out


def mmau_records(n=120, seed=0):
    return _records("mmau", {
        "task": ["sound", "music", "speech", "speech", None],
        "difficulty": ["easy", "medium", "hard", "extreme"],
        "category": ["Reasoning", "Information Extraction"],
        "sub-category": ["Acoustic Source Inference", "Genre", "Counting"],
        "dataset": ["AudioSet", "MusicCaps"],
    }, n, seed)


def mmar_records(n=150, seed=1):
    return _records("mmar", {"modality": list(MMAR_MODALITIES), "category": list(MMAR_CATEGORIES),
                             "sub-category": ["Counting", "Emotion"]}, n, seed)


def air_records(seed=2):
    """Every known task (uneven sizes, two datasets for some) plus one unknown task."""
    rng = random.Random(seed)
    kinds = [k for k in RESPONSES]
    out = []
    tasks = [t for tasks in AIR_DOMAINS.values() for t in tasks] + ["Brand_New_Task"]
    for t, task in enumerate(tasks):
        for i in range(3 + t % 4):
            dataset = f"ds{i % (1 + t % 2)}"
            item = BenchmarkItem("air-bench-foundation", f"{task}-{i}", "/a.wav", "Q?", CHOICES, "Man",
                                 {"task_name": task, "dataset_name": dataset})
            out.append(make_record(item, RESPONSES[rng.choice(kinds)], prompt_mode="direct"))
    return out


def synthetic_records(n=40, seed=3):
    groups = {"task": ["pitch", "loudness", "count"], "difficulty": ["easy", "hard", None]}
    return _records("synthetic", groups, n, seed)


def _direct(records):
    """(n, correct, official, ours) computed straight from the records."""
    n = len(records)
    correct = sum(r.correct for r in records)
    counted = sum(not r.missing and not r.unparsed for r in records)
    return n, correct, (correct / counted if counted else None), (correct / n if n else None)


def _check_breakdown(table, records, field):
    """Rows (not Avg) match the records directly; their n sums to the items having the field."""
    having = [r for r in records if r.groups.get(field)]
    total = 0
    for row in table.rows:
        cells = dict(zip(table.columns, row))
        if cells[field] == "Avg":
            assert _direct(records) == (cells["n"], cells["correct"], cells["official %"], cells["ours %"])
            continue
        group = [r for r in having if r.groups[field] == cells[field]]
        assert group, f"empty row {cells[field]!r} in {table.title}"
        assert _direct(group) == (cells["n"], cells["correct"], cells["official %"], cells["ours %"])
        assert cells["missing"] == sum(r.missing for r in group)
        assert cells["unparsed"] == sum(r.unparsed for r in group)
        total += cells["n"]
    assert total == len(having)


def _labels(table):
    return [row[0] for row in table.rows]


def test_mmau_tables_breakdowns_orders_and_avg():
    records = mmau_records()
    tables = benchmark_tables(records)
    assert [t.title for t in tables] == [f"MMAU by {f}" for f in
                                         ("task", "difficulty", "category", "sub-category", "dataset")]
    for table, field in zip(tables, ("task", "difficulty", "category", "sub-category", "dataset")):
        _check_breakdown(table, records, field)
    by_task, by_difficulty = tables[0], tables[1]
    assert _labels(by_task) == ["sound", "music", "speech", "Avg"]
    lacking = sum("task" not in r.groups for r in records)
    assert lacking and any(f"{lacking} item(s) without `task`" in note for note in by_task.notes)
    assert by_task.row("Avg")["n"] == len(records)  # Avg counts the items without a task too
    assert _labels(by_difficulty) == ["easy", "medium", "hard", "extreme"]  # unknown value kept, last
    assert any("extreme" in note for note in by_difficulty.notes)
    assert _labels(tables[2]) == ["Reasoning", "Information Extraction"]
    head = headline(records)
    assert list(head) == ["sound", "music", "speech", "avg"]
    for task in ("sound", "music", "speech"):
        assert head[task]["official"] == by_task.row(task)["official %"]
        assert head[task]["ours"] == by_task.row(task)["ours %"]
    _, _, official, ours = _direct(records)
    assert head["avg"] == {"official": official, "ours": ours, "n_items": len(records)}


def test_values_that_do_not_occur_are_omitted():
    records = [r for r in mmau_records() if r.groups.get("task") == "music"]
    by_task = benchmark_tables(records)[0]
    assert _labels(by_task) == ["music", "Avg"]
    assert headline(records)["sound"] == {"official": None, "ours": None, "n_items": 0}


def test_mmar_tables():
    records = mmar_records()
    by_modality, by_category, by_sub = benchmark_tables(records)
    _check_breakdown(by_modality, records, "modality")
    _check_breakdown(by_category, records, "category")
    _check_breakdown(by_sub, records, "sub-category")
    assert _labels(by_modality) == [*MMAR_MODALITIES, "Avg"]
    assert _labels(by_category) == [*MMAR_CATEGORIES, "Avg"]
    head = headline(records)
    assert list(head) == [*MMAR_MODALITIES, "avg"]
    assert head["mix-sound-speech"]["ours"] == by_modality.row("mix-sound-speech")["ours %"]
    assert head["avg"]["official"] == by_modality.row("Avg")["official %"] == overall(records).official


def test_air_bench_tables_and_table3_macro_average():
    records = air_records()
    assert any(r.unparsed for r in records) and any(r.missing for r in records)
    by_pair, by_task, table3 = benchmark_tables(records)
    assert sum(by_pair.column("n")) == sum(by_task.column("n")) == len(records)
    for row in by_pair.rows:
        cells = dict(zip(by_pair.columns, row))
        group = [r for r in records if (r.groups["task_name"], r.groups["dataset_name"])
                 == (cells["task_name"], cells["dataset_name"])]
        assert _direct(group) == (cells["n"], cells["correct"], cells["official %"], cells["ours %"])
    _check_breakdown(Table("t", by_task.columns[1:], [r[1:] for r in by_task.rows]), records, "task_name")
    assert by_task.row("other", "Brand_New_Task")["n"] > 0  # never dropped
    # Table 3 by hand: domain = mean over its tasks (datasets pooled), Avg = mean of the 3 domains
    expected = {}
    for figure, index in (("official", 2), ("ours", 3)):
        domains = {}
        for domain, tasks in AIR_DOMAINS.items():
            values = [_direct([r for r in records if r.groups["task_name"] == t])[index] for t in tasks]
            values = [v for v in values if v is not None]
            domains[domain] = sum(values) / len(values)
        expected[figure] = (domains["speech"], domains["sound"], domains["music"],
                            (domains["speech"] + domains["sound"] + domains["music"]) / 3,
                            _direct([r for r in records if r.groups["task_name"] == "Brand_New_Task"])[index])
    assert table3.columns == ("figure", "Speech", "Sound", "Music", "Avg", "Other")
    for figure in ("official", "ours"):
        got = table3.row(figure)
        values = (got["Speech"], got["Sound"], got["Music"], got["Avg"], got["Other"])
        assert values == pytest.approx(expected[figure], abs=1e-12)
    assert any("Brand_New_Task" in note and "not in Avg" in note for note in table3.notes)
    assert any("mean of its tasks" in note for note in table3.notes)
    head = headline(records)
    assert list(head) == ["speech", "sound", "music", "avg", "other"]
    assert head["avg"]["official"] == pytest.approx(expected["official"][3])
    assert head["sound"]["ours"] == pytest.approx(expected["ours"][1])


def test_synthetic_tables():
    records = synthetic_records()
    by_task, by_difficulty = benchmark_tables(records)
    _check_breakdown(by_task, records, "task")
    _check_breakdown(by_difficulty, records, "difficulty")
    assert _labels(by_difficulty) == ["easy", "hard", "Avg"]
    assert sorted(_labels(by_task)[:-1]) == ["count", "loudness", "pitch"]
    assert headline(records) == {"avg": {"official": _direct(records)[2], "ours": _direct(records)[3],
                                         "n_items": len(records)}}


def test_mixed_or_empty_records_are_rejected_clearly():
    with pytest.raises(ValueError, match="mix benchmarks"):
        benchmark_tables(mmau_records(10) + mmar_records(10))
    with pytest.raises(ValueError, match="benchmark="):
        headline([])
    assert headline([], benchmark="mmau")["avg"] == {"official": None, "ours": None, "n_items": 0}


def test_markdown_and_dict_forms():
    table = benchmark_tables(mmau_records())[1]
    lines = table.to_markdown().splitlines()
    assert lines[0] == "### MMAU by difficulty"
    assert lines[2] == "| difficulty | n | correct | official % | ours % | missing | unparsed |"
    assert lines[3] == "|:--|--:|--:|--:|--:|--:|--:|"
    body = [line for line in lines[4:] if line.startswith("| ")]
    assert len(body) == len(table.rows)
    easy = table.row("easy")
    assert body[0] == (f"| easy | {easy['n']} | {easy['correct']} | {100 * easy['official %']:.2f} | "
                       f"{100 * easy['ours %']:.2f} | {easy['missing']} | {easy['unparsed']} |")
    assert Table.from_dict(json.loads(json.dumps(table.to_dict()))) == table
    empty = Table("Empty", ("a", "b"), [("x", None)])
    assert "| x | – |" in empty.to_markdown()
    with pytest.raises(ValueError, match="cells"):
        Table("bad", ("a", "b"), [("x",)])


def _think_inputs(records):
    kept = [r for r in records if not r.missing]
    modes = [r.response_mode for r in kept]
    return modes, [r.correct for r in kept], [r.groups.get("difficulty") for r in kept]


def test_think_report_agrees_with_think_metrics():
    records = mmau_records(200, seed=5)
    report = think_report(records)
    metrics = think_metrics(*_think_inputs(records), prefix="val/")
    assert list(report["groups"]) == ["easy", "medium", "hard", "extreme"]
    total = report["overall"]
    assert metrics["val/responses"] == total["n"]
    for mode in MODES:
        assert metrics[f"val/{mode}_rate"] == total[f"{mode}_rate"]
        assert metrics[f"val/accuracy/{mode}"] == total["accuracy_by_mode"][mode]
    assert metrics["val/accuracy"] == total["accuracy"]
    for label, entry in report["groups"].items():
        assert metrics[f"val/responses/difficulty/{label}"] == entry["n"]
        assert metrics[f"val/accuracy/difficulty/{label}"] == entry["accuracy"]
        for mode in MODES:
            assert metrics[f"val/{mode}_rate/difficulty/{label}"] == entry[f"{mode}_rate"]
            if entry["accuracy_by_mode"][mode] is not None:
                assert metrics[f"val/accuracy/{mode}/difficulty/{label}"] == entry["accuracy_by_mode"][mode]
    assert all(isinstance(v, float) and not math.isnan(v) for v in metrics.values())


def test_think_rates_sum_to_one_and_missing_is_excluded():
    records = mmau_records(200, seed=6)
    report = think_report(records)
    n_missing = sum(r.missing for r in records)
    assert n_missing and report["n_missing"] == n_missing
    assert report["n_responses"] == len(records) - n_missing == report["overall"]["n"]
    for label, entry in [*report["groups"].items(), ("overall", report["overall"])]:
        assert sum(entry[f"{m}_rate"] for m in MODES) == pytest.approx(1.0)
        group = [r for r in records if label == "overall" or r.groups["difficulty"] == label]
        responded = [r for r in group if not r.missing]
        assert entry["n"] == len(responded) and entry["n_missing"] == len(group) - len(responded)
        for mode in MODES:
            of_mode = [r for r in responded if r.response_mode == mode]
            assert entry[f"{mode}_rate"] == len(of_mode) / len(responded)
            expected = sum(r.correct for r in of_mode) / len(of_mode) if of_mode else None
            assert entry["accuracy_by_mode"][mode] == expected
    # an item that is only missing: its group exists with no rates, and no NaN anywhere
    item = BenchmarkItem("mmau", "m", "/a.wav", "Q?", CHOICES, "Man", {})
    lone = think_report([make_record(item, None, prompt_mode="adaptive")])
    assert lone["groups"]["unknown"]["think_rate"] is None and lone["groups"]["unknown"]["n_missing"] == 1
    json.dumps(lone, allow_nan=False)
    assert think_metrics([], [], []) == {"responses": 0.0}


def test_think_metrics_validates_its_inputs():
    with pytest.raises(ValueError, match="lengths"):
        think_metrics(["think"], [1, 0], ["easy"])
    with pytest.raises(ValueError, match="mode"):
        think_metrics(["pondering"], [1], ["easy"])
    with pytest.raises(ValueError, match="0/1"):
        think_metrics(["think"], [0.5], ["easy"])
    with pytest.raises(ValueError, match="responses only"):
        think_metrics([None], [0], ["easy"])
    metrics = think_metrics(["think", "no_think"], [1.0, False], ["", None])
    assert metrics["responses/difficulty/unknown"] == 2.0 and "accuracy/malformed" not in metrics


def test_think_markdown_rows():
    records = mmau_records(60, seed=7)
    lines = think_markdown(think_report(records)).splitlines()
    assert lines[2].startswith("| difficulty | n | think % | no-think % | malformed % |")
    rows = [line.split(" | ")[0].lstrip("| ") for line in lines[4:] if line.startswith("| ")]
    assert rows == [*think_report(records)["groups"], "overall"]


@pytest.mark.parametrize("case", ["full", "one_difficulty", "empty_group", "no_records"])
def test_plot_think_rate_writes_a_png(tmp_path, case):
    records = mmau_records(80, seed=8)
    if case == "one_difficulty":
        records = [r for r in records if r.groups["difficulty"] == "easy" and r.response_mode != "malformed"]
    elif case == "empty_group":
        item = BenchmarkItem("mmau", "x", "/a.wav", "Q?", CHOICES, "Man", {"difficulty": "hard"})
        records = records[:10] + [make_record(item, None, prompt_mode="adaptive")]
    elif case == "no_records":
        records = []
    path = plot_think_rate(think_report(records), tmp_path / "fig" / "think.png", title=case)
    data = path.read_bytes()
    assert len(data) > 1000 and data[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image

    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100


def test_build_results_is_strict_json_and_renders(tmp_path):
    records = mmau_records()
    run = {"label": "Qwen2.5-Omni", "benchmark": "mmau", "prompt_mode": "adaptive", "model": "ckpt"}
    results = build_results(run, records, {"n_items": len(records)})
    assert results["run"]["benchmark_version"] is None
    assert results["overall"]["n_items"] == len(records)
    assert results["training_rule"]["n_correct"] == sum(r.reward_correct for r in records)
    assert set(results["think_by"]) == {"task"}
    path = write_results(tmp_path / "run", results)
    assert json.loads(path.read_text()) == json.loads(json.dumps(results))
    markdown = results_markdown(results)
    assert markdown.startswith("## Qwen2.5-Omni: mmau (adaptive prompt)")
    assert "### MMAU by task" in markdown and "### Think rate by difficulty" in markdown
    with pytest.raises(ValueError, match="label"):
        build_results({"benchmark": "mmau", "prompt_mode": "adaptive"}, records, None)
    with pytest.raises(ValueError, match="not 'mmar'"):
        build_results({**run, "benchmark": "mmar"}, records, None)


def _run_dir(root, name, label, benchmark, mode, records, version=None):
    run = {"label": label, "benchmark": benchmark, "prompt_mode": mode, "benchmark_version": version}
    results = build_results(run, records, None)
    write_results(root / name, results)
    return str(root / name), results


def _parse_markdown_table(text):
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines[1:]]
    return header, {row[0]: dict(zip(header, row)) for row in rows}


def test_compare_cli_table(tmp_path, capsys):
    mmau, mmar, air = mmau_records(), mmar_records(), air_records()
    d1, r1 = _run_dir(tmp_path, "a-mmau", "Audio-Thinker", "mmau", "adaptive", mmau, "v05.15.25")
    d2, r2 = _run_dir(tmp_path, "a-mmar", "Audio-Thinker", "mmar", "adaptive", mmar)
    d3, r3 = _run_dir(tmp_path, "b-air", "Base", "air-bench-foundation", "direct", air)
    d4, r4 = _run_dir(tmp_path, "b-mmau-think", "Base", "mmau", "think", mmau[:50])
    out = tmp_path / "cmp" / "table.md"
    assert compare.main([d1, d2, d3, d4, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert out.read_text() == printed
    header, rows = _parse_markdown_table(printed)
    assert header[0] == "Model" and header[1:5] == ["MMAU Sound", "MMAU Music", "MMAU Speech", "MMAU Avg"]
    assert header[5:13][3] == "MMAR Sound-Music" and header[-1] == "AIR-Bench Avg"
    assert list(rows) == ["Audio-Thinker", "Base (direct)", "Base (think)"]

    def pct(value):
        return f"{100 * value:.2f}"

    at = rows["Audio-Thinker"]
    assert at["MMAU Sound"] == pct(r1["headline"]["sound"]["official"])
    assert at["MMAU Avg"] == pct(r1["overall"]["official"])
    assert at["MMAR Music-Speech"] == pct(r2["headline"]["mix-music-speech"]["official"])
    assert at["MMAR Avg"] == pct(r2["overall"]["official"])
    assert at["AIR-Bench Avg"] == "–"
    base_direct = rows["Base (direct)"]
    assert base_direct["AIR-Bench Avg"] == pct(r3["headline"]["avg"]["official"])
    assert all(base_direct[h] == "–" for h in header[1:13])
    assert rows["Base (think)"]["MMAU Speech"] == pct(r4["headline"]["speech"]["official"])
    assert "v05.15.25" in printed and d3 in printed

    assert compare.main([d1, d3, "--figure", "ours"]) == 0
    _, rows = _parse_markdown_table(capsys.readouterr().out)
    assert list(rows) == ["Audio-Thinker", "Base"]  # one mode per label: no mode in the row label
    assert rows["Audio-Thinker"]["MMAU Avg"] == pct(r1["overall"]["ours"])
    assert rows["Base"]["AIR-Bench Avg"] == pct(r3["headline"]["avg"]["ours"])


def test_compare_errors(tmp_path, capsys):
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    with pytest.raises(FileNotFoundError, match="unfinished has no results.json.*may not have finished"):
        compare.load_results(unfinished)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        compare.load_results(tmp_path / "nowhere")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "results.json").write_text("{\"run\": ")
    with pytest.raises(ValueError, match="not valid JSON"):
        compare.load_results(tmp_path / "broken")
    d1, _ = _run_dir(tmp_path, "x1", "M", "mmau", "adaptive", mmau_records(20))
    assert compare.main([d1, str(unfinished)]) == 2
    assert "unfinished has no results.json" in capsys.readouterr().err
    d2, _ = _run_dir(tmp_path, "x2", "M", "mmau", "adaptive", mmau_records(20, seed=9))
    assert compare.main([d1, d2]) == 2
    assert "two mmau runs for 'M'" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["audio_thinker.scoring.tables", "audio_thinker.scoring.thinking"])
def test_doctests(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
