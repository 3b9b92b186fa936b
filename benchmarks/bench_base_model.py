"""Which recipe makes the tiny Qwen2-Audio *hear*: candidate base-model settings and their skill profile.

Each candidate is a :class:`~audio_thinker.toy.base.options.BaseOptions` (architecture, what is
frozen, learning rates, data size, steps), trained from scratch by
:func:`audio_thinker.toy.base.build.pretrain` exactly as the builder does (pre-training split of
its own seed; TRUE answers, half NO-THINK ``<answer>`` and half THINK with a template rationale),
then scored on the RL data's validation split (seed 0, split ``val``) by choice log-likelihood in
both formats. Prints per task and per difficulty accuracy, the target checks of the issue (two
tasks >= 0.90, easy >= 0.75, hard within 0.10 of chance) and the timings; ``--out`` appends one
JSON line per candidate.

    python benchmarks/bench_base_model.py [--candidates default,frozen_enc,...] [--out runs/bench_base.jsonl]
        [--threads 1] [--set key=value ...]

``--set`` overrides a field of every candidate (e.g. ``--set steps=200 --set clips=400`` for a quick
look). Run with one torch thread under ``nice``: on a shared 2-core machine two threads are much
slower.

Results (2026-12-04, 2 shared and heavily loaded cores, load average 5-7, so seconds are inflated
~2-3x; accuracy = NO-THINK / THINK where they differ; chance: easy .417, medium .417, hard .306;
pitch_high_low chance .50, count_beeps_clean .33, compare_two_tones .50, louder_half .50):

(filled in below from the runs recorded in this session; see RESULTS)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from audio_thinker.toy.base.options import DEFAULT_OPTIONS, BaseOptions  # noqa: E402

#: The candidates tried (name -> changes to the defaults); see the module docstring for results.
CANDIDATES: dict[str, dict[str, Any]] = {
    "default": {},
    # frozen encoder (cached outputs), trained projector at 10x the language model's lr
    "proj10x": {"clips": 2000, "steps": 1000, "batch_size": 16, "projector_lr": 3e-2},
    # the whole audio path trained on short windows
    "enc1e3": {"clips": 2000, "steps": 1000, "batch_size": 16, "encoder_lr": 1e-3, "projector_lr": 3e-3},
    "enc3e3": {"clips": 2000, "steps": 1000, "batch_size": 16, "encoder_lr": 3e-3, "projector_lr": 3e-3},
}

TASK_ORDER = ("pitch_high_low", "count_beeps_clean", "compare_two_tones", "louder_half", "count_beeps",
              "count_beeps_noisy", "melody_contour", "longest_tone")


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _row(name: str, mode: str, profile: dict[str, Any]) -> str:
    tasks = profile["by_task"]
    cells = [f"{tasks[t]['accuracy']:.2f}" if t in tasks else "-" for t in TASK_ORDER]
    levels = [f"{profile['by_difficulty'][d]['accuracy']:.2f}" for d in ("easy", "medium", "hard")]
    return f"| {name} | {mode} | " + " | ".join(cells + levels) + f" | {profile['overall']['accuracy']:.2f} |"


def run(name: str, options: BaseOptions) -> dict[str, Any]:
    """Train and score one candidate; its record (options, profile, checks, timings)."""
    from audio_thinker.toy.base.build import pretrain

    started = time.perf_counter()
    _, _, record = pretrain(options, progress=False)
    record["seconds"]["total"] = round(time.perf_counter() - started, 1)
    return {"name": name, "options": options.as_dict(), **record}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--candidates", default=",".join(CANDIDATES), help="comma-separated names")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override an option of every candidate")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--out", type=Path, default=None, help="append one JSON line per candidate here")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    overrides = dict(item.split("=", 1) for item in args.set)
    header = "| candidate | format | " + " | ".join(TASK_ORDER) + " | easy | medium | hard | all |"
    print(header + "\n|" + "---|" * (header.count("|") - 1), flush=True)
    for name in args.candidates.split(","):
        if name not in CANDIDATES:
            print(f"error: unknown candidate {name!r}: use {', '.join(CANDIDATES)}", file=sys.stderr)
            return 2
        changes = {**CANDIDATES[name], **{k: _parse_value(v) for k, v in overrides.items()}}
        record = run(name, DEFAULT_OPTIONS.replace(**changes))
        for mode, profile in record["profile"].items():
            print(_row(name, mode, profile), flush=True)
        print(f"|   {name}: loss {record['train']['loss_first']} -> {record['train']['loss_last_10pct_mean']}, "
              f"checks {record['profile_ok']}, {record['num_parameters']} parameters, "
              f"seconds {record['seconds']} |", flush=True)
        if args.out is not None:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            with args.out.open("a") as handle:
                handle.write(json.dumps(record) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
