"""Crash-safe file writes shared by every resumable output (evaluation records, CoT stores,
prediction files): atomic replacement, fsynced JSON-lines appends and tail repair.

A run killed mid-write leaves at most a partial last line in a JSON-lines file;
:func:`repair_jsonl_tail` cuts it before the next append, so the next record starts on its own
line instead of being glued to the fragment (and lost on every later read).

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "r.jsonl"
>>> _ = path.write_text('{"a": 1}\\n{"b": 2', encoding="utf-8")
>>> repair_jsonl_tail(path)
7
>>> with path.open("a", encoding="utf-8") as handle:
...     append_jsonl(handle, [{"c": 3}])
>>> path.read_text(encoding="utf-8")
'{"a": 1}\\n{"c": 3}\\n'
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any


def atomic_write(path: str | os.PathLike[str], data: bytes | str, *, mode: int | None = None) -> Path:
    """Write ``path`` through a fsynced temporary file and a rename: readers never see half a file.

    ``mode``: permission bits of the result (default: what a new file gets under the umask).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    handle, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(payload)
            out.flush()
            os.fsync(out.fileno())
        if mode is None:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask  # mkstemp creates 0600
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return target


def repair_jsonl_tail(path: str | os.PathLike[str]) -> int:
    """Cut a partial last line (a crash mid-write); return the bytes removed (0: nothing to do)."""
    target = Path(path)
    if not target.is_file():
        return 0
    data = target.read_bytes()
    if not data or data.endswith(b"\n"):
        return 0
    keep = data.rfind(b"\n") + 1
    with target.open("r+b") as handle:
        handle.truncate(keep)
    return len(data) - keep


def append_jsonl(handle: Any, records: Iterable[Mapping[str, Any]], *, sort_keys: bool = False) -> None:
    """Append one JSON line per record, then flush and fsync: a kill loses at most this batch."""
    for record in records:
        handle.write(json.dumps(record, ensure_ascii=False, sort_keys=sort_keys) + "\n")
    handle.flush()
    os.fsync(handle.fileno())
