"""vLLM-style sampling for the ``hf`` rollout: the request's parameters and the logit filters.

Pure (standard library + torch); no Ray, no verl.

* :func:`parse_sampling_params` turns the sampling dict verl's agent loop sends (vLLM names) into a
  :class:`SamplingSpec`, refusing options this backend would silently get wrong.
* :func:`apply_top_k_top_p` masks what each row's top-k then top-p removes (vLLM's order).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import torch

logger = logging.getLogger(__name__)

__all__ = ["LOGPROBS_MODES", "SAMPLING_EPS", "SamplingSpec", "apply_top_k_top_p", "parse_sampling_params"]

#: temperatures below this are greedy (vLLM's ``_SAMPLING_EPS``)
SAMPLING_EPS = 1e-5
LOGPROBS_MODES = ("processed_logprobs", "raw_logprobs")

#: vLLM sampling keys accepted only at their neutral value (anything else would be silently wrong)
_NEUTRAL_ONLY = {"n": 1, "presence_penalty": 0.0, "frequency_penalty": 0.0, "best_of": None, "stop": None,
                 "bad_words": None, "logit_bias": None, "allowed_token_ids": None, "prompt_logprobs": None}
#: vLLM keys about detokenisation / bookkeeping: meaningless for token-in/token-out, ignored
_IGNORED = {
    "skip_special_tokens", "spaces_between_special_tokens", "detokenize", "include_stop_str_in_output",
    "output_kind", "extra_args", "truncate_prompt_tokens", "structured_outputs", "guided_decoding", "min_p",
}
_warned_keys: set[str] = set()


@dataclass(frozen=True)
class SamplingSpec:
    """One request's sampling parameters (vLLM semantics)."""

    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1  # <= 0: disabled
    min_tokens: int = 0
    repetition_penalty: float = 1.0
    logprobs: bool = False
    seed: int | None = None
    ignore_eos: bool = False
    stop_token_ids: tuple[int, ...] = ()

    @property
    def greedy(self) -> bool:
        return self.temperature < SAMPLING_EPS


def parse_sampling_params(
    params: dict[str, Any],
    *,
    default_max_tokens: int,
    max_possible_tokens: int | None = None,
    defaults: dict[str, Any] | None = None,
) -> SamplingSpec:
    """A :class:`SamplingSpec` from a vLLM-style dict (as verl's agent loop sends it).

    ``max_tokens`` (or sglang's ``max_new_tokens``) defaults to ``default_max_tokens`` and is
    clamped to ``[1, max_possible_tokens]``. ``defaults`` fill keys the dict lacks (e.g. the
    rollout config's ``repetition_penalty`` / ``ignore_eos``). Non-neutral values of vLLM options
    this backend does not implement (``n``, stop strings, presence/frequency penalties, ...) raise
    ``ValueError``; unknown keys are ignored with a warning.
    """
    params = {**(defaults or {}), **params}
    for key, neutral in _NEUTRAL_ONLY.items():
        value = params.pop(key, neutral)
        if value != neutral and not (key == "stop" and not value):
            raise ValueError(f"sampling param {key}={value!r} is not supported by the hf rollout")
    for key in _IGNORED:
        params.pop(key, None)

    if "max_tokens" in params:
        max_tokens = params.pop("max_tokens")
        params.pop("max_new_tokens", None)
    else:
        max_tokens = params.pop("max_new_tokens", None)
    max_tokens = default_max_tokens if max_tokens is None else int(max_tokens)
    if max_possible_tokens is not None:
        max_tokens = min(max_tokens, max_possible_tokens)
    max_tokens = max(1, max_tokens)

    temperature = float(params.pop("temperature", 1.0))
    top_p = float(params.pop("top_p", 1.0))
    top_k = params.pop("top_k", -1)
    top_k = -1 if top_k is None or int(top_k) <= 0 else int(top_k)
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    repetition_penalty = float(params.pop("repetition_penalty", 1.0) or 1.0)
    if repetition_penalty <= 0:
        raise ValueError(f"repetition_penalty must be > 0, got {repetition_penalty}")

    logprobs = params.pop("logprobs", False)
    # vLLM: None -> no log-probs, an int k -> the sampled token's log-prob (+ top-k, unused here)
    logprobs = bool(logprobs) if isinstance(logprobs, bool) or logprobs is None else int(logprobs) >= 0
    seed = params.pop("seed", None)
    stop_token_ids = tuple(int(t) for t in (params.pop("stop_token_ids", None) or ()))
    spec = SamplingSpec(
        max_tokens=max_tokens,
        temperature=temperature,
        top_p=top_p,
        top_k=top_k,
        min_tokens=max(0, int(params.pop("min_tokens", 0) or 0)),
        repetition_penalty=repetition_penalty,
        logprobs=logprobs,
        seed=None if seed is None else int(seed),
        ignore_eos=bool(params.pop("ignore_eos", False)),
        stop_token_ids=stop_token_ids,
    )
    for key in params:
        if key not in _warned_keys:
            _warned_keys.add(key)
            logger.warning("hf rollout: ignoring unknown sampling param %r", key)
    return spec


def apply_top_k_top_p(logits: torch.Tensor, top_k: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """Mask (to ``-inf``) what each row's top-k (``<= 0``: off) then top-p (``1``: off) removes.

    Top-p keeps the smallest set of most likely tokens whose mass reaches ``p`` on the
    distribution left by top-k (vLLM's order); the most likely token always survives.
    """
    vocab = logits.shape[-1]
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    ranks = torch.arange(vocab, device=logits.device)
    k = torch.where(top_k > 0, top_k.clamp(max=vocab), torch.full_like(top_k, vocab))
    remove = ranks[None, :] >= k[:, None]
    use_p = top_p < 1.0
    if bool(use_p.any()):
        probs = sorted_logits.masked_fill(remove, -math.inf).softmax(dim=-1)
        mass_before = probs.cumsum(dim=-1) - probs
        remove |= use_p[:, None] & (mass_before >= top_p[:, None])
    remove[:, 0] = False
    return torch.empty_like(logits).scatter_(-1, order, sorted_logits.masked_fill(remove, -math.inf))


