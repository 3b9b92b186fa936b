"""The warm-start's supervised run: format-only targets on cached prompts, the audio path frozen."""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from audio_thinker.toy.loop import fit, loss_figures, warmup_then_decay
from audio_thinker.toy.warmstart.data import Example, collate
from audio_thinker.toy.warmstart.targets import WarmstartOptions, build_target

__all__ = ["response_loss", "shuffled_batches", "train_warmstart"]


def response_loss(model: Any, batch: Mapping[str, Any]) -> Any:
    """Mean next-token cross-entropy over the response tokens of ``batch`` (:func:`collate`'s output)."""
    import torch.nn.functional as F

    logits = model(inputs_embeds=batch["inputs_embeds"], attention_mask=batch["attention_mask"]).logits
    shift_logits = logits[:, :-1].float()
    shift_labels = batch["labels"][:, 1:]
    return F.cross_entropy(shift_logits.reshape(-1, shift_logits.shape[-1]), shift_labels.reshape(-1),
                           ignore_index=-100)


def shuffled_batches(n: int, batch_size: int, rng: random.Random) -> Iterator[list[int]]:
    """Endless shuffled epochs over ``range(n)``, cut into batches (an epoch's tail rolls over).

    >>> batches = shuffled_batches(3, 2, random.Random(0))
    >>> sorted(next(batches) + next(batches) + next(batches))[:3]
    [0, 0, 1]
    """
    order: list[int] = []
    while True:
        while len(order) < batch_size:
            epoch = list(range(n))
            rng.shuffle(epoch)
            order.extend(epoch)
        yield order[:batch_size]
        order = order[batch_size:]


def train_warmstart(
    model: Any, tokenizer: Any, examples: Sequence[Example], options: WarmstartOptions, *, progress: bool
) -> dict[str, Any]:
    """Train the language model (audio path frozen) on fresh targets every step; loss figures."""
    import torch

    rng = random.Random(options.seed)
    torch.manual_seed(options.seed)
    for module in (model.audio_tower, model.multi_modal_projector):
        module.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    pad_id = int(tokenizer.pad_token_id)
    encoded: dict[str, Any] = {}

    def response_ids(text: str) -> Any:
        if text not in encoded:
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            encoded[text] = torch.tensor(ids, dtype=torch.long)
        return encoded[text]

    batches = shuffled_batches(len(examples), options.batch_size, rng)

    def batch_loss(step: int) -> Any:
        chosen = [examples[i] for i in next(batches)]
        targets = [
            build_target(ex.row["extra_info"], rng, think_fraction=options.think_fraction) for ex in chosen
        ]
        return response_loss(model, collate(model, chosen, [response_ids(t.text) for t in targets], pad_id=pad_id))

    losses = fit(model, params, batch_loss, steps=options.steps, lr=options.lr, weight_decay=options.weight_decay,
                 lr_factor=lambda step: warmup_then_decay(step, options.steps, options.warmup_fraction), progress=progress, desc="warm-start")
    return {
        **loss_figures(losses),
        "trainable_parameters": sum(p.numel() for p in params),
        "frozen_parameters": sum(p.numel() for p in model.parameters() if not p.requires_grad),
        "train_rows": len(examples), "targets_seen": options.steps * options.batch_size,
    }
