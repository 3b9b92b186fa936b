"""Template CoT rationales for the synthetic set: SFT + CoT data for the CPU recipe, no LLM needed.

The paper's CoT data comes from a large text LLM (appendix A.2; ``python -m audio_thinker.data.cot``
writes it for AVQA). The embedded CPU default has no such model, so ``main_sft`` can write a
stand-in: every row of ``{src}/{split}.parquet`` gets ``extra_info["rationale"]`` (the key the CoT
generator writes, read by :class:`~audio_thinker.verl_ext.sft_dataset.AudioSFTDataset`) built
from a fixed template with the appendix's structure (planning, caption, reasoning, summary) from
the row's task, choices and gold answer, and its prompt rewritten for the ``think`` mode::

    python -m audio_thinker.data.template_cot --src data/synthetic --out data/synthetic_cot

It teaches the *shape* of a rationale ending in the right answer, which is all a tiny random
model can pick up; it says nothing true about the audio beyond the label. Output is a pure
function of the input rows (rewritten only when the source changed).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from audio_thinker.data.rows import with_prompt_mode
from audio_thinker.prompts import PromptMode

__all__ = ["RATIONALE_KEY", "SOURCE_KEY", "template_rationale", "write_template_cot", "main"]

#: the ``extra_info`` key of the rationale (shared with ``audio_thinker.data.cot``)
RATIONALE_KEY = "rationale"
#: ``extra_info`` key saying where the rationale came from
SOURCE_KEY = "rationale_source"
SPLITS = ("train", "val")


def template_rationale(info: Mapping[str, Any]) -> str:
    """A short planning / caption / reasoning / summary rationale that ends in the gold answer.

    >>> text = template_rationale({"task": "pitch_high_low", "choices": ["high", "low"], "answer": "low"})
    >>> text.startswith("The question is about pitch high low."), text.endswith("So the answer is low.")
    (True, True)
    """
    kind = re.sub(r"[_\W]+", " ", str(info.get("task") or "")).strip() or "the audio"
    choices = ", ".join(str(c) for c in info["choices"])
    answer = str(info["answer"])
    return (
        f"The question is about {kind}. The audio is a short synthetic clip. "
        f"Of the options {choices}, the audio matches {answer}. So the answer is {answer}."
    )


def _rows(path: Path) -> list[dict[str, Any]]:
    import pandas as pd

    from audio_thinker.data.rows import to_plain

    records = pd.read_parquet(path).to_dict(orient="records")
    rows = []
    for record in records:
        row = {key: to_plain(value) for key, value in record.items()}
        row["extra_info"] = {k: to_plain(v) for k, v in dict(row["extra_info"]).items()}
        rows.append(row)
    return rows


def write_template_cot(src: str | Path, out: str | Path, *, splits: Sequence[str] = SPLITS) -> list[Path]:
    """Write ``{out}/{split}.parquet`` for each split of ``src`` that exists; returns the files written
    or already current (a file newer than its source is kept)."""
    import pandas as pd

    src, out = Path(src), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for split in splits:
        source = src / f"{split}.parquet"
        if not source.is_file():
            continue
        target = out / f"{split}.parquet"
        if target.is_file() and target.stat().st_mtime_ns >= source.stat().st_mtime_ns:
            written.append(target)
            continue
        rows = []
        for row in _rows(source):
            row = with_prompt_mode(row, PromptMode.THINK)
            row["extra_info"] = {**row["extra_info"], RATIONALE_KEY: template_rationale(row["extra_info"]),
                                 SOURCE_KEY: "template"}
            rows.append(row)
        staging = target.with_suffix(".parquet.tmp")
        pd.DataFrame(rows).to_parquet(staging, index=False)
        staging.replace(target)
        written.append(target)
    if not written:
        raise FileNotFoundError(f"no {' / '.join(f'{s}.parquet' for s in splits)} in {src}")
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--src", required=True, help="folder with train.parquet / val.parquet")
    parser.add_argument("--out", required=True, help="output folder")
    args = parser.parse_args(argv)
    for path in write_template_cot(args.src, args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
