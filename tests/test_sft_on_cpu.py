"""The SFT and SFT + CoT baselines: verl's SFT trainer with our audio data set, on the CPU.

1. ``AudioSFTDataset`` (``data.custom_cls``): targets per mode, loss mask on the target only, audio
   features present and matching the audio tokens, rows without a rationale counted and skipped.
2. Audio reaches the forward: a batch collated by verl's ``SFTTensorCollator`` and turned into model
   inputs by verl's FSDP engine (``FSDPEngineWithLMHead.prepare_model_inputs``) carries the features;
   the SFT loss changes when only the audio changes and the audio encoder gets gradients.
3. ``main_sft``'s config: the backbones and recipes compose and validate; contradictions fail fast.
4. ``python -m audio_thinker.main_sft backbone=tiny_cpu`` end to end (two launches, ~1 min each on
   2 cores): the answer run's loss decreases, its verl checkpoint changed the weights (audio encoder
   included) and ``audio_thinker.evaluate`` loads it; the CoT run trains on ``<think>`` targets from
   rows with ``extra_info.rationale``, skipping (and reporting) a row without one, with the audio
   encoder frozen, on two data-parallel CPU ranks (``main_sft`` re-launches itself under torchrun).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from audio_thinker.config import ConfigError
from audio_thinker.verl_ext.sft_dataset import AudioSFTDataset, SFTRowError, build_target, rationale_of

REPO = Path(__file__).resolve().parents[1]
ARCHS = ("qwen2_audio", "qwen2_5_omni_thinker")
END = "<|im_end|>"


# ---------------------------------------------------------------------------------------------
# fixtures
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def assets(tmp_path_factory, tiny_model_dir):
    """Tiny models of both architectures, a small synthetic set and a CoT copy of its train split."""
    from audio_thinker.data.synthetic import generate_dataset
    from audio_thinker.data.template_cot import template_rationale

    root = tmp_path_factory.mktemp("sft")
    models = {arch: tiny_model_dir(arch) for arch in ARCHS}
    data = root / "data"
    generate_dataset(data, n_train=5, n_val=4, seed=3, progress=False)
    frame = pd.read_parquet(data / "train.parquet")
    infos = []
    for i, info in enumerate(frame["extra_info"]):
        info = {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in dict(info).items()}
        if i != 2:  # row 2 has no rationale: skipped with a warning in CoT mode
            info["rationale"] = template_rationale(info)
        infos.append(info)
    frame["extra_info"] = infos
    frame.to_parquet(root / "cot.parquet", index=False)
    return {"root": root, "models": models, "data": data, "cot": root / "cot.parquet"}


def _processor(path):
    import verl  # noqa: F401  (loads the project's plugin: audio processors for verl)
    from verl.utils import hf_processor, hf_tokenizer

    return hf_processor(str(path)), hf_tokenizer(str(path))


def _dataset(assets, arch="qwen2_audio", files=None, **config):
    processor, tokenizer = _processor(assets["models"][arch])
    config = {"sft_target": "answer", "pad_mode": "no_padding", **config}
    files = files or str(assets["data"] / "train.parquet")
    return AudioSFTDataset(files, tokenizer, config, processor=processor)


def _rows(path) -> list[dict]:
    return pd.read_parquet(path).to_dict(orient="records")


def _target_text(dataset, item) -> str:
    return dataset.tokenizer.decode(item["input_ids"][item["loss_mask"].bool()])


# ---------------------------------------------------------------------------------------------
# 1. the data set
# ---------------------------------------------------------------------------------------------


def test_targets_per_mode_and_bad_rationales():
    info = {"answer": "the second", "choices": ["the first", "the second"], "rationale": "I hear two tones."}
    assert build_target(info, "answer") == "<answer>the second</answer>"
    assert build_target(info, "cot") == "<think>I hear two tones.</think><answer>the second</answer>"
    assert rationale_of({"rationale": "\n<think> wrapped </think>\n"}) == "wrapped"
    cases = [(None, "missing_rationale"), ("  ", "missing_rationale"),
             ("<think></think>", "missing_rationale"),
             ("a <answer>b</answer>", "bad_rationale"), ("x</think>y", "bad_rationale")]
    for bad, reason in cases:
        with pytest.raises(SFTRowError) as error:
            build_target({**info, "rationale": bad}, "cot")
        assert error.value.reason == reason, bad
    with pytest.raises(SFTRowError) as error:
        build_target({**info, "answer": "the third"}, "answer")
    assert error.value.reason == "bad_answer"
    with pytest.raises(ValueError, match="unknown SFT target"):
        build_target(info, "cots")


@pytest.mark.parametrize("arch", ARCHS)
def test_answer_item_masks_only_the_target_and_carries_audio(assets, arch):
    dataset = _dataset(assets, arch)
    rows = _rows(assets["data"] / "train.parquet")
    assert len(dataset) == len(rows) and not dataset.skipped
    for index in (0, 1):
        item = dataset[index]
        gold = rows[index]["extra_info"]["answer"]
        ids, mask = item["input_ids"], item["loss_mask"]
        assert ids.shape == mask.shape == item["position_ids"].shape and ids.dim() == 1
        assert torch.equal(item["position_ids"], torch.arange(len(ids)))
        # the loss covers exactly the target and its end-of-turn token, at the end of the sequence
        assert _target_text(dataset, item) == f"<answer>{gold}</answer>{END}"
        first = int(mask.nonzero()[0])
        assert mask[first:].all() and not mask[:first].any()
        prompt = dataset.tokenizer.decode(ids[:first])
        assert "Output the final answer in <answer> </answer>." in prompt  # the direct prompt
        assert prompt.rstrip().endswith("assistant")
        # audio features, one audio token per encoder frame (25 per second of audio)
        features = item["multi_modal_inputs"]
        assert set(features) == {"input_features", "feature_attention_mask"}
        assert features["input_features"].shape[:2] == (1, 128) and features["input_features"].abs().sum() > 0
        audio_token = dataset.processor.tokenizer.convert_tokens_to_ids("<|AUDIO|>")
        n_audio = int((ids == audio_token).sum())
        frames = int(features["feature_attention_mask"].sum())  # 100 mel frames per second
        assert n_audio == pytest.approx(frames / 4, abs=1)
        assert not mask[ids == audio_token].any()


def test_cot_item_trains_on_think_target_with_think_prompt(assets):
    dataset = _dataset(assets, files=str(assets["cot"]), sft_target="cot", prompt_mode="think")
    item = dataset[0]
    info = dataset.rows[0]["extra_info"]
    target = f"<think>{info['rationale']}</think><answer>{info['answer']}</answer>{END}"
    assert _target_text(dataset, item) == target
    first = int(item["loss_mask"].nonzero()[0])
    prompt = dataset.tokenizer.decode(item["input_ids"][:first])
    assert "Output the thinking process in <think> </think>" in prompt
    # the default prompt mode of CoT targets is think
    assert _dataset(assets, files=str(assets["cot"]), sft_target="cot").prompt_mode.value == "think"


def test_rows_without_rationale_are_counted_and_skipped_with_a_warning(assets, tmp_path, caplog):
    rows = _rows(assets["cot"])
    rows[0]["extra_info"] = {**rows[0]["extra_info"], "rationale": "so <answer>x</answer>"}
    pd.DataFrame(rows).to_parquet(tmp_path / "mixed.parquet", index=False)
    with caplog.at_level(logging.WARNING, logger="audio_thinker.verl_ext.sft_dataset"):
        dataset = _dataset(assets, files=str(tmp_path / "mixed.parquet"), sft_target="cot")
    assert len(dataset) == 3
    assert dict(dataset.skipped) == {"missing_rationale": 1, "bad_rationale": 1}
    message = caplog.text
    assert "skipped 2 of 5 rows" in message and "missing_rationale" in message and "bad_rationale" in message
    assert all(dataset[i]["loss_mask"].sum() > 0 for i in range(len(dataset)))
    # the same file in answer mode needs no rationale
    assert len(_dataset(assets, files=str(tmp_path / "mixed.parquet"))) == 5
    # nothing usable: a clear error, not a crash inside verl
    with pytest.raises(ValueError, match=r"no usable row.*python -m audio_thinker.data.cot"):
        _dataset(assets, sft_target="cot")


def test_missing_and_unreadable_audio(assets, tmp_path, caplog):
    rows = _rows(assets["data"] / "train.parquet")
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF\x00\x00not a wav")
    rows[1]["audios"] = [str(tmp_path / "gone.wav")]
    rows[2]["audios"] = [str(broken)]
    pd.DataFrame(rows).to_parquet(tmp_path / "rows.parquet", index=False)
    dataset = _dataset(assets, files=str(tmp_path / "rows.parquet"))
    assert len(dataset) == 4 and dict(dataset.skipped) == {"missing_audio": 1}
    with caplog.at_level(logging.WARNING, logger="audio_thinker.verl_ext.sft_dataset"):
        item = dataset[1]  # the corrupt clip: replaced by the next row
    assert "using the next row instead" in caplog.text
    assert _target_text(dataset, item) == f"<answer>{rows[3]['extra_info']['answer']}</answer>{END}"
    assert dataset.audio_stats.as_dict()["errors"] == {"corrupt": 1}


def test_length_limits(assets):
    with pytest.raises(ValueError, match="raise data.max_length"):
        _dataset(assets, max_length=40)[0]
    item = _dataset(assets, files=str(assets["cot"]), sft_target="cot")[0]
    cut = _dataset(assets, files=str(assets["cot"]), sft_target="cot",
                   max_length=len(item["input_ids"]) - 3, truncation="right")[0]
    assert torch.equal(cut["input_ids"], item["input_ids"][:-3])
    assert cut["loss_mask"].sum() == item["loss_mask"].sum() - 3
    with pytest.raises(ValueError, match="no_padding"):
        _dataset(assets, pad_mode="right")


@pytest.mark.parametrize("module", ["audio_thinker.verl_ext.sft_dataset", "audio_thinker.data.template_cot"])
def test_doctests(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0


def test_template_cot_rows(assets, tmp_path):
    """The CPU recipe's stand-in CoT data: every row gets a rationale and the think prompt."""
    from audio_thinker.data.template_cot import main as template_cot_main

    assert template_cot_main(["--src", str(assets["data"]), "--out", str(tmp_path / "cot")]) == 0
    rows = _rows(tmp_path / "cot" / "train.parquet")
    assert len(rows) == len(_rows(assets["data"] / "train.parquet"))
    for row in rows:
        info = row["extra_info"]
        assert info["prompt_mode"] == "think" and info["rationale_source"] == "template"
        assert info["rationale"].endswith(f"So the answer is {info['answer']}.")
        assert "<think>" in row["prompt"][0]["content"]
    dataset = _dataset(assets, files=str(tmp_path / "cot" / "val.parquet"), sft_target="cot")
    assert len(dataset) == 4 and not dataset.skipped
    before = (tmp_path / "cot" / "train.parquet").stat().st_mtime_ns
    template_cot_main(["--src", str(assets["data"]), "--out", str(tmp_path / "cot")])
    assert (tmp_path / "cot" / "train.parquet").stat().st_mtime_ns == before  # current: not rewritten


