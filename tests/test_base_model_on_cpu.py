"""The hearing base (audio_thinker.toy.base): exact short-window audio path, TRUE-answer targets,
its own pre-training split, and a scaled-down rebuild with the skill profile's ordering."""

import json
import random
from pathlib import Path

import pytest
import torch

from audio_thinker.data.synthetic_tasks import TASKS
from audio_thinker.rewards.parsing import ResponseMode, parse_response
from audio_thinker.toy import base
from audio_thinker.toy.base import build, clips, options, scoring, training
from audio_thinker.toy.base.cli import main
from audio_thinker.toy.warmstart.data import processor_inputs

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: the embedded default's max_response_length (conf/backbone/tiny_cpu.yaml)
RESPONSE_BUDGET = 48


@pytest.fixture(scope="module")
def untrained():
    """The untrained base model (the tiny Qwen2-Audio, default sizes) and its processor."""
    return build.build_base_model(options.DEFAULT_OPTIONS)


def test_short_window_audio_path_equals_the_models_forward(untrained):
    """Prompt ids, mel features and audio embeddings from the short windows are exactly those of the
    processor's 30 s input run through the model's own forward."""
    model, processor = untrained
    pairs = clips.synthetic_clips(seed=3, split="train", count=len(TASKS))  # one clip per task: 1-3 s
    prepared = clips.prepare_clips(processor, pairs)
    inputs = processor_inputs(processor, [r for r, _ in pairs], [[s] for _, s in pairs])
    captured = {}
    hook = model.language_model.register_forward_pre_hook(
        lambda module, args, kwargs: captured.update(embeds=kwargs["inputs_embeds"]), with_kwargs=True)
    with torch.no_grad():
        model(**inputs)
        encoded = training.AudioEmbedder(model, prepared, cache=True)(range(len(prepared)))
    hook.remove()
    audio_id = model.config.audio_token_id
    for i, clip in enumerate(prepared):
        assert clip.n_frames == int(inputs["feature_attention_mask"][i].sum())
        assert torch.equal(clip.prompt_ids, inputs["input_ids"][i][inputs["attention_mask"][i].bool()])
        assert torch.equal(clip.mel, inputs["input_features"][i][:, : clip.mel.shape[1]])
        expected = captured["embeds"][i][inputs["input_ids"][i] == audio_id]
        torch.testing.assert_close(encoded[i], expected, rtol=1e-5, atol=1e-6)


def test_targets_carry_the_gold_answer_in_both_formats_within_the_budget(untrained):
    _, processor = untrained
    rng = random.Random(0)
    modes = set()
    for row, _ in clips.synthetic_clips(seed=3, split="train", count=2 * len(TASKS)):
        info = row["extra_info"]
        target = options.build_base_target(info, rng, think_fraction=0.5)
        parsed = parse_response(target.text.removesuffix("<|im_end|>"))
        assert parsed.well_formed and parsed.answer == info["answer"] and parsed.mode == target.mode
        assert len(processor.tokenizer(target.text, add_special_tokens=False)["input_ids"]) <= RESPONSE_BUDGET
        modes.add(target.mode)
    assert modes == {ResponseMode.THINK, ResponseMode.NO_THINK}


def test_the_pretraining_split_is_not_the_rl_data():
    with pytest.raises(ValueError, match="RL data seed"):
        options.BaseOptions(pretrain_seed=options.RL_DATA_SEED)
    ours = clips.synthetic_clips(seed=options.DEFAULT_OPTIONS.pretrain_seed, split="train", count=16)
    for split in ("train", "val"):
        rl = clips.synthetic_clips(seed=options.RL_DATA_SEED, split=split, count=16)
        assert not any(a.shape == b.shape and torch.equal(torch.from_numpy(a), torch.from_numpy(b))
                       for (_, a), (_, b) in zip(ours, rl))


def test_training_is_deterministic_and_trains_the_chosen_parts():
    tiny_run = dict(clips=24, steps=3, batch_size=4, eval_clips=8)
    runs = [build.pretrain(options.DEFAULT_OPTIONS.replace(**tiny_run)) for _ in range(2)]
    (first, _, record), (second, _, again) = runs
    assert record["profile"] == again["profile"] and record["train"] == again["train"]
    for (name, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items()):
        assert torch.equal(a, b), name
    untouched, _ = build.build_base_model(options.DEFAULT_OPTIONS)
    changed = {name.split(".")[0] for name, p in first.state_dict().items()
               if not torch.equal(p, untouched.state_dict()[name])}
    frozen = options.DEFAULT_OPTIONS.encoder_lr == 0
    assert {"language_model", "multi_modal_projector"} <= changed
    assert ("audio_tower" in changed) != frozen


