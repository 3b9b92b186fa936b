"""The hydra config composes verl's defaults through pkg:// and our section validates."""

import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from audio_thinker.config import AudioThinkerConfig, ConfigError, anneal_steps, load_config
from audio_thinker.data.audio import AudioConfig
from audio_thinker.main_grpo import CONFIG_DIR, CONFIG_NAME, validate
from audio_thinker.rewards.combine import RewardMode
from audio_thinker.toy.prepare import ToySection

REPO = Path(__file__).resolve().parents[1]


def compose_config(overrides=()):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
        return compose(config_name=CONFIG_NAME, overrides=list(overrides))


def test_base_config_composes_verl_defaults_and_ours():
    cfg = compose_config()
    # verl's defaults are there (from the installed wheel, not from a file:// path)
    assert "pkg://verl.trainer.config" in OmegaConf.to_yaml(OmegaConf.load(Path(CONFIG_DIR) / f"{CONFIG_NAME}.yaml"))
    assert cfg.actor_rollout_ref.actor.strategy in ("fsdp", "fsdp2")
    assert cfg.trainer.use_v1 is True
    # the paper's hyper-parameters
    assert cfg.algorithm.adv_estimator == "grpo"
    assert cfg.actor_rollout_ref.actor.optim.lr == 1e-6
    assert cfg.actor_rollout_ref.actor.kl_loss_coef == 0.04 and cfg.actor_rollout_ref.actor.use_kl_loss
    assert cfg.actor_rollout_ref.rollout.n == 8 and cfg.data.train_batch_size == 16
    assert cfg.actor_rollout_ref.rollout.temperature == 1.0
    assert cfg.trainer.total_training_steps == 1000
    ours = load_config(cfg.audio_thinker)
    assert ours == AudioThinkerConfig()  # the yaml restates the dataclass defaults exactly
    validate(cfg)


def test_yaml_and_dataclass_defaults_agree_key_by_key():
    """Docs and defaults cannot drift: every dataclass field appears in the yaml and vice versa."""
    yaml_section = OmegaConf.to_container(compose_config().audio_thinker, resolve=True)
    defaults = OmegaConf.to_container(OmegaConf.structured(AudioThinkerConfig()), resolve=True)
    assert yaml_section == defaults
    toy = OmegaConf.to_container(compose_config().toy, resolve=True)
    assert toy == OmegaConf.to_container(OmegaConf.structured(ToySection()), resolve=True)


def test_overrides_reach_the_schema():
    cfg = compose_config(["audio_thinker.reward.mode=atar_cr", "audio_thinker.prompt_mode=think"])
    ours = load_config(cfg.audio_thinker)
    assert ours.reward.mode is RewardMode.ATAR_CR
    assert ours.prompt_mode == "think"


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"prompt_mode": "sometimes"}, "prompt_mode='sometimes' is not valid; use one of: adaptive, think, direct"),
        ({"reward": {"mode": "atar+cr"}}, "reward.mode='atar\\+cr' is not valid"),
        ({"reward": {"mdoe": "atar"}}, "unknown key audio_thinker.reward.mdoe; did you mean reward.mode"),
        ({"promt_mode": "think"}, "did you mean prompt_mode"),
        ({"reward": {"anneal_steps": 0}}, "use a positive number of steps, or null"),
        ({"reward": {"balance": "yes"}}, "wrong type: expected bool"),
        ({"reward": {"weights": {"format": -1}}}, "weights.format must be >= 0"),
        ({"reward": "atar"}, "must be a mapping"),
        ({"judge": {"backend": "gpt"}}, "judge.backend='gpt' is not valid"),
        ({"reward": {"mode": "atar_cr_tr"}, "judge": {"backend": "vllm"}}, "gpus_per_worker>=1"),
        ({"reward": {"mode": "atar_cr_tr"}, "judge": {"backend": "openai"}}, "needs audio_thinker.judge.base_url"),
        ({"reward": {"mode": "atar_cr_tr"}, "judge": {"num_workers": 0}}, "num_workers=0 must be positive"),
        ({"reward": {"mode": "atar_cr_tr"}, "judge": {"timeout_s": -1}}, "timeout_s=-1.0 must be positive"),
        ({"audio": {"sample_rate": 44100}}, "expect 16000 Hz"),
        ({"audio": {"on_too_long": "drop"}}, "on_too_long='drop' is not valid"),
        ({"audio": {"max_seconds": 0}}, "audio_thinker.audio: max_seconds=0.0 must be positive, or null"),
        ({"audio": {"ffmpeg_timeout_s": -1}}, "audio_thinker.audio: ffmpeg_timeout_s=-1.0 must be positive"),
        ({"audio": {"max_abs_sample": 0}}, "audio_thinker.audio: max_abs_sample=0.0 must be positive"),
    ],
)
def test_bad_values_say_how_to_fix(section, message):
    with pytest.raises(ConfigError, match=message):
        load_config(section)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"tiny_arch": "llama"}, "toy.tiny_arch='llama' is not valid; use one of: qwen2_audio, qwen2_5_omni_thinker"),
        ({"warmstart_model": "m", "synthetic_data": "d"}, "warm-starts toy.tiny_model on toy.synthetic_data: set both"),
        ({"warmstart_model": "m", "tiny_model": "t"}, "set both"),
        ({"tiny_modle": "t"}, "unknown key toy.tiny_modle; did you mean tiny_model"),
        ({"primed_model": "m"}, "toy.primed_model is now toy.warmstart_model"),
        ({"tiny_model": 3}, "toy.tiny_model=3 has the wrong type"),
    ],
)
def test_toy_section_says_how_to_fix(section, message):
    with pytest.raises(ConfigError, match=message):
        ToySection.load(section)


