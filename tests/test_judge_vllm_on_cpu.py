"""The ``vllm`` judge backend on CPU: everything but the engine itself.

Plain functions (sampling/engine kwargs, Ray placement options, error mapping), the missing-vLLM
error, a light import, and :class:`VLLMJudgeWorker` driving a stub actor with the judge actor's
interface on a local Ray cluster (replies, timeouts that cancel the batch, a killed actor,
restart). The real engine needs CUDA and is exercised on GPU machines only.
"""

import asyncio
import functools
import importlib.util
import subprocess
import sys
from types import ModuleType, SimpleNamespace

import pytest
import ray
from ray import exceptions as rex
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from audio_thinker.config import ConfigError, JudgeSection
from audio_thinker.inference.vllm import VLLMNotInstalledError, import_vllm
from reward_workers import vllm_worker
from reward_workers.backend import (
    GenerationParams,
    JudgeBackendError,
    JudgeTimeout,
    JudgeWorker,
    JudgeWorkerDead,
)
from reward_workers.vllm_worker import (
    VLLMJudgeActor,
    VLLMJudgeWorker,
    actor_options,
    engine_kwargs,
    make_vllm_workers,
    map_ray_error,
    sampling_kwargs,
)

CFG = JudgeSection(backend="vllm", model_path="Qwen/Qwen3-8B-Base", num_workers=2, gpus_per_worker=2)
PARAMS = GenerationParams(max_new_tokens=6, temperature=0.0, stop=("\n",))
HAVE_VLLM = importlib.util.find_spec("vllm") is not None


# -- plain functions -------------------------------------------------------------------------------


def test_sampling_kwargs():
    assert sampling_kwargs(PARAMS) == {  # top_p / top_k: vLLM's defaults, written out
        "n": 1, "max_tokens": 6, "temperature": 0.0, "top_p": 1.0, "top_k": -1, "stop": ["\n"],
        "skip_special_tokens": True,
    }
    no_stop = sampling_kwargs(GenerationParams(max_new_tokens=2, temperature=0.5, stop=()))
    assert "stop" not in no_stop and no_stop["temperature"] == 0.5
    assert "seed" not in no_stop  # sampled judges draw from the engine RNG, not one fixed seed
    with pytest.raises(ValueError):
        sampling_kwargs(GenerationParams(max_new_tokens=0))
    with pytest.raises(ValueError):
        sampling_kwargs(GenerationParams(temperature=-1))


def test_engine_kwargs():
    kw = engine_kwargs(CFG, gpu_memory_utilization=0.8, max_model_len=8192)
    assert kw["model"] == "Qwen/Qwen3-8B-Base"
    assert kw["tensor_parallel_size"] == 2
    assert kw["gpu_memory_utilization"] == 0.8
    assert kw["max_model_len"] == 8192
    assert kw["distributed_executor_backend"] == "mp"  # on the GPUs Ray gave the actor
    assert kw["enable_prefix_caching"] is True

    one = engine_kwargs(JudgeSection(backend="vllm", gpus_per_worker=1))
    assert one["tensor_parallel_size"] == 1
    assert "distributed_executor_backend" not in one and "max_model_len" not in one
    assert engine_kwargs(CFG, extra={"enforce_eager": True, "quantization": "fp8"})["quantization"] == "fp8"

    with pytest.raises(ConfigError, match="gpus_per_worker>=1"):
        engine_kwargs(JudgeSection(backend="vllm", gpus_per_worker=0))
    with pytest.raises(ConfigError, match="gpu_memory_utilization"):
        engine_kwargs(CFG, gpu_memory_utilization=1.5)
    with pytest.raises(ConfigError, match="max_model_len"):
        engine_kwargs(CFG, max_model_len=0)


def test_actor_options_placement():
    plain = actor_options(CFG)
    assert plain == {"num_gpus": 2, "num_cpus": 1, "max_restarts": 0, "max_task_retries": 0}

    pinned = actor_options(CFG, node_resource="judge_node", resources={"fast_disk": 0.5})
    assert pinned["resources"] == {"judge_node": 2.0, "fast_disk": 0.5}  # one judge_node unit per GPU

    strategy = NodeAffinitySchedulingStrategy(node_id="ab" * 28, soft=False)
    assert actor_options(CFG, scheduling_strategy=strategy, name="judge-0")["scheduling_strategy"] is strategy

    with pytest.raises(ConfigError, match="num_cpus/gpus_per_worker"):
        actor_options(CFG, resources={"GPU": 1})
    with pytest.raises(ConfigError, match="must be positive"):
        actor_options(CFG, resources={"judge_node": 0})
    with pytest.raises(ConfigError, match="gpus_per_worker>=1"):
        actor_options(JudgeSection(backend="vllm", gpus_per_worker=0))


