"""Entry point: ``python -m audio_thinker.main_grpo <hydra overrides>``.

Composes verl's own trainer defaults (``pkg://verl.trainer.config``) with ``conf/`` of this
project, validates the ``audio_thinker`` section and the verl keys the method depends on up front
(errors say how to fix the key), then runs verl's own V1 task runner (``TaskRunnerV1``) with our
trainer (``trainer.v1.trainer_mode=audio_thinker_sync``), our dataset (``data.custom_cls``) and
our reward manager (``reward.reward_manager``). Ray: ``ray.init()`` joins the cluster named by
``RAY_ADDRESS`` when it is set and starts a local one otherwise; a local one listens on 127.0.0.1
only (:func:`local_cluster_env`).

Before training, :func:`audio_thinker.toy.prepare.prepare` builds the demo assets the top-level
``toy`` section names and are missing (the embedded default: the synthetic data set, the tiny
policy, its warm-start and the tiny judge). Every launch
logs metrics to its own ``{trainer.default_local_dir}/metrics/{timestamp}.jsonl`` (verl's ``file``
logger truncates its file, so a resumed run gets a new one) and, when ``tensorboard`` is a logger,
to ``{trainer.default_local_dir}/tensorboard``; the environment variables ``VERL_FILE_LOGGER_PATH``
and ``TENSORBOARD_DIR`` override both. At the end it prints a summary of the run
(:mod:`audio_thinker.run_summary`) and exits non-zero when training failed or logged fewer steps
than asked for.

``audio_thinker.dry_run=true`` validates and prints the resolved config without starting Ray.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Mapping
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf, open_dict

from audio_thinker.cli import check_or_exit, latest_checkpoint, repair_checkpoint_tracker
from audio_thinker.compose import verl_validate
from audio_thinker.config import AudioThinkerConfig, ConfigError, load_config
from audio_thinker.toy.prepare import ToySection, prepare

CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "conf")
CONFIG_NAME = "audio_thinker_grpo"
TRAINER_MODE = "audio_thinker_sync"


def validate(config: DictConfig) -> None:
    """Fail fast on our keys (``audio_thinker``, ``toy``) and on the verl keys our method depends on."""
    load_config(config.get("audio_thinker"))
    ToySection.load(config.get("toy"))
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
    if not config.trainer.use_v1:
        raise ConfigError("trainer.use_v1=false selects verl's deprecated trainer: keep trainer.use_v1=true")
    check_verl_values(config)


def _positive_int(config: DictConfig, key: str, *, optional: bool = False, hint: str = "") -> None:
    value = OmegaConf.select(config, key)
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{key}={value!r} must be a positive integer{hint}")


def check_verl_values(config: DictConfig) -> None:
    """The verl values a run needs, checked before Ray starts (verl finds them late, or never)."""
    _positive_int(config, "trainer.total_training_steps", optional=True,
                  hint=" (or null: trainer.total_epochs decides)")
    _positive_int(config, "data.train_batch_size", hint=" (prompts per step)")
    _positive_int(config, "actor_rollout_ref.actor.ppo_mini_batch_size",
                  hint=" (prompts per actor update; at most data.train_batch_size)")
    for key, what in (("data.train_files", "a parquet file (or a list of them) of training prompts"),
                      ("actor_rollout_ref.model.path", "the Hugging Face model to train (id or directory)")):
        value = OmegaConf.select(config, key)
        if value is None or (isinstance(value, str) and not value.strip()) or (
                not isinstance(value, str) and not list(value)):
            raise ConfigError(f"{key} is missing: set it to {what}")
    for key in ("actor_rollout_ref.rollout.temperature", "actor_rollout_ref.rollout.val_kwargs.temperature"):
        value = OmegaConf.select(config, key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ConfigError(f"{key}={value!r} must be a finite number >= 0 (1.0 samples, 0 is greedy)")


def configure_outputs(config: DictConfig) -> Path | None:
    """Per-launch metric file (and tensorboard folder) under the run directory, passed to every Ray
    process through the job's runtime_env; returns the metric file (None without a file logger)."""
    run_dir = Path(str(config.trainer.default_local_dir)).absolute()
    loggers = list(config.trainer.logger or [])
    with open_dict(config):
        return _configure_outputs(config.ray_kwargs.ray_init.runtime_env.env_vars, run_dir, loggers)


def _configure_outputs(env_vars: DictConfig, run_dir: Path, loggers: list[str]) -> Path | None:
    metrics_file = None
    if "file" in loggers:
        from audio_thinker.run_summary import new_metrics_file

        given = os.environ.get("VERL_FILE_LOGGER_PATH") or env_vars.get("VERL_FILE_LOGGER_PATH")
        metrics_file = Path(given) if given else new_metrics_file(run_dir)
        env_vars["VERL_FILE_LOGGER_PATH"] = str(metrics_file)
    if "tensorboard" in loggers:
        env_vars["TENSORBOARD_DIR"] = os.environ.get("TENSORBOARD_DIR") or env_vars.get(
            "TENSORBOARD_DIR", str(run_dir / "tensorboard")
        )
    return metrics_file


