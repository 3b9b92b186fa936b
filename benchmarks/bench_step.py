"""GRPO step time per stage, tokens/s and a learning curve: the embedded default on CPU.

Runs ``python -m audio_thinker.main_grpo backbone=tiny_cpu`` (verl's real V1 trainer, the hf
rollout, the CPU FSDP2 engines) for ``--steps`` steps in a fresh run directory, then reads the
run's metric file (verl's ``file`` logger) and reports:

* seconds per step and per stage — generation (the rollout, including the per-response rule
  reward of verl's reward loop), old log-prob, ref log-prob, reward (the batch-level ATAR),
  advantage (GRPO, excluding the reward), actor update, weight sync — averaged over the steps
  after the first (``--warmup`` steps are excluded: one-time allocations);
* tokens/s: verl's ``perf/throughput`` (prompt + response tokens of the step / step time) and
  generated tokens/s during generation;
* the learning curve: mean reward and synthetic accuracy per window of steps, against chance
  (the mean of 1 / number of choices over the train rows) and the validation accuracy before and
  after training.

Writes ``{out}/bench_step.json`` and ``{out}/learning_curve.png``; prints a Markdown table.

    python benchmarks/bench_step.py --steps 100 --out runs/bench_step [hydra overrides...]

Each extra argument is passed to ``main_grpo`` unchanged (e.g. ``data.train_batch_size=8``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from audio_thinker.run_summary import STAGES, load_history, metric_files, series  # noqa: E402

P = "audio_thinker/"


def run_training(out: Path, steps: int, overrides: list[str]) -> float:
    """Train in ``out/run``; returns the wall time of the whole command (start-up included)."""
    run_dir = out / "run"
    if run_dir.exists():
        shutil.rmtree(run_dir)
    command = [
        sys.executable, "-m", "audio_thinker.main_grpo", "backbone=tiny_cpu",
        f"trainer.total_training_steps={steps}", f"trainer.test_freq={steps}", f"trainer.save_freq={steps}",
        f"trainer.default_local_dir={run_dir}", f"hydra.run.dir={out}/hydra", "trainer.experiment_name=bench_step",
        *overrides,
    ]
    print("$ " + " ".join(command), flush=True)
    env = {k: v for k, v in os.environ.items() if k != "VERL_FILE_LOGGER_PATH"}
    started = time.perf_counter()
    with open(out / "train.log", "w") as log:
        result = subprocess.run(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"training failed (rc={result.returncode}); see {out / 'train.log'}")
    return wall


def chance_accuracy(train_file: Path) -> float:
    """Expected accuracy of a uniform random choice over each row's options."""
    import pandas as pd

    rows = pd.read_parquet(train_file)
    return float(np.mean([1.0 / len(info["choices"]) for info in rows["extra_info"]]))


def stage_table(history: dict[int, dict[str, Any]], warmup: int) -> dict[str, float]:
    steps = [s for s, _ in series(history, "timing_s/step")][warmup:]
    table: dict[str, float] = {}
    for label, key in (("step", "timing_s/step"), *STAGES):
        values = [history[s][key] for s in steps if isinstance(history[s].get(key), (int, float))]
        if values:
            table[label] = float(np.mean(values))
    if "advantage" in table and "reward (batch)" in table:
        table["advantage"] -= table["reward (batch)"]  # verl's adv timer contains our reward
    return table


def throughput(history: dict[int, dict[str, Any]], warmup: int) -> dict[str, float]:
    steps = [s for s, _ in series(history, "timing_s/step")][warmup:]
    total = [history[s]["perf/throughput"] for s in steps if "perf/throughput" in history[s]]
    generated = []
    for s in steps:
        data = history[s]
        responses = data.get(P + "responses")
        length = data.get("response_length/mean")
        gen = data.get("timing_s/gen")
        if responses and length and gen:
            generated.append(responses * length / gen)
    return {
        "tokens_per_s": float(np.mean(total)) if total else float("nan"),
        "generated_tokens_per_s": float(np.mean(generated)) if generated else float("nan"),
    }


