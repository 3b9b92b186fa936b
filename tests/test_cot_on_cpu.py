"""CoT rationale generation (paper A.2): the ``audio_thinker.data.cot`` package end to end on CPU.

Two halves: the real backends on the tiny random models (plumbing, files, resume, refusal), and
scripted fake generators that return chosen outputs per row (filtering, output rows, drop reasons,
audio errors, retries of failed generations).
"""

import ast
import doctest
import json
import re
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from audio_thinker.data.cot import CotConfig, CotConfigError, RunOptions, cli, generate_cot, pipeline
from audio_thinker.data.cot import filter as cot_filter
from audio_thinker.data.rows import AUDIO_PLACEHOLDER, validate_row
from audio_thinker.inference.outputs import Generated
from audio_thinker.inference.templates import render_text_prompt
from audio_thinker.prompts import CAPTION_TEMPLATE, INSTRUCTIONS, PromptMode

MAX_TOKENS = 8


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    from audio_thinker.data.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("synthetic")
    generate_dataset(root, n_train=6, n_val=2, seed=0, progress=False)
    return root / "train.parquet"


@pytest.fixture(scope="module")
def models(tiny_model_dir, tiny_judge_dir) -> dict[str, str]:
    return {"audio": str(tiny_model_dir("qwen2_audio")), "text": str(tiny_judge_dir)}


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _never():
    raise AssertionError("a model was loaded although every row was already done")


def _check_counts(summary: dict, n_rows: int) -> None:
    assert set(summary["dropped"]) == set(cot_filter.DROP_REASONS)
    assert summary["kept"] + sum(summary["dropped"].values()) + summary["pending"] == n_rows
    assert summary["rows"] == n_rows


# ------------------------------------------------------------------------------ real tiny models


def test_tiny_models_end_to_end_resume_and_refusal(tmp_path, synthetic, models, capsys, monkeypatch):
    out = tmp_path / "cot"
    config = CotConfig(rows=str(synthetic), caption_model=models["audio"], text_model=models["text"],
                       max_caption_tokens=MAX_TOKENS, max_rationale_tokens=MAX_TOKENS)
    run = RunOptions(backend="hf", batch_size=4, device="cpu")
    summary = generate_cot(config, out, run=run, progress=False)

    for name in ("config.json", "captions.jsonl", "rationales.jsonl", "cot.parquet", "summary.json"):
        assert (out / name).is_file(), name
    _check_counts(summary, 6)
    assert summary["pending"] == 0
    assert json.loads((out / "summary.json").read_text())["kept"] == summary["kept"]
    captions = _lines(out / "captions.jsonl")
    assert len(captions) == 6 and all(c["error"] is None for c in captions)
    n_rationales = 6 - summary["dropped"]["empty_caption"]
    assert len(_lines(out / "rationales.jsonl")) == n_rationales
    assert summary["this_run"] == {"captions_generated": 6, "captions_reused": 0,
                                   "rationales_generated": n_rationales, "rationales_reused": 0,
                                   "audio": {"ok": 6, "truncated": 0, "errors": {}}}
    assert summary["run"]["backend_used"] == "hf"
    assert len(pq.read_table(out / "cot.parquet")) == summary["kept"]
    assert "extra_info" in pq.read_schema(out / "cot.parquet").names

    # The tiny Qwen3 has no chat template: the raw A.2 prompt is what it was fed.
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(models["text"])
    assert render_text_prompt(tokenizer, "raw prompt") == "raw prompt"

    # Resume through the CLI: nothing is generated, no model is even loaded.
    before = {name: (out / name).read_bytes() for name in ("captions.jsonl", "rationales.jsonl")}
    capsys.readouterr()
    argv = ["--rows", str(synthetic), "--out", str(out), "--caption-model", models["audio"],
            "--text-model", models["text"], "--max-caption-tokens", str(MAX_TOKENS),
            "--max-rationale-tokens", str(MAX_TOKENS), "--backend", "hf", "--no-progress"]
    with monkeypatch.context() as patched:
        patched.setattr(pipeline, "default_captioner", lambda *a, **k: _never)
        patched.setattr(pipeline, "default_text_generator", lambda *a, **k: _never)
        assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"cot: kept {summary['kept']} of 6 rows")
    again = json.loads((out / "summary.json").read_text())
    assert again["this_run"] == {"captions_generated": 0, "captions_reused": 6,
                                 "rationales_generated": 0, "rationales_reused": n_rationales,
                                 "audio": {"ok": 0, "truncated": 0, "errors": {}}}
    assert again["run"]["backend_used"] is None
    assert {k: again[k] for k in ("kept", "dropped")} == {k: summary[k] for k in ("kept", "dropped")}
    assert {name: (out / name).read_bytes() for name in before} == before

    # Other settings in the same folder are refused, naming what differs.
    changed = CotConfig(rows=str(synthetic), caption_model=models["audio"], text_model=models["text"],
                        max_caption_tokens=MAX_TOKENS, max_rationale_tokens=MAX_TOKENS + 1)
    with pytest.raises(CotConfigError, match=r"max_rationale_tokens: 8 -> 9"):
        generate_cot(changed, out, run=run, progress=False, make_captioner=_never, make_text_generator=_never)
    assert cli.main([*argv[:-3], "--temperature", "0.7", "--no-progress"]) == 2
    assert "temperature: 0.0 -> 0.7" in capsys.readouterr().err


