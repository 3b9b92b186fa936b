"""AudioQADataset: our rows -> verl messages with decoded audio; bad clips are counted and skipped."""

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from audio_thinker.data.synthetic import generate_dataset


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_model_dir):
    import verl  # noqa: F401  (plugin)
    from verl.utils import hf_processor, hf_tokenizer


    root = tmp_path_factory.mktemp("ds")
    model = str(tiny_model_dir("qwen2_audio"))
    generate_dataset(root / "data", n_train=12, n_val=4, seed=3, progress=False)
    return root, hf_tokenizer(model), hf_processor(model)


def make_dataset(path, tokenizer, processor, **overrides):
    from audio_thinker.verl_ext.dataset import AudioQADataset

    config = OmegaConf.create(
        {"prompt_key": "prompt", "audio_key": "audios", "max_prompt_length": 512, "filter_overlong_prompts": False,
         "return_raw_chat": True, "cache_dir": str(path.parent / "cache"), "prompt_mode": "adaptive",
         "audio": {"sample_rate": 16000, "max_seconds": 30.0, "on_too_long": "truncate", "silence_rms_threshold": 1e-4}}
        | overrides
    )
    return AudioQADataset(str(path), tokenizer, config, processor=processor)


def audio_items(row):
    return [c for m in row["raw_prompt"] for c in m["content"] if isinstance(c, dict) and c.get("type") == "audio"]


def test_rows_become_messages_with_decoded_16k_audio(setup):
    root, tokenizer, processor = setup
    dataset = make_dataset(root / "data" / "train.parquet", tokenizer, processor)
    assert len(dataset) == 12
    row = dataset[0]
    (audio,) = audio_items(row)
    samples = audio["audio"]
    assert isinstance(samples, np.ndarray) and samples.dtype == np.float32 and samples.ndim == 1
    assert 1.0 <= samples.size / 16000 <= 3.5
    text = [c["text"] for c in row["raw_prompt"][0]["content"] if c.get("type") == "text"][0]
    assert "First, identify whether this problem requires thinking" in text
    # verl's own extraction for the agent loop returns the decoded array
    _, _, audios = type(dataset)._process_multi_modal_info(row["raw_prompt"], image_patch_size=14, config=None)
    assert audios[0] is samples
    assert dataset.audio_stats.as_dict()["ok"] >= 1


def test_prompt_mode_key_switches_the_template(setup):
    root, tokenizer, processor = setup
    dataset = make_dataset(root / "data" / "train.parquet", tokenizer, processor, prompt_mode="direct")
    text = [c["text"] for c in dataset[0]["raw_prompt"][0]["content"] if c.get("type") == "text"][0]
    assert text.endswith("Output the final answer in <answer> </answer>.")
    assert "identify whether" not in text


def test_missing_and_corrupt_audio_are_counted_and_skipped(setup):
    root, tokenizer, processor = setup
    rows = pd.read_parquet(root / "data" / "train.parquet")
    rows.at[0, "audios"] = [str(root / "nope.wav")]
    corrupt = root / "corrupt.wav"
    corrupt.write_bytes(b"RIFF not really a wav")
    rows.at[1, "audios"] = [str(corrupt)]
    path = root / "bad.parquet"
    rows.to_parquet(path)
    dataset = make_dataset(path, tokenizer, processor)
    assert len(dataset) == 11  # the missing file is dropped when the data set opens
    assert dataset.audio_stats.as_dict()["errors"]["missing"] == 1
    row = dataset[0]  # the corrupt clip: replaced by the next readable row
    assert row["extra_info"]["index"] == 2
    assert dataset.audio_stats.as_dict()["errors"]["corrupt"] == 1


def test_all_audio_missing_is_a_clear_error(setup):
    root, tokenizer, processor = setup
    rows = pd.read_parquet(root / "data" / "val.parquet")
    rows["audios"] = [[str(root / f"gone{i}.wav")] for i in range(len(rows))]
    path = root / "gone.parquet"
    rows.to_parquet(path)
    with pytest.raises(ValueError, match="no row of .* has readable audio"):
        make_dataset(path, tokenizer, processor)


def test_a_text_only_model_is_refused_with_a_fix(setup):
    root, tokenizer, _ = setup
    with pytest.raises(ValueError, match="needs the model's audio processor"):
        make_dataset(root / "data" / "train.parquet", tokenizer, None)


