"""The hydra config composes verl's defaults through pkg:// and our section validates."""

import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from audio_thinker.config import AudioThinkerConfig, ConfigError, anneal_steps, load_config
from audio_thinker.main_grpo import CONFIG_DIR, CONFIG_NAME, validate
from audio_thinker.rewards.combine import RewardMode

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


def test_overrides_reach_the_schema():
    cfg = compose_config(["audio_thinker.reward.mode=atar_cr", "audio_thinker.prompt_mode=think"])
    ours = load_config(cfg.audio_thinker)
    assert ours.reward.to_reward_config().mode is RewardMode.ATAR_CR
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
        ({"judge": {"backend": "vllm"}}, "gpus_per_worker>=1"),
        ({"judge": {"backend": "openai"}}, "needs audio_thinker.judge.base_url"),
        ({"judge": {"num_workers": 0}}, "num_workers=0 must be positive"),
        ({"judge": {"timeout_s": -1}}, "timeout_s=-1.0 must be positive"),
        ({"audio": {"sample_rate": 44100}}, "expect 16000 Hz"),
        ({"audio": {"on_too_long": "drop"}}, "on_too_long='drop' is not valid"),
    ],
)
def test_bad_values_say_how_to_fix(section, message):
    with pytest.raises(ConfigError, match=message):
        load_config(section)


def test_judge_checks_only_when_the_judge_is_used():
    load_config({"reward": {"mode": "atar"}, "judge": {"num_workers": 0}})
    load_config({"reward": {"mode": "atar_cr"}, "judge": {"backend": "openai", "base_url": "http://127.0.0.1:9/v1"}})


def test_audio_section_maps_to_the_loader_config():
    audio = load_config({"audio": {"max_seconds": 10, "on_too_long": "reject"}}).audio.to_audio_config()
    assert (audio.target_sr, audio.max_seconds, audio.on_too_long) == (16000, 10.0, "reject")


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


def test_entry_point_prints_config_and_rejects_bad_keys(tmp_path):
    run = [sys.executable, "-m", "audio_thinker.main_grpo", f"hydra.run.dir={tmp_path}"]
    ok = subprocess.run(run + ["audio_thinker.reward.mode=atar"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert "mode: atar" in ok.stdout and "config OK" in ok.stdout
    bad = subprocess.run(run + ["+audio_thinker.reward.mdoe=atar"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2
    assert "did you mean reward.mode" in bad.stderr
