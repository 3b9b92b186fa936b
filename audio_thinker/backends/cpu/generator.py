"""Batched, KV-cached token-in/token-out sampling for one Hugging Face model: the rollout's core.

Nothing here knows about Ray or verl; :mod:`audio_thinker.backends.cpu.server` serves it to verl's
agent loop.

:class:`BatchedGenerator` runs several requests as one left-padded batch: one prefill (with the
audio features of every request that has audio), then a KV-cached decode loop that samples every
row with its own temperature / top-k / top-p / seed (:mod:`~audio_thinker.backends.cpu.sampling`),
stops each row at its own EOS / stop ids / ``max_tokens``, and drops finished rows from the batch
(and the cache). Log-probs follow vLLM's ``logprobs_mode``: ``processed_logprobs`` (default) are
the log-probs of the distribution actually sampled from (after repetition penalty, temperature,
top-k, top-p; greedy rows use temperature 1 as vLLM does), ``raw_logprobs`` those of the model's
logits. Everything after the model's forward is computed in float32.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from audio_thinker.backends.cpu.sampling import LOGPROBS_MODES, SAMPLING_EPS, SamplingSpec, apply_top_k_top_p

__all__ = ["BatchedGenerator", "GenerationRequest", "GenerationResult"]


@dataclass
class GenerationRequest:
    """Prompt token ids (placeholders already expanded), sampling, and the processor's features."""

    prompt_ids: list[int]
    sampling: SamplingSpec
    #: per-request processor output for the model's forward (``input_features``, ...), or None
    mm_inputs: dict[str, torch.Tensor] | None = None
    request_id: str = ""
    #: raw multimodal payload a caller turns into ``mm_inputs`` before generation (opaque here)
    mm_data: Any = None


@dataclass
class GenerationResult:
    token_ids: list[int]
    #: log-prob of each returned token (always computed; the server drops them if not asked)
    log_probs: list[float]
    #: "stop" (EOS / stop id), "length" (max_tokens), or "abort"
    finish_reason: str
    stats: dict[str, float] = field(default_factory=dict)


