"""The output folder: input rows, the config record, resumable JSON-lines records, atomic outputs.

Records are appended batch by batch (flushed and fsynced) and keyed by
:func:`~audio_thinker.data.cot.filter.row_key`; the last record of a key wins, and a partial last
line left by a crash is cut off before appending again.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from audio_thinker.data.files import atomic_write
from audio_thinker.data.cot.filter import COT_KEYS
from audio_thinker.data.cot.settings import CotConfigError, config_diff
from audio_thinker.data.prompt_length import DEFAULT_MAX_QUESTION_CHARS, PROMPT_TOO_LONG, check_question_chars
from audio_thinker.data.rows import RowError, validate_row

CONFIG_NAME = "config.json"
CAPTIONS_NAME = "captions.jsonl"
RATIONALES_NAME = "rationales.jsonl"
ROWS_NAME = "cot.parquet"
SUMMARY_NAME = "summary.json"


def latest_records(lines: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The last record per ``key`` of JSON lines; blank and unreadable lines are skipped.

    >>> latest_records(['{"key": "a", "v": 1}', 'garbage', '{"key": "a", "v": 2}'])
    {'a': {'key': 'a', 'v': 2}}
    """
    out: dict[str, dict[str, Any]] = {}
    for line in lines:
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and "key" in record:
            out[str(record["key"])] = record
    return out


def read_rows(path: str | Path, *, max_question_chars: int | None = DEFAULT_MAX_QUESTION_CHARS,
              ) -> tuple[list[dict[str, Any]], list[tuple[int, RowError]]]:
    """The rows of a training parquet as plain Python objects, and the rows skipped as
    ``(position, RowError)``: a row that fails :func:`~audio_thinker.data.rows.validate_row`, or whose
    question and choices exceed ``max_question_chars`` characters (``prompt_too_long``: it would
    reach the rationale LLM's prompt; None: no bound), is left out and reported, never the whole
    file. A file where no row is valid is a ``ValueError``."""
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"rows file {path} not found: make training rows with python -m audio_thinker.data.avqa "
            "or python -m audio_thinker.data.synthetic"
        )
    rows, skipped = [], []
    for position, row in enumerate(pq.read_table(path).to_pylist()):
        try:
            validate_row(row)
            too_long = check_question_chars(row["extra_info"]["question"], row["extra_info"]["choices"],
                                            max_chars=max_question_chars)
            if too_long:
                raise RowError(PROMPT_TOO_LONG, too_long)
        except RowError as err:
            skipped.append((position, err))
            continue
        rows.append(row)
    if skipped and not rows:
        position, err = skipped[0]
        raise ValueError(f"{path}: no row is a training row (row {position} is not a training row: {err})")
    return rows, skipped


def load_jsonl(path: Path) -> dict[str, dict[str, Any]]:
    """:func:`latest_records` of a file (empty when it does not exist)."""
    if not path.is_file():
        return {}
    with path.open(encoding="utf-8") as handle:
        return latest_records(handle)


def check_config(out: Path, record: dict[str, Any]) -> None:
    """Write ``OUT/config.json``, or refuse when it (or records without it) says otherwise."""
    path = out / CONFIG_NAME
    if path.is_file():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as err:
            raise CotConfigError(f"{path} is unreadable ({err}); use a new --out") from None
        diff = config_diff(old, record)
        if diff:
            listed = "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in diff.items())
            raise CotConfigError(
                f"{out} holds CoT records made with other settings ({listed}): use a new --out, "
                "or delete the folder to start over"
            )
        return
    if any((out / name).is_file() for name in (CAPTIONS_NAME, RATIONALES_NAME)):
        raise CotConfigError(f"{out} holds CoT records but no {CONFIG_NAME}: use a new --out")
    atomic_write(path, (json.dumps(record, indent=2, sort_keys=True) + "\n").encode())


def parquet_bytes(rows: list[dict[str, Any]], input_schema: Any) -> bytes:
    """The output parquet; an empty one keeps the input schema (extra_info gains COT_KEYS)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if rows:
        table = pa.Table.from_pylist(rows)
    else:
        fields = []
        for f in input_schema:
            if f.name == "extra_info" and pa.types.is_struct(f.type):
                names = {sub.name for sub in f.type}
                extra = [pa.field(k, pa.string()) for k in COT_KEYS if k not in names]
                f = pa.field(f.name, pa.struct(list(f.type) + extra))
            fields.append(f)
        table = pa.schema(fields).empty_table()
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()