# ---------------------------------------------------------------------------------------------
# 2. audio reaches the forward through verl's SFT batch path
# ---------------------------------------------------------------------------------------------


def _engine_inputs(items):
    """verl's SFT batch path: SFTTensorCollator -> the trainer's TensorDict -> the FSDP engine's inputs."""
    import types

    from verl.utils import tensordict_utils as tu
    from verl.utils.dataset.dataset_utils import SFTTensorCollator
    from verl.workers.engine.fsdp.transformer_impl import FSDPEngineWithLMHead

    batch = SFTTensorCollator("no_padding")(items)
    meta = {"use_remove_padding": False, "temperature": 1.0, "pad_mode": "no_padding", "pad_token_id": 0,
            "use_dynamic_bsz": False, "micro_batch_size_per_gpu": len(items)}
    data = tu.get_tensordict(tensor_dict=batch, non_tensor_dict=meta)
    engine = types.SimpleNamespace(pad_to_length=False, use_ulysses_sp=False)
    inputs, _ = FSDPEngineWithLMHead.prepare_model_inputs(engine, data)
    return inputs, data


def _sft_loss(model, inputs, data) -> torch.Tensor:
    """verl's sft_loss: mean negative log-likelihood of the loss-masked tokens."""
    logits = model(**inputs, use_cache=False).logits[:, :-1].float()
    ids = inputs["input_ids"][:, 1:]
    shape = tuple(inputs["input_ids"].shape)
    mask = torch.nested.to_padded_tensor(data["loss_mask"], 0, output_size=shape)[:, 1:]
    logp = torch.log_softmax(logits, -1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)
    return -(logp * mask).sum() / mask.sum()