def test_map_ray_error():
    died = map_ray_error(rex.ActorDiedError(), worker="vllm-0")
    assert isinstance(died, JudgeWorkerDead) and "vllm-0" in str(died)
    init = map_ray_error(rex.RayActorError(error_msg="x\nVLLMNotInstalledError: pip install", actor_init_failed=True),
                         worker="vllm-0")
    assert isinstance(init, JudgeWorkerDead) and "failed to start" in str(init) and "pip install" in str(init)
    unavailable = map_ray_error(rex.ActorUnavailableError("net down", b"\x00" * 16), worker="w")
    assert type(unavailable) is JudgeBackendError  # transient: retry, do not restart

    assert isinstance(map_ray_error(TimeoutError(), worker="w", timeout_s=2), JudgeTimeout)
    assert isinstance(map_ray_error(rex.GetTimeoutError(), worker="w"), JudgeTimeout)

    # an exception raised inside the actor, even a TimeoutError, is the engine's error, not our deadline
    remote_timeout = rex.RayTaskError("generate", "Traceback...", TimeoutError("engine step")).as_instanceof_cause()
    assert isinstance(remote_timeout, TimeoutError)
    mapped = map_ray_error(remote_timeout, worker="w")
    assert type(mapped) is JudgeBackendError and "TimeoutError" in str(mapped)
    remote_dead = rex.RayTaskError("generate", "tb", JudgeWorkerDead("engine gone")).as_instanceof_cause()
    assert isinstance(map_ray_error(remote_dead, worker="w"), JudgeWorkerDead)

    assert type(map_ray_error(rex.TaskCancelledError(), worker="w")) is JudgeBackendError
    assert type(map_ray_error(ValueError("odd"), worker="w")) is JudgeBackendError
    same = JudgeTimeout("already typed")
    assert map_ray_error(same, worker="w") is same


def test_reply_check_is_the_pools_one():
    """The worker checks the actor's reply with the one check every judge backend uses."""
    from reward_workers.backend import check_continuations

    assert check_continuations(["a", "b"], 2, worker="w") == ["a", "b"]
    for bad in (["a"], ["a", 2], ("a", "b"), None):
        with pytest.raises(JudgeBackendError, match="expected 2 continuations"):
            check_continuations(bad, 2, worker="w")


# -- vLLM missing / light import ---------------------------------------------------------------------


def test_missing_vllm_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # `import vllm` now raises ImportError
    with pytest.raises(VLLMNotInstalledError, match=r"pip install -e \.\[gpu\]") as info:
        import_vllm()
    assert isinstance(info.value, ImportError)
    with pytest.raises(VLLMNotInstalledError, match="backend=hf"):
        VLLMJudgeActor({"model": "m"})


