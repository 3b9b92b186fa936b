"""Several evaluation runs side by side, in the paper's Table 1 layout (Markdown).

``python -m audio_thinker.evaluate.compare RUN_DIR... [--figure official|ours] [--out FILE.md]``

Each ``RUN_DIR`` holds the ``results.json`` of one run (one model, one benchmark, one prompt mode),
written by the evaluation CLI with :func:`audio_thinker.scoring.results.build_results`. The full shape
is documented in :mod:`audio_thinker.scoring.results`; this script reads only::

    {"run": {"label": str, "benchmark": str, "prompt_mode": str, "benchmark_version": str | None, ...},
     "headline": {key: {"official": float | None, "ours": float | None, "n_items": int}, ...}}

with the headline keys of :func:`audio_thinker.scoring.tables.headline` (MMAU ``sound``, ``music``,
``speech``, ``avg``; MMAR the 7 modalities and ``avg``; AIR-Bench ``avg``; synthetic ``avg``).

One row per model label, columns MMAU Sound | Music | Speech | Avg, MMAR Sound | Music | Speech |
Sound-Music | Sound-Speech | Music-Speech | Sound-Music-Speech | Avg, AIR-Bench Avg (and Synthetic Avg
when a synthetic run is given). Runs of one label in different prompt modes get separate rows
(``label (mode)``). A cell is ``–`` when the row has no run of that benchmark (or no item of that
group). Two runs of the same label, prompt mode and benchmark are an error (give them distinct labels).
Accuracies are percentages with two decimals; ``--figure`` picks the official figure (default:
missing and unparsed items left out, as the official scripts count) or ours (every item counts).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from audio_thinker.data.benchmarks import AIR_BENCH, MMAR, MMAU
from audio_thinker.scoring.items import SYNTHETIC, eval_benchmark_name
from audio_thinker.scoring.results import RESULTS_FILE
from audio_thinker.scoring.tables import Cell, Table

FIGURES: tuple[str, ...] = ("official", "ours")
#: (benchmark, headline key, column header) of the Table-1 layout
COLUMNS: tuple[tuple[str, str, str], ...] = (
    (MMAU, "sound", "MMAU Sound"), (MMAU, "music", "MMAU Music"), (MMAU, "speech", "MMAU Speech"),
    (MMAU, "avg", "MMAU Avg"),
    (MMAR, "sound", "MMAR Sound"), (MMAR, "music", "MMAR Music"), (MMAR, "speech", "MMAR Speech"),
    (MMAR, "mix-sound-music", "MMAR Sound-Music"), (MMAR, "mix-sound-speech", "MMAR Sound-Speech"),
    (MMAR, "mix-music-speech", "MMAR Music-Speech"),
    (MMAR, "mix-sound-music-speech", "MMAR Sound-Music-Speech"), (MMAR, "avg", "MMAR Avg"),
    (AIR_BENCH, "avg", "AIR-Bench Avg"),
)
SYNTHETIC_COLUMN: tuple[str, str, str] = (SYNTHETIC, "avg", "Synthetic Avg")


def load_results(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``results.json`` of ``run_dir``, checked for what comparing needs.

    FileNotFoundError when the folder or its ``results.json`` is missing (the evaluation may not
    have finished); ValueError when the file is not JSON or lacks ``run``/``headline`` keys. The
    run's benchmark name is made canonical and the folder kept under ``run["dir"]``.
    """
    folder = Path(run_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"run directory {folder} does not exist")
    path = folder / RESULTS_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{folder} has no {RESULTS_FILE}: the evaluation may not have finished (or it failed); "
            "check the run's log, or rerun the evaluation into this folder")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON ({error}); was it written completely?") from None
    if not (isinstance(data, dict) and isinstance(data.get("run"), dict)
            and isinstance(data.get("headline"), dict)):
        raise ValueError(f"{path} lacks the `run` and `headline` objects of a results.json")
    run = data["run"]
    missing = [k for k in ("label", "benchmark", "prompt_mode")
               if not isinstance(run.get(k), str) or not run[k]]
    if missing:
        raise ValueError(f"{path}: run lacks {missing}")
    try:
        run["benchmark"] = eval_benchmark_name(run["benchmark"])
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
    run["dir"] = str(folder)
    return data


def _row_names(results: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str], str]:
    """(label, mode) -> row label, in order of first appearance; the mode shown where a label has several."""
    modes: dict[str, list[str]] = {}
    for data in results:
        run = data["run"]
        label_modes = modes.setdefault(run["label"], [])
        if run["prompt_mode"] not in label_modes:
            label_modes.append(run["prompt_mode"])
    return {(label, mode): (f"{label} ({mode})" if len(ms) > 1 else label)
            for label, ms in modes.items() for mode in ms}


def compare_table(results: Sequence[Mapping[str, Any]], *, figure: str = "official") -> Table:
    """The Table-1 comparison of loaded ``results`` (see the module docstring)."""
    if figure not in FIGURES:
        raise ValueError(f"figure must be one of {FIGURES}, got {figure!r}")
    if not results:
        raise ValueError("no runs to compare")
    names = _row_names(results)
    cells: dict[tuple[str, str], dict[str, Mapping[str, Any]]] = {key: {} for key in names}
    for data in results:
        run = data["run"]
        row = cells[(run["label"], run["prompt_mode"])]
        if run["benchmark"] in row:
            other = row[run["benchmark"]]["run"].get("dir")
            raise ValueError(f"two {run['benchmark']} runs for {run['label']!r} ({run['prompt_mode']}): "
                             f"{other} and {run.get('dir')}; give them distinct labels or compare one")
        row[run["benchmark"]] = data
    columns = list(COLUMNS) + ([SYNTHETIC_COLUMN] if any(SYNTHETIC in r for r in cells.values()) else [])
    rows: list[tuple[Cell, ...]] = []
    for key, row in cells.items():
        values: list[Cell] = [names[key]]
        for benchmark, headline_key, _ in columns:
            figures = row[benchmark]["headline"].get(headline_key) if benchmark in row else None
            values.append(figures.get(figure) if isinstance(figures, Mapping) else None)
        rows.append(tuple(values))
    notes = [
        f"Accuracy (%), {figure} figure: " + (
            "correct / items the official script counts (missing and unparsed left out)."
            if figure == "official" else "correct / all items (missing and unparsed count as wrong)."),
        "AIR-Bench Avg: mean of the Speech, Sound and Music domain figures (each the mean of its tasks).",
        "–: no run of that benchmark for the row (or no item of that group).",
        "Runs: " + "; ".join(_describe(data) for data in results) + ".",
    ]
    headers = ("Model", *(c[2] for c in columns))
    return Table("Results (paper Table 1 layout)", headers, tuple(rows), tuple(notes))


def _describe(data: Mapping[str, Any]) -> str:
    run = data["run"]
    version = f" {run['benchmark_version']}" if run.get("benchmark_version") else ""
    return f"{run['label']} ({run['prompt_mode']}) {run['benchmark']}{version} from {run.get('dir', '?')}"


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (2 on unreadable runs)."""
    parser = argparse.ArgumentParser(prog="python -m audio_thinker.evaluate.compare",
                                     description=(__doc__ or "").split("\n")[0])
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="folders holding a results.json")
    parser.add_argument("--figure", choices=FIGURES, default="official", help="which accuracy figure to show")
    parser.add_argument("--out", type=Path, help="also write the Markdown to this file")
    args = parser.parse_args(argv)
    try:
        results = [load_results(d) for d in args.run_dirs]
        markdown = compare_table(results, figure=args.figure).to_markdown() + "\n"
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    sys.stdout.write(markdown)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(markdown, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