@pytest.mark.parametrize("arch", ARCHS)
def test_sft_loss_and_gradients_depend_on_the_audio(assets, arch):
    from transformers import AutoConfig
    from verl.utils.model import get_hf_auto_model_class

    path = assets["models"][arch]
    dataset = _dataset(assets, arch)
    model_cls = get_hf_auto_model_class(AutoConfig.from_pretrained(path))
    model = model_cls.from_pretrained(path, attn_implementation="eager")
    items = [dataset[0], dataset[1]]
    inputs, data = _engine_inputs(items)
    assert inputs["input_features"].shape[0] == 2 and inputs["feature_attention_mask"].shape[0] == 2
    loss = _sft_loss(model, inputs, data)
    loss.backward()
    audio_grads = [p.grad for name, p in model.named_parameters() if "audio_tower" in name]
    assert audio_grads and any(g is not None and g.abs().sum() > 0 for g in audio_grads)

    # the same token ids with other audio: a different loss (same clip length, so the token count holds)
    noise = np.random.default_rng(0).normal(0, 0.3, len(dataset._decode(dataset.rows[0]["audios"][0])))
    other = dataset.encode(dataset.rows[0], [noise.astype(np.float32)])
    assert torch.equal(other["input_ids"], items[0]["input_ids"])
    swapped, swapped_data = _engine_inputs([other, items[1]])
    with torch.no_grad():
        assert abs(float(_sft_loss(model, swapped, swapped_data)) - float(loss)) > 1e-4


