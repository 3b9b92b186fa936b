"""The warm-start's command line: ``python -m audio_thinker.toy.warmstart --model DIR --data FILE --out DIR``.

Options: see ``--help`` and :class:`~audio_thinker.toy.warmstart.targets.WarmstartOptions`; the
design: :mod:`audio_thinker.toy.warmstart`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from audio_thinker.toy.warmstart.build import build_warmstart, ensure_warmstart, read_marker
from audio_thinker.toy.warmstart.targets import DEFAULT_OPTIONS

__all__ = ["main"]


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    d = DEFAULT_OPTIONS
    parser = argparse.ArgumentParser(
        prog="python -m audio_thinker.toy.warmstart",
        description="Warm-start a tiny audio LM on format-only targets (answers at chance).",
    )
    parser.add_argument("--model", required=True, type=Path, help="base model directory")
    parser.add_argument("--data", required=True, type=Path, help="training parquet (audio QA rows)")
    parser.add_argument("--out", required=True, type=Path, help="output model directory")
    parser.add_argument("--eval-data", type=Path, default=None,
                        help="held-out parquet for the figures after training (default: last rows of --data)")
    parser.add_argument("--steps", type=int, default=d.steps, help=f"optimiser steps (default {d.steps})")
    parser.add_argument("--batch-size", type=int, default=d.batch_size, help=f"default {d.batch_size}")
    parser.add_argument("--lr", type=float, default=d.lr, help=f"AdamW peak learning rate (default {d.lr:g})")
    parser.add_argument("--think-fraction", type=float, default=d.think_fraction,
                        help=f"share of THINK targets (default {d.think_fraction:g})")
    parser.add_argument("--seed", type=int, default=d.seed, help=f"default {d.seed}")
    parser.add_argument("--eval-rows", type=int, default=d.eval_rows, help=f"default {d.eval_rows}")
    parser.add_argument("--eval-samples", type=int, default=d.eval_samples,
                        help=f"sampled responses per held-out row (default {d.eval_samples})")
    parser.add_argument("--if-missing", action="store_true",
                        help="keep an existing complete output built from the same inputs and options")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the process exit code."""
    args = _parse_args(argv)
    options = {
        "steps": args.steps, "batch_size": args.batch_size, "lr": args.lr,
        "think_fraction": args.think_fraction, "seed": args.seed, "eval_rows": args.eval_rows,
        "eval_samples": args.eval_samples,
    }
    build = ensure_warmstart if args.if_missing else build_warmstart
    previous = read_marker(args.out)
    try:
        out = build(args.model, args.data, args.out, eval_data=args.eval_data, progress=not args.no_progress,
                    **options)
    except (FileNotFoundError, FileExistsError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    marker = read_marker(out) or {}
    figures, seconds = marker.get("eval", {}), marker.get("seconds", {})
    state = "up to date" if args.if_missing and marker == previous else f"warm-started in {seconds.get('total')} s"
    print(
        f"{out}: {state}; sampled (T={figures.get('temperature')}, {figures.get('responses')} responses): "
        f"well-formed {figures.get('well_formed_rate')}, think {figures.get('think_rate')}, "
        f"accuracy {figures.get('accuracy')} (chance {figures.get('chance_accuracy')})"
    )
    return 0
