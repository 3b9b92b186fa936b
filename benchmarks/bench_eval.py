"""Evaluation throughput on CPU: items/s of ``python -m audio_thinker.evaluate`` by batch size.

The embedded default (the tiny warm-started Qwen2-Audio on the synthetic validation set, built
when missing, greedy decoding) is evaluated once per ``--batch-sizes`` value, each into a fresh
run directory under ``--out``, through the same code path as the CLI
(:func:`audio_thinker.evaluate.run.evaluate`). Reported per batch size, from the run's own
``results.json`` timing: items/s and generated tokens/s over the generation calls only (model
loading, audio decoding and scoring excluded), the wall time of the whole run, and accuracy.
Greedy responses should not depend on the batch size; the share of items whose response is
identical to the first batch size's is reported too (left padding can flip a near-tie in float32).

    python benchmarks/bench_eval.py [--batch-sizes 1,8] [--limit N] [--threads 2] [--out runs/bench_eval]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from audio_thinker.evaluate.config import load_eval_config  # noqa: E402
from audio_thinker.evaluate.run import evaluate  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-sizes", default="1,8")
    parser.add_argument("--limit", type=int, default=None, help="first N items of the synthetic val set (64)")
    parser.add_argument("--max-new-tokens", type=int, default=512)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench_eval")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.batch_sizes.split(",") if s.strip()]
    rows, responses = [], {}
    for size in sizes:
        out = args.out / f"batch{size}"
        shutil.rmtree(out, ignore_errors=True)
        cfg = load_eval_config({
            "output_dir": str(out), "progress": False,
            "benchmark": {"limit": args.limit},
            "generation": {"batch_size": size, "max_new_tokens": args.max_new_tokens},
            "hf": {"num_threads": args.threads},
        })
        started = time.perf_counter()
        outcome = evaluate(cfg)
        wall = time.perf_counter() - started
        timing = outcome.results["timing"]
        responses[size] = {r.item_id: r.response for r in outcome.records}
        rows.append({
            "batch_size": size, "items": timing["items_generated"], "generate_s": timing["generate_s"],
            "items_per_s": timing["items_per_s"], "tokens_per_s": timing["tokens_per_s"],
            "tokens_per_item": round(timing["generated_tokens"] / max(timing["items_generated"], 1), 1),
            "wall_s": round(wall, 1), "accuracy": outcome.results["overall"]["ours"],
        })
    first = responses[sizes[0]]
    for row in rows:
        same = sum(responses[row["batch_size"]][k] == v for k, v in first.items())
        row["same_response_as_first"] = round(same / max(len(first), 1), 4)
    base = rows[0]["items_per_s"] or 0
    print("| batch size | items | generate s | items/s | tokens/s | tokens/item | speed-up | wall s | accuracy |"
          " same responses |")
    print("|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for row in rows:
        speedup = f"{row['items_per_s'] / base:.2f}x" if base and row["items_per_s"] else "–"
        print(f"| {row['batch_size']} | {row['items']} | {row['generate_s']:.1f} | {row['items_per_s']:.2f} | "
              f"{row['tokens_per_s']:.0f} | {row['tokens_per_item']} | {speedup} | {row['wall_s']} | "
              f"{row['accuracy']:.3f} | {row['same_response_as_first']:.0%} |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_eval.json").write_text(json.dumps(rows, indent=2))
    print(f"written: {args.out / 'bench_eval.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