def test_toy_section_lives_outside_the_audio_thinker_schema():
    full = {"synthetic_data": "d", "tiny_model": "t", "tiny_judge": "j", "warmstart_model": "w"}
    assert ToySection.load(full) == ToySection(**full) and ToySection.load(None) == ToySection()
    with pytest.raises(ConfigError, match="audio_thinker.prepare moved to the top-level toy section"):
        load_config({"prepare": {"synthetic_data": "d"}})
    cfg = compose_config(["backbone=tiny_cpu", "toy.tiny_arch=gpt2"])
    with pytest.raises(ConfigError, match="toy.tiny_arch='gpt2'"):
        validate(cfg)  # main_grpo checks the toy section with ours


def test_judge_checks_only_when_the_judge_is_used():
    load_config({"reward": {"mode": "atar"}, "judge": {"num_workers": 0}})
    load_config({"reward": {"mode": "atar_cr"}, "judge": {"backend": "openai", "base_url": "http://127.0.0.1:9/v1"}})


def test_audio_section_is_the_loader_config():
    audio = load_config({"audio": {"max_seconds": 10, "on_too_long": "reject"}}).audio
    assert isinstance(audio, AudioConfig)
    assert (audio.sample_rate, audio.max_seconds, audio.on_too_long) == (16000, 10.0, "reject")


def test_anneal_horizon():
    assert anneal_steps(load_config({}), 1000) == 1000
    assert anneal_steps(load_config({"reward": {"anneal_steps": 50}}), 1000) == 50
    with pytest.raises(ConfigError, match="total_training_steps"):
        anneal_steps(load_config({}), None)


def test_verl_keys_we_depend_on_are_checked():
    with pytest.raises(ConfigError, match="adv_estimator=gae"):
        validate(compose_config(["algorithm.adv_estimator=gae"]))
    with pytest.raises(ConfigError, match="rollout.n must be >= 2"):
        validate(compose_config(["actor_rollout_ref.rollout.n=1"]))
    validate(compose_config(["audio_thinker.reward.mode=atar_cr_tr"]))  # the judge pool is wired in
    with pytest.raises(ConfigError, match="keep trainer.v1.trainer_mode=audio_thinker_sync"):
        validate(compose_config(["trainer.v1.trainer_mode=sync"]))


