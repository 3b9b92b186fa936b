"""Reward throughput: responses/s for a batch of 128 responses of ~300 tokens.

Times the whole pure reward path of one training step (parse every response, check its answer,
compute ATAR and the overall reward with scripted judge verdicts), with batch balancing on
(annealed ATAR) and off (static ATAR), and reports the median over repeats.

    python benchmarks/bench_rewards.py [--batch 128] [--tokens 300] [--repeats 50]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from audio_thinker.rewards.combine import RewardConfig, RewardMode, compute_rewards, score_response

CHOICES = ["ascending", "descending", "neither"]
WORDS = "the first note is low then each following note rises in pitch so the melody".split()


def make_batch(n: int, tokens: int, seed: int = 0) -> list[str]:
    """Responses of roughly ``tokens`` tokens (~1 word each), a realistic mode/correctness mix."""
    rng = random.Random(seed)
    batch = []
    for i in range(n):
        think = " ".join(rng.choice(WORDS) for _ in range(tokens - 8))
        answer = rng.choice(CHOICES)
        kind = i % 10
        if kind < 5:
            batch.append(f"<think>{think}</think>\n<answer>{answer}</answer><|im_end|>")
        elif kind < 9:
            batch.append(f"<answer>{answer}</answer><|im_end|>")
        else:
            batch.append(f"<think>{think}</think> {answer}")  # malformed
    return batch


def one_step(batch: list[str], config: RewardConfig) -> float:
    start = time.perf_counter()
    scores = [score_response(text, gold="ascending", choices=CHOICES) for text in batch]
    parsed = [s.parsed for s in scores]
    verdicts = [1 if p.mode.value == "think" else None for p in parsed]
    quality = [0.7 if p.mode.value == "think" else None for p in parsed]
    compute_rewards(
        parsed=parsed, is_correct=[s.correct for s in scores], consistency=verdicts,
        quality=quality, step=10, total_steps=1000, config=config,
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--tokens", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    batch = make_batch(args.batch, args.tokens)
    chars = sum(map(len, batch)) / len(batch)
    print(f"batch={args.batch} responses, ~{args.tokens} tokens (~{chars:.0f} chars) each, {args.repeats} repeats")
    print(f"{'variant':<28}{'median ms/batch':>16}{'responses/s':>14}")
    for name, config in [
        ("ATAR+CR+TR, balanced", RewardConfig(mode=RewardMode.ATAR_CR_TR, balance=True)),
        ("ATAR+CR+TR, static", RewardConfig(mode=RewardMode.ATAR_CR_TR, balance=False)),
        ("accuracy only", RewardConfig(mode=RewardMode.ACCURACY)),
    ]:
        one_step(batch, config)  # warm-up
        times = [one_step(batch, config) for _ in range(args.repeats)]
        median = statistics.median(times)
        print(f"{name:<28}{median * 1e3:>16.2f}{args.batch / median:>14.0f}")


if __name__ == "__main__":
    main()
