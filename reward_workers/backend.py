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
A backend never returns fewer continuations than prompts: it raises instead
(:func:`check_continuations`). :class:`GenerationParams` (how the judge writes its verdict) is
defined in the pure core, :mod:`audio_thinker.rewards.verdict`, and re-exported here because it
is part of :meth:`JudgeWorker.complete`'s signature.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from audio_thinker.rewards.verdict import GenerationParams

__all__ = [
    "GenerationParams", "JudgeBackendError", "JudgeError", "JudgeTimeout", "JudgeWorker", "JudgeWorkerDead",
    "check_continuations",
]


class JudgeError(RuntimeError):
    """Base class of judge failures (counted by the router, never raised into the training step)."""


class JudgeTimeout(JudgeError):
    """A judge call exceeded its deadline."""


class JudgeWorkerDead(JudgeError):
    """The worker process/actor is gone (Ray actor died, connection refused...)."""


class JudgeBackendError(JudgeError):
    """The backend answered with an error or an unusable reply (HTTP 5xx, wrong number of texts...)."""


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


def check_continuations(texts: Any, n: int, *, worker: str) -> list[str]:
    """``texts`` if it is a list of exactly ``n`` strings, else :class:`JudgeBackendError`.

    >>> check_continuations([" Yes", " 0.5"], 2, worker="w0")
    [' Yes', ' 0.5']
    >>> check_continuations([" Yes"], 2, worker="w0")
    Traceback (most recent call last):
    ...
    reward_workers.backend.JudgeBackendError: w0: expected 2 continuations, got [' Yes']
    """
    if not isinstance(texts, list) or len(texts) != n or not all(isinstance(t, str) for t in texts):
        raise JudgeBackendError(f"{worker}: expected {n} continuations, got {texts!r:.200}")
    return texts