def test_entry_point_prints_config_and_rejects_bad_keys(tmp_path):
    run = [sys.executable, "-m", "audio_thinker.main_grpo", f"hydra.run.dir={tmp_path}", "audio_thinker.dry_run=true"]
    ok = subprocess.run(run + ["audio_thinker.reward.mode=atar"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert "mode: atar" in ok.stdout and "config OK (dry run" in ok.stdout
    bad = subprocess.run(run + ["+audio_thinker.reward.mdoe=atar"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2
    assert "did you mean reward.mode" in bad.stderr


# keys we add to verl's own sections on purpose (everything else must exist in verl's schema)
OUR_VERL_SECTION_KEYS = {"data.prompt_mode", "data.audio"}
# verl sections that are free-form dicts (engine arguments, HF config overrides)
FREE_FORM = (
    "actor_rollout_ref.rollout.engine_kwargs.",
    "actor_rollout_ref.model.override_config.",
    "ray_kwargs.ray_init.runtime_env.env_vars.",
    # real fields of verl's FSDP engine dataclass that its yaml does not list
    "actor_rollout_ref.actor.fsdp_config.mixed_precision.",
    "actor_rollout_ref.ref.fsdp_config.mixed_precision.",
    "actor_rollout_ref.actor.fsdp_config.wrap_policy.",
    "actor_rollout_ref.ref.fsdp_config.wrap_policy.",
)


def _leaf_keys(node, prefix=""):
    if OmegaConf.is_dict(node):
        for key in node.keys():
            child = node._get_node(key)
            path = f"{prefix}.{key}" if prefix else str(key)
            if path in OUR_VERL_SECTION_KEYS:
                yield path
            elif OmegaConf.is_dict(child) and len(child) > 0:
                yield from _leaf_keys(child, path)
            else:
                yield path


def _has_key(cfg, key):
    """Whether ``key`` exists (values that are still ``???`` count as existing)."""
    node = cfg
    for part in key.split("."):
        if not OmegaConf.is_dict(node) or part not in node.keys():
            return False
        node = node._get_node(part)
    return True


def _verl_schema():
    from hydra import initialize_config_module

    with initialize_config_module(config_module="verl.trainer.config", version_base=None):
        return compose(config_name="ppo_trainer")


@pytest.mark.parametrize("backbone", ["qwen2_audio_7b", "qwen2_5_omni_7b", "tiny_cpu"])
def test_every_backbone_composes_and_sets_only_keys_verl_knows(backbone):
    cfg = compose_config([f"backbone={backbone}"])
    validate(cfg)
    schema = _verl_schema()
    layer = OmegaConf.load(Path(CONFIG_DIR) / "backbone" / f"{backbone}.yaml")
    base = OmegaConf.load(Path(CONFIG_DIR) / f"{CONFIG_NAME}.yaml")
    for source in (layer, base):
        for key in _leaf_keys(source):
            top = key.split(".")[0]
            if top in ("audio_thinker", "toy", "hydra", "defaults") or key in OUR_VERL_SECTION_KEYS:
                continue
            if key.startswith(FREE_FORM):
                continue
            assert _has_key(schema, key), (
                f"{key} (set in {backbone} or the base config) is not a key of verl's ppo_trainer config"
            )


def test_every_job_process_registers_our_trainer():
    """verl looks the trainer up by name inside its task-runner process."""
    cfg = compose_config()
    modules = cfg.ray_kwargs.ray_init.runtime_env.env_vars.VERL_USE_EXTERNAL_MODULES.split(",")
    assert "audio_thinker.verl_ext.trainer" in modules
    code = (
        "import os; os.environ['VERL_USE_EXTERNAL_MODULES'] = %r\n"
        "import verl\n"
        "from verl.trainer.ppo.v1 import get_trainer_cls\n"
        "print(get_trainer_cls(%r).__name__)" % (",".join(modules), cfg.trainer.v1.trainer_mode)
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "AudioThinkerTrainer"


def test_gpu_backbones_size_prompts_for_30s_of_audio():
    for backbone in ("qwen2_audio_7b", "qwen2_5_omni_7b"):
        cfg = compose_config([f"backbone={backbone}"])
        audio_tokens = 25 * cfg.audio_thinker.audio.max_seconds  # ~25 tokens per second of audio
        assert cfg.data.max_prompt_length >= audio_tokens + 200
        assert cfg.actor_rollout_ref.rollout.name == "vllm"
        assert cfg.actor_rollout_ref.rollout.engine_kwargs.vllm.limit_mm_per_prompt.audio == 1


@pytest.mark.parametrize("overrides, name", [
    (["backbone=tiny_cpu"], "tiny_cpu_grpo_atar_cr_tr"),
    (["backbone=tiny_cpu", "audio_thinker.reward.mode=accuracy"], "tiny_cpu_grpo_accuracy"),
    (["backbone=qwen2_audio_7b"], "qwen2_audio_grpo_atar"),
    (["backbone=qwen2_5_omni_7b", "audio_thinker.reward.mode=atar_cr"], "qwen2_5_omni_grpo_atar_cr"),
])
def test_run_name_follows_the_reward_it_trains_with(overrides, name):
    """The demo trains atar_cr_tr: its run must not be named after another reward mode."""
    from omegaconf import OmegaConf

    from audio_thinker.compose import compose

    config = compose("audio_thinker.main_grpo", overrides)
    assert OmegaConf.select(config, "trainer.experiment_name") == name


def _grpo(overrides):
    from audio_thinker.compose import GRPO_ENTRY, compose

    return compose(GRPO_ENTRY, ["backbone=tiny_cpu", *overrides])


@pytest.mark.parametrize(("override", "message"), [
    ("trainer.total_training_steps=0", r"trainer.total_training_steps=0 must be a positive integer"),
    ("trainer.total_training_steps=2.5", r"trainer.total_training_steps=2.5 must be a positive integer"),
    ("actor_rollout_ref.actor.ppo_mini_batch_size=0", r"ppo_mini_batch_size=0 must be a positive integer"),
    ("data.train_batch_size=abc", r"data.train_batch_size='abc' must be a positive integer"),
    ("data.train_files=null", r"data.train_files is missing: set it to a parquet file"),
    ("data.train_files=[]", r"data.train_files is missing"),
    ("actor_rollout_ref.model.path=''", r"actor_rollout_ref.model.path is missing"),
    ("actor_rollout_ref.rollout.temperature=nan", r"rollout.temperature=nan must be a finite number >= 0"),
    ("actor_rollout_ref.rollout.temperature=inf", r"rollout.temperature=inf must be a finite number"),
    ("audio_thinker.reward.weights.format=nan", r"audio_thinker.reward.weights: format=nan must be a finite"),
    ("audio_thinker.reward.weights.consistency=inf", r"consistency=inf must be a finite"),
    ("audio_thinker.audio.max_seconds=inf", r"audio_thinker.audio: max_seconds=inf must be a finite number"),
    ("audio_thinker.audio.max_seconds=nan", r"max_seconds=nan must be a finite number"),
])
def test_verl_values_are_checked_before_ray_starts(override, message):
    with pytest.raises(ConfigError, match=message):
        validate(_grpo([override]))


def test_null_total_training_steps_lets_the_epochs_decide():
    validate(_grpo(["trainer.total_training_steps=null"]))


def test_non_finite_floats_are_refused_by_the_sections_themselves():
    from audio_thinker.rewards.combine import RewardWeights

    with pytest.raises(ValueError, match="think_quality=nan must be a finite number"):
        RewardWeights(think_quality=float("nan"))
    with pytest.raises(ValueError, match="max_abs_sample=inf must be a finite number"):
        AudioConfig(max_abs_sample=float("inf"))


def test_dry_run_runs_verl_validation_too(tmp_path):
    # ours accepts it, verl refuses it: the dry run must not say "config OK"
    run = [sys.executable, "-m", "audio_thinker.main_grpo", f"hydra.run.dir={tmp_path}", "backbone=tiny_cpu",
           "audio_thinker.dry_run=true", "data.train_batch_size=2"]
    bad = subprocess.run(run, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2, bad.stdout[-2000:]
    assert "config OK" not in bad.stdout
    assert "verl refuses this config: train_batch_size (2) must be >= actor.ppo_mini_batch_size (4)" in bad.stderr
