"""The contract between the judge router and the judge backends (hf / vllm / openai).

A *judge worker* turns completion prompts into continuations (the judge model writes the verdict
after the prompt's cue; :mod:`audio_thinker.rewards.judge_parsing` reads it). The router
(:mod:`reward_workers.router`) owns one :class:`JudgeWorker` per configured worker, batches
requests per worker, balances load, enforces timeouts and retries, and restarts or routes around
a failed worker. Backends only implement this protocol:

* ``hf``: a Ray actor running a transformers causal LM (CPU by default), wrapped so that
  :meth:`JudgeWorker.complete` is a Ray call and :meth:`JudgeWorker.restart` replaces a dead actor;
* ``vllm``: a Ray actor holding a vLLM engine on its own GPUs (imported only when selected);
* ``openai``: an HTTP client for any OpenAI-compatible ``/v1/completions`` endpoint.

Errors are typed so the router can count them: :class:`JudgeTimeout` (the request took longer
than its deadline), :class:`JudgeWorkerDead` (the worker is gone; restart it or route around it),
:class:`JudgeBackendError` (anything else the backend reports: HTTP 5xx, a malformed reply...).
A backend never returns fewer continuations than prompts: it raises instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = [
    "GenerationParams", "JudgeBackendError", "JudgeError", "JudgeTimeout", "JudgeWorker", "JudgeWorkerDead",
]


class JudgeError(RuntimeError):
    """Base class of judge failures (counted by the router, never raised into the training step)."""


class JudgeTimeout(JudgeError):
    """A judge call exceeded its deadline."""


class JudgeWorkerDead(JudgeError):
    """The worker process/actor is gone (Ray actor died, connection refused...)."""


class JudgeBackendError(JudgeError):
    """The backend answered with an error or an unusable reply (HTTP 5xx, wrong number of texts...)."""


@dataclass(frozen=True)
class GenerationParams:
    """How the judge writes its verdict (from ``audio_thinker.judge``)."""

    #: new tokens the judge may write (a verdict is one short line)
    max_new_tokens: int = 8
    #: 0 = greedy
    temperature: float = 0.0
    #: the verdict is the first line: generation may stop at a newline
    stop: tuple[str, ...] = ("\n",)


@runtime_checkable
class JudgeWorker(Protocol):
    """One judge worker as the router sees it."""

    #: a short unique name for logs and metrics ("hf-0", "vllm-1", "openai-0")
    name: str

    async def complete(self, prompts: Sequence[str], params: GenerationParams, *, timeout_s: float) -> list[str]:
        """The continuation of every prompt, in order; raises a :class:`JudgeError` on failure."""
        ...

    async def restart(self) -> None:
        """Recover after :class:`JudgeWorkerDead` (a new actor, a new connection); may raise."""
        ...

    async def close(self) -> None:
        """Release the worker (kill the actor, close the connection pool)."""
        ...
