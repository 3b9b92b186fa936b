"""Judge pool throughput (hf backend, tiny judge, local Ray) and how much judge time a step hides.

1. **Throughput.** For every ``--workers`` x ``--batch-sizes`` combination a judge pool is
   started on a fresh local Ray cluster (``--ray-cpus``, default the largest worker count):
   N :class:`~reward_workers.hf_worker.HFJudgeWorker` actors, each reserving 1 CPU and running
   1 torch thread (``cpus_per_worker=1``, ``num_threads=1``), holding the tiny random Qwen3
   judge (:func:`audio_thinker.toy.tiny_judge.ensure_tiny_judge`). After a warm-up (a few
   responses, not counted; the pool's step metrics are then reset), ``--requests`` judge
   requests (``--requests / 2`` THINK responses, one consistency and one quality prompt each)
   are sent *concurrently*, each response as its own call through
   :class:`~reward_workers.pool.PoolJudgeClient` (the path verl's reward workers use). Think
   texts are all distinct (dedup cannot help) and of varied, realistic length (``--min-words``
   .. ``--max-words`` words of audio reasoning). Reported per configuration: wall time of the
   burst, requests/s, the speed-up of N workers over 1 worker at the same batch size (target for
   2 workers: >= 1.7x), and from the pool's ``collect_metrics()``: worker calls, mean batch
   size, p50/p95 request latency (queueing included: every request is submitted at t=0, so the
   latency is mostly the queue), dedup hits and failed calls. ``--repeats`` bursts are timed per
   configuration; the table shows the median burst (by wall time).

2. **Judge time hidden behind the step.** From a training run's metric files (verl's ``file``
   logger; :func:`audio_thinker.run_summary.load_history`) in ``--run-dir``: per training step the
   pool's ``audio_thinker/judge/busy_s`` (wall time with a judge call in flight),
   ``audio_thinker/judge/wait_s`` (last verdict minus last THINK response submitted: the judge
   time *not* hidden behind generation), ``timing_s/step`` and ``timing_s/gen``; the fraction
   ``wait_s / step time`` (target: < 10 %) and the hidden fraction ``1 - wait_s / busy_s``, averaged
   over the steps. Skipped with a message when the run has no judge metrics (a run trained
   without judges). ``--compare-run-dir`` (a run without judges, same preset otherwise) adds the
   mean step and generation times of both runs side by side; the runs' conditions (machine load,
   number of steps) may differ, so read that difference with care.

Prints Markdown tables and writes everything to ``--out`` (JSON).

    python benchmarks/bench_judge.py [--requests 128] [--workers 1,2] [--batch-sizes 1,16]
        [--run-dir checkpoints/tiny_cpu] [--compare-run-dir DIR] [--out runs/bench_judge.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from audio_thinker.run_summary import load_history, metric_files, series  # noqa: E402

P = "audio_thinker/judge/"

QUESTIONS = [
    ("Is the melody ascending or descending?", ["ascending", "descending", "neither"]),
    ("Which tone is higher?", ["the first", "the second", "they are equal"]),
    ("How many beeps are there?", ["two", "three", "four", "five"]),
    ("Which half of the clip is louder?", ["first half", "second half"]),
    ("What is the main sound source?", ["car engine", "rain", "crowd", "birds"]),
]
SENTENCES = [
    "The clip starts with a short silence before the first sound appears.",
    "I hear a first note that is fairly low, maybe around 220 Hz.",
    "The second note is clearly higher than the first one.",
    "Each following note rises a little in pitch, step by step.",
    "There is a brief pause between the notes, so they are easy to count.",
    "The loudness stays roughly constant over the whole clip.",
    "Towards the end the sound becomes quieter and fades out.",
    "The timbre is smooth and sustained, which suggests a synthetic tone rather than a voice.",
    "I do not hear any background noise that would change the answer.",
    "Comparing the start and the end, the last note is the highest one.",
    "The question asks about the direction of the pitch, not the loudness.",
    "Counting again carefully, I get the same number of events as before.",
    "The second half has more energy, the peaks are noticeably louder.",
    "None of the choices seems to fit perfectly, but one is much closer than the others.",
    "So, weighing what I heard, the answer should follow from these observations.",
]


def make_items(n: int, *, min_words: int, max_words: int, seed: int, tag: str) -> list[dict[str, Any]]:
    """``n`` distinct THINK responses with think texts of ``min_words``..``max_words`` words."""
    rng = random.Random(seed)
    items = []
    for i in range(n):
        question, choices = QUESTIONS[i % len(QUESTIONS)]
        target = rng.randint(min_words, max_words)
        words: list[str] = [f"({tag}{i})"]  # makes every think text unique
        while len(words) < target:
            words.extend(rng.choice(SENTENCES).split())
        items.append({"question": question, "choices": list(choices),
                      "think": " ".join(words[:target]), "answer": rng.choice(choices)})
    return items


def prompt_tokens(model_path: str, items: list[dict[str, Any]]) -> dict[str, float]:
    """Mean / min / max judge prompt length in judge tokens (both kinds)."""
    from transformers import AutoTokenizer

    from audio_thinker.rewards.judge_prompts import build_judge_prompt

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    lengths = [len(tokenizer(build_judge_prompt(kind, **item), add_special_tokens=False)["input_ids"])
               for item in items for kind in ("consistency", "quality")]
    return {"mean": statistics.fmean(lengths), "min": min(lengths), "max": max(lengths)}


async def burst(name: str, items: list[dict[str, Any]]) -> tuple[float, int]:
    """Send every item concurrently through PoolJudgeClient; (wall seconds, failed client calls)."""
    from reward_workers.pool import PoolJudgeClient

    client = PoolJudgeClient(name=name)
    started = time.perf_counter()
    await asyncio.gather(*(client.judge(**item) for item in items))
    return time.perf_counter() - started, client.failed_calls


def run_config(model_path: str, workers: int, batch_size: int, items_per_repeat: list[list[dict[str, Any]]],
               warmup: list[dict[str, Any]], batch_wait_ms: float) -> dict[str, Any]:
    import ray

    from audio_thinker.config import JudgeSection
    from reward_workers.pool import get_or_create_judge_pool

    cfg = JudgeSection(backend="hf", model_path=model_path, num_workers=workers, batch_size=batch_size,
                       batch_wait_ms=batch_wait_ms, cpus_per_worker=1.0, num_threads=1, timeout_s=120.0,
                       max_retries=2, start_timeout_s=300.0)
    name = f"bench_judge_pool_{uuid.uuid4().hex[:8]}"
    started = time.perf_counter()
    pool = get_or_create_judge_pool(cfg, name=name, ready_timeout_s=300)
    start_s = time.perf_counter() - started
    try:
        asyncio.run(burst(name, warmup))
        ray.get(pool.collect_metrics.remote())  # forget the warm-up
        runs = []
        for items in items_per_repeat:
            wall, failed = asyncio.run(burst(name, items))
            metrics = ray.get(pool.collect_metrics.remote())
            requests = int(metrics["judge/requests"])
            runs.append({"wall_s": wall, "client_failures": failed, "requests": requests,
                         "responses": len(items), "metrics": metrics})
    finally:
        ray.get(pool.shutdown.remote(), timeout=60)
        ray.kill(pool, no_restart=True)
    runs.sort(key=lambda run: run["wall_s"])
    median = runs[(len(runs) - 1) // 2]
    m = median["metrics"]
    get = lambda key: float(m.get("judge/" + key, float("nan")))  # noqa: E731
    return {
        "workers": workers, "batch_size": batch_size, "pool_start_s": start_s,
        "responses": median["responses"], "requests": median["requests"], "wall_s": median["wall_s"],
        "requests_per_s": median["requests"] / median["wall_s"],
        "wall_s_all": sorted(run["wall_s"] for run in runs),
        "calls": get("calls"), "batch_size_mean": get("batch_size_mean"),
        "latency_p50_s": get("latency_p50_s"), "latency_p95_s": get("latency_p95_s"),
        "busy_s": get("busy_s"), "worker_busy_s": get("worker_busy_s"),
        "unique_requests": get("unique_requests"), "dedup_hits": get("dedup_hits"),
        "call_failures": get("call_failures"), "client_failures": median["client_failures"],
        "metrics": m,
    }


def throughput_part(args: argparse.Namespace) -> dict[str, Any]:
    import ray

    from audio_thinker.toy.tiny_judge import DEMO_PRIME_STEPS, ensure_tiny_judge

    model_path = str(ensure_tiny_judge(args.judge_dir, prime_steps=DEMO_PRIME_STEPS))
    responses = max(1, args.requests // 2)
    repeats = [make_items(responses, min_words=args.min_words, max_words=args.max_words,
                          seed=args.seed + r, tag=f"r{r}-") for r in range(args.repeats)]
    warmup = make_items(max(8, 2 * max(args.workers)), min_words=args.min_words, max_words=args.max_words,
                        seed=args.seed + 1000, tag="w-")
    lengths = prompt_tokens(model_path, repeats[0])
    think_words = [len(item["think"].split()) for item in repeats[0]]
    ray_cpus = args.ray_cpus or max(args.workers)
    load_start = os.getloadavg()[0]
    print(f"judge {model_path}; {responses} THINK responses = {2 * responses} requests per burst, "
          f"think {min(think_words)}-{max(think_words)} words (mean {statistics.fmean(think_words):.0f}), "
          f"judge prompts {lengths['min']}-{lengths['max']} tokens (mean {lengths['mean']:.0f}); "
          f"Ray CPUs {ray_cpus}, host CPUs {os.cpu_count()}, 1-min load average {load_start:.2f}",
          flush=True)
    ray.init(address="local", num_cpus=ray_cpus, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    rows = []
    try:
        for batch_size in args.batch_sizes:
            for workers in args.workers:
                row = run_config(model_path, workers, batch_size, repeats, warmup, args.batch_wait_ms)
                rows.append(row)
                print(f"  workers={workers} batch_size={batch_size}: {row['requests_per_s']:.1f} requests/s "
                      f"(burst {row['wall_s']:.2f} s, pool start {row['pool_start_s']:.1f} s)", flush=True)
    finally:
        ray.shutdown()
    base = {row["batch_size"]: row["requests_per_s"] for row in rows if row["workers"] == min(args.workers)}
    for row in rows:
        row["speedup_vs_min_workers"] = row["requests_per_s"] / base[row["batch_size"]]
    return {"model_path": model_path, "responses": responses, "requests": 2 * responses,
            "repeats": args.repeats, "think_words": {"min": min(think_words), "max": max(think_words),
                                                      "mean": statistics.fmean(think_words)},
            "prompt_tokens": lengths, "ray_cpus": ray_cpus, "cpu_count": os.cpu_count(),
            "batch_wait_ms": args.batch_wait_ms, "load_average_1m_start": load_start,
            "load_average_1m": os.getloadavg()[0], "rows": rows}


def _mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else float("nan")


def overlap_part(run_dir: Path, compare_dir: Path | None) -> dict[str, Any] | None:
    history = load_history(metric_files(run_dir))
    wait = dict(series(history, P + "wait_s"))
    busy = dict(series(history, P + "busy_s"))
    step_time = dict(series(history, "timing_s/step"))
    gen = dict(series(history, "timing_s/gen"))
    steps = sorted(s for s in wait if s in step_time)
    if not steps:
        return None
    rows = []
    for s in steps:
        data = history[s]
        rows.append({
            "step": s, "think_responses": data.get(P + "think_responses"),
            "requests": data.get(P + "requests"),
            "batch_size_mean": data.get(P + "batch_size_mean"), "busy_s": busy.get(s, float("nan")),
            "wait_s": wait[s], "gen_s": gen.get(s, float("nan")), "step_s": step_time[s],
            "wait_fraction": wait[s] / step_time[s],
            "hidden_fraction": 1.0 - wait[s] / busy[s] if busy.get(s) else float("nan"),
        })
    mean = {key: _mean([r[key] for r in rows if isinstance(r[key], (int, float))])
            for key in ("busy_s", "wait_s", "gen_s", "step_s", "wait_fraction", "hidden_fraction")}
    mean["wait_over_mean_step"] = mean["wait_s"] / mean["step_s"]
    result: dict[str, Any] = {"run_dir": str(run_dir), "steps": rows, "mean": mean}
    if compare_dir is not None:
        other = load_history(metric_files(compare_dir))
        other_step = dict(series(other, "timing_s/step"))
        other_gen = dict(series(other, "timing_s/gen"))
        compare = {}
        runs = (("with judge", step_time, gen), ("without judge", other_step, other_gen))
        for label, a_step, a_gen in runs:
            keys = sorted(a_step)
            compare[label] = {
                "steps": len(keys), "step_s": _mean([a_step[k] for k in keys]),
                "step_s_after_first": _mean([a_step[k] for k in keys[1:]]),
                "gen_s": _mean([a_gen[k] for k in keys if k in a_gen]),
                "gen_s_after_first": _mean([a_gen[k] for k in keys[1:] if k in a_gen]),
            }
        result["compare"] = {"run_dir": str(compare_dir), **compare}
    return result


def fmt(value: Any, digits: int = 2) -> str:
    if isinstance(value, (int, float)) and value == value:
        return f"{value:.{digits}f}"
    return "n/a"


def print_throughput(result: dict[str, Any], min_workers: int) -> None:
    print(f"\n## Judge throughput: hf backend, tiny Qwen3 judge, {result['requests']} requests "
          f"({result['responses']} THINK responses) per burst, 1 CPU + 1 torch thread per worker\n")
    print(f"| workers | batch size | requests/s | speed-up vs {min_workers} worker(s) | burst s | calls "
          "| mean batch | p50 latency s | p95 latency s | dedup hits | failed |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for row in result["rows"]:
        print(f"| {row['workers']} | {row['batch_size']} | {fmt(row['requests_per_s'], 1)} "
              f"| {fmt(row['speedup_vs_min_workers'])}x | {fmt(row['wall_s'])} | {row['calls']:.0f} "
              f"| {fmt(row['batch_size_mean'], 1)} | {fmt(row['latency_p50_s'])} "
              f"| {fmt(row['latency_p95_s'])} "
              f"| {row['dedup_hits']:.0f} | {row['call_failures'] + row['client_failures']:.0f} |")
    most = max(row["workers"] for row in result["rows"])
    if most > min_workers:
        scaling = [f"batch {row['batch_size']}: {row['speedup_vs_min_workers']:.2f}x"
                   for row in result["rows"] if row["workers"] == most]
        target = " (target >= 1.7x)" if (min_workers, most) == (1, 2) else ""
        print(f"\nspeed-up {most} vs {min_workers} worker(s): " + ", ".join(scaling) + target)
    batches = sorted({row["batch_size"] for row in result["rows"]})
    if len(batches) > 1:
        by = {(row["workers"], row["batch_size"]): row["requests_per_s"] for row in result["rows"]}
        gains = [f"{w} worker(s): {by[(w, batches[-1])] / by[(w, batches[0])]:.2f}x"
                 for w in sorted({row['workers'] for row in result['rows']})]
        print(f"\nbatching gain (batch {batches[-1]} vs {batches[0]}): " + ", ".join(gains))
    print(f"(median of {result['repeats']} burst(s) per row; Ray CPUs {result['ray_cpus']}, "
          f"host CPUs {result['cpu_count']}, 1-min load average {result['load_average_1m_start']:.2f} at the "
          f"start, {result['load_average_1m']:.2f} at the end (the judge itself adds up to ~2); "
          "latencies include queueing: the whole burst is submitted at once)")


def print_overlap(result: dict[str, Any]) -> None:
    print(f"\n## Judge time hidden behind the step ({result['run_dir']})\n")
    print("| step | THINK responses | requests | mean batch | judge busy s | judge wait s | gen s | step s "
          "| wait / step | hidden (1 - wait / busy) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in result["steps"]:
        print(f"| {r['step']} | {fmt(r['think_responses'], 0)} | {fmt(r['requests'], 0)} "
              f"| {fmt(r['batch_size_mean'], 1)} | {fmt(r['busy_s'])} | {fmt(r['wait_s'])} "
              f"| {fmt(r['gen_s'])} | {fmt(r['step_s'])} | {100 * r['wait_fraction']:.1f} % "
              f"| {fmt(100 * r['hidden_fraction'], 1)} % |")
    m = result["mean"]
    print(f"| **mean** | | | | {fmt(m['busy_s'])} | {fmt(m['wait_s'])} | {fmt(m['gen_s'])} "
          f"| {fmt(m['step_s'])} "
          f"| {100 * m['wait_fraction']:.1f} % | {fmt(100 * m['hidden_fraction'], 1)} % |")
    verdict = "meets" if m["wait_fraction"] < 0.10 else "misses"
    print(f"\njudge wait adds {100 * m['wait_fraction']:.1f} % to the step on average "
          f"({verdict} the < 10 % target)")
    if "compare" in result:
        c = result["compare"]
        print(f"\n### Step time with and without judges (without: {c['run_dir']})\n")
        print("| run | steps | step s | step s (after the first) | gen s | gen s (after the first) |")
        print("|---|---|---|---|---|---|")
        for label in ("with judge", "without judge"):
            v = c[label]
            print(f"| {label} | {v['steps']} | {fmt(v['step_s'])} | {fmt(v['step_s_after_first'])} "
                  f"| {fmt(v['gen_s'])} | {fmt(v['gen_s_after_first'])} |")


def int_list(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=128,
                        help="judge requests per burst (2 per THINK response)")
    parser.add_argument("--workers", type=int_list, default=[1, 2], help="worker counts, comma-separated")
    parser.add_argument("--batch-sizes", type=int_list, default=[1, 16],
                        help="router batch sizes, comma-separated")
    parser.add_argument("--batch-wait-ms", type=float, default=5.0,
                        help="router batch window (JudgeSection default)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="timed bursts per configuration (median shown)")
    parser.add_argument("--min-words", type=int, default=40, help="shortest think text, words")
    parser.add_argument("--max-words", type=int, default=250, help="longest think text, words")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ray-cpus", type=int, default=0,
                        help="CPUs of the local Ray cluster (0: max workers)")
    parser.add_argument("--judge-dir", type=Path, default=ROOT / "models" / "tiny_judge",
                        help="tiny judge directory (built when missing)")
    parser.add_argument("--run-dir", type=Path, default=ROOT / "checkpoints" / "tiny_cpu",
                        help="training run with judge metrics (make demo)")
    parser.add_argument("--compare-run-dir", type=Path, default=None,
                        help="a run without judges, for step times")
    parser.add_argument("--skip-throughput", action="store_true", help="only report on --run-dir")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench_judge.json")
    args = parser.parse_args(argv)
    if args.requests < 2 or not args.workers or not args.batch_sizes or args.repeats < 1:
        parser.error("--requests >= 2, --repeats >= 1 and non-empty --workers / --batch-sizes required")

    result: dict[str, Any] = {}
    if not args.skip_throughput:
        result["throughput"] = throughput_part(args)
        print_throughput(result["throughput"], min(args.workers))
    overlap = overlap_part(args.run_dir, args.compare_run_dir)
    if overlap is None:
        print(f"\n## Judge time hidden behind the step\n\nskipped: no training step in {args.run_dir} "
              f"logged {P}wait_s (run it with a judge reward mode, e.g. `make demo`)")
        result["overlap"] = {"run_dir": str(args.run_dir), "skipped": "no judge metrics"}
    else:
        print_overlap(overlap)
        result["overlap"] = overlap
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=float) + "\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
