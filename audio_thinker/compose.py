"""Compose an entry point's config and run its checks, without starting anything.

One function, :func:`compose_and_validate`, answers "would ``python -m ENTRY OVERRIDES`` accept
this config?" for every caller that must know before a job starts: ``python -m
audio_thinker.recipes compose``, ``launch/submit.py`` (before the upload) and the tests. It

1. composes the entry point's hydra config (``CONFIG_DIR`` / ``CONFIG_NAME`` of the module) with
   hydra's compose API, as the entry point's ``@hydra.main`` would, and resolves it the way the
   running job does (``${hydra:runtime.choices.backbone}`` in experiment names included);
2. runs the entry point's own ``validate(config)``;
3. for ``audio_thinker.main_grpo`` also verl's ``validate_config`` (what ``main_grpo.run`` calls
   before Ray starts: batch sizes against the GPU count, micro-batch settings).

Every refusal is a :class:`~audio_thinker.config.ConfigError` whose message says what to fix.
``ImportError`` (hydra, verl or the entry point not importable here) is left to the caller.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
import warnings
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from audio_thinker.config import ConfigError

GRPO_ENTRY = "audio_thinker.main_grpo"
SFT_ENTRY = "audio_thinker.main_sft"


def entry_module(entry: str) -> ModuleType:
    """The entry point's module; it must expose ``CONFIG_DIR`` and ``CONFIG_NAME`` (hydra)."""
    module = importlib.import_module(entry)
    if not hasattr(module, "CONFIG_DIR") or not hasattr(module, "CONFIG_NAME"):
        raise ConfigError(f"{entry} has no CONFIG_DIR / CONFIG_NAME: not a hydra entry point of this project")
    return module


def compose(entry: str, overrides: Sequence[str] = ()) -> Any:
    """The resolved config ``python -m entry overrides`` runs with (hydra's compose API).

    Hydra's own flags (``--cfg job``) are not overrides and are refused; unknown keys, missing group
    options and values that do not resolve raise :class:`ConfigError` with hydra's message."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from hydra.errors import HydraException
    from omegaconf import OmegaConf, open_dict
    from omegaconf.errors import OmegaConfBaseException

    flags = [item for item in overrides if item.startswith("-")]
    if flags:
        raise ConfigError(f"compose takes hydra overrides only, not flags: {' '.join(flags)}")
    module = entry_module(entry)
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=module.CONFIG_DIR, version_base=None):
            config = hydra_compose(config_name=module.CONFIG_NAME, overrides=list(overrides),
                                   return_hydra_config=True)
        # what @hydra.main does before the task runs: ${hydra:...} resolves against this run
        HydraConfig.instance().set_config(config)
        with open_dict(config):
            del config["hydra"]
        OmegaConf.resolve(config)
    except (HydraException, OmegaConfBaseException) as error:
        raise ConfigError(f"{entry}: {error}") from None
    finally:
        GlobalHydra.instance().clear()
    return config


def validate(entry: str, config: Any) -> None:
    """The entry point's own ``validate(config)``; for GRPO also verl's ``validate_config``."""
    check = getattr(entry_module(entry), "validate", None)
    if check is not None:
        check(config)
    if entry == GRPO_ENTRY:
        verl_validate(config)


def compose_and_validate(entry: str, overrides: Sequence[str] = ()) -> Any:
    """:func:`compose`, then :func:`validate`: the config, or a :class:`ConfigError`."""
    config = compose(entry, overrides)
    validate(entry, config)
    return config


def verl_validate(config: Any) -> None:
    """verl's ``validate_config`` as ``main_grpo.run`` calls it; its refusals become :class:`ConfigError`.
    verl prints a line when it passes: that goes to stderr, so stdout can stay the config."""
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config

    try:
        with contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "Disabled critic as adv_estimator != gae"
            validate_config(config=config, use_reference_policy=need_reference_policy(config),
                            use_critic=need_critic(config))
    except (AssertionError, ValueError) as error:
        raise ConfigError(f"verl refuses this config: {error}") from None