def report(config: DictConfig, metrics_file: Path | None) -> int:
    """Print the run summary; 1 when the run logged fewer training steps than asked for."""
    from audio_thinker.run_summary import format_summary, load_history, metric_files, summarize

    run_dir = Path(str(config.trainer.default_local_dir)).absolute()
    paths = metric_files(run_dir)
    if metrics_file is not None and metrics_file not in paths and metrics_file.exists():
        paths.append(metrics_file)
    history = load_history(paths)
    summary = summarize(history)
    checkpoint = latest_checkpoint(run_dir)
    print(format_summary(summary, title=str(config.trainer.experiment_name),
                         checkpoint=str(checkpoint) if checkpoint else None, metric_paths=paths))
    expected = config.trainer.total_training_steps
    if metrics_file is None or not expected:
        return 0
    if summary.last_step is None or summary.last_step < int(expected):
        print(
            f"error: the run logged training steps up to {summary.last_step} of {expected} "
            f"(metrics: {', '.join(map(str, paths)) or 'none'})", file=sys.stderr,
        )
        return 1
    return 0


#: set (unless already set) before ``ray.init()`` starts a local cluster. Ray's switch for its
#: macOS/Windows behaviour makes the node IP 127.0.0.1 (``_node_ip_address="127.0.0.1"`` is turned
#: back into the machine's address on Linux): the GCS, raylet, worker and agent ports, and what
#: binds Ray's node IP (TransferQueue's ZMQ sockets, which unpickle what they receive; verl's
#: MASTER_ADDR) stay on loopback. ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=1`` opts out.
LOCAL_CLUSTER_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


def local_cluster_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The variables to add to ``environ`` before ``ray.init()``: :data:`LOCAL_CLUSTER_ENV` when it
    starts a local cluster, nothing when ``RAY_ADDRESS`` names one to join; values already in
    ``environ`` are kept."""
    if environ.get("RAY_ADDRESS"):
        return {}
    return {k: v for k, v in LOCAL_CLUSTER_ENV.items() if k not in environ}


def confine_local_cluster() -> None:
    """Add :func:`local_cluster_env` to ``os.environ`` (inherited by every Ray process this one
    starts). Ray reads the switch when it is imported, and hydra imports verl (hence Ray) while it
    composes the config (``pkg://verl.trainer.config``), so ``python -m audio_thinker.main_grpo``
    calls this first thing; :func:`run` calls it again, where it fails if that was too late."""
    added = local_cluster_env(os.environ)
    if added and "ray._private.ray_constants" in sys.modules:
        raise RuntimeError(
            f"Ray was imported before main_grpo could set {', '.join(added)} for a local cluster: "
            "set them in the environment before starting Python, or call run() before importing ray"
        )
    os.environ.update(added)


def run(config: DictConfig) -> int:
    """Hand the validated config to verl's own V1 task runner (as ``verl.trainer.main_ppo`` does)."""
    confine_local_cluster()  # a no-op after the one in __main__; an error if Ray read the switch first
    from verl.trainer.main_ppo import TaskRunnerV1, run_ppo

    # verl resolves the config again in its task-runner actor, where ${hydra:...} (experiment names
    # use ${hydra:runtime.choices.backbone}) has no hydra run to resolve against: resolve it here
    OmegaConf.resolve(config)
    verl_validate(config)
    metrics_file = configure_outputs(config)
    if config.trainer.resume_mode == "auto":
        repaired = repair_checkpoint_tracker(Path(str(config.trainer.default_local_dir)))
        if repaired:
            print(repaired)
    where = os.environ.get("RAY_ADDRESS")
    print(f"Ray: {'joining the cluster at ' + where if where else 'starting a local cluster'}")
    run_ppo(config, task_runner_class=TaskRunnerV1)
    return report(config, metrics_file)


@hydra.main(config_path=CONFIG_DIR, config_name=CONFIG_NAME, version_base=None)
def main(config: DictConfig) -> None:
    if not check_or_exit(config, validate, dry_run_check=verl_validate):
        return
    ours: AudioThinkerConfig = load_config(config.get("audio_thinker"))
    prepare(ToySection.load(config.get("toy")), prompt_mode=ours.prompt_mode)
    sys.exit(run(config))


if __name__ == "__main__":
    confine_local_cluster()  # before hydra composes verl's config, which imports Ray
    main()
