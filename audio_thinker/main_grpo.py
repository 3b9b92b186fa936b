"""Entry point: ``python -m audio_thinker.main_grpo <hydra overrides>``.

Composes verl's own trainer defaults (``pkg://verl.trainer.config``) with ``conf/`` of this
project, validates the ``audio_thinker`` section and the verl keys the method depends on up front
(errors say how to fix the key), then runs verl's own V1 task runner (``TaskRunnerV1``) with our
trainer (``trainer.v1.trainer_mode=audio_thinker_sync``), our dataset (``data.custom_cls``) and
our reward manager (``reward.reward_manager``). Ray: ``ray.init()`` joins the cluster named by
``RAY_ADDRESS`` when it is set and starts a local one otherwise.

``audio_thinker.dry_run=true`` validates and prints the resolved config without starting Ray.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from audio_thinker.config import ConfigError, load_config
from audio_thinker.rewards.combine import RewardMode

CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "conf")
CONFIG_NAME = "audio_thinker_grpo"
TRAINER_MODE = "audio_thinker_sync"


def validate(config: DictConfig) -> None:
    """Fail fast on our keys and on the verl keys our method depends on."""
    load_config(config.get("audio_thinker"))
    if config.algorithm.adv_estimator != "grpo":
        raise ConfigError(
            f"algorithm.adv_estimator={config.algorithm.adv_estimator}: Audio-Thinker's "
            "batch-level reward feeds verl's GRPO estimator; set algorithm.adv_estimator=grpo"
        )
    if config.actor_rollout_ref.rollout.n < 2:
        raise ConfigError(
            "actor_rollout_ref.rollout.n must be >= 2: GRPO compares responses within a group"
        )
    if config.trainer.v1.trainer_mode != TRAINER_MODE:
        raise ConfigError(
            f"trainer.v1.trainer_mode={config.trainer.v1.trainer_mode}: the batch-level ATAR reward "
            f"lives in the {TRAINER_MODE!r} trainer; keep trainer.v1.trainer_mode={TRAINER_MODE}"
        )
    mode = RewardMode(config.audio_thinker.reward.mode)
    if mode.uses_judge:
        raise ConfigError(
            f"audio_thinker.reward.mode={mode.value} needs the LLM-judge pool, which is not wired into "
            "training yet (every judgement would fall back to the failure value); use "
            "audio_thinker.reward.mode=atar (or accuracy) until the judge pool lands"
        )
    if not config.trainer.use_v1:
        raise ConfigError("trainer.use_v1=false selects verl's deprecated trainer: keep trainer.use_v1=true")


def run(config: DictConfig) -> None:
    """Hand the validated config to verl's own V1 task runner (as ``verl.trainer.main_ppo`` does)."""
    from verl.trainer.main_ppo import TaskRunnerV1, run_ppo
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config

    validate_config(
        config=config, use_reference_policy=need_reference_policy(config), use_critic=need_critic(config)
    )
    where = os.environ.get("RAY_ADDRESS")
    print(f"Ray: {'joining the cluster at ' + where if where else 'starting a local cluster'}")
    run_ppo(config, task_runner_class=TaskRunnerV1)


@hydra.main(config_path=CONFIG_DIR, config_name=CONFIG_NAME, version_base=None)
def main(config: DictConfig) -> None:
    try:
        validate(config)
    except ConfigError as error:
        print(f"config error: {error}", file=sys.stderr)
        sys.exit(2)
    if config.audio_thinker.dry_run:
        print(OmegaConf.to_yaml(config, resolve=True))
        print("config OK (dry run: nothing was started)")
        return
    run(config)


if __name__ == "__main__":
    main()