# ------------------------------------------------------------------------------ scripted fakes

_INDEX = re.compile(r"^[^:]*:[^:]*:(\d+):")
_CLIP = re.compile(r"clip (\d+) ")


class FakeCaptioner:
    """Caption ``clip N ...`` for row index N; chosen indices fail or come back empty."""

    def __init__(self, *, fail=(), empty=()):
        self.fail, self.empty = set(fail), set(empty)
        self.calls: list[list[int]] = []

    def generate(self, prompts):
        indices = [int(_INDEX.match(p.item_id).group(1)) for p in prompts]
        self.calls.append(indices)
        for p in prompts:
            assert p.messages[0]["content"][0]["type"] == "audio" and len(p.audios) == 1
            assert p.messages[0]["content"][1]["text"] == CAPTION_TEMPLATE
        out = []
        for i in indices:
            if i in self.fail:
                out.append(Generated(None, error="generation_error: RuntimeError: out of memory"))
            elif i in self.empty:
                out.append(Generated("  <|im_end|>", 1, "stop"))
            else:
                out.append(Generated(f"clip {i} has a steady tone.<|im_end|>", 9, "stop"))
        return out


class FakeTextLLM:
    """Rationale per row index (read from the caption in the prompt): ``good``, ``chatty`` (good
    with text around the tags), ``wrong`` (another choice), ``malformed`` or ``error``."""

    def __init__(self, script):
        self.script = script
        self.calls: list[list[int]] = []

    def generate(self, prompts):
        indices, out = [], []
        for prompt in prompts:
            index = int(_CLIP.search(prompt).group(1))
            indices.append(index)
            gold = re.search(r"^Correct answer: (.*)$", prompt, re.M).group(1)
            choices = ast.literal_eval(re.search(r"^Choices: (.*)$", prompt, re.M).group(1))
            kind = self.script.get(index, "good")
            think = f"Planning: row {index}. Caption: a tone. Reasoning: so. Summary: {gold}."
            if kind == "error":
                out.append(Generated(None, error="generation_error: boom"))
            elif kind == "malformed":
                out.append(Generated(f"<answer>{gold}</answer>", 5, "stop"))
            elif kind == "wrong":
                other = next(c for c in choices if c != gold)
                out.append(Generated(f"<think>{think}</think><answer>{other}</answer>", 20, "stop"))
            elif kind == "chatty":
                text = f"Sure!\n<think>{think}</think>\n<answer>{gold}</answer>\nDone."
                out.append(Generated(text, 25, "stop"))
            else:
                out.append(Generated(f"<think>{think}</think> <answer>{gold}</answer><|im_end|>", 20, "stop"))
        self.calls.append(indices)
        return out