def test_profile_summary_and_checks():
    infos = [{"task": "a", "difficulty": "easy", "choices": ["x", "y"], "answer": "y"}] * 2
    profile = scoring.summarize_profile(infos, [[-2.0, -1.0], [-1.0, -1.0]])  # a tie goes to the first shown
    assert profile["by_task"]["a"] == {"accuracy": 0.5, "chance": 0.5, "clips": 2}
    assert not scoring.profile_ok(profile)["strong_tasks"]


@pytest.fixture(scope="module")
def scaled_build(tmp_path_factory):
    """The scaled-down build through the command line (SCALED_OPTIONS: ~2 minutes on an idle core,
    hence the slow tier; the skill appears only after ~450 steps, see benchmarks/bench_base_model.py).
    The fast tier checks the committed full build's profile instead."""
    out = tmp_path_factory.mktemp("base") / "model"
    assert main(["--out", str(out), "--scaled", "--no-progress"]) == 0
    return out


@pytest.mark.slow
def test_scaled_build_hears_the_easy_tasks_and_not_the_hard_ones(scaled_build):
    manifest = build.read_manifest(scaled_build)
    assert manifest["options"] == options.SCALED_OPTIONS.as_dict()
    assert manifest["weights_sha256"] == build.sha256(scaled_build / "model.safetensors")
    for mode in scoring.MODES:
        profile = manifest["profile"][mode]
        tasks, levels = profile["by_task"], profile["by_difficulty"]
        # the skill the base is meant to master beats chance clearly; hard stays near chance
        assert tasks["pitch_high_low"]["accuracy"] >= 0.85, (mode, tasks)
        assert levels["easy"]["accuracy"] >= levels["hard"]["accuracy"] + 0.2, (mode, levels)
        assert abs(levels["hard"]["accuracy"] - levels["hard"]["chance"]) <= 0.12, (mode, levels)


@pytest.mark.slow
def test_scaled_build_loads_like_the_tiny_model_and_is_kept_when_current(scaled_build):
    from transformers import AutoProcessor, Qwen2AudioForConditionalGeneration

    config = json.loads((scaled_build / "config.json").read_text())
    assert config["architectures"] == ["Qwen2AudioForConditionalGeneration"]
    processor = AutoProcessor.from_pretrained(scaled_build)
    model = Qwen2AudioForConditionalGeneration.from_pretrained(scaled_build)
    assert type(processor).__name__ == "Qwen2AudioProcessor"
    assert sum(p.numel() for p in model.parameters()) == build.read_manifest(scaled_build)["num_parameters"]
    before = (scaled_build / build.MARKER).stat().st_mtime_ns
    assert base.ensure_base(scaled_build, progress=False, **options.SCALED_OPTIONS.as_dict()) == scaled_build
    assert (scaled_build / build.MARKER).stat().st_mtime_ns == before


@pytest.mark.parametrize("name", ["options", "scoring"])  # the schedule's doctest: toy.loop (test_doctests_on_cpu)
def test_doctests(name):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(f"audio_thinker.toy.base.{name}"), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


#: the committed full build (python -m audio_thinker.toy.base --out assets/tiny_qwen2_audio_base --seed 0)
COMMITTED = Path(__file__).resolve().parents[1] / "assets" / "tiny_qwen2_audio_base"


def test_committed_checkpoint_matches_its_manifest_and_hears_the_rl_val_clips():
    """The committed base: its weights are the ones its manifest records, it was built with the
    default recipe, it loads like the tiny model, and re-scored on RL validation clips it masters
    the easy tasks while the hard ones stay near chance."""
    from transformers import AutoProcessor, Qwen2AudioForConditionalGeneration

    manifest = build.read_manifest(COMMITTED)
    assert manifest["options"] == options.DEFAULT_OPTIONS.as_dict() and build.is_complete(COMMITTED)
    assert manifest["weights_sha256"] == build.sha256(COMMITTED / "model.safetensors")
    assert all(all(checks.values()) for checks in manifest["profile_ok"].values())
    processor = AutoProcessor.from_pretrained(COMMITTED)
    model = Qwen2AudioForConditionalGeneration.from_pretrained(COMMITTED).eval()
    val = clips.prepare_clips(processor, clips.synthetic_clips(seed=options.RL_DATA_SEED, split="val", count=96))
    embed = training.AudioEmbedder(model, val, cache=True)
    profile = scoring.summarize_profile([c.row["extra_info"] for c in val],
                                        scoring.choice_logprobs(model, processor.tokenizer, val, embed, think=False))
    tasks, hard = profile["by_task"], profile["by_difficulty"]["hard"]
    assert tasks["pitch_high_low"]["accuracy"] >= 0.9 and tasks["count_beeps_clean"]["accuracy"] >= 0.8, tasks
    assert abs(hard["accuracy"] - hard["chance"]) <= 0.15, hard
