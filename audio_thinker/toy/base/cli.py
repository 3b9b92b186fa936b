"""The base's command line: ``python -m audio_thinker.toy.base --out DIR [--seed S] [--scaled]``.

Options: see ``--help`` and :class:`~audio_thinker.toy.base.options.BaseOptions`; the design:
:mod:`audio_thinker.toy.base`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from audio_thinker.toy.base.build import build_base, ensure_base, read_manifest
from audio_thinker.toy.base.options import DEFAULT_OPTIONS, SCALED_OPTIONS

__all__ = ["main"]

#: Options the command line can change (the others keep the preset's value).
_OVERRIDES = ("pretrain_seed", "clips", "steps", "batch_size", "lr", "projector_lr", "encoder_lr", "eval_clips")


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m audio_thinker.toy.base",
        description="Build the tiny Qwen2-Audio base that hears: supervised on TRUE answers of a synthetic "
                    "pre-training split (both response formats), scored on the RL validation split.",
    )
    parser.add_argument("--out", required=True, type=Path, help="output model directory")
    parser.add_argument("--seed", type=int, default=DEFAULT_OPTIONS.seed, help="weight-init and training seed")
    parser.add_argument("--scaled", action="store_true",
                        help="the scaled-down recipe (fewer clips and steps; what the fast test builds)")
    for name in _OVERRIDES:
        parser.add_argument(f"--{name.replace('_', '-')}", type=float if "lr" in name else int, default=None,
                            help=f"default {getattr(DEFAULT_OPTIONS, name)} ({getattr(SCALED_OPTIONS, name)} scaled)")
    parser.add_argument("--if-missing", action="store_true",
                        help="keep an existing complete build made with the same options")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: the recorded checksums were built with one thread, and the "
                             "tiny model gains nothing from more)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the process exit code."""
    import torch

    args = _parse_args(argv)
    torch.set_num_threads(args.threads)
    preset = SCALED_OPTIONS if args.scaled else DEFAULT_OPTIONS
    changes = {name: getattr(args, name) for name in _OVERRIDES if getattr(args, name) is not None}
    try:
        options = preset.replace(seed=args.seed, **changes).as_dict()
        build = ensure_base if args.if_missing else build_base
        out = build(args.out, progress=not args.no_progress, **options)
    except (FileExistsError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    manifest = read_manifest(out) or {}
    profile = manifest.get("profile", {}).get("no_think", {})
    tasks = ", ".join(f"{k} {v['accuracy']:.2f}" for k, v in profile.get("by_task", {}).items())
    levels = ", ".join(f"{k} {v['accuracy']:.2f} (chance {v['chance']:.2f})"
                       for k, v in profile.get("by_difficulty", {}).items())
    print(f"{out}: built in {manifest.get('seconds', {}).get('total')} s, weights sha256 "
          f"{manifest.get('weights_sha256')}\n  val accuracy (no-think) by task: {tasks}\n  by difficulty: {levels}")
    return 0
