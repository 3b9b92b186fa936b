"""Completion-style generation with stop strings and a deadline (the judge's transformers path).

A judge prompt is a plain document (no chat template); the model continues it and the verdict is
the first non-empty line of the continuation (:mod:`audio_thinker.rewards.judge_parsing`).

* **Left padding**, as every batched generation here (:func:`audio_thinker.inference.hf.left_pad`).
* **Stop at the end of the first line.** A base model keeps writing further "reviews" after the
  verdict. A row stops once a stop string (``\\n``) follows some non-whitespace text, or at eos;
  generation ends when every row has stopped or ``max_new_tokens`` is reached. Text from the stop
  string on is cut off (:func:`cut_at_stop`); leading newlines are kept going (the parser skips
  empty lines). Special tokens are dropped from the text.
* **A deadline inside generation.** A stopping criterion ends generation once ``timeout_s`` has
  passed and :func:`generate_continuations` raises ``TimeoutError``, so a caller that gave up does
  not keep the model busy (a prefill in progress still runs to its end).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Protocol

from audio_thinker.inference.hf import generate_new_ids, left_pad
from audio_thinker.inference.options import GenerationOptions
from audio_thinker.inference.outputs import eos_token_ids


class ContinuationParams(Protocol):
    """How a continuation is written (``reward_workers.backend.GenerationParams`` is one)."""

    #: new tokens at most
    max_new_tokens: int
    #: 0 = greedy, else plain temperature sampling (no top-k / top-p)
    temperature: float
    #: strings that end a row once they follow non-whitespace text
    stop: Sequence[str]


def cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """``text`` up to the first stop string that follows non-whitespace, and whether one was found.

    >>> cut_at_stop(" Yes\\n### Review", ["\\n"])
    (' Yes', True)
    >>> cut_at_stop("\\n\\n 0.7", ["\\n"])
    ('\\n\\n 0.7', False)
    """
    content = len(text) - len(text.lstrip())
    if content == len(text):
        return text, False
    cut = min((i for i in (text.find(s, content) for s in stop if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


class StopOnText:
    """Per-row stop on text (see :func:`cut_at_stop`) plus a whole-batch deadline.

    Implements transformers' ``StoppingCriteria`` call protocol (``(input_ids, scores) -> bool[B]``);
    subclassing is avoided so this module imports no transformers at import time.
    """

    def __init__(self, tokenizer: Any, prompt_len: int, stop: Sequence[str], deadline: float | None):
        self.tokenizer = tokenizer
        self.prompt_len = prompt_len
        self.stop = tuple(s for s in stop if s)
        self.deadline = deadline
        self.timed_out = False

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        batch = input_ids.shape[0]
        if self.deadline is not None and time.monotonic() > self.deadline:
            self.timed_out = True
            return torch.ones(batch, dtype=torch.bool, device=input_ids.device)
        done = [False] * batch
        if self.stop:
            new = input_ids[:, self.prompt_len:].tolist()
            texts = self.tokenizer.batch_decode(new, skip_special_tokens=True)
            done = [cut_at_stop(text, self.stop)[1] for text in texts]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


def generate_continuations(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    params: ContinuationParams,
    *,
    timeout_s: float | None = None,
) -> list[str]:
    """The continuation of every prompt (tokenized as is, no special tokens added), cut at the
    first stop; greedy when ``params.temperature == 0``.

    Raises ``TimeoutError`` when ``timeout_s`` passed before every row finished.
    """
    if not prompts:
        return []
    deadline = time.monotonic() + timeout_s if timeout_s is not None else None
    options = GenerationOptions(max_new_tokens=int(params.max_new_tokens),
                                temperature=float(params.temperature))
    stop_ids = eos_token_ids(model, tokenizer)
    pad = tokenizer.pad_token_id
    pad_id = int(pad) if pad is not None else min(stop_ids, default=0)
    batch = left_pad([tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts], pad_id)
    device = next(model.parameters()).device
    batch = {key: value.to(device) for key, value in batch.items()}
    criteria = StopOnText(tokenizer, batch["input_ids"].shape[1], params.stop, deadline)
    new = generate_new_ids(model, batch, options, stop_ids=stop_ids, pad_id=pad_id,
                           stopping_criteria=[criteria])
    if criteria.timed_out:
        raise TimeoutError(f"generation exceeded {timeout_s:g} s ({len(prompts)} prompts)")
    texts = tokenizer.batch_decode(new, skip_special_tokens=True)
    return [cut_at_stop(text, params.stop)[0] for text in texts]
