"""AVQA -> audio QA conversion: end to end on tiny generated videos, resumability, word rules."""

from __future__ import annotations

import doctest
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf

import audio_thinker.data.avqa as avqa_mod
from audio_thinker.data.avqa import (
    AVQAConfig,
    audio_question,
    convert_avqa,
    drop_conflicting_ids,
    find_media,
    format_summary,
    index_media,
    main,
    parse_annotation,
)
from audio_thinker.data.rows import validate_row

FFMPEG = shutil.which("ffmpeg")
needs_ffmpeg = pytest.mark.skipif(
    FFMPEG is None,
    reason="ffmpeg is not installed (apt-get install -y ffmpeg); AVQA video extraction untested",
)
CHOICES = ["dog", "cat", "car", "rain"]


def _video(path: Path, audio_filter: str) -> None:
    """A tiny video (32x32, 5 fps) whose audio track is the lavfi source ``audio_filter``."""
    cmd = [
        str(FFMPEG), "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
        "-f", "lavfi", "-i", audio_filter, "-f", "lavfi", "-i", "color=c=green:s=32x32:r=5",
        "-shortest", str(path),
    ]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    """good1.mp4, good2.mkv (tones, 2 s), noisy.mp4 (white noise), short.mp4 (1 s),
    corrupt.mp4 (random bytes), -dash_000010.mp4, abc_30.wav (R1-AQA name of abc_000030)."""
    folder = tmp_path_factory.mktemp("avqa_media")
    _video(folder / "good1.mp4", "sine=frequency=440:duration=2:sample_rate=44100")
    _video(folder / "good2.mkv", "sine=frequency=880:duration=2:sample_rate=48000")
    _video(folder / "noisy.mp4", "anoisesrc=duration=2:color=white:amplitude=0.5:sample_rate=44100")
    _video(folder / "short.mp4", "sine=frequency=440:duration=1:sample_rate=44100")
    _video(folder / "-dash_000010.mp4", "sine=frequency=660:duration=2:sample_rate=44100")
    (folder / "corrupt.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 3000, np.uint8).tobytes())
    t = np.arange(2 * 22050) / 22050
    stereo = np.stack([0.4 * np.sin(2 * np.pi * 550 * t)] * 2, axis=1)
    sf.write(folder / "abc_30.wav", stereo, 22050)
    return folder


def _ann(i: int, video: str, question: str = "What is in the video?", **over) -> dict:
    row = {
        "id": i, "video_name": video, "video_id": 1000 + i, "question_text": question,
        "multi_choice": list(CHOICES), "answer": i % 4, "question_relation": "Both", "question_type": "Which",
    }  # fmt: skip
    row.update(over)
    for key, value in over.items():
        if value is None:
            del row[key]
    return row


def _annotations() -> list:
    rows = [
        _ann(7, "good1", "What makes the sound in the video?"),
        _ann(3, "good1", "How many videos show a dog?", question_relation="Audio", question_type="Count"),
        _ann(5, "good2", "Where is the videotape?"),
        _ann(1, "noisy"),
        _ann(2, "short"),
        _ann(4, "corrupt"),
        _ann(6, "not_there"),
        _ann(8, "-dash_000010", "A video of what?"),
        _ann(9, "abc_000030", "What is heard?"),
        _ann(10, "good2", "Is the VIDEO loud?"),
        # malformed rows: each is counted under one reason and skipped
        _ann(11, "good1", question_text=None),
        _ann(12, "good1", answer=4),
        _ann(13, "good1", answer="two"),
        _ann(14, "good1", multi_choice=["a", "b", "c"]),
        _ann(15, "good1", multi_choice=["a", "a", "b", "c"]),
        _ann(16, "../escape"),
        _ann(17, "good1", question_text="   "),
        "not an object",
        _ann(18, "good1", video_name=None),
    ]
    return rows


EXPECTED_DROPPED = {
    "annotation:answer_out_of_range": 2,
    "annotation:bad_video_name": 1,
    "annotation:duplicate_choices": 1,
    "annotation:empty_question": 1,
    "annotation:missing_field": 2,
    "annotation:not_an_object": 1,
    "annotation:wrong_choice_count": 1,
    "audio:corrupt": 1,
    "audio:missing": 1,
    "filter:low_snr": 1,
    "filter:too_short": 1,
}


@pytest.fixture(scope="module")
def annotations(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("avqa_ann") / "train_qa.json"
    path.write_text(json.dumps(_annotations()), encoding="utf-8")
    return path


def test_doctests_of_avqa_module():
    result = doctest.testmod(avqa_mod)
    assert result.attempted > 0 and result.failed == 0


@needs_ffmpeg
def test_end_to_end_and_resume(media, annotations, tmp_path):
    out = tmp_path / "out"
    summary = convert_avqa(annotations=annotations, media_dir=media, out_dir=out, workers=2, progress=False)
    assert summary["annotations"] == 19
    assert summary["dropped"] == EXPECTED_DROPPED
    assert summary["kept"] == 6 and summary["dropped_total"] == 13
    assert summary["questions_rewritten"] == 4
    assert summary["kept_videos"] == 4
    assert summary["kept_by_question_relation"] == {"Audio": 1, "Both": 5}
    clips = summary["clips"]
    assert clips["referenced"] == 8 and clips["usable"] == 6
    assert clips["errors"] == {"corrupt": 1, "missing": 1}
    assert clips["this_run"] == {"extracted": 6, "reused": 0, "truncated": 0}
    assert json.loads((out / "summary.json").read_text()) == summary

    wavs = sorted(p.name for p in (out / "audio").iterdir())
    assert wavs == ["-dash_000010.wav", "abc_000030.wav", "good1.wav", "good2.wav", "noisy.wav", "short.wav"]
    for name in wavs:
        info = sf.info(out / "audio" / name)
        assert info.samplerate == 16000 and info.channels == 1 and info.subtype == "PCM_16"

    table = pq.read_table(out / "train.parquet").to_pylist()
    assert [r["extra_info"]["avqa_id"] for r in table] == [3, 5, 7, 8, 9, 10]
    for i, row in enumerate(table):
        validate_row(row)
        info = row["extra_info"]
        assert row["data_source"] == "avqa" and info["index"] == i and info["split"] == "train"
        assert info["prompt_mode"] == "adaptive" and Path(row["audios"][0]).is_file()
        assert info["snr_db"] > 10 and info["duration_s"] >= 1.5
        assert info["answer"] == CHOICES[info["avqa_id"] % 4] == row["reward_model"]["ground_truth"]
    questions = {r["extra_info"]["avqa_id"]: r["extra_info"]["question"] for r in table}
    assert questions == {
        3: "How many audio clips show a dog?",
        5: "Where is the videotape?",
        7: "What makes the sound in the audio?",
        8: "An audio of what?",
        9: "What is heard?",
        10: "Is the AUDIO loud?",
    }
    assert table[0]["extra_info"]["original_question"] == "How many videos show a dog?"
    assert table[0]["extra_info"]["question_type"] == "Count" and table[0]["extra_info"]["task"] == "Count"
    assert "<audio>How many audio clips show a dog?" in table[0]["prompt"][0]["content"]

    # --- resume: nothing re-extracted, byte-identical parquet, untouched wavs
    parquet_bytes = (out / "train.parquet").read_bytes()
    mtimes = {p.name: p.stat().st_mtime_ns for p in (out / "audio").iterdir()}
    (out / "audio" / ".good1.wav.abc.tmp").write_bytes(b"half-written")  # an interrupted write
    again = convert_avqa(annotations=annotations, media_dir=media, out_dir=out, workers=1, progress=False)
    assert again["clips"]["this_run"] == {"extracted": 0, "reused": 6, "truncated": 0}
    assert {k: v for k, v in again.items() if k != "clips"} == {
        k: v for k, v in summary.items() if k != "clips"
    }
    assert (out / "train.parquet").read_bytes() == parquet_bytes
    assert {p.name: p.stat().st_mtime_ns for p in (out / "audio").iterdir()} == mtimes

    # --- a damaged wav is not trusted: it is extracted again, to the same bytes
    (out / "audio" / "good2.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    third = convert_avqa(annotations=annotations, media_dir=media, out_dir=out, workers=2, progress=False)
    assert third["clips"]["this_run"]["extracted"] == 1
    assert (out / "train.parquet").read_bytes() == parquet_bytes


@needs_ffmpeg
def test_cli_flags_and_summary_table(media, annotations, tmp_path, capsys):
    out = tmp_path / "cli"
    argv = ["--annotations", str(annotations), "--media", str(media), "--out", str(out), "--no-progress"]
    code = main([*argv, "--workers", "2", "--min-snr-db", "-1000", "--min-duration", "0.5",
                 "--prompt-mode", "direct", "--max-seconds", "1.5"])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "dropped audio:corrupt" in printed and "wrote 8 rows" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["kept"] == 8 and "filter:low_snr" not in summary["dropped"]
    assert summary["clips"]["this_run"]["truncated"] == 5  # the 2 s clips, cut at 1.5 s
    rows = pq.read_table(out / "train.parquet").to_pylist()
    assert {r["extra_info"]["prompt_mode"] for r in rows} == {"direct"}
    assert max(r["extra_info"]["duration_s"] for r in rows) == pytest.approx(1.5)
    assert format_summary(summary).splitlines()[2].split() == ["kept", "8"]


def test_cli_errors_are_reported_not_raised(tmp_path, capsys):
    ann = tmp_path / "a.json"
    ann.write_text("[]")
    assert (
        main(["--annotations", str(ann), "--media", str(tmp_path / "none"), "--out", str(tmp_path / "o")])
        == 2
    )
    assert "--media" in capsys.readouterr().err
    ann.write_text("{not json")
    assert main(["--annotations", str(ann), "--media", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "JSON" in capsys.readouterr().err


def test_audio_only_media_without_ffmpeg(tmp_path, monkeypatch):
    """Already-extracted audio needs no ffmpeg; an empty annotation list writes an empty parquet."""
    monkeypatch.setattr("audio_thinker.data.audio.shutil.which", lambda name: None)
    media_dir = tmp_path / "media" / "nested"
    media_dir.mkdir(parents=True)
    t = np.arange(32000) / 16000
    sf.write(media_dir / "clip_000005.flac", 0.3 * np.sin(2 * np.pi * 300 * t), 16000)
    ann = tmp_path / "ann.jsonl"
    ann.write_text(json.dumps(_ann(1, "clip_000005")) + "\n" + json.dumps(_ann(2, "clip_000005")) + "\n")
    summary = convert_avqa(
        annotations=ann, media_dir=tmp_path / "media", out_dir=tmp_path / "o", progress=False
    )
    assert summary["kept"] == 2 and summary["clips"]["usable"] == 1
    ann.write_text("[]")
    empty = convert_avqa(
        annotations=ann, media_dir=tmp_path / "media", out_dir=tmp_path / "e", progress=False
    )
    assert empty["kept"] == 0 and pq.read_table(tmp_path / "e" / "train.parquet").num_rows == 0


# ----------------------------------------------------------------------------- pure parts


@pytest.mark.parametrize(
    ("text", "expected", "count"),
    [
        ("What is in the video?", "What is in the audio?", 1),
        ("Video shows what?", "Audio shows what?", 1),
        ("VIDEO", "AUDIO", 1),
        ("Which videos are loud?", "Which audio clips are loud?", 1),
        ("Videos of cats", "Audio clips of cats", 1),
        ("Is there a video of a dog?", "Is there an audio of a dog?", 1),
        ("A video.", "An audio.", 1),
        ("the video's sound", "the audio's sound", 1),
        ("an old videotape and videography", "an old videotape and videography", 0),
        ("a music-video clip, video-game", "a music-audio clip, audio-game", 2),
        ("no media word here", "no media word here", 0),
        ("video video", "audio audio", 2),
    ],
)
def test_audio_question(text, expected, count):
    assert audio_question(text) == (expected, count)


def test_parse_annotation_reasons():
    assert parse_annotation(_ann(1, "v"), position=0).choices == tuple(CHOICES)
    assert parse_annotation(_ann(1, "v", id=None), position=3).avqa_id is None
    assert parse_annotation(_ann(1, "v", id="12"), position=3).avqa_id == 12
    assert parse_annotation(_ann(1, "v", answer="2"), position=0).answer_index == 2
    assert parse_annotation(_ann(1, "v", multi_choice=[1, 2, 3, 4]), position=0).choices == (
        "1",
        "2",
        "3",
        "4",
    )
    assert parse_annotation(_ann(1, "v", question_type=None), position=0).question_type == ""
    bad = {
        "not_an_object": [1, 2],
        "missing_field": _ann(1, "v", multi_choice=None),
        "bad_id": _ann(1, "v", id=[3]),
        "bad_video_name": _ann(1, ".hidden"),
        "empty_question": _ann(1, "v", question_text=""),
        "wrong_choice_count": _ann(1, "v", multi_choice="dog,cat,car,rain"),
        "bad_choice": _ann(1, "v", multi_choice=["a", None, "c", "d"]),
        "duplicate_choices": _ann(1, "v", multi_choice=["a", "b ", "b", "c"]),
        "response_tag": _ann(1, "v", multi_choice=["<answer>dog</answer>", "cat", "car", "rain"]),
        "answer_out_of_range": _ann(1, "v", answer=-1),
    }
    for reason, raw in bad.items():
        assert parse_annotation(raw, position=0) == reason
    assert parse_annotation(_ann(1, "v", answer=True), position=0) == "answer_out_of_range"
    # choices the reward cannot tell apart, and grammar tags anywhere in the text
    for choices in (["Dog", "dog", "cat", "car"], ["dog.", "dog", "cat", "car"], ["(dog)", "Dog!", "cat", "x"]):
        assert parse_annotation(_ann(1, "v", multi_choice=choices), position=0) == "duplicate_choices"
    assert parse_annotation(_ann(1, "v", question_text="What <think> is it?"), position=0) == "response_tag"
    assert parse_annotation(_ann(1, "v", multi_choice=["a", "</ANSWER>", "c", "d"]), position=0) == "response_tag"


def test_duplicate_ids_identical_kept_once_conflicting_dropped():
    rows = [_ann(0, "v", id=1), _ann(0, "v", id=1), _ann(0, "w", id=2), _ann(1, "w", id=2),
            _ann(2, "x", id=None), _ann(2, "x", id=None), _ann(3, "y", id=3)]
    items = [parse_annotation(r, position=i) for i, r in enumerate(rows)]
    kept, dropped = drop_conflicting_ids(items)
    assert [(i.avqa_id, i.position) for i in kept] == [(1, 0), (None, 4), (None, 5), (3, 6)]
    assert dropped == {"annotation:duplicate_row": 1, "annotation:conflicting_id": 2}


def test_media_index_prefers_audio_and_finds_r1aqa_names(tmp_path):
    for name in ["x_000030.mp4", "x_000030.wav", "y.webm", "sub/z_000007.MKV", ".hidden.wav", "notes.txt"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    media = index_media(tmp_path)
    assert find_media("x_000030", media).name == "x_000030.wav"
    assert find_media("y", media).name == "y.webm"
    assert find_media("z_000007", media).name == "z_000007.MKV"
    assert find_media("hidden", media) is None and find_media("notes", media) is None
    (tmp_path / "w_12.flac").write_bytes(b"")
    assert find_media("w_000012", index_media(tmp_path)).name == "w_12.flac"


def test_config_validation():
    with pytest.raises(ValueError, match="prompt mode"):
        AVQAConfig(prompt_mode="shout")
    with pytest.raises(ValueError, match="min_duration_s"):
        AVQAConfig(min_duration_s=-1)


def test_a_symlink_loop_or_a_directory_is_counted_and_the_rest_is_written(tmp_path):
    """OS-level failures to open a clip drop that clip's rows (counted by reason), never the run."""
    media = tmp_path / "media"
    media.mkdir()
    t = np.arange(2 * 16000) / 16000
    sf.write(media / "good.wav", 0.4 * np.sin(2 * np.pi * 440 * t), 16000)
    (media / "loop.wav").symlink_to(media / "loop.wav")
    (media / "folder.wav").mkdir()  # a directory where a clip should be
    ann = tmp_path / "train_qa.json"
    ann.write_text(json.dumps([_ann(1, "good"), _ann(2, "loop"), _ann(3, "folder"), _ann(4, "good")]))
    summary = convert_avqa(annotations=ann, media_dir=media, out_dir=tmp_path / "out", progress=False)
    assert summary["kept"] == 2
    assert summary["dropped"] == {"audio:missing": 1, "audio:unreadable": 1}
    assert summary["clips"]["errors"] == {"missing": 1, "unreadable": 1}
    rows = pq.read_table(tmp_path / "out" / "train.parquet").to_pylist()
    assert [row["extra_info"]["avqa_id"] for row in rows] == [1, 4]


def test_overlong_prompts_are_dropped_and_counted(tmp_path, tiny_model_dir):
    """A 100k-character question is dropped as ``filter:prompt_too_long`` (character bound, no model
    needed); with the policy's processor the bound is in tokens, the clip's audio tokens counted."""
    from transformers import AutoProcessor

    from audio_thinker.data.prompt_length import PromptLengthCounter

    media = tmp_path / "media"
    media.mkdir()
    for name, seconds in (("short", 2), ("long", 20)):
        t = np.arange(seconds * 16000) / 16000
        sf.write(media / f"{name}.wav", 0.4 * np.sin(2 * np.pi * 440 * t), 16000)
    ann = tmp_path / "train_qa.json"
    ann.write_text(json.dumps([_ann(1, "short"), _ann(2, "short", question="Why? " * 20_000), _ann(3, "long"),
                               _ann(4, "short")]))
    summary = convert_avqa(annotations=ann, media_dir=media, out_dir=tmp_path / "chars", progress=False)
    assert summary["kept"] == 3 and summary["dropped"] == {"filter:prompt_too_long": 1}
    assert summary["prompt_length_counted_in"] == "characters"
    rows = pq.read_table(tmp_path / "chars" / "train.parquet").to_pylist()
    assert [row["extra_info"]["avqa_id"] for row in rows] == [1, 3, 4]

    counter = PromptLengthCounter(AutoProcessor.from_pretrained(tiny_model_dir("qwen2_audio")))
    short_prompt = counter.count(rows[0]["prompt"], [2.0])
    assert counter.count(rows[1]["prompt"], [20.0]) == short_prompt + 450  # 25 audio tokens per second
    config = AVQAConfig(max_prompt_length=short_prompt)
    summary = convert_avqa(annotations=ann, media_dir=media, out_dir=tmp_path / "tokens", progress=False,
                           config=config, counter=counter)
    assert summary["kept"] == 2 and summary["dropped"] == {"filter:prompt_too_long": 2}
    assert summary["prompt_length_counted_in"] == "tokens and characters"