@pytest.fixture
def scripted_rows(tmp_path, synthetic) -> Path:
    """The 6 synthetic rows plus copies of row 0 with a missing clip (100), a corrupt clip (101)
    and an intact clip (102)."""
    rows = pq.read_table(synthetic).to_pylist()
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF....this is not a wav file")
    for index, audio in ((100, tmp_path / "missing.wav"), (101, corrupt), (102, rows[0]["audios"][0])):
        row = json.loads(json.dumps(rows[0]))
        row["audios"] = [str(audio)]
        row["extra_info"] = {**row["extra_info"], "index": index, "audio_path": str(audio)}
        rows.append(row)
    path = tmp_path / "rows.parquet"
    pd.DataFrame(rows).to_parquet(path, index=False)
    return path


SCRIPT = {0: "good", 1: "chatty", 4: "wrong", 5: "malformed", 102: "error"}


def _config(rows: Path) -> CotConfig:
    return CotConfig(rows=str(rows), caption_model="fake/audio", text_model="fake/text-llm")


def test_filter_outputs_and_drop_reasons(tmp_path, scripted_rows):
    out = tmp_path / "cot"
    captioner, text = FakeCaptioner(fail={2}, empty={3}), FakeTextLLM(SCRIPT)
    summary = generate_cot(_config(scripted_rows), out, run=RunOptions(batch_size=3), progress=False,
                           make_captioner=lambda: captioner, make_text_generator=lambda: text)
    _check_counts(summary, 9)
    assert summary["kept"] == 2 and summary["trimmed"] == 1
    assert summary["dropped"] == {"audio_error": 2, "generation_error": 2, "empty_caption": 1,
                                  "malformed": 1, "answer_mismatch": 1}
    assert summary["this_run"]["audio"]["errors"] == {"corrupt": 1, "missing": 1}
    assert summary["run"]["backend_used"] == "custom"
    assert sorted(sum(captioner.calls, [])) == [0, 1, 2, 3, 4, 5, 102]  # the bad clips never reach it
    assert sorted(sum(text.calls, [])) == [0, 1, 4, 5, 102]  # only rows with a usable caption

    kept = pq.read_table(out / "cot.parquet").to_pylist()
    assert [r["extra_info"]["index"] for r in kept] == [0, 1]
    for row in kept:
        validate_row(row)
        info = row["extra_info"]
        index = info["index"]
        expected = f"Planning: row {index}. Caption: a tone. Reasoning: so. Summary: {info['answer']}."
        assert info["rationale"] == expected
        assert info["caption"] == f"clip {index} has a steady tone."
        assert info["cot_model"] == "fake/text-llm" and info["caption_model"] == "fake/audio"
        assert info["prompt_mode"] == "think"
        content = row["prompt"][0]["content"]
        assert content.startswith(AUDIO_PLACEHOLDER) and content.endswith(INSTRUCTIONS[PromptMode.THINK])
        assert row["reward_model"]["ground_truth"] == info["answer"]

    by_index = {int(_INDEX.match(r["key"]).group(1)): r for r in _lines(out / "captions.jsonl")}
    assert by_index[100]["error"] == "audio_error" and by_index[100]["detail"].startswith("missing: ")
    assert by_index[101]["detail"].startswith("corrupt: ")
    assert by_index[2]["error"] == "generation_error" and "out of memory" in by_index[2]["detail"]
    outcomes = {int(_INDEX.match(r["key"]).group(1)): r["outcome"] for r in _lines(out / "rationales.jsonl")}
    assert outcomes == {0: "kept", 1: "kept", 4: "answer_mismatch", 5: "malformed", 102: "generation_error"}


