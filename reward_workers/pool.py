"""The judge pool on Ray: one named async actor hosting a :class:`~reward_workers.router.JudgeRouter`.

Every process of a training job reaches the same pool by name: verl's ``RewardLoopWorker``
actors (one per rollout worker group, each scoring trajectories as they finish) send their THINK
responses to it through :class:`PoolJudgeClient`, and the trainer collects the step's judge
metrics from it. One pool, rather than a router per reward worker, is what makes batching,
load balancing, dedup and the step metrics global to the step.

* :class:`JudgePoolActor`: builds the workers of the configured backend (``hf``: N
  :class:`~reward_workers.hf_worker.HFJudgeWorker` actors, owned by the pool actor so they die with
  it; ``vllm`` / ``openai``: ``make_vllm_workers(cfg)`` / ``make_openai_workers(cfg)`` from
  :mod:`reward_workers.vllm_worker` / :mod:`reward_workers.endpoint`, imported only when selected)
  and serves the router. Async actor: all requests share one event loop (``max_concurrency``
  bounds the concurrent calls, not threads). Started lazily by its first call; Ray restarts the
  pool actor itself if it dies (``max_restarts=-1``), which rebuilds its workers.
* :func:`get_or_create_judge_pool`: idempotent (``get_if_exists``), from any process; the first
  caller creates it. Create it from the driver/trainer so the pool lives as long as the job
  (an actor is owned by its creator) and reward workers just look it up.
* :class:`PoolJudgeClient`: the reward manager's ``JudgeClient`` seam. A call that fails or
  exceeds its overall deadline (:func:`default_deadline_s`: every attempt timing out, twice
  over, plus a minute) returns ``None`` verdicts and is logged once per client; the training
  step never fails because of the judge.

The actor is named :data:`POOL_NAME` in the caller's namespace unless ``namespace`` is given:
verl's actors run in the driver job's namespace, so the whole job shares one pool while two jobs
on one cluster (each in its own anonymous namespace) never share one by accident.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from audio_thinker.config import JudgeSection, build_section
from audio_thinker.rewards.verdict import JudgeVerdict
from reward_workers.backend import JudgeWorker
from reward_workers.router import JudgeRouter

__all__ = [
    "POOL_NAME", "JudgePoolActor", "PoolJudgeClient", "default_deadline_s", "get_judge_pool",
    "get_or_create_judge_pool", "make_workers",
]

logger = logging.getLogger(__name__)

#: Ray actor name of the judge pool
POOL_NAME = "audio_thinker_judge_pool"
#: concurrent calls the pool actor accepts (each THINK response is one call; they only await)
MAX_CONCURRENCY = 4096


def _section(cfg: JudgeSection | Mapping[str, Any]) -> JudgeSection:
    """``cfg`` as a :class:`~audio_thinker.config.JudgeSection`; a mapping is checked like the config
    (an unknown key or a wrong type raises :class:`~audio_thinker.config.ConfigError` naming it and
    the known keys)."""
    if isinstance(cfg, JudgeSection):
        return cfg
    return build_section(JudgeSection, cfg, "", root="audio_thinker.judge")


def make_workers(cfg: JudgeSection) -> list[JudgeWorker]:
    """The configured backend's workers (not started; the router starts them)."""
    backend = cfg.backend
    if backend == "hf":
        from reward_workers.hf_worker import HFJudgeWorker

        return [
            HFJudgeWorker(
                f"hf-{i}", cfg.model_path, num_cpus=float(cfg.cpus_per_worker),
                num_gpus=float(cfg.gpus_per_worker), num_threads=cfg.num_threads or None,
                start_timeout_s=float(cfg.start_timeout_s),
            )
            for i in range(cfg.num_workers)
        ]
    if backend == "vllm":
        from reward_workers.vllm_worker import make_vllm_workers

        return list(make_vllm_workers(cfg))
    if backend == "openai":
        from reward_workers.endpoint import make_openai_workers

        return list(make_openai_workers(cfg))
    raise ValueError(f"unknown judge backend {backend!r}: use hf, vllm or openai")


