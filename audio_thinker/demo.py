"""``make demo``: the strongest end-to-end path that exists today, on the embedded default.

1. Generates the synthetic audio QA data set (``data/synthetic``) if it is missing.
2. Reads its training rows and, for every prompt, draws 8 *scripted* policy responses (a simple
   stochastic response model: the chance to think and to be right depend on the task's
   difficulty; a few responses are malformed). No model is run: the GRPO loop through verl
   replaces this step once the "verl's real GRPO loop on CPU" work lands.
3. Scores those responses with the real reward core (parsing, correctness, batch-balanced ATAR,
   overall reward) at several points of the annealing schedule and prints what the reward does:
   lambda, both gammas, the reward of each (mode, correctness) cell, and the mean |advantage| of
   verl's GRPO estimator.

    python -m audio_thinker.demo [--out data/synthetic] [--steps 1000] [--seed 0]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from audio_thinker.data.synthetic import generate_dataset, is_generated
from audio_thinker.rewards.combine import RewardConfig, RewardMode, compute_rewards, score_response

#: (P(think), P(correct | think), P(correct | no-think)) per difficulty
RESPONSE_MODEL = {"easy": (0.2, 0.85, 0.9), "medium": (0.5, 0.75, 0.6), "hard": (0.8, 0.6, 0.35)}
MALFORMED_RATE = 0.05


def simulate_responses(rows: pd.DataFrame, *, n: int, rng: np.random.Generator) -> list[dict]:
    """``n`` scripted responses per row, with the row's gold answer and choices."""
    out = []
    for _, row in rows.iterrows():
        info = row["extra_info"]
        choices = list(info["choices"])
        gold = info["answer"]
        p_think, p_right_think, p_right_direct = RESPONSE_MODEL.get(info["difficulty"], (0.5, 0.7, 0.6))
        for _ in range(n):
            think = rng.random() < p_think
            right = rng.random() < (p_right_think if think else p_right_direct)
            answer = gold if right else rng.choice([c for c in choices if c != gold])
            if rng.random() < MALFORMED_RATE:
                text = f"The answer is {answer}."
            elif think:
                text = f"<think>Listening to the clip, the evidence points to {answer}.</think>\n<answer>{answer}</answer>"
            else:
                text = f"<answer>{answer}</answer>"
            out.append({"text": text, "gold": gold, "choices": choices, "uid": info["index"], "difficulty": info["difficulty"]})
    return out


def grpo_advantages(rewards: np.ndarray, uids: list[int]) -> np.ndarray:
    """Per-response GRPO advantages from verl's own estimator (one scalar reward per response)."""
    import torch
    from verl.trainer.ppo.core_algos import compute_grpo_outcome_advantage

    scores = torch.tensor(rewards, dtype=torch.float32)[:, None]
    advantages, _ = compute_grpo_outcome_advantage(
        token_level_rewards=scores, response_mask=torch.ones_like(scores), index=np.asarray(uids)
    )
    return advantages[:, 0].numpy()


def report(responses: list[dict], *, total_steps: int) -> None:
    scores = [score_response(r["text"], gold=r["gold"], choices=r["choices"]) for r in responses]
    parsed = [s.parsed for s in scores]
    correct = [s.correct for s in scores]
    modes = np.array([p.mode.value for p in parsed])
    print(f"\n{len(responses)} responses: think {np.mean(modes == 'think'):.2f}, "
          f"no-think {np.mean(modes == 'no_think'):.2f}, malformed {np.mean(modes == 'malformed'):.2f}, "
          f"accuracy {np.mean(correct):.2f}")
    for difficulty in ("easy", "medium", "hard"):
        mask = np.array([r["difficulty"] == difficulty for r in responses])
        if mask.any():
            print(f"  {difficulty:<7} think rate {np.mean(modes[mask] == 'think'):.2f}  "
                  f"accuracy {np.mean(np.array(correct)[mask]):.2f}  (n={mask.sum()})")
    header = f"{'step':>6}{'lambda':>8}{'g_t':>7}{'g_n':>7}{'T+right':>9}{'T+wrong':>9}{'N+right':>9}{'N+wrong':>9}{'mean R':>8}{'|adv|':>7}"
    print("\nATAR over the annealing schedule (reward mode atar; the judge joins with the judge pool):")
    print(header)
    think = np.array([p.counts_as_think for p in parsed])
    right = np.array(correct)
    for step in (0, total_steps // 4, total_steps // 2, 3 * total_steps // 4, total_steps):
        out = compute_rewards(parsed=parsed, is_correct=correct, step=step, total_steps=total_steps,
                              config=RewardConfig(mode=RewardMode.ATAR))
        cells = []
        for t, c in ((True, True), (True, False), (False, True), (False, False)):
            mask = (think == t) & (right == c)
            cells.append(f"{out.accuracy[mask][0]:>9.3f}" if mask.any() else f"{'-':>9}")
        adv = grpo_advantages(out.overall, [r["uid"] for r in responses])
        print(f"{step:>6}{out.think_ratio:>8.3f}{out.g_think:>7.3f}{out.g_nothink:>7.3f}"
              + "".join(cells) + f"{out.overall.mean():>8.3f}{np.abs(adv).mean():>7.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description="Audio-Thinker reward walk-through on the synthetic set")
    parser.add_argument("--out", type=Path, default=Path("data/synthetic"))
    parser.add_argument("--train", type=int, default=256)
    parser.add_argument("--val", type=int, default=64)
    parser.add_argument("--prompts", type=int, default=16, help="prompts per step (paper: 16)")
    parser.add_argument("--rollouts", type=int, default=8, help="responses per prompt (paper: 8)")
    parser.add_argument("--steps", type=int, default=1000, help="annealing horizon T (paper: 1000)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    train = args.out / "train.parquet"
    if not is_generated(args.out, n_train=args.train, n_val=args.val, seed=args.seed, prompt_mode="adaptive"):
        print(f"generating the synthetic audio QA set in {args.out} ...")
        generate_dataset(args.out, n_train=args.train, n_val=args.val, seed=args.seed)
    rows = pd.read_parquet(train)
    rng = np.random.default_rng(args.seed)
    batch = rows.iloc[rng.choice(len(rows), size=min(args.prompts, len(rows)), replace=False)]
    print(f"data: {len(rows)} training rows in {train}; one step = {len(batch)} prompts x {args.rollouts} rollouts")
    print("example prompt:", batch.iloc[0]["prompt"][0]["content"][:200], "...")
    report(simulate_responses(batch, n=args.rollouts, rng=rng), total_steps=args.steps)


if __name__ == "__main__":
    main()