def test_resume_retries_only_failed_generations(tmp_path, scripted_rows):
    out = tmp_path / "cot"
    first = generate_cot(_config(scripted_rows), out, run=RunOptions(batch_size=4), progress=False,
                         make_captioner=lambda: FakeCaptioner(fail={2}, empty={3}),
                         make_text_generator=lambda: FakeTextLLM(SCRIPT))
    assert first["dropped"]["generation_error"] == 2
    # A crash in the middle of an append leaves a partial last line: it is cut off on resume.
    with (out / "captions.jsonl").open("a") as handle:
        handle.write('{"key": "synthetic_aqa:train:0:')

    captioner, text = FakeCaptioner(empty={3}), FakeTextLLM({**SCRIPT, 102: "good"})
    second = generate_cot(_config(scripted_rows), out, run=RunOptions(batch_size=4), progress=False,
                          make_captioner=lambda: captioner, make_text_generator=lambda: text)
    assert captioner.calls == [[2]]  # the failed caption; the audio errors fail again before it
    assert sorted(sum(text.calls, [])) == [2, 102]  # the new caption and the failed rationale
    assert {k: v for k, v in second["this_run"].items() if k != "audio"} == {
        "captions_generated": 1, "captions_reused": 6, "rationales_generated": 2, "rationales_reused": 4}
    assert second["kept"] == 4 and second["dropped"]["generation_error"] == 0
    _check_counts(second, 9)
    for name in ("captions.jsonl", "rationales.jsonl"):
        _lines(out / name)  # every line is whole JSON again
    assert len(pq.read_table(out / "cot.parquet")) == 4

    third = generate_cot(_config(scripted_rows), out, progress=False, make_captioner=_never,
                         make_text_generator=_never)
    assert third["kept"] == 4 and third["this_run"]["captions_generated"] == 0


def test_stage_captions_then_rationales(tmp_path, scripted_rows):
    out = tmp_path / "cot"
    summary = generate_cot(_config(scripted_rows), out, run=RunOptions(stage="captions"), progress=False,
                           make_captioner=lambda: FakeCaptioner(), make_text_generator=_never)
    assert not (out / "cot.parquet").exists() and not (out / "rationales.jsonl").exists()
    assert summary["pending"] == 7 and summary["dropped"]["audio_error"] == 2
    _check_counts(summary, 9)
    summary = generate_cot(_config(scripted_rows), out, progress=False, make_captioner=_never,
                           make_text_generator=lambda: FakeTextLLM({}))
    assert summary["pending"] == 0 and summary["kept"] == 7
    assert summary["this_run"]["captions_reused"] == 7


def test_limit_and_empty_output_keeps_the_schema(tmp_path, scripted_rows):
    out = tmp_path / "cot"
    summary = generate_cot(_config(scripted_rows), out, limit=2, progress=False,
                           make_captioner=lambda: FakeCaptioner(),
                           make_text_generator=lambda: FakeTextLLM({0: "malformed", 1: "wrong"}))
    assert summary["rows"] == 2 and summary["rows_in_file"] == 9 and summary["kept"] == 0
    table = pq.read_table(out / "cot.parquet")
    assert len(table) == 0
    info_type = table.schema.field("extra_info").type
    assert {"rationale", "caption", "cot_model", "question"} <= {f.name for f in info_type}


# ------------------------------------------------------------------------------ pure parts, CLI


@pytest.mark.parametrize("text, reason, think", [
    ("<think>Two beeps.</think><answer>two</answer>", None, "Two beeps."),
    ("<think>Two beeps.</think><answer>(B) Two.</answer>", None, "Two beeps."),
    ("<think>One beep.</think><answer>one</answer>", "answer_mismatch", "One beep."),
    ("<think>x</think><answer>one, two</answer>", "answer_mismatch", "x"),
    ("<answer>two</answer>", "malformed", None),
    ("<think> </think><answer>two</answer>", "malformed", None),
    ("<think>x</think>", "malformed", None),
    ("<think>a<think>b</think><answer>two</answer>", "malformed", None),
    ("", "malformed", None),
])
def test_judge_rationale(text, reason, think):
    got = cot_filter.judge_rationale(text, answer="two", choices=["one", "two"])
    assert got[:2] == (reason, think)


def test_cli_errors(tmp_path, synthetic, models, capsys):
    base = ["--out", str(tmp_path / "o"), "--no-progress"]
    assert cli.main(["--rows", str(tmp_path / "nope.parquet"), "--caption-model", models["audio"],
                     "--text-model", models["text"], *base]) == 2
    assert "rows file" in capsys.readouterr().err
    assert cli.main(["--rows", str(synthetic), "--caption-model", str(tmp_path / "none"),
                     "--text-model", models["text"], *base]) == 2
    assert "--caption-model" in capsys.readouterr().err
    assert cli.main(["--rows", str(synthetic), "--caption-model", models["audio"],
                     "--text-model", str(tmp_path), *base]) == 2
    assert "no config.json" in capsys.readouterr().err
    bad = tmp_path / "bad.parquet"
    pd.DataFrame([{"data_source": "x"}]).to_parquet(bad)
    assert cli.main(["--rows", str(bad), "--caption-model", models["audio"],
                     "--text-model", models["text"], *base]) == 2
    assert "not a training row" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["--rows", str(synthetic)])