def _default_collate(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    keys = {k for item in items for k in item}
    return {k: torch.cat([item[k] for item in items if item.get(k) is not None], dim=0) for k in keys}


class BatchedGenerator:
    """Left-padded batched sampling with a KV cache for one Hugging Face model.

    Args:
        model: a causal LM (or audio LM) whose forward takes ``input_ids``, ``attention_mask``,
            ``position_ids``, ``past_key_values``, ``use_cache`` and, at prefill, the processor's
            multimodal tensors; positions are ``cumsum(attention_mask) - 1`` (what verl's actor
            uses for processors without ``get_rope_index``).
        eos_token_ids: ids that end a response (unless a request sets ``ignore_eos``).
        pad_token_id: id used for left padding (masked out).
        logprobs_mode: ``processed_logprobs`` or ``raw_logprobs`` (vLLM's names).
        seed: seeds the generator shared by requests without their own ``seed``.
        collate_mm: batches the per-request ``mm_inputs`` (default: concatenate along dim 0).
        banned_token_ids: ids never sampled, e.g. multimodal placeholders such as ``<|AUDIO|>``:
            a response containing one makes the actor count more placeholders than feature
            frames and fail. A trained model practically never emits them; a random tiny one
            does. Reported log-probs stay the model's (see :meth:`_sample`).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        eos_token_ids: Iterable[int],
        pad_token_id: int = 0,
        logprobs_mode: str = "processed_logprobs",
        seed: int = 0,
        collate_mm: Callable[[list[dict[str, torch.Tensor]]], dict[str, Any]] | None = None,
        banned_token_ids: Iterable[int] = (),
    ) -> None:
        if logprobs_mode not in LOGPROBS_MODES:
            raise ValueError(f"logprobs_mode must be one of {LOGPROBS_MODES}, got {logprobs_mode!r}")
        self.model = model.eval()
        self.eos_token_ids = frozenset(int(t) for t in eos_token_ids)
        self.pad_token_id = int(pad_token_id)
        self.logprobs_mode = logprobs_mode
        self.generator = torch.Generator().manual_seed(int(seed))
        self.collate_mm = collate_mm or _default_collate
        self.banned_token_ids = sorted({int(t) for t in banned_token_ids})
        self._logits_to_keep = True  # switched off if the model's forward refuses it

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # ------------------------------------------------------------------ forward
    def _forward(self, **kwargs: Any) -> Any:
        if self._logits_to_keep:
            try:
                return self.model(**kwargs, logits_to_keep=1)
            except TypeError as e:
                if "logits_to_keep" not in str(e):
                    raise
                self._logits_to_keep = False
        return self.model(**kwargs)

    # ----------------------------------------------------------------- sampling
    def _sample(
        self,
        logits: torch.Tensor,
        rows: dict[str, torch.Tensor],
        generators: list[torch.Generator | None],
        seen: torch.Tensor | None,
        block_stop: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Next token and its log-prob for each row of ``logits`` (float32, shape (b, V)).

        Banned ids are excluded from *sampling* only: the reported log-prob is the model's (after
        temperature / top-k / top-p in ``processed_logprobs`` mode), so it matches the actor's
        recomputation whatever the ban removes (on a trained model, practically nothing).
        """
        raw = logits
        penalty = rows["repetition_penalty"]
        if seen is not None and bool((penalty != 1.0).any()):
            p = penalty[:, None]
            penalized = torch.where(logits > 0, logits / p, logits * p)
            logits = torch.where(seen & (p != 1.0), penalized, logits)
        if block_stop is not None:
            logits = logits.masked_fill(block_stop, -math.inf)
        greedy = rows["temperature"] < SAMPLING_EPS
        temperature = torch.where(greedy, torch.ones_like(rows["temperature"]), rows["temperature"])
        filtered = bool((rows["top_k"] > 0).any()) or bool((rows["top_p"] < 1.0).any())

        def process(values: torch.Tensor) -> torch.Tensor:
            scaled = values / temperature[:, None]
            return apply_top_k_top_p(scaled, rows["top_k"], rows["top_p"]) if filtered else scaled

        scaled = process(logits)
        logprobs = torch.log_softmax(scaled, dim=-1)
        banned = [t for t in self.banned_token_ids if 0 <= t < logits.shape[-1]]
        if banned:
            sample_from = process(logits.index_fill(-1, torch.tensor(banned), -math.inf))
            sample_logprobs = torch.log_softmax(sample_from, dim=-1)
        else:
            sample_from, sample_logprobs = scaled, logprobs

        tokens = sample_from.argmax(dim=-1)
        sampled = (~greedy).nonzero().flatten().tolist()
        if sampled:
            probs = sample_logprobs.exp()
            shared = [i for i in sampled if generators[i] is None]
            if shared:
                tokens[shared] = torch.multinomial(probs[shared], 1, generator=self.generator).flatten()
            for i in sampled:
                if generators[i] is not None:
                    tokens[i] = torch.multinomial(probs[i], 1, generator=generators[i])[0]
        if self.logprobs_mode == "raw_logprobs":
            logprobs = torch.log_softmax(raw, dim=-1)
        return tokens, logprobs.gather(-1, tokens[:, None]).squeeze(-1)

    # --------------------------------------------------------------- generation
    @torch.no_grad()
    def generate(
        self,
        requests: Sequence[GenerationRequest],
        should_abort: Callable[[], bool] | None = None,
    ) -> list[GenerationResult]:
        """Generate every request as one batch; results in request order."""
        if not requests:
            return []
        started = time.perf_counter()
        device = self.device
        n = len(requests)
        specs = [r.sampling for r in requests]
        lengths = [len(r.prompt_ids) for r in requests]
        if min(lengths) < 1:
            raise ValueError("empty prompt")
        width = max(lengths)
        input_ids = torch.full((n, width), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((n, width), dtype=torch.long)
        for i, r in enumerate(requests):
            input_ids[i, width - lengths[i]:] = torch.tensor(r.prompt_ids, dtype=torch.long)
            attention_mask[i, width - lengths[i]:] = 1
        position_ids = (attention_mask.cumsum(-1) - 1).clamp_(min=0)

        rows = {
            "temperature": torch.tensor([s.temperature for s in specs], dtype=torch.float32),
            "top_p": torch.tensor([s.top_p for s in specs], dtype=torch.float32),
            "top_k": torch.tensor([s.top_k for s in specs], dtype=torch.long),
            "repetition_penalty": torch.tensor([s.repetition_penalty for s in specs], dtype=torch.float32),
        }
        generators = [None if s.seed is None else torch.Generator().manual_seed(s.seed) for s in specs]
        stops = [
            frozenset(s.stop_token_ids) | (frozenset() if s.ignore_eos else self.eos_token_ids) for s in specs
        ]

        mm = [r.mm_inputs for r in requests if r.mm_inputs]
        mm_kwargs = {}
        if mm:
            mm_kwargs = {k: v.to(device) if torch.is_tensor(v) else v for k, v in self.collate_mm(mm).items()}
        out = self._forward(
            input_ids=input_ids.to(device),
            attention_mask=attention_mask.to(device),
            position_ids=position_ids.to(device),
            use_cache=True,
            **mm_kwargs,
        )
        prefill_s = time.perf_counter() - started
        cache = out.past_key_values
        logits = out.logits[:, -1, :].float().cpu()
        vocab = logits.shape[-1]

        seen = None
        if any(s.repetition_penalty != 1.0 for s in specs):
            seen = torch.zeros((n, vocab), dtype=torch.bool)
            for i, r in enumerate(requests):
                seen[i, [t for t in r.prompt_ids if 0 <= t < vocab]] = True

        alive = list(range(n))  # request index of each row of the current batch
        tokens_out: list[list[int]] = [[] for _ in range(n)]
        logps_out: list[list[float]] = [[] for _ in range(n)]
        finish: list[str | None] = [None] * n
        last_pos = position_ids[:, -1].clone()
        steps = 0

        while True:
            block = None
            if any(specs[i].min_tokens > len(tokens_out[i]) for i in alive):
                block = torch.zeros((len(alive), vocab), dtype=torch.bool)
                for j, i in enumerate(alive):
                    if specs[i].min_tokens > len(tokens_out[i]):
                        block[j, [t for t in stops[i] if 0 <= t < vocab]] = True
            row_params = {k: v[alive] for k, v in rows.items()}
            next_tokens, next_logps = self._sample(
                logits, row_params, [generators[i] for i in alive],
                None if seen is None else seen[alive], block,
            )
            steps += 1
            keep: list[int] = []
            for j, i in enumerate(alive):
                token = int(next_tokens[j])
                tokens_out[i].append(token)
                logps_out[i].append(float(next_logps[j]))
                if seen is not None:
                    seen[i, token] = True
                if token in stops[i] and len(tokens_out[i]) >= specs[i].min_tokens:
                    finish[i] = "stop"
                elif len(tokens_out[i]) >= specs[i].max_tokens:
                    finish[i] = "length"
                else:
                    keep.append(j)
            if not keep:
                break
            if should_abort is not None and should_abort():
                for j in keep:
                    finish[alive[j]] = "abort"
                break
            if len(keep) < len(alive):  # drop finished rows from the batch and the cache
                index = torch.tensor(keep, dtype=torch.long)
                cache.batch_select_indices(index.to(device))
                attention_mask = attention_mask[index]
                last_pos = last_pos[index]
                next_tokens = next_tokens[index]
                alive = [alive[j] for j in keep]
            attention_mask = torch.cat([attention_mask, torch.ones((len(alive), 1), dtype=torch.long)], dim=1)
            last_pos = last_pos + 1
            out = self._forward(
                input_ids=next_tokens[:, None].to(device),
                attention_mask=attention_mask.to(device),
                position_ids=last_pos[:, None].to(device),
                past_key_values=cache,
                use_cache=True,
            )
            cache = out.past_key_values
            logits = out.logits[:, -1, :].float().cpu()

        elapsed = time.perf_counter() - started
        stats = {"batch_size": float(n), "prefill_s": prefill_s, "generate_s": elapsed,
                 "decode_steps": float(steps)}
        return [
            GenerationResult(tokens_out[i], logps_out[i], finish_reason=finish[i] or "abort", stats=stats)
            for i in range(n)
        ]