# ---------------------------------------------------------------------------------------------
# 3. config and recipes
# ---------------------------------------------------------------------------------------------


def _compose(*overrides):
    from hydra import compose, initialize_config_dir

    from audio_thinker.main_sft import CONFIG_DIR, CONFIG_NAME

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
        return compose(config_name=CONFIG_NAME, overrides=list(overrides))


@pytest.mark.parametrize("backbone", ["qwen2_audio_7b", "qwen2_5_omni_7b", "tiny_cpu"])
def test_backbones_compose_and_validate(backbone):
    from audio_thinker.main_sft import validate

    cfg = _compose(f"backbone={backbone}")
    validate(cfg)
    assert cfg.data.custom_cls.name == "AudioSFTDataset" and cfg.data.pad_mode == "no_padding"
    assert cfg.data.sft_target == "answer" and cfg.data.prompt_mode == "direct"
    assert cfg.trainer.device == ("cpu" if backbone == "tiny_cpu" else "cuda")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["audio_thinker.sft.target=cot"], "prompt_mode=think"),
        (["audio_thinker.prompt_mode=think"], "prompt_mode=direct"),
        (["audio_thinker.sft.target=cots"], "use one of answer, cot"),
        (["+audio_thinker.sft.rationale=x"], "unknown key audio_thinker.sft.rationale"),
        (["data.custom_cls.name=MultiTurnSFTDataset"], "keep data.custom_cls.path"),
        (["data.val_files=null"], "trainer.test_freq=after_each_epoch validates on data.val_files"),
        (["toy.synthetic_data=null", "audio_thinker.sft.template_cot_data=x"], "set both"),
        (["engine.strategy=fsdp"], "fsdp2 only"),
        (["data.train_batch_size=3", "trainer.n_gpus_per_node=2"], "multiple of the number of processes"),
    ],
)
def test_validate_fails_fast(overrides, message):
    from audio_thinker.main_sft import validate

    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        validate(_compose("backbone=tiny_cpu", *overrides))


