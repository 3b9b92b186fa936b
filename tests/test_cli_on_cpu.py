"""The resume guard: verl's checkpoint tracker is repaired before verl reads it (fake directory trees)."""

from __future__ import annotations

from pathlib import Path

import pytest

from audio_thinker.cli import TRACKER, is_complete_checkpoint, latest_checkpoint, repair_checkpoint_tracker


def _checkpoint(run: Path, step: int, *, world: int = 2, ranks: int | None = None, data: bool = True,
                fsdp_config: bool = True) -> Path:
    folder = run / f"global_step_{step}"
    actor = folder / "actor"
    actor.mkdir(parents=True)
    for rank in range(world if ranks is None else ranks):
        for kind in ("model", "optim", "extra_state"):
            (actor / f"{kind}_world_size_{world}_rank_{rank}.pt").write_bytes(b"x")
    if fsdp_config:
        (actor / "fsdp_config.json").write_text('{"FSDP_version": 1, "world_size": %d}' % world)
    if data:
        (folder / "data.pt").write_bytes(b"x")
    return folder


def test_complete_means_every_rank_config_and_dataloader_state(tmp_path):
    assert is_complete_checkpoint(_checkpoint(tmp_path, 1))
    assert not is_complete_checkpoint(_checkpoint(tmp_path, 2, ranks=1))  # rank 1's shard never written
    assert not is_complete_checkpoint(_checkpoint(tmp_path, 3, fsdp_config=False))
    assert not is_complete_checkpoint(_checkpoint(tmp_path, 4, data=False))
    assert not is_complete_checkpoint(tmp_path / "global_step_5")


def test_a_good_tracker_is_left_alone(tmp_path):
    _checkpoint(tmp_path, 2)
    _checkpoint(tmp_path, 4)
    (tmp_path / TRACKER).write_text("2")
    assert repair_checkpoint_tracker(tmp_path) is None
    assert (tmp_path / TRACKER).read_text() == "2"
    assert repair_checkpoint_tracker(tmp_path / "fresh") is None  # a new run: nothing to resume


@pytest.mark.parametrize(("tracker", "reason"), [
    ("", "the tracker was empty"),
    ("4\x00", "not a step number"),
    ("6", "global_step_6, which does not exist"),
    ("4", "global_step_4, which is incomplete"),
    (None, "there was no tracker"),
])
def test_a_bad_tracker_falls_back_to_the_newest_complete_step(tmp_path, tracker, reason):
    _checkpoint(tmp_path, 2)
    _checkpoint(tmp_path, 3)
    _checkpoint(tmp_path, 4, ranks=1)  # killed mid-save
    if tracker is not None:
        (tmp_path / TRACKER).write_text(tracker)
    message = repair_checkpoint_tracker(tmp_path)
    assert message is not None and message.startswith("resuming from global_step_3: ") and reason in message
    assert (tmp_path / TRACKER).read_text() == "3"
    assert latest_checkpoint(tmp_path) == tmp_path / "global_step_3"
    assert not list(tmp_path.glob(f".{TRACKER}.tmp-*"))
    assert repair_checkpoint_tracker(tmp_path) is None  # repaired: nothing more to do


def test_no_complete_step_starts_from_scratch(tmp_path):
    # max_actor_ckpt_to_keep=1 deleted step 2 and the kill came while step 4 was being saved
    _checkpoint(tmp_path, 4, data=False)
    (tmp_path / TRACKER).write_text("2")
    message = repair_checkpoint_tracker(tmp_path)
    assert message is not None and "starting from scratch" in message and "global_step_2" in message
    assert not (tmp_path / TRACKER).exists()  # verl starts afresh instead of failing on it
    assert (tmp_path / f"{TRACKER}.invalid").read_text() == "2"