@pytest.mark.parametrize("mode", ["adaptive", "think", "direct"])
def test_malformed_rows_are_dropped_when_the_data_set_opens_in_every_prompt_mode(setup, mode):
    """A row without a question (or with one choice) is counted and skipped once, whatever the
    prompt mode, instead of crashing at the step that reads it."""
    root, tokenizer, processor = setup
    rows = pd.read_parquet(root / "data" / "train.parquet")
    rows.at[3, "extra_info"] = {**rows.at[3, "extra_info"], "question": None}
    rows.at[5, "extra_info"] = {**rows.at[5, "extra_info"], "question": "   "}
    rows.at[6, "extra_info"] = {**rows.at[6, "extra_info"], "choices": np.array([rows.at[6, "extra_info"]["answer"]])}
    path = root / f"malformed_{mode}.parquet"
    rows.to_parquet(path)
    dataset = make_dataset(path, tokenizer, processor, prompt_mode=mode)
    assert len(dataset) == 9
    assert dataset.skipped == {"missing_field": 1, "bad_question": 2}
    indices = [dataset[i]["extra_info"]["index"] for i in range(len(dataset))]
    assert indices == [0, 1, 2, 4, 7, 8, 9, 10, 11]


def test_a_bad_clip_is_counted_once_not_once_per_retry(setup):
    root, tokenizer, processor = setup
    rows = pd.read_parquet(root / "data" / "train.parquet")
    corrupt = root / "corrupt_twice.wav"
    corrupt.write_bytes(b"RIFF not really a wav")
    for i in (1, 2):
        rows.at[i, "audios"] = [str(corrupt)]
    path = root / "bad_twice.parquet"
    rows.to_parquet(path)
    dataset = make_dataset(path, tokenizer, processor)
    assert [dataset[i]["extra_info"]["index"] for i in (1, 2, 1, 0)] == [3, 3, 3, 0]
    # two distinct bad rows: each counted once, however often the retries met them
    assert dataset.audio_stats.as_dict()["errors"] == {"corrupt": 2}
    assert sorted(dataset._skipper.bad) == [1, 2]


def test_overlong_prompts_are_dropped_and_counted_when_the_data_set_opens(setup, caplog):
    """A 100k-character question would make verl raise at whatever step draws it: the row is dropped
    (``prompt_too_long``) with one summary line naming the longest prompt and the key to raise."""
    root, tokenizer, processor = setup
    rows = pd.read_parquet(root / "data" / "train.parquet")
    rows.at[4, "extra_info"] = {**rows.at[4, "extra_info"], "question": "Why? " * 20_000}
    path = root / "overlong.parquet"
    rows.to_parquet(path)
    with caplog.at_level("WARNING", logger="audio_thinker.verl_ext.dataset"):
        dataset = make_dataset(path, tokenizer, processor)
    assert len(dataset) == 11 and dataset.skipped == {"prompt_too_long": 1}
    tokens, position = dataset.longest_dropped
    assert position == 4 and tokens > 20_000
    assert (f"dropped 1 rows of {dataset.data_files} whose prompt is longer than data.max_prompt_length=512 "
            f"tokens (the longest: {tokens} tokens, row 4): raise data.max_prompt_length") in caplog.text
    assert 4 not in [dataset[i]["extra_info"]["index"] for i in range(len(dataset))]


def test_the_length_bound_counts_the_audio_tokens_exactly(setup):
    """With the bound between the rows' true prompt lengths (the processor's input ids for the decoded
    clip, in the data set's prompt mode), exactly the rows that fit are kept."""
    from audio_thinker.data.audio import load_audio
    from audio_thinker.data.rows import build_prompt_messages, inline_audio

    root, tokenizer, processor = setup
    path = root / "data" / "train.parquet"
    truth = {}
    for row in pd.read_parquet(path).to_dict(orient="records"):
        info = row["extra_info"]
        clip = load_audio(row["audios"][0]).samples
        chat = inline_audio(build_prompt_messages(info["question"], list(info["choices"]), mode="think"), [clip])
        text = processor.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
        truth[int(info["index"])] = len(processor(text=[text], audio=[clip], sampling_rate=16_000)["input_ids"][0])
    assert len(set(truth.values())) > 2, truth  # the clips' lengths differ
    limit = sorted(truth.values())[len(truth) // 2]
    dataset = make_dataset(path, tokenizer, processor, prompt_mode="think", max_prompt_length=limit)
    kept = sorted(dataset.dataframe["extra_info"][i]["index"] for i in range(len(dataset)))
    assert kept == sorted(i for i, n in truth.items() if n <= limit), (limit, truth)
    assert dataset.skipped == {"prompt_too_long": sum(n > limit for n in truth.values())}