@pytest.mark.parametrize("name", ["qwen2_audio_7b/sft", "qwen2_audio_7b/sft_cot", "qwen2_5_omni_7b/sft",
                                  "qwen2_5_omni_7b/sft_cot", "tiny_cpu/sft", "tiny_cpu/sft_cot"])
def test_sft_recipes(name):
    from audio_thinker import recipes

    recipe = recipes.load_recipe(name)
    cfg = recipes.compose(recipe)
    recipes.validate(recipe, cfg)
    cot = name.endswith("sft_cot")
    assert recipe.row == ("SFT + CoT" if cot else "SFT") and recipe.entry == "audio_thinker.main_sft"
    assert cfg.data.sft_target == ("cot" if cot else "answer")
    assert cfg.data.prompt_mode == ("think" if cot else "direct")
    if not name.startswith("tiny_cpu"):
        assert cfg.optim.lr == pytest.approx(1e-5) and cfg.trainer.total_epochs == 2
        assert "avqa" in cfg.data.train_files and recipe.cost.gpus == 8 and recipe.cost.gpu_hours > 0


# ---------------------------------------------------------------------------------------------
# 4. end to end: python -m audio_thinker.main_sft backbone=tiny_cpu
# ---------------------------------------------------------------------------------------------


def _main_sft(assets, run_dir: Path, *overrides: str) -> subprocess.CompletedProcess:
    command = [
        sys.executable, "-m", "audio_thinker.main_sft", "backbone=tiny_cpu",
        f"hydra.run.dir={run_dir}/hydra",
        f"model.path={assets['models']['qwen2_audio']}",
        "toy.synthetic_data=null",
        "toy.tiny_model=null",
        f"trainer.default_local_dir={run_dir}",
        "data.train_batch_size=4",
        *overrides,
    ]
    inherited = ("VERL_FILE_LOGGER_PATH", "VERL_PLATFORM", "RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_PORT")
    env = {k: v for k, v in os.environ.items() if k not in inherited}
    result = subprocess.run(command, cwd=assets["root"], env=env, capture_output=True, text=True, timeout=600)
    log = run_dir.with_suffix(".log")
    log.write_text(result.stdout + "\n----- stderr -----\n" + result.stderr)
    assert result.returncode == 0, (
        f"main_sft failed (rc={result.returncode}); log: {log}\n{result.stderr[-3000:]}"
    )
    return result


def _history(run_dir: Path) -> dict[int, dict]:
    history: dict[int, dict] = {}
    for path in sorted((run_dir / "metrics").glob("*.jsonl")):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            history.setdefault(record["step"], {}).update(record["data"])
    return history


def _changed(base_dir: Path, checkpoint: Path) -> dict[str, bool]:
    """Which parts of the model the verl checkpoint's (float32) shards changed vs the base weights."""
    from safetensors.torch import load_file

    base = load_file(str(base_dir / "model.safetensors"))
    files = checkpoint.glob("model_world_size_*_rank_*.pt")
    files = sorted(files, key=lambda f: int(f.stem.rsplit("_", 1)[1]))
    shards = [torch.load(path, map_location="cpu", weights_only=False) for path in files]
    assert shards and all(set(shard) == set(base) for shard in shards)
    parts: dict[str, bool] = {}
    for key, weight in base.items():
        # FSDP2 shards every parameter on dim 0 (DTensor Shard(0)): the local pieces in rank order
        pieces = [getattr(shard[key], "to_local", lambda t=shard[key]: t)() for shard in shards]
        full = torch.cat(pieces)
        part = next((p for p in ("audio_tower", "language_model") if p in key), "other")
        parts[part] = parts.get(part, False) or not torch.equal(weight, full.float())
    return parts


