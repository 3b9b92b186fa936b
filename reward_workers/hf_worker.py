"""The ``hf`` judge backend: a transformers causal LM in a Ray actor (CPU float32 by default).

Two layers, so that each can be tested on its own:

* :class:`HFJudgeActor`: plain Python (no Ray import) holding the model. The actor class is made
  remote by :class:`HFJudgeWorker` (``ray.remote(HFJudgeActor)``); in a test it can also be used
  in-process.
* :class:`HFJudgeWorker`: the :class:`~reward_workers.backend.JudgeWorker` the router talks to.
  ``complete`` is one Ray call with a deadline; Ray's failure modes become the typed judge errors
  (:class:`~reward_workers.backend.JudgeTimeout`, :class:`~reward_workers.backend.JudgeWorkerDead`,
  :class:`~reward_workers.backend.JudgeBackendError`); ``restart`` replaces the actor with a fresh
  one created with the same options.

Generation is :func:`audio_thinker.inference.continuations.generate_continuations`: left-padded
batches, each row stopped at the end of its first line (the verdict), and the call's deadline
enforced *inside* generation. That matters here: a Ray call to a busy synchronous actor cannot be
interrupted from outside (``ray.cancel`` only drops *queued* actor tasks), so an abandoned call
would keep the actor busy and delay every later batch; with the deadline inside, the actor raises
``TimeoutError`` and is free again a decoding step later (a prefill in progress still runs to its
end). torch's intra-op threads are set per actor (``num_threads``, by default the actor's CPU
reservation), so N judge actors on one node do not oversubscribe its cores.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import os
import time
from collections.abc import Sequence
from typing import Any

from audio_thinker.inference.backend import resolve_device_and_dtype
from audio_thinker.inference.continuations import generate_continuations
from audio_thinker.inference.loading import load_causal_lm
from reward_workers.backend import (
    GenerationParams,
    JudgeBackendError,
    JudgeTimeout,
    JudgeWorkerDead,
    check_continuations,
)

__all__ = ["HFJudgeActor", "HFJudgeWorker"]

logger = logging.getLogger(__name__)

#: extra seconds the worker waits for the actor beyond the call's own deadline (the actor stops
#: itself at the deadline; this covers a prefill in progress and the Ray round trip)
DEFAULT_GRACE_S = 5.0


class HFJudgeActor:
    """Holds one judge model; run as a Ray actor (one call at a time) by :class:`HFJudgeWorker`.

    ``device`` ``"cpu"`` loads float32 (CPU kernels for half precision are slow or missing);
    ``"cuda"`` loads bfloat16. ``num_threads`` sets torch's intra-op threads (None: keep torch's).
    """

    def __init__(self, model_path: str, *, num_threads: int | None = None, device: str = "cpu",
                 dtype: str | None = None):
        import torch
        from transformers.utils import logging as hf_logging

        started = time.monotonic()
        hf_logging.disable_progress_bar()  # one actor per worker: no progress bars in the Ray logs
        device, dtype = resolve_device_and_dtype(device, dtype)
        self.model, self.tokenizer = load_causal_lm(model_path, device=device, dtype=dtype,
                                                    num_threads=num_threads)
        self.info = {
            "model_path": str(model_path), "device": device, "dtype": dtype,
            "num_threads": torch.get_num_threads(), "pid": os.getpid(),
            "load_seconds": round(time.monotonic() - started, 3),
        }

    def ready(self) -> dict[str, Any]:
        """Model loaded: what was loaded where (the worker awaits this before routing to it)."""
        return dict(self.info)

    def generate(self, prompts: Sequence[str], params: GenerationParams,
                 timeout_s: float | None = None) -> list[str]:
        """See :func:`audio_thinker.inference.continuations.generate_continuations`."""
        return generate_continuations(self.model, self.tokenizer, prompts, params, timeout_s=timeout_s)


class HFJudgeWorker:
    """:class:`~reward_workers.backend.JudgeWorker` around one :class:`HFJudgeActor` Ray actor.

    The actor is created by :meth:`start` (the router calls it; it waits for the model to load) or
    :meth:`restart`. ``max_restarts=0``: the router decides when to restart, and counts it.
    Actors are unnamed and owned by the process that creates them (the judge pool actor), so
    they die with it.
    """

    def __init__(
        self,
        name: str,
        model_path: str,
        *,
        num_cpus: float = 1.0,
        num_gpus: float = 0.0,
        num_threads: int | None = None,
        start_timeout_s: float = 900.0,
        grace_s: float = DEFAULT_GRACE_S,
        actor_options: dict[str, Any] | None = None,
    ):
        self.name = name
        self.model_path = str(model_path)
        self.num_cpus = float(num_cpus)
        self.num_gpus = float(num_gpus)
        self.num_threads = int(num_threads) if num_threads else max(1, math.floor(self.num_cpus))
        self.start_timeout_s = float(start_timeout_s)
        self.grace_s = float(grace_s)
        self.actor_options = dict(actor_options or {})
        self.actor: Any = None
        self.info: dict[str, Any] = {}

    def _spawn(self) -> Any:
        options = {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus, "max_restarts": 0,
                   "max_concurrency": 1, **self.actor_options}
        device = "cuda" if self.num_gpus > 0 else "cpu"
        return _remote_actor_class().options(**options).remote(
            self.model_path, num_threads=self.num_threads, device=device,
        )

    async def start(self) -> None:
        """Create the actor and wait until its model is loaded (bounded by ``start_timeout_s``)."""
        import ray

        actor = self._spawn()
        try:
            self.info = await asyncio.wait_for(_await_ref(actor.ready.remote()), self.start_timeout_s)
        except BaseException:
            ray.kill(actor, no_restart=True)
            raise
        self.actor = actor
        logger.info("judge worker %s ready: %s", self.name, self.info)

    async def complete(self, prompts: Sequence[str], params: GenerationParams, *,
                       timeout_s: float) -> list[str]:
        import ray
        from ray.exceptions import ActorUnschedulableError, RayActorError, RayError, TaskCancelledError

        if self.actor is None:
            raise JudgeWorkerDead(f"{self.name}: no actor (not started, or its restart failed)")
        ref = self.actor.generate.remote(list(prompts), params, float(timeout_s))
        try:
            texts = await asyncio.wait_for(_await_ref(ref), float(timeout_s) + self.grace_s)
        except (RayActorError, ActorUnschedulableError) as error:
            raise JudgeWorkerDead(f"{self.name}: {type(error).__name__}: {_short(error)}") from None
        except TimeoutError:  # our deadline, or the actor's own TimeoutError (a RayTaskError subclass)
            ray.cancel(ref)  # drops the call if it is still queued; a running call stops by itself
            raise JudgeTimeout(f"{self.name}: no reply within {timeout_s:g} s") from None
        except TaskCancelledError as error:
            raise JudgeBackendError(f"{self.name}: call cancelled: {_short(error)}") from None
        except RayError as error:
            raise JudgeBackendError(f"{self.name}: {type(error).__name__}: {_short(error)}") from None
        return check_continuations(texts, len(prompts), worker=self.name)

    async def restart(self) -> None:
        """Kill the old actor (if any) and start a fresh one with the same options."""
        await self.close()
        await self.start()

    async def close(self) -> None:
        import ray

        actor, self.actor = self.actor, None
        if actor is not None:
            try:
                ray.kill(actor, no_restart=True)
            except Exception as error:  # noqa: BLE001 - already gone
                logger.debug("killing judge actor %s: %r", self.name, error)


@functools.cache
def _remote_actor_class() -> Any:
    """``ray.remote(HFJudgeActor)``, made once per process."""
    import ray

    return ray.remote(HFJudgeActor)


async def _await_ref(ref: Any) -> Any:
    """Await a Ray ObjectRef from any asyncio loop (also inside an async Ray actor)."""
    return await ref


def _short(error: BaseException, limit: int = 300) -> str:
    text = str(error).strip().splitlines()
    return (text[-1] if text else repr(error))[:limit]
