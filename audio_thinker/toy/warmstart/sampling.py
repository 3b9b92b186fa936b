"""The warm-start's check: sample responses like GRPO rollouts and measure their format and accuracy.

:func:`sample_responses` generates through the model's full forward (audio path included) from
the prompts training builds; :func:`summarize_responses` scores them with the reward's own parser.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from audio_thinker.rewards.combine import score_response
from audio_thinker.rewards.parsing import ResponseMode
from audio_thinker.toy.warmstart.data import chat_messages, readable_rows
from audio_thinker.toy.warmstart.targets import WarmstartOptions

__all__ = ["sample_responses", "summarize_responses"]


def sample_responses(
    model: Any, processor: Any, rows: Sequence[dict[str, Any]], *, options: WarmstartOptions,
    audio_config: Any, seed: int, chunk: int = 16, stats: Any = None,
) -> list[tuple[dict[str, Any], str]]:
    """``options.eval_samples`` sampled responses per row, through the model's full forward.

    Sampling is plain temperature sampling (no top-k / top-p) with the placeholder tokens banned,
    as in GRPO rollouts: :class:`audio_thinker.inference.hf.HFGenerator` (left-padded, cut at the
    first end-of-sequence token; the global torch RNG is left as it was).
    """
    from audio_thinker.inference.batching import batches
    from audio_thinker.inference.hf import HFGenerator
    from audio_thinker.inference.options import GenerationOptions
    from audio_thinker.inference.outputs import PromptInput

    generation = GenerationOptions(max_new_tokens=options.eval_max_new_tokens,
                                   temperature=options.eval_temperature, seed=seed)
    generator = HFGenerator(model, processor, generation)
    out: list[tuple[dict[str, Any], str]] = []
    try:
        for part in batches(rows, chunk):
            readable = list(readable_rows(part, audio_config, stats))
            prompts = [PromptInput(str(i), chat_messages(row, clips), clips)
                       for i, (row, clips) in enumerate(readable) for _ in range(options.eval_samples)]
            for prompt, result in zip(prompts, generator.generate(prompts)):
                if result.text is None:
                    raise RuntimeError(f"warm-start sampling failed: {result.error}")
                out.append((readable[int(prompt.item_id)][0], result.text))
    finally:
        generator.close()
    return out


def summarize_responses(samples: Sequence[tuple[Mapping[str, Any], str]]) -> dict[str, Any]:
    """Well-formed / think / no-think / malformed rates, accuracy, valid-choice rate and chance.

    ``chance_accuracy`` is the expected accuracy of a uniformly random choice on these rows.
    """
    n = len(samples)
    if n == 0:
        return {"responses": 0}
    counts = {mode: 0 for mode in ResponseMode}
    correct = valid_choice = 0
    chance = 0.0
    for row, text in samples:
        info = row["extra_info"]
        choices = [str(c) for c in info["choices"]]
        score = score_response(text, gold=str(info["answer"]), choices=choices)
        counts[score.parsed.mode] += 1
        correct += bool(score.correct)
        valid_choice += score.parsed.well_formed and score.parsed.answer in choices
        chance += 1.0 / len(choices)
    return {
        "responses": n,
        "well_formed_rate": round((n - counts[ResponseMode.MALFORMED]) / n, 4),
        "think_rate": round(counts[ResponseMode.THINK] / n, 4),
        "no_think_rate": round(counts[ResponseMode.NO_THINK] / n, 4),
        "malformed_rate": round(counts[ResponseMode.MALFORMED] / n, 4),
        "valid_choice_rate": round(valid_choice / n, 4),
        "accuracy": round(correct / n, 4),
        "chance_accuracy": round(chance / n, 4),
    }
