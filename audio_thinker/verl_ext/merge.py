"""Which model to evaluate: a Hugging Face directory, or a verl checkpoint merged by verl's merger.

:func:`resolve_model` accepts

* a Hugging Face model directory (``config.json`` plus weights): used as it is;
* a verl training run directory (``trainer.default_local_dir``, holding
  ``latest_checkpointed_iteration.txt``): its latest checkpoint;
* a verl checkpoint ``global_step_N`` directory, or its ``actor`` directory.

A verl checkpoint holds the actor's FSDP shards (``model_world_size_W_rank_R.pt``, DTensors) and
the Hugging Face config/processor files (``actor/huggingface``). It is converted once with verl's
own model merger (``verl.model_merger``, FSDP backend; the same as
``python -m verl.model_merger merge --backend fsdp --local_dir .../actor --target_dir ...``) into
``merged_dir`` (default ``<actor>/merged_hf``); a marker records which shards it came from, so a
later evaluation of the same checkpoint reuses it and a changed checkpoint is merged again. Note
that verl's merger writes the weights in bfloat16 (what the 7B models use; a float32 tiny model
is rounded). Megatron checkpoints are refused with the command to merge them by hand.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

MERGED_NAME = "merged_hf"
MARKER = "audio_thinker_merge.json"
_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                 "pytorch_model.bin.index.json")


@dataclass(frozen=True)
class ResolvedModel:
    """The Hugging Face directory to load, and where it came from."""

    hf_dir: str
    #: ``hf`` (given directly) or ``verl`` (merged from a verl checkpoint)
    source: str
    #: the verl actor checkpoint directory (``source == "verl"``)
    checkpoint_dir: str | None = None
    #: the checkpoint's training step, when known
    step: int | None = None


def is_hf_model_dir(path: Path) -> bool:
    return (path / "config.json").is_file() and any((path / name).is_file() for name in _WEIGHT_FILES)


def _shards(actor: Path) -> list[Path]:
    return sorted(actor.glob("model_world_size_*_rank_*.pt"))


def _fingerprint(actor: Path) -> list[list]:
    return [[p.name, p.stat().st_size, int(p.stat().st_mtime_ns)] for p in _shards(actor)]


def find_actor_dir(path: Path) -> tuple[Path, int | None]:
    """The actor checkpoint directory under ``path`` (see the module docstring) and its step."""
    if (path / "latest_checkpointed_iteration.txt").is_file():
        text = (path / "latest_checkpointed_iteration.txt").read_text().strip()
        if not text.isdigit():
            raise ValueError(f"{path}/latest_checkpointed_iteration.txt holds {text!r}, not a step number")
        path = path / f"global_step_{int(text)}"
        if not path.is_dir():
            raise FileNotFoundError(f"{path} (named by latest_checkpointed_iteration.txt) does not exist")
    actor = path / "actor" if (path / "actor").is_dir() else path
    step_dir = actor.parent if actor.name == "actor" else actor
    step = int(step_dir.name.rsplit("_", 1)[1]) if step_dir.name.startswith("global_step_") else None
    if (actor / "dist_ckpt").exists() or (actor / "huggingface").is_dir() and not _shards(actor):
        raise ValueError(
            f"{actor} is not an FSDP checkpoint (Megatron?): merge it with `python -m verl.model_merger merge "
            f"--backend megatron --local_dir {actor} --target_dir <out>` and evaluate <out>"
        )
    if not _shards(actor) or not (actor / "fsdp_config.json").is_file():
        raise FileNotFoundError(
            f"{path} is neither a Hugging Face model directory (config.json + weights) nor a verl checkpoint "
            "(a run directory with latest_checkpointed_iteration.txt, a global_step_N directory, or its actor/ "
            "directory with model_world_size_*_rank_*.pt and fsdp_config.json)"
        )
    return actor, step


def merge_checkpoint(actor: Path, target: Path) -> Path:
    """Merge the FSDP actor checkpoint into ``target`` with verl's model merger (atomic; reused when current)."""
    fingerprint = _fingerprint(actor)
    marker = target / MARKER
    if marker.is_file() and is_hf_model_dir(target):
        try:
            if json.loads(marker.read_text()).get("shards") == fingerprint:
                return target
        except (OSError, json.JSONDecodeError):
            pass
    from verl.model_merger.base_model_merger import ModelMergerConfig
    from verl.model_merger.fsdp_model_merger import FSDPModelMerger

    from audio_thinker.verl_ext.plugin import register

    register()  # our audio model classes and processor for the merger's auto classes
    staging = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    config = ModelMergerConfig(
        operation="merge", backend="fsdp", local_dir=str(actor), target_dir=str(staging),
        hf_model_config_path=str(actor / "huggingface"),
    )
    merger = FSDPModelMerger(config)
    try:
        merger.merge_and_save()
    finally:
        merger.cleanup()
    (staging / MARKER).write_text(json.dumps({"checkpoint": str(actor), "shards": fingerprint}, indent=2))
    if target.exists():
        shutil.rmtree(target)
    os.replace(staging, target)
    return target


def resolve_model(path: str | os.PathLike[str], *, merged_dir: str | os.PathLike[str] | None = None) -> ResolvedModel:
    """The Hugging Face directory for ``path`` (merging a verl checkpoint when needed)."""
    root = Path(path).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"model path {root} does not exist")
    if is_hf_model_dir(root):
        return ResolvedModel(str(root), "hf")
    actor, step = find_actor_dir(root)
    target = Path(merged_dir).expanduser() if merged_dir else actor / MERGED_NAME
    merged = merge_checkpoint(actor, target)
    return ResolvedModel(str(merged), "verl", str(actor), step)