def learning_curve(history: dict[int, dict[str, Any]], window: int) -> list[dict[str, float]]:
    reward = dict(series(history, P + "reward/overall"))
    accuracy = dict(series(history, P + "accuracy"))
    think = dict(series(history, P + "think_rate"))
    steps = sorted(reward)
    rows = []
    for start in range(0, len(steps), window):
        chunk = steps[start:start + window]
        rows.append({
            "steps": f"{chunk[0]}-{chunk[-1]}",
            "reward": float(np.mean([reward[s] for s in chunk])),
            "accuracy": float(np.mean([accuracy[s] for s in chunk if s in accuracy])),
            "think_rate": float(np.mean([think[s] for s in chunk if s in think])),
        })
    return rows


def plot(history: dict[int, dict[str, Any]], chance: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    for axis, key, label in ((left, P + "reward/overall", "mean reward"), (right, P + "accuracy", "accuracy")):
        points = series(history, key)
        if points:
            x, y = zip(*points)
            axis.plot(x, y, alpha=0.35, label="per step")
            k = max(1, len(y) // 10)
            smooth = np.convolve(y, np.ones(k) / k, mode="valid")
            axis.plot(x[k - 1:], smooth, label=f"mean of {k} steps")
        axis.set_xlabel("GRPO step")
        axis.set_title(label)
    right.axhline(chance, color="grey", linestyle="--", label=f"chance {chance:.2f}")
    val = series(history, "val-core/synthetic_aqa/acc/mean@1")
    if val:
        right.scatter(*zip(*val), color="black", zorder=3, label="validation")
    for axis in (left, right):
        axis.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench_step")
    parser.add_argument("--warmup", type=int, default=1, help="first steps excluded from the timings")
    parser.add_argument("--window", type=int, default=10, help="steps per learning-curve row")
    parser.add_argument("--reuse", action="store_true", help="report on the existing run in --out")
    args, overrides = parser.parse_known_args(argv)
    out = args.out.absolute()
    out.mkdir(parents=True, exist_ok=True)
    wall = None if args.reuse else run_training(out, args.steps, overrides)

    history = load_history(metric_files(out / "run"))
    if not series(history, "timing_s/step"):
        raise SystemExit(f"no training step in {out / 'run'}")
    chance = chance_accuracy(ROOT / "data" / "synthetic" / "train.parquet")
    stages = stage_table(history, args.warmup)
    rates = throughput(history, args.warmup)
    curve = learning_curve(history, args.window)
    val = series(history, "val-core/synthetic_aqa/acc/mean@1")
    result = {
        "steps": len(series(history, "timing_s/step")), "wall_s": wall, "stages_s": stages, **rates,
        "chance_accuracy": chance, "learning_curve": curve, "validation_accuracy": val,
        "cpu_count": os.cpu_count(),
    }
    (out / "bench_step.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(history, chance, out / "learning_curve.png")

    print(f"\n## GRPO step on CPU ({result['steps']} steps, first {args.warmup} excluded)\n")
    print("| stage | s / step |\n|---|---|")
    for label, seconds in stages.items():
        print(f"| {label} | {seconds:.2f} |")
    print(f"\ntokens/s (prompt + response): {rates['tokens_per_s']:.0f}; "
          f"generated tokens/s during generation: {rates['generated_tokens_per_s']:.0f}")
    if wall is not None:
        print(f"wall time of the command: {wall:.0f} s")
    print(f"\n## Learning curve (chance accuracy {chance:.3f})\n")
    print("| steps | mean reward | accuracy | think rate |\n|---|---|---|---|")
    for row in curve:
        print(f"| {row['steps']} | {row['reward']:.3f} | {row['accuracy']:.3f} | {row['think_rate']:.3f} |")
    if val:
        print("\nvalidation accuracy: " + ", ".join(f"step {s}: {v:.3f}" for s, v in val))
    print(f"\nwrote {out / 'bench_step.json'} and {out / 'learning_curve.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