class JudgePoolActor:
    """The judge pool (run as a named async Ray actor; see the module docstring).

    ``cfg``: the ``audio_thinker.judge`` section; ``kinds``: the judgements to request
    (default both; ``atar_cr`` needs only ``consistency``).
    """

    def __init__(self, cfg: JudgeSection | Mapping[str, Any], kinds: Sequence[str] | None = None):
        self.cfg = _section(cfg)
        self.kinds = tuple(kinds) if kinds else ("consistency", "quality")
        self.router: JudgeRouter | None = None
        self._starting: asyncio.Future | None = None

    async def _router(self) -> JudgeRouter:
        if self.router is None:
            if self._starting is None:
                self._starting = asyncio.ensure_future(self._start())
            await asyncio.shield(self._starting)
        assert self.router is not None
        return self.router

    async def _start(self) -> None:
        started = time.monotonic()
        router = JudgeRouter.from_config(make_workers(self.cfg), self.cfg, kinds=self.kinds)
        await router.start()
        self.router = router
        logger.info("judge pool ready in %.1f s: %s", time.monotonic() - started, router.worker_states())

    async def ready(self) -> dict[str, Any]:
        """Wait until the workers have started; the pool's config, kinds and workers."""
        router = await self._router()
        return {"config": dataclasses.asdict(self.cfg), "kinds": list(self.kinds),
                "workers": router.worker_states()}

    async def judge(self, question: str, choices: Sequence[str], think: str, answer: str,
                    submitted_at: float | None = None) -> JudgeVerdict:
        """:meth:`JudgeRouter.judge` of one THINK response."""
        router = await self._router()
        return await router.judge(question=question, choices=choices, think=think, answer=answer,
                                  submitted_at=submitted_at)

    async def judge_many(self, items: Sequence[dict[str, Any]]) -> list[JudgeVerdict]:
        """Several THINK responses at once (each a dict of :meth:`judge`'s arguments)."""
        router = await self._router()
        return list(await asyncio.gather(*(router.judge(**item) for item in items)))

    async def complete(self, kind: str, prompts: Sequence[str]) -> list[str | None]:
        """Raw continuations of judge prompts (diagnostics, benchmarks); ``None`` = failed."""
        router = await self._router()
        return list(await asyncio.gather(*(router.request(kind, prompt) for prompt in prompts)))

    async def collect_metrics(self) -> dict[str, float]:
        """The step's ``judge/...`` metrics; starts the next step (:meth:`JudgeRouter.collect_metrics`)."""
        router = await self._router()
        return router.collect_metrics()

    async def workers(self) -> list[dict[str, Any]]:
        """Per-worker state (name, alive, calls in flight, prompts sent, restarting)."""
        router = await self._router()
        return router.worker_states()

    async def worker_actors(self) -> dict[str, Any]:
        """Name -> Ray actor handle of the workers that are Ray actors (fault-injection in tests)."""
        router = await self._router()
        return {w.name: w.actor for w in router.workers if getattr(w, "actor", None) is not None}

    async def shutdown(self) -> None:
        """Close every worker (kills the hf actors); the pool actor itself stays until killed."""
        if self.router is not None:
            await self.router.close()


@functools.cache
def _remote_pool_class() -> Any:
    """``ray.remote(JudgePoolActor)``, made once per process."""
    import ray

    return ray.remote(JudgePoolActor)


def _actor_options(name: str, namespace: str | None, detached: bool) -> dict[str, Any]:
    options: dict[str, Any] = {
        "name": name, "get_if_exists": True, "max_concurrency": MAX_CONCURRENCY, "num_cpus": 0,
        "max_restarts": -1,
    }
    if namespace is not None:
        options["namespace"] = namespace
    if detached:
        options["lifetime"] = "detached"
    return options


