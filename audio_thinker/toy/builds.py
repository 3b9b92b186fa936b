"""Crash-safe, concurrency-safe model directories: what every demo builder shares.

A build (tiny model, tiny judge, warm-start) writes everything into a private sibling staging
directory, its marker file (a JSON record of what was built) last, then renames the staging
directory into place (:func:`build_dir`). A half-written directory therefore never holds a marker,
and a directory this tool did not write is never deleted (:func:`is_replaceable`). Concurrent
builders of the same output each build privately; the first to finish wins (``done``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import Any

__all__ = ["build_dir", "init_model", "install_dir", "is_replaceable", "quiet_hub", "read_marker", "sha256"]


def read_marker(out_dir: str | Path, name: str) -> dict[str, Any] | None:
    """The JSON object in ``out_dir / name``, or None when absent or unreadable."""
    try:
        marker = json.loads((Path(out_dir) / name).read_text())
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) else None


def is_replaceable(out_dir: Path, *, marker: str, outputs: Collection[str], foreign: Collection[str] = ()) -> bool:
    """Whether ``out_dir`` may be deleted to install a new build: it is missing, or holds the build's
    ``marker``, or only names from ``outputs`` (an interrupted build), and no name from ``foreign``
    (the marker of another kind of build, e.g. the base model of a warm-start)."""
    if not out_dir.exists():
        return True
    if not out_dir.is_dir():
        return False
    names = {p.name for p in out_dir.iterdir()}
    if names & set(foreign):
        return False
    return marker in names or names <= set(outputs)


def install_dir(staging: Path, out_dir: Path, *, done: Callable[[], bool], replaceable: Callable[[Path], bool],
                what: str) -> None:
    """Rename the finished ``staging`` directory to ``out_dir`` (replacing an older build).

    ``done()`` says that a concurrent builder already installed an acceptable build (it is kept);
    ``replaceable(out_dir)`` guards against deleting a directory this tool did not write.
    """
    for _ in range(3):
        if done():
            return  # a concurrent builder finished first: keep theirs
        if not replaceable(out_dir):
            raise FileExistsError(f"{out_dir} exists and is not a {what} directory: not replacing it")
        shutil.rmtree(out_dir, ignore_errors=True)
        try:
            os.replace(staging, out_dir)
            return
        except OSError:  # someone re-created out_dir in between: look again
            continue
    raise RuntimeError(f"could not move the {what} into {out_dir}")


def build_dir(out_dir: str | Path, write: Callable[[Path], dict[str, Any]], *, marker: str,
              replaceable: Callable[[Path], bool], done: Callable[[], bool], what: str) -> Path:
    """Build ``out_dir`` crash-safely: ``write(staging)`` fills a sibling staging directory and returns
    the marker record, written as ``staging / marker`` last; then :func:`install_dir`. Returns the
    absolute ``out_dir``. A directory that is not ``replaceable`` is refused before any work."""
    out = Path(out_dir).absolute()
    if not replaceable(out):
        raise FileExistsError(f"{out} exists and is not a {what} directory: not replacing it")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        staging.chmod(0o755)
        info = write(staging)
        (staging / marker).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
        install_dir(staging, out, done=done, replaceable=replaceable, what=what)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


@contextlib.contextmanager
def quiet_hub() -> Iterator[None]:
    """transformers' progress bars (loading / saving shards) off inside the block."""
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if bars:
            hf_logging.enable_progress_bar()


def init_model(model_class: type, config: Any, *, seed: int) -> Any:
    """Randomly initialised float32 ``model_class(config)`` in eval mode; the weights depend only on ``seed``."""
    import torch

    torch.manual_seed(seed)
    return model_class(config).to(torch.float32).eval()


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file's content."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
