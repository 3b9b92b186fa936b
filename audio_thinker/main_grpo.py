"""Entry point: ``python -m audio_thinker.main_grpo <hydra overrides>``.

Composes verl's own trainer defaults (``pkg://verl.trainer.config``) with ``conf/`` of this
project, validates the ``audio_thinker`` section up front (errors say how to fix the key), and
prints the resolved config. Training itself is wired to verl's V1 task runner by the
"Audio in verl" work; until then this entry point stops after validation, so a config can be
checked before a cluster is reserved (``--cfg job`` and other hydra flags work as usual).
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from audio_thinker.config import ConfigError, load_config

CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "conf")
CONFIG_NAME = "audio_thinker_grpo"


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


@hydra.main(config_path=CONFIG_DIR, config_name=CONFIG_NAME, version_base=None)
def main(config: DictConfig) -> None:
    try:
        validate(config)
    except ConfigError as error:
        print(f"config error: {error}", file=sys.stderr)
        sys.exit(2)
    print(OmegaConf.to_yaml(config, resolve=True))
    print("config OK (training is wired in by the 'Audio in verl' work; nothing was run)")


if __name__ == "__main__":
    main()