def test_import_is_light():
    """Importing the backend imports neither vLLM nor torch (so no CUDA) and starts no Ray."""
    code = (
        "import sys, ray; import reward_workers.vllm_worker as m; "
        "m.engine_kwargs; m.make_vllm_workers; "
        "bad = [k for k in ('vllm', 'torch', 'pynvml', 'cupy') if k in sys.modules]; "
        "bad += ['ray.init'] if ray.is_initialized() else []; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    out = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_make_vllm_workers_validates_before_starting_anything():
    with pytest.raises(ConfigError, match="gpus_per_worker>=1"):
        make_vllm_workers(JudgeSection(backend="vllm", gpus_per_worker=0))
    with pytest.raises(ConfigError, match="2 scheduling strategies for 3 workers"):
        make_vllm_workers(JudgeSection(backend="vllm", num_workers=3, gpus_per_worker=1),
                          scheduling_strategy=[None, None])


def test_make_vllm_workers_wires_options_and_engine(monkeypatch):
    created = []

    def fake_create(actor_cls, options, kwargs):
        created.append((actor_cls, options, kwargs))
        return SimpleNamespace(ready=SimpleNamespace(remote=lambda: None))  # actor.ready.remote()

    monkeypatch.setattr(vllm_worker, "_create_actor", fake_create)
    strategies = ["s0", "s1"]
    workers = make_vllm_workers(CFG, node_resource="judge_node", scheduling_strategy=strategies,
                                max_model_len=4096, engine_extra={"enforce_eager": True}, startup_timeout_s=42)
    assert [w.name for w in workers] == ["vllm-0", "vllm-1"]
    assert all(isinstance(w, VLLMJudgeWorker) and w._startup_timeout_s == 42 for w in workers)
    assert [c[0] for c in created] == [VLLMJudgeActor, VLLMJudgeActor]
    assert [c[1]["scheduling_strategy"] for c in created] == strategies
    assert created[0][1]["num_gpus"] == 2 and created[0][1]["resources"] == {"judge_node": 2.0}
    assert created[0][2]["tensor_parallel_size"] == 2 and created[0][2]["max_model_len"] == 4096
    assert created[0][2]["enforce_eager"] is True

    # keywords left out come from the section when it has such fields (the pool passes only cfg)
    created.clear()
    section = SimpleNamespace(**{**vars(CFG), "node_resource": "judge_node", "gpu_memory_utilization": 0.7,
                                 "max_model_len": 2048, "start_timeout_s": 77.0})
    (worker, _) = make_vllm_workers(section)
    assert worker._startup_timeout_s == 77.0
    assert created[0][1]["resources"] == {"judge_node": 2.0}
    assert created[0][2]["gpu_memory_utilization"] == 0.7 and created[0][2]["max_model_len"] == 2048
    created.clear()
    make_vllm_workers(CFG)
    assert "resources" not in created[0][1] and created[0][2]["gpu_memory_utilization"] == 0.9


# -- the actor's own logic, with a fake vllm module and engine (no Ray, no GPU) ------------------------


class FakeSamplingParams:
    def __init__(self, **kwargs):
        self.kwargs = kwargs


class FakeEngine:
    """The slice of vLLM's ``AsyncLLM`` the actor uses: ``generate(prompt, sampling_params, request_id)``."""

    def __init__(self):
        self.request_ids = []
        self.cancelled = []

    async def generate(self, prompt, sampling_params, request_id):
        self.request_ids.append(request_id)
        try:
            if prompt == "slow":
                await asyncio.sleep(30)
            if prompt == "boom":
                raise RuntimeError("boom")
            if prompt == "nothing":
                yield SimpleNamespace(outputs=[], finished=True)
                return
            yield SimpleNamespace(outputs=[SimpleNamespace(text=" partial")], finished=False)
            text = f" {sampling_params.kwargs['max_tokens']}:{prompt}"
            yield SimpleNamespace(outputs=[SimpleNamespace(text=text)], finished=True)
        except (asyncio.CancelledError, GeneratorExit):
            self.cancelled.append(request_id)
            raise


@pytest.fixture
def fake_vllm(monkeypatch):
    module = ModuleType("vllm")
    module.SamplingParams = FakeSamplingParams
    monkeypatch.setitem(sys.modules, "vllm", module)
    engines = []

    def build(kwargs):
        engines.append(FakeEngine())
        return engines[-1]

    monkeypatch.setattr(vllm_worker, "build_async_engine", build)
    return engines


def test_actor_generates_in_order_and_cancels_on_failure(fake_vllm):
    async def main():
        actor = VLLMJudgeActor(engine_kwargs(CFG))
        info = await asyncio.gather(actor.ready(), actor.ready())
        out = await actor.generate(["a", "b", "c"], sampling_kwargs(PARAMS))
        with pytest.raises(RuntimeError, match="boom"):
            await actor.generate(["slow", "boom"], sampling_kwargs(PARAMS))
        with pytest.raises(RuntimeError, match="no output"):
            await actor.generate(["nothing"], sampling_kwargs(PARAMS))
        # the worker's deadline: Ray cancels the actor task
        task = asyncio.ensure_future(actor.generate(["slow", "slow"], sampling_kwargs(PARAMS)))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return info, out

    info, out = asyncio.run(main())
    assert len(fake_vllm) == 1  # one engine, however many concurrent ready() calls
    engine = fake_vllm[0]
    assert info[0] == {"model": "Qwen/Qwen3-8B-Base", "tensor_parallel_size": 2}
    assert out == [" 6:a", " 6:b", " 6:c"]
    assert len(set(engine.request_ids)) == len(engine.request_ids)  # unique request ids
    ids = engine.request_ids
    assert engine.cancelled == [ids[3], ids[6], ids[7]]  # the slow sibling of "boom", then both slow ones


# -- the worker against a stub actor on a local Ray cluster --------------------------------------------


@pytest.fixture(scope="module")
def ray_cluster():
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    if started:
        ray.shutdown()


def _stub_actor_class():
    """A CPU actor with the judge actor's interface (defined in a function: Ray ships it by value)."""

    class StubJudgeActor:
        def __init__(self, engine_kwargs):
            self.kwargs = engine_kwargs
            self.cancelled = 0
            self.batches = []

        async def ready(self):
            if self.kwargs.get("fail_start"):
                raise RuntimeError("CUDA out of memory while loading the judge")
            await asyncio.sleep(self.kwargs.get("load_s", 0))
            return {"model": self.kwargs.get("model")}

        async def generate(self, prompts, sampling):
            self.batches.append((list(prompts), dict(sampling)))
            if "die" in prompts:
                import os

                os._exit(1)
            if "raise" in prompts:
                raise ValueError("engine exploded")
            if "short" in prompts:
                return prompts[:-1]
            if "sleep" in prompts:
                try:
                    await asyncio.sleep(30)
                except asyncio.CancelledError:
                    self.cancelled += 1
                    raise
            return [f" {sampling['max_tokens']}:{p}" for p in prompts]

        async def stats(self):
            return {"cancelled": self.cancelled, "batches": self.batches}

    return StubJudgeActor


def stub_worker(name="vllm-0", startup_timeout_s=30.0, **engine):
    factory = functools.partial(vllm_worker._create_actor, _stub_actor_class(), {"num_cpus": 0.1},
                                {"model": "stub", **engine})
    return VLLMJudgeWorker(name, factory, startup_timeout_s=startup_timeout_s)


def test_worker_replies_timeouts_errors_and_restart(ray_cluster):
    async def main():
        worker = stub_worker()
        assert isinstance(worker, JudgeWorker)
        await worker.start()
        results = {"ok": await worker.complete(["a", "b"], PARAMS, timeout_s=10),
                   "empty": await worker.complete([], PARAMS, timeout_s=10)}

        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(JudgeTimeout, match="within 0.5 s"):
            await worker.complete(["sleep"], PARAMS, timeout_s=0.5)
        results["timeout_s"] = loop.time() - start
        with pytest.raises(asyncio.TimeoutError):  # a caller's own deadline (the router's) also cancels
            await asyncio.wait_for(worker.complete(["sleep"], PARAMS, timeout_s=30), 0.5)
        with pytest.raises(JudgeBackendError, match="ValueError: engine exploded"):
            await worker.complete(["raise"], PARAMS, timeout_s=10)
        with pytest.raises(JudgeBackendError, match="expected 2 continuations"):
            await worker.complete(["x", "short"], PARAMS, timeout_s=10)
        await asyncio.sleep(0.5)
        results["stats"] = await worker._actor.stats.remote()
        results["after_errors"] = await worker.complete(["c"], PARAMS, timeout_s=10)

        with pytest.raises(JudgeWorkerDead):
            await worker.complete(["die"], PARAMS, timeout_s=10)
        with pytest.raises(JudgeWorkerDead):  # stays dead until restarted
            await worker.complete(["d"], PARAMS, timeout_s=10)
        await worker.restart()
        results["restarted"] = await worker.complete(["e"], PARAMS, timeout_s=10)

        await worker.close()
        with pytest.raises(JudgeWorkerDead, match="closed"):
            await worker.complete(["f"], PARAMS, timeout_s=10)
        return results

    results = asyncio.run(main())
    assert results["ok"] == [" 6:a", " 6:b"]
    assert results["empty"] == []
    assert results["timeout_s"] < 3
    assert results["stats"]["cancelled"] == 2  # both timed-out batches were cancelled in the actor
    assert results["stats"]["batches"][0] == (["a", "b"], sampling_kwargs(PARAMS))
    assert results["after_errors"] == [" 6:c"]
    assert results["restarted"] == [" 6:e"]


def test_worker_startup_failures(ray_cluster):
    async def main():
        failing = stub_worker(fail_start=True)
        with pytest.raises(JudgeWorkerDead, match="CUDA out of memory while loading") as dead:
            await failing.complete(["a"], PARAMS, timeout_s=10)
        await failing.close()

        slow = stub_worker(startup_timeout_s=0.3, load_s=5)
        with pytest.raises(JudgeTimeout, match="still loading"):
            await slow.complete(["a"], PARAMS, timeout_s=10)
        await slow.close()
        return dead.value

    err = asyncio.run(main())
    assert "while starting" in str(err)


@pytest.mark.skipif(HAVE_VLLM, reason="vLLM is installed here: the missing-vLLM path cannot be shown")
def test_real_actor_without_vllm_fails_with_the_install_hint(ray_cluster):
    async def main():
        factory = functools.partial(vllm_worker._create_actor, VLLMJudgeActor, {"num_cpus": 0.1}, {"model": "m"})
        worker = VLLMJudgeWorker("vllm-0", factory, startup_timeout_s=60)
        try:
            with pytest.raises(JudgeWorkerDead) as info:
                await worker.wait_ready()
            return info.value
        finally:
            await worker.close()

    err = asyncio.run(main())
    assert "pip install -e .[gpu]" in str(err)
    assert "failed to start" in str(err)
