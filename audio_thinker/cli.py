"""What the hydra entry points (``main_grpo``, ``main_sft``) share, so that none imports another."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from audio_thinker.config import ConfigError


def check_or_exit(config: DictConfig, check: Callable[[DictConfig], None]) -> bool:
    """``check(config)``; a :class:`ConfigError` is printed and exits 2. With ``audio_thinker.dry_run``
    the resolved config is printed and False returned (nothing to start); True otherwise."""
    try:
        check(config)
    except ConfigError as error:
        print(f"config error: {error}", file=sys.stderr)
        sys.exit(2)
    if config.audio_thinker.dry_run:
        print(OmegaConf.to_yaml(config, resolve=True))
        print("config OK (dry run: nothing was started)")
        return False
    return True


def latest_checkpoint(run_dir: Path) -> Path | None:
    """verl's ``latest_checkpointed_iteration.txt`` -> the checkpoint folder it names."""
    marker = run_dir / "latest_checkpointed_iteration.txt"
    try:
        step = int(marker.read_text().strip())
    except (OSError, ValueError):
        return None
    folder = run_dir / f"global_step_{step}"
    return folder if folder.is_dir() else None