def test_doctests():
    from audio_thinker.data.cot import settings, store

    modules = (cot_filter, settings, store)
    results = [doctest.testmod(module, optionflags=doctest.ELLIPSIS) for module in modules]
    assert sum(r.attempted for r in results) > 10 and sum(r.failed for r in results) == 0


def test_python_dash_m_runs_the_cli():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "audio_thinker.data.cot", "--help"], capture_output=True,
                         text=True, check=False, timeout=120, cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 0, out.stderr
    flags = ("--rows", "--out", "--caption-model", "--text-model", "--backend", "--stage", "--no-progress")
    for flag in flags:
        assert flag in out.stdout


def test_a_bad_input_row_is_skipped_and_counted_not_the_whole_file(tmp_path, scripted_rows, capsys):
    rows = pq.read_table(scripted_rows).to_pylist()
    no_question = json.loads(json.dumps(rows[0]))
    no_question["extra_info"].update(index=200, question=None)
    not_a_choice = json.loads(json.dumps(rows[0]))
    not_a_choice["extra_info"].update(index=201, answer="nothing like it")
    not_a_choice["reward_model"]["ground_truth"] = "nothing like it"
    path = tmp_path / "mixed.parquet"
    pd.DataFrame([no_question, *rows, not_a_choice]).to_parquet(path, index=False)
    out = tmp_path / "cot"
    captioner = FakeCaptioner()
    summary = generate_cot(_config(path), out, progress=False, make_captioner=lambda: captioner,
                           make_text_generator=lambda: FakeTextLLM({}))
    _check_counts(summary, 9)  # the valid rows, as without the bad ones
    assert summary["rows_in_file"] == 11 and summary["kept"] == 7
    assert summary["invalid_rows"] == {"answer_not_in_choices": 1, "missing_field": 1}
    assert "row 0:" in summary["invalid_examples"]["missing_field"]
    assert "row 10:" in summary["invalid_examples"]["answer_not_in_choices"]
    assert 200 not in sum(captioner.calls, []) and 201 not in sum(captioner.calls, [])
    assert len(pq.read_table(out / "cot.parquet")) == 7
    assert "skipped 2 invalid input rows" in cot_filter.format_summary_line(summary)


def test_an_overlong_question_is_skipped_and_counted_as_prompt_too_long(tmp_path, scripted_rows):
    """A 100k-character question never reaches the captioner or the rationale LLM: it is an invalid
    input row (``prompt_too_long``), counted with the others; ``max_question_chars`` sets the bound."""
    rows = pq.read_table(scripted_rows).to_pylist()
    long = json.loads(json.dumps(rows[0]))
    long["extra_info"].update(index=300, question="Why? " * 20_000)
    path = tmp_path / "long.parquet"
    pd.DataFrame([*rows, long]).to_parquet(path, index=False)
    captioner, llm = FakeCaptioner(), FakeTextLLM({})
    summary = generate_cot(_config(path), tmp_path / "cot", progress=False, make_captioner=lambda: captioner,
                           make_text_generator=lambda: llm)
    _check_counts(summary, 9)
    assert summary["invalid_rows"] == {"prompt_too_long": 1}
    assert "row 9: question and choices of 100" in summary["invalid_examples"]["prompt_too_long"]
    assert 300 not in sum(captioner.calls, []) and 300 not in sum(llm.calls, [])
    assert "skipped 1 invalid input rows (prompt_too_long 1)" in cot_filter.format_summary_line(summary)
    unbounded = generate_cot(_config(path), tmp_path / "cot2", progress=False, make_captioner=FakeCaptioner,
                             make_text_generator=lambda: FakeTextLLM({}), run=RunOptions(max_question_chars=None))
    assert "invalid_rows" not in unbounded or not unbounded["invalid_rows"]