def test_answer_sft_runs_decreases_loss_and_saves_an_evaluable_checkpoint(assets):
    run_dir = assets["root"] / "run_answer"
    data = assets["data"]
    result = _main_sft(
        assets, run_dir, f"data.train_files={data}/train.parquet", f"data.val_files={data}/val.parquet",
        "data.train_max_samples=4", "data.micro_batch_size_per_gpu=4",
        "trainer.total_epochs=4", "trainer.test_freq=4", "trainer.save_freq=4",
    )
    assert "AudioSFTDataset: 4 of 4 rows (answer targets, direct prompt)" in result.stdout
    history = _history(run_dir)
    losses = [history[step]["train/loss"] for step in (1, 2, 3, 4)]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0], losses
    assert np.isfinite(history[4]["val/loss"])
    assert "train/loss  step 1:" in result.stdout
    assert "evaluate:   python -m audio_thinker.evaluate" in result.stdout

    checkpoint = run_dir / "global_step_4"
    assert (run_dir / "latest_checkpointed_iteration.txt").read_text().strip() == "4"
    assert _changed(assets["models"]["qwen2_audio"], checkpoint) == {
        "audio_tower": True, "language_model": True, "other": True,
    }

    # the run directory is what `python -m audio_thinker.evaluate model.path=<it>` takes
    from audio_thinker.evaluate.config import load_eval_config
    from audio_thinker.evaluate.run import evaluate

    none = {"synthetic_data": None, "tiny_model": None, "warmstart_model": None, "tiny_judge": None}
    outcome = evaluate(load_eval_config({
        "model": {"path": str(run_dir)}, "prompt_mode": "direct",
        "benchmark": {"name": "synthetic", "meta": str(data / "val.parquet"), "limit": 2},
        "generation": {"max_new_tokens": 6, "batch_size": 2}, "output_dir": str(assets["root"] / "eval"),
        "toy": none, "progress": False,
    }))
    assert len(outcome.records) == 2
    assert (checkpoint / "merged_hf" / "config.json").is_file()


@pytest.mark.slow  # the answer-target SFT run above covers main_sft end to end in the fast tier
def test_cot_sft_trains_on_rationales_and_skips_rows_without_one(assets):
    run_dir = assets["root"] / "run_cot"
    result = _main_sft(
        assets, run_dir, f"data.train_files={assets['cot']}", "data.val_files=null", "trainer.test_freq=-1",
        "audio_thinker.sft.target=cot", "audio_thinker.prompt_mode=think",
        "audio_thinker.freeze_audio_encoder=true",
        "trainer.total_training_steps=2", "trainer.total_epochs=2", "trainer.save_freq=2",
        # two data-parallel ranks: main_sft re-launches itself under torchrun (the multi-GPU path)
        "trainer.n_gpus_per_node=2", "data.micro_batch_size_per_gpu=2",
    )
    assert "torch.distributed.run --standalone --nproc_per_node=2" in result.stdout  # the re-launch
    output = result.stdout + result.stderr
    assert "AudioSFTDataset: 4 of 5 rows (cot targets, think prompt)" in result.stdout
    assert "skipped 1 of 5 rows" in output and "missing_rationale" in output
    history = _history(run_dir)
    assert sorted(history) == [1, 2] and all(np.isfinite(history[s]["train/loss"]) for s in (1, 2))
    changed = _changed(assets["models"]["qwen2_audio"], run_dir / "global_step_2")
    assert changed == {"audio_tower": False, "language_model": True, "other": True}  # encoder frozen