def get_or_create_judge_pool(
    cfg: JudgeSection | Mapping[str, Any],
    *,
    kinds: Iterable[str] | None = None,
    name: str = POOL_NAME,
    namespace: str | None = None,
    detached: bool = False,
    wait_ready: bool = True,
    ready_timeout_s: float | None = None,
) -> Any:
    """The pool actor handle, created when no actor of that name exists yet (idempotent).

    With ``wait_ready`` (from synchronous code only: it blocks) the workers are started before
    returning and start-up errors surface here; a pool that already existed with a different
    config is kept and a warning is logged. ``detached`` pools outlive the creating job.
    """
    import ray

    section = _section(cfg)
    kinds = tuple(kinds) if kinds else None
    handle = _remote_pool_class().options(**_actor_options(name, namespace, detached)).remote(section, kinds)
    if wait_ready:
        info = ray.get(handle.ready.remote(), timeout=ready_timeout_s)
        if info["config"] != dataclasses.asdict(section) or (kinds and list(kinds) != info["kinds"]):
            logger.warning("judge pool %r already existed with another config (%s); using it as it is",
                           name, info["config"])
    return handle


def get_judge_pool(name: str = POOL_NAME, namespace: str | None = None) -> Any | None:
    """The pool actor handle by name, or ``None`` when there is none."""
    import ray

    try:
        return ray.get_actor(name, namespace=namespace)
    except ValueError:
        return None


def default_deadline_s(cfg: JudgeSection) -> float:
    """Overall deadline of one client call: all attempts timing out, twice over, plus a minute."""
    return 2.0 * float(cfg.timeout_s) * (int(cfg.max_retries) + 1) + 60.0


class PoolJudgeClient:
    """The :class:`~audio_thinker.rewards.verdict.JudgeClient` seam backed by the pool actor; never
    raises, never blocks forever.

    The client only looks the pool up by name (the trainer creates it): on first use and again
    after a failed call (the pool may have been restarted since). ``deadline_s``: the overall
    limit of one call (:func:`default_deadline_s` of the judge section; 600 s when not given).
    Picklable: the handle is not part of the state.
    """

    def __init__(self, *, name: str = POOL_NAME, namespace: str | None = None, deadline_s: float = 600.0):
        self.name = name
        self.namespace = namespace
        self.deadline_s = float(deadline_s)
        self.failed_calls = 0
        self._handle: Any = None
        self._warned = False

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_handle"] = None
        return state

    def _lookup(self) -> Any:
        if self._handle is None:
            import ray

            self._handle = ray.get_actor(self.name, namespace=self.namespace)
        return self._handle

    async def judge(self, *, question: str, choices: Sequence[str] = (), think: str,
                    answer: str) -> JudgeVerdict:
        """Both verdicts of one THINK response; ``None`` verdicts when the pool call fails."""
        submitted_at = time.time()
        ref = None
        try:
            handle = self._lookup()
            ref = handle.judge.remote(str(question), [str(c) for c in choices], str(think), str(answer),
                                      submitted_at)
            return await asyncio.wait_for(_await(ref), self.deadline_s)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # noqa: BLE001 - the judge never fails the step
            self.failed_calls += 1
            self._handle = None
            if ref is not None and isinstance(error, TimeoutError):
                _cancel(ref)
            if not self._warned:
                self._warned = True
                logger.warning("judge pool call failed (%r); its response is masked out of the step's loss "
                               "(logged once per client)", error)
            else:
                logger.debug("judge pool call failed: %r", error)
            return JudgeVerdict(consistency=None, quality=None)


async def _await(ref: Any) -> Any:
    return await ref


def _cancel(ref: Any) -> None:
    try:
        import ray

        ray.cancel(ref)
    except Exception as error:  # noqa: BLE001 - best effort
        logger.debug("cancelling a judge pool call: %r", error)
