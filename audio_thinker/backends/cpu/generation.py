"""Batched token-in/token-out sampling for Hugging Face causal LMs: the core of the CPU rollout.

Nothing here knows about Ray or verl; :mod:`audio_thinker.backends.cpu.rollout` wraps it in a
server that verl's agent loop calls like its vLLM server.

* :func:`parse_sampling_params` turns a vLLM-style sampling dict into a :class:`SamplingSpec`.
* :class:`BatchedGenerator` runs several requests as one left-padded batch: one prefill (with the
  audio features of every request that has audio), then a KV-cached decode loop that samples
  every row with its own temperature / top-k / top-p / seed, stops each row at its own EOS /
  stop ids / ``max_tokens``, and drops finished rows from the batch (and the cache).
  Log-probs follow vLLM's ``logprobs_mode``: ``processed_logprobs`` (default) are the log-probs
  of the distribution actually sampled from (after repetition penalty, temperature, top-k,
  top-p; greedy rows use temperature 1 as vLLM does), ``raw_logprobs`` those of the model's
  logits. Everything after the model's forward is computed in float32.
* :class:`RequestBatcher` collects concurrent asyncio requests into batches (max size, short
  gap wait) and runs each batch in a single worker thread.
* :func:`load_named_tensors` copies ``(name, tensor)`` pairs into a model, refusing unknown names.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import torch

logger = logging.getLogger(__name__)

__all__ = [
    "SAMPLING_EPS", "BatchedGenerator", "GenerationRequest", "GenerationResult", "RequestBatcher",
    "SamplingSpec", "apply_top_k_top_p", "load_named_tensors",
    "parse_sampling_params",
]

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


def load_named_tensors(
    model: torch.nn.Module, named_tensors: Iterable[tuple[str, torch.Tensor]], *, strict: bool = True
) -> list[str]:
    """Copy ``(name, tensor)`` pairs into ``model``'s parameters/buffers (dtype cast); names loaded.

    Names are the model's own ``state_dict`` keys (what verl's FSDP engine exports for the same
    class). With ``strict`` an unknown name or a shape mismatch raises ``KeyError`` /
    ``ValueError`` (a silently skipped tensor would leave the rollout on stale weights).
    """
    targets = model.state_dict(keep_vars=True)
    loaded = []
    with torch.no_grad():
        for name, tensor in named_tensors:
            target = targets.get(name)
            if target is None:
                if strict:
                    raise KeyError(f"hf rollout: {name!r} is not a weight of {type(model).__name__}")
                continue
            if tuple(target.shape) != tuple(tensor.shape):
                raise ValueError(f"hf rollout: weight {name!r} has shape {tuple(tensor.shape)}, "
                                 f"the model expects {tuple(target.shape)}")
            target.copy_(tensor.detach().to(device=target.device, dtype=target.dtype))
            loaded.append(name)
    return loaded


@dataclass
class _Pending:
    request: Any
    future: asyncio.Future


class RequestBatcher:
    """Collect concurrent requests into batches and run each batch off the event loop.

    ``submit`` queues a request and awaits its result. A single loop task takes the first
    waiting request, then keeps taking requests while they arrive less than ``max_wait_s`` apart,
    up to ``max_batch_size`` requests or ``max_total_wait_s`` after the first; the batch then runs
    as ``run_batch(requests) -> results`` on ``executor`` (one thread: batches never overlap, and
    whoever else uses that executor, e.g. weight loading, is serialised with them). Requests
    queued while a batch runs form the next batch. If a batch raises, its requests are retried
    one by one so a single bad request fails alone.
    """

    def __init__(
        self,
        run_batch: Callable[[list[Any]], list[Any]],
        *,
        executor: Executor,
        max_batch_size: int = 32,
        max_wait_s: float = 0.01,
        max_total_wait_s: float = 0.1,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be >= 1")
        self.run_batch = run_batch
        self.executor = executor
        self.max_batch_size = int(max_batch_size)
        self.max_wait_s = float(max_wait_s)
        self.max_total_wait_s = float(max_total_wait_s)
        self.batch_sizes: list[int] = []  # history, for metrics/tests
        self._queue: asyncio.Queue[_Pending] | None = None
        self._task: asyncio.Task | None = None
        self._running = 0

    def _ensure_started(self) -> asyncio.Queue:
        if self._task is None or self._task.done():
            self._queue = asyncio.Queue()
            self._task = asyncio.get_running_loop().create_task(self._loop())
        return self._queue

    async def submit(self, request: Any) -> Any:
        queue = self._ensure_started()
        future = asyncio.get_running_loop().create_future()
        queue.put_nowait(_Pending(request, future))
        return await future

    @property
    def busy(self) -> bool:
        return self._running > 0 or (self._queue is not None and not self._queue.empty())

    def drain_pending(
        self, predicate: Callable[[Any], bool] | None = None
    ) -> list[tuple[Any, asyncio.Future]]:
        """Remove and return queued (not yet running) requests matching ``predicate`` (default: all)."""
        out, kept = [], []
        while self._queue is not None and not self._queue.empty():
            item = self._queue.get_nowait()
            if item.future.done():
                continue
            if predicate is None or predicate(item.request):
                out.append((item.request, item.future))
            else:
                kept.append(item)
        for item in kept:
            self._queue.put_nowait(item)
        return out

    async def wait_idle(self, poll_s: float = 0.005) -> None:
        while self._running:
            await asyncio.sleep(poll_s)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
            self._task = None

    async def _collect(self) -> list[_Pending]:
        loop = asyncio.get_running_loop()
        batch = [await self._queue.get()]
        first = loop.time()
        while len(batch) < self.max_batch_size:
            if not self._queue.empty():
                batch.append(self._queue.get_nowait())
                continue
            timeout = min(self.max_wait_s, first + self.max_total_wait_s - loop.time())
            if timeout <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), timeout))
            except asyncio.TimeoutError:
                break
        return [p for p in batch if not p.future.done()]  # drop cancelled callers

    async def _run(self, requests: list[Any]) -> list[Any]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, self.run_batch, requests)

    async def _loop(self) -> None:
        while True:
            try:
                batch = await self._collect()
            except RuntimeError as e:  # the event loop is shutting down (e.g. the actor exits)
                if "loop is closed" in str(e) or "no running event loop" in str(e):
                    return
                raise
            if not batch:
                continue
            self._running += 1
            try:
                self.batch_sizes.append(len(batch))
                try:
                    results = await self._run([p.request for p in batch])
                    if len(results) != len(batch):
                        raise RuntimeError(f"{len(results)} results for {len(batch)} requests")
                    pairs = list(zip(batch, results))
                except Exception as batch_error:  # isolate the failing request(s)
                    if len(batch) == 1:
                        if not batch[0].future.done():
                            batch[0].future.set_exception(batch_error)
                        continue
                    logger.warning(
                        "hf rollout: batch of %d failed (%r); retrying one by one", len(batch), batch_error
                    )
                    pairs = []
                    for p in batch:
                        try:
                            pairs.append((p, (await self._run([p.request]))[0]))
                        except Exception as e:
                            if not p.future.done():
                                p.future.set_exception(e)
                for p, result in pairs:
                    if not p.future.done():
                        p.future.set_result(result)
            finally:
                self._running -= 1
