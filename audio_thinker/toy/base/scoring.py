"""The base's skill profile: accuracy per task and difficulty by choice log-likelihood.

For every clip and every shown choice, the full response answering that choice is scored
(teacher-forced sum of token log-probabilities after the prompt, audio included): the NO-THINK
response ``<answer>C</answer><|im_end|>`` and the THINK response with the template rationale. The
predicted choice is the most likely one; ties go to the first shown. :func:`summarize_profile` is
pure; :func:`choice_logprobs` runs the model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from audio_thinker.toy.base.clips import Clip
from audio_thinker.toy.base.options import response_text
from audio_thinker.toy.base.training import response_logits
from audio_thinker.toy.warmstart.data import Example, collate

__all__ = ["MODES", "choice_logprobs", "profile_ok", "score_profile", "summarize_profile"]

#: response formats scored: name -> THINK?
MODES = {"no_think": False, "think": True}


def choice_logprobs(
    model: Any, tokenizer: Any, clips: Sequence[Clip], embed: Any, *, think: bool, chunk: int = 16
) -> list[list[float]]:
    """``[clip][choice]``: log-probability of the response answering each shown choice.

    ``embed(indices)`` gives the clips' audio embeddings (an
    :class:`~audio_thinker.toy.base.training.AudioEmbedder`).
    """
    import torch

    pad_id = int(tokenizer.pad_token_id)
    out: list[list[float]] = []
    with torch.no_grad():
        for start in range(0, len(clips), chunk):
            indices = list(range(start, min(start + chunk, len(clips))))
            audio = embed(indices)
            examples, responses, owners = [], [], []
            for i, emb in zip(indices, audio):
                info = clips[i].row["extra_info"]
                for choice in info["choices"]:
                    text = response_text(info, str(choice), think=think)
                    responses.append(torch.tensor(tokenizer(text, add_special_tokens=False)["input_ids"]))
                    examples.append(Example(clips[i].row, clips[i].prompt_ids, emb))
                    owners.append(i)
            batch = collate(model, examples, responses, pad_id=pad_id)
            logits, labels = response_logits(model, batch)
            picked = torch.log_softmax(logits, dim=-1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)
            counts = (batch["labels"][:, 1:] != -100).sum(-1).tolist()
            sums = [float(part.sum()) for part in picked.split(counts)]
            for i in indices:
                out.append([s for s, owner in zip(sums, owners) if owner == i])
    return out


def _rate(hits: Sequence[float]) -> float:
    return round(sum(hits) / len(hits), 4) if hits else float("nan")


def summarize_profile(infos: Sequence[Mapping[str, Any]], logprobs: Sequence[Sequence[float]]) -> dict[str, Any]:
    """Accuracy and chance per task, per difficulty and overall (pure).

    >>> infos = [{"task": "a", "difficulty": "easy", "choices": ["x", "y"], "answer": "x"},
    ...          {"task": "b", "difficulty": "hard", "choices": ["x", "y", "z"], "answer": "z"}]
    >>> p = summarize_profile(infos, [[-1.0, -2.0], [-1.0, -3.0, -2.0]])
    >>> p["by_task"]["a"], p["by_task"]["b"]["accuracy"], p["overall"]["chance"]
    ({'accuracy': 1.0, 'chance': 0.5, 'clips': 1}, 0.0, 0.4167)
    """
    groups: dict[str, dict[str, list[list[float]]]] = {"by_task": {}, "by_difficulty": {}, "overall": {}}
    for info, scores in zip(infos, logprobs, strict=True):
        choices = [str(c) for c in info["choices"]]
        best = max(range(len(choices)), key=lambda k: (scores[k], -k))
        hit, chance = float(choices[best] == str(info["answer"])), 1.0 / len(choices)
        for table, key in (("by_task", info["task"]), ("by_difficulty", info["difficulty"]), ("overall", "all")):
            cell = groups[table].setdefault(str(key), [[], []])
            cell[0].append(hit)
            cell[1].append(chance)

    def figures(cell: list[list[float]]) -> dict[str, Any]:
        return {"accuracy": _rate(cell[0]), "chance": _rate(cell[1]), "clips": len(cell[0])}

    return {
        "by_task": {k: figures(v) for k, v in groups["by_task"].items()},
        "by_difficulty": {k: figures(v) for k, v in sorted(groups["by_difficulty"].items())},
        "overall": figures(groups["overall"]["all"]),
    }


def score_profile(model: Any, tokenizer: Any, clips: Sequence[Clip], embed: Any) -> dict[str, Any]:
    """:func:`summarize_profile` of ``clips`` for each response format of :data:`MODES`."""
    infos = [c.row["extra_info"] for c in clips]
    return {name: summarize_profile(infos, choice_logprobs(model, tokenizer, clips, embed, think=think))
            for name, think in MODES.items()}


def profile_ok(profile: Mapping[str, Any], *, strong: float = 0.9, easy: float = 0.75, hard_margin: float = 0.1,
               strong_tasks: int = 2) -> dict[str, bool]:
    """The issue's target skill profile, checked on one format's profile: at least ``strong_tasks``
    tasks at ``strong`` or better, easy overall at ``easy`` or better, hard within ``hard_margin`` of
    chance (pure).

    >>> row = lambda acc, chance: {"accuracy": acc, "chance": chance, "clips": 10}
    >>> p = {"by_task": {"a": row(1.0, .5), "b": row(.95, .5), "c": row(.3, .33)},
    ...      "by_difficulty": {"easy": row(.8, .4), "hard": row(.35, .31)}}
    >>> profile_ok(p)
    {'strong_tasks': True, 'easy': True, 'hard_near_chance': True}
    """
    tasks, levels = profile["by_task"].values(), profile["by_difficulty"]
    hard = levels.get("hard")
    return {
        "strong_tasks": sum(t["accuracy"] >= strong for t in tasks) >= strong_tasks,
        "easy": levels.get("easy", {}).get("accuracy", 0.0) >= easy,
        "hard_near_chance": hard is not None and abs(hard["accuracy"] - hard["chance"]) <= hard_margin,
    }
