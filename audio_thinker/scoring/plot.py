"""The think-rate figure (paper Figure 2) from a :func:`~audio_thinker.scoring.thinking.think_report`.

:func:`plot_think_rate` draws two panels with matplotlib's Agg canvas (no display, no pyplot and no
global backend change): per group (difficulty) and overall, grouped bars of the no-think rate (the
paper's Figure 2 quantity), the think rate and the malformed rate; below, the accuracy by mode.
Each group's label carries its number of responses; an empty group (or mode) gets no bar and a
``n/a`` mark instead.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from audio_thinker.scoring.thinking import MODES, OVERALL

_RATE_BARS = (("no_think_rate", "no-think"), ("think_rate", "think"), ("malformed_rate", "malformed"))
_ACC_BARS = (("no_think", "no-think"), ("think", "think"), ("malformed", "malformed"), (None, "all"))
_COLORS = {"no-think": "#4C72B0", "think": "#DD8452", "malformed": "#8C8C8C", "all": "#55A868"}


def _bars(ax: Any, labels: Sequence[str], series: Sequence[tuple[str, Sequence[float | None]]],
          ylabel: str) -> None:
    width = 0.8 / len(series)
    for k, (name, values) in enumerate(series):
        offset = (k - (len(series) - 1) / 2) * width
        for i, value in enumerate(values):
            x = i + offset
            if value is None:
                ax.text(x, 1, "n/a", ha="center", va="bottom", fontsize=7, color="0.35")
                continue
            ax.bar(x, 100 * value, width, color=_COLORS[name])
            ax.text(x, 100 * value + 1, f"{100 * value:.0f}", ha="center", va="bottom", fontsize=7)
    from matplotlib.patches import Patch

    handles = [Patch(color=_COLORS[name], label=name) for name, _ in series]
    ax.legend(handles=handles, loc="upper right", fontsize=8, ncol=len(series))
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, fontsize=9)
    ax.set_xlim(-0.6, len(labels) - 0.4)
    ax.set_ylim(0, 125)
    ax.set_yticks(range(0, 101, 20))
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)


def plot_think_rate(
    report: Mapping[str, Any], path: str | os.PathLike[str], *, title: str = "Think rate by difficulty",
) -> Path:
    """Save the two-panel PNG of ``report`` to ``path`` (parent folders created); return the path."""
    from matplotlib.figure import Figure

    entries = [*report["groups"].items(), (OVERALL, report[OVERALL])]
    labels = []
    for label, entry in entries:
        missing = f", {entry['n_missing']} missing" if entry["n_missing"] else ""
        labels.append(f"{label}\n(n={entry['n']}{missing})")
    figure = Figure(figsize=(max(6.0, 1.6 * len(entries) + 2), 7.5), layout="constrained")
    top, bottom = figure.subplots(2, 1)
    _bars(top, labels, [(name, [entry[key] for _, entry in entries]) for key, name in _RATE_BARS],
          "share of responses (%)")
    top.set_title("Response mode (paper Figure 2: no-think rate)", fontsize=10)
    acc_series = []
    for mode, name in _ACC_BARS:
        if mode is not None and mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}")
        acc_series.append((name, [entry["accuracy"] if mode is None else entry["accuracy_by_mode"][mode]
                                  for _, entry in entries]))
    _bars(bottom, labels, acc_series, "accuracy (%)")
    bottom.set_title("Accuracy by response mode", fontsize=10)
    field = report.get("group_field", "group")
    bottom.set_xlabel(f"{field} (n = responses; n/a = no data)")
    figure.suptitle(title)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, format="png", dpi=120)
    return out
