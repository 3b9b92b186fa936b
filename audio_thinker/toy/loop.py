"""The one supervised training loop of the demo builders (judge verdict priming, policy warm-start).

Plain AdamW in float32 on CPU with gradient clipping at 1.0 and a per-step learning-rate factor;
deterministic given the caller's seeds. What a step trains on is the caller's ``batch_loss``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["fit", "loss_figures", "warmup_then_decay"]


def fit(
    model: Any, params: Sequence[Any], batch_loss: Callable[[int], Any], *, steps: int, lr: float,
    lr_factor: Callable[[int], float], weight_decay: float = 0.0, progress: bool = False, desc: str = "training",
) -> list[float]:
    """``steps`` AdamW steps on ``params`` minimising ``batch_loss(step)`` (a scalar tensor); returns
    the loss of every step. ``params`` are tensors, or torch parameter groups (dicts with ``params``
    and their own ``lr``). The learning rate of step ``s`` is ``lr * lr_factor(s)`` (a group's own
    ``lr`` times the factor). ``model`` is in train mode during the loop and in eval mode after it."""
    import torch
    from tqdm import tqdm

    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    tensors = [p for group in optimizer.param_groups for p in group["params"]]
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    model.train()
    losses: list[float] = []
    bar = tqdm(range(steps), desc=desc, disable=not progress, leave=False)
    for step in bar:
        loss = batch_loss(step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(tensors, 1.0)
        optimizer.step()
        scheduler.step()
        losses.append(float(loss.detach()))
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
    model.eval()
    return losses


def loss_figures(losses: Sequence[float]) -> dict[str, float]:
    """First and last loss and the mean over the last 10 % of the steps (rounded for a marker file).

    >>> loss_figures([4.0, 3.0, 2.0, 1.0])
    {'loss_first': 4.0, 'loss_last': 1.0, 'loss_last_10pct_mean': 1.0}
    """
    tail = losses[-max(1, len(losses) // 10):]
    return {"loss_first": round(losses[0], 4), "loss_last": round(losses[-1], 4),
            "loss_last_10pct_mean": round(sum(tail) / len(tail), 4)}


def warmup_then_decay(step: int, steps: int, warmup_fraction: float) -> float:
    """Learning-rate factor of ``step``: linear warm-up over ``warmup_fraction`` of ``steps``, then
    linear decay to 0.1 (the warm-start's and the base model's schedule).

    >>> [round(warmup_then_decay(s, 10, 0.2), 3) for s in (0, 1, 2, 9)]
    [0.5, 1.0, 1.0, 0.213]
    """
    warmup = round(warmup_fraction * steps)
    if step < warmup:
        return (step + 1) / warmup
    span = max(steps - warmup, 1)
    return 1.0 - 0.9 * (step - warmup) / span
