"""The warm-start's check: sample responses like GRPO rollouts and measure their format and accuracy.

:func:`sample_responses` generates through the model's full forward (audio path included) from
the prompts training builds; :func:`summarize_responses` scores them with the reward's own parser.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from audio_thinker.rewards.combine import score_response
from audio_thinker.rewards.parsing import ResponseMode
from audio_thinker.toy.warmstart.data import processor_inputs, readable_rows
from audio_thinker.toy.warmstart.targets import WarmstartOptions

__all__ = ["sample_responses", "summarize_responses"]


def _decode_response(tokenizer: Any, ids: Sequence[int], stop_ids: set[int]) -> str:
    """Response text up to (and including) the first stop token, special tokens kept."""
    kept: list[int] = []
    for token in ids:
        kept.append(int(token))
        if int(token) in stop_ids:
            break
    return tokenizer.decode(kept, skip_special_tokens=False)


def sample_responses(
    model: Any, processor: Any, rows: Sequence[dict[str, Any]], *, options: WarmstartOptions,
    audio_config: Any, seed: int, chunk: int = 16, stats: Any = None,
) -> list[tuple[dict[str, Any], str]]:
    """``options.eval_samples`` sampled responses per row, through the model's full forward.

    Sampling is plain temperature sampling (no top-k / top-p) as in GRPO rollouts; prompts are
    left-padded, generation stops on the generation config's end-of-sequence ids.
    """
    import torch

    tokenizer = processor.tokenizer
    eos = model.generation_config.eos_token_id
    stop_ids = set(eos if isinstance(eos, list) else [eos])
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    out: list[tuple[dict[str, Any], str]] = []
    try:
        for start in range(0, len(rows), chunk):
            readable = list(readable_rows(rows[start:start + chunk], audio_config, stats))
            if not readable:
                continue
            batch = [r for r, _ in readable]
            inputs = processor_inputs(processor, batch, [a for _, a in readable])
            with torch.no_grad():
                generated = model.generate(
                    **inputs, do_sample=True, temperature=options.eval_temperature, top_k=0, top_p=1.0,
                    max_new_tokens=options.eval_max_new_tokens,
                    num_return_sequences=options.eval_samples,
                )
            new = generated[:, inputs["input_ids"].shape[1]:]
            for i, ids in enumerate(new.tolist()):
                out.append((batch[i // options.eval_samples], _decode_response(tokenizer, ids, stop_ids)))
    finally:
        tokenizer.padding_side = side
        torch.random.set_rng_state(generator_state)
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
