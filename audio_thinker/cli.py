"""What the hydra entry points (``main_grpo``, ``main_sft``) share, so that none imports another."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from audio_thinker.config import ConfigError


def check_or_exit(config: DictConfig, check: Callable[[DictConfig], None],
                  dry_run_check: Callable[[DictConfig], None] | None = None) -> bool:
    """``check(config)``; a :class:`ConfigError` is printed and exits 2. With ``audio_thinker.dry_run``
    ``dry_run_check`` (e.g. verl's own validation, which the real run does later) runs on the resolved
    config too, then the resolved config is printed and False returned (nothing to start); True otherwise."""
    try:
        check(config)
        if config.audio_thinker.dry_run and dry_run_check is not None:
            dry_run_check(OmegaConf.create(OmegaConf.to_container(config, resolve=True)))
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


TRACKER = "latest_checkpointed_iteration.txt"


def _step_of(folder: Path) -> int | None:
    suffix = folder.name[len("global_step_"):]
    return int(suffix) if folder.name.startswith("global_step_") and suffix.isdigit() else None


def is_complete_checkpoint(folder: Path) -> bool:
    """Whether verl's trainer finished saving ``folder`` (a ``global_step_N``): its save writes every
    rank's ``actor/model_world_size_W_rank_R.pt`` (and ``extra_state_...``), then ``actor/fsdp_config.json``,
    then the dataloader state ``data.pt``, and only then the tracker."""
    actor = folder / "actor"
    shards = sorted(actor.glob("model_world_size_*_rank_*.pt"))
    if not shards or not (actor / "fsdp_config.json").is_file() or not (folder / "data.pt").is_file():
        return False
    world = {p.name.split("_")[3] for p in shards}
    if len(world) != 1 or not next(iter(world)).isdigit():
        return False
    size = int(next(iter(world)))
    return all((actor / f"{kind}_world_size_{size}_rank_{rank}.pt").is_file()
               for kind in ("model", "extra_state") for rank in range(size))


def repair_checkpoint_tracker(run_dir: Path) -> str | None:
    """Make verl's resume (``trainer.resume_mode=auto``) start from a checkpoint it can load.

    verl writes ``latest_checkpointed_iteration.txt`` non-atomically and after the folder: a kill leaves
    it empty (verl crashes on resume), or naming a folder that ``max_actor_ckpt_to_keep`` already
    deleted or that is only half written. Then the newest complete ``global_step_*`` folder is named in
    a tracker written atomically (none complete: the bad tracker is moved aside, and the run starts from
    scratch). Returns what was done, or None when the tracker was fine or there is nothing to resume.
    """
    tracker = run_dir / TRACKER
    folders = sorted((f for f in run_dir.glob("global_step_*") if f.is_dir() and _step_of(f) is not None),
                     key=_step_of, reverse=True)  # type: ignore[arg-type]
    if not tracker.exists():
        problem = "there was no tracker"
        if not folders:
            return None
    else:
        text = tracker.read_text(errors="replace").strip()
        named = run_dir / f"global_step_{text}"
        if not text:
            problem = "the tracker was empty"
        elif not text.isdigit():
            problem = f"the tracker held {text[:40]!r}, not a step number"
        elif not named.is_dir():
            problem = f"the tracker named {named.name}, which does not exist"
        elif not is_complete_checkpoint(named):
            problem = f"the tracker named {named.name}, which is incomplete (a save was cut short)"
        else:
            return None
    complete = next((f for f in folders if is_complete_checkpoint(f)), None)
    if complete is None:
        if tracker.exists():
            os.replace(tracker, tracker.with_name(TRACKER + ".invalid"))
        return (f"no complete checkpoint in {run_dir} ({problem}; {len(folders)} incomplete step folders): "
                "starting from scratch")
    staging = tracker.with_name(f".{TRACKER}.tmp-{os.getpid()}")
    staging.write_text(str(_step_of(complete)))
    os.replace(staging, tracker)
    return f"resuming from {complete.name}: {problem}"
