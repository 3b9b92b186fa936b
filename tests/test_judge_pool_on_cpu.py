"""The judge pool on a local Ray cluster with the ``hf`` backend and a tiny random Qwen3 judge.

End to end: ``PoolJudgeClient`` -> the named pool actor -> router -> two ``HFJudgeActor`` actors
(transformers on CPU) -> continuations -> parsed verdicts. A random judge writes random text, so
most verdicts are unparseable (``JudgeFailure.UNPARSEABLE``, counted as failures); what must hold is that every
verdict equals the parse of the same greedy generation done in this process, and that a judge
actor killed mid-batch costs retries and a restart, never the batch.
"""

import asyncio
import pickle
import time

import pytest
import ray

from audio_thinker.config import JudgeSection
from audio_thinker.inference.continuations import cut_at_stop
from audio_thinker.rewards.judge_parsing import parse_consistency, parse_quality
from audio_thinker.rewards.judge_prompts import build_judge_prompt
from audio_thinker.rewards.verdict import GenerationParams, JudgeFailure
from reward_workers.hf_worker import HFJudgeActor
from reward_workers.pool import PoolJudgeClient, get_judge_pool, get_or_create_judge_pool

POOL = "test_audio_thinker_judge_pool"
CHOICES = ["high", "low", "none of them"]
UNPARSEABLE = JudgeFailure.UNPARSEABLE


def items(n, prefix="t"):
    return [
        {"question": f"Which tone is higher? ({i})", "choices": CHOICES,
         "think": f"{prefix}{i}: the first tone is at {100 * (i + 1)} Hz and the second one " * (1 + i % 3),
         "answer": CHOICES[i % 3]}
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def judge_dir(tiny_judge_dir):
    return str(tiny_judge_dir)


@pytest.fixture(scope="module")
def cfg(judge_dir):
    return JudgeSection(backend="hf", model_path=judge_dir, num_workers=2, batch_size=4, timeout_s=30.0,
                        max_retries=2, max_new_tokens=8, cpus_per_worker=1.0, num_threads=1,
                        batch_wait_ms=5.0, start_timeout_s=120.0)


@pytest.fixture(scope="module")
def pool(cfg):
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    handle = get_or_create_judge_pool(cfg, name=POOL, ready_timeout_s=180)
    yield handle
    ray.get(handle.shutdown.remote(), timeout=60)
    ray.kill(handle, no_restart=True)
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def reference(judge_dir):
    """Verdicts from the same greedy generation run in this process (no Ray)."""
    actor = HFJudgeActor(judge_dir, num_threads=1)

    def verdicts(batch):
        out = []
        for item in batch:
            texts = actor.generate(
                [build_judge_prompt(kind, **item) for kind in ("consistency", "quality")], GenerationParams())
            parsed = (parse_consistency(texts[0]), parse_quality(texts[1]))
            out.append({k: UNPARSEABLE if v is None else v for k, v in zip(("consistency", "quality"), parsed)})
        return out

    return verdicts


def test_cut_at_stop_keeps_leading_newlines():
    assert cut_at_stop(" 0.7\n\n### Review 6", ("\n",)) == (" 0.7", True)
    assert cut_at_stop("\n Yes", ("\n",)) == ("\n Yes", False)
    assert cut_at_stop("", ("\n",)) == ("", False)


def test_hf_pool_scores_a_batch_end_to_end(pool, cfg, reference):
    info = ray.get(pool.ready.remote())
    assert [w["name"] for w in info["workers"]] == ["hf-0", "hf-1"]
    assert all(w["alive"] for w in info["workers"])
    again = get_or_create_judge_pool(cfg, name=POOL)  # idempotent: the same actor
    assert again._actor_id == pool._actor_id and get_judge_pool(POOL)._actor_id == pool._actor_id
    assert get_judge_pool("no_such_pool") is None
    ray.get(pool.collect_metrics.remote())  # a fresh step

    client = pickle.loads(pickle.dumps(PoolJudgeClient(name=POOL, deadline_s=120)))
    batch = items(6)

    async def score():
        return await asyncio.gather(*(client.judge(**item) for item in batch))

    verdicts = asyncio.run(score())
    assert verdicts == reference(batch)
    for v in verdicts:
        assert v["consistency"] in (UNPARSEABLE, 0, 1)
        assert v["quality"] is UNPARSEABLE or 0.0 <= v["quality"] <= 1.0
    m = ray.get(pool.collect_metrics.remote())
    nones = sum(v[k] is UNPARSEABLE for v in verdicts for k in ("consistency", "quality"))
    assert m["judge/think_responses"] == 6 and m["judge/requests"] == 12 and m["judge/unique_requests"] == 12
    assert m["judge/call_failures"] == 0 and m["judge/failures"] == nones == m["judge/unparseable"]
    assert m["judge/calls"] >= 3 and m["judge/batch_size_mean"] <= 4 and m["judge/workers_alive"] == 2
    assert m["judge/latency_p50_s"] > 0 and m["judge/busy_s"] > 0 and m["judge/wait_s"] >= 0
    raw = ray.get(pool.complete.remote("quality", [build_judge_prompt("quality", **batch[0])]))
    assert isinstance(raw[0], str) and "\n" not in raw[0].strip()
    assert client.failed_calls == 0


def test_killing_a_judge_actor_mid_batch_still_completes_the_batch(pool, reference):
    actors = ray.get(pool.worker_actors.remote())
    assert sorted(actors) == ["hf-0", "hf-1"]
    ray.get(pool.collect_metrics.remote())
    batch = items(24, prefix="k")
    pending = pool.judge_many.remote(batch)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # kill hf-0 while one of its calls is in flight
        states = {w["name"]: w for w in ray.get(pool.workers.remote())}
        if states["hf-0"]["calls"] > 0:
            break
        time.sleep(0.005)
    ray.kill(actors["hf-0"], no_restart=True)
    verdicts = ray.get(pending, timeout=120)
    assert len(verdicts) == 24 and verdicts == reference(batch)

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # the restart runs in the background
        if all(w["alive"] for w in ray.get(pool.workers.remote())):
            break
        time.sleep(0.1)
    m = ray.get(pool.collect_metrics.remote())
    assert m["judge/worker_deaths"] == 1 and m["judge/worker_restarts"] == 1, m
    assert m["judge/retries"] >= 1 and m["judge/call_failures"] == 0 and m["judge/workers_alive"] == 2
    new_actors = ray.get(pool.worker_actors.remote())
    assert new_actors["hf-0"]._actor_id != actors["hf-0"]._actor_id

    async def after_restart():  # the restarted actor serves again
        client = PoolJudgeClient(name=POOL, deadline_s=120)
        return await asyncio.gather(*(client.judge(**item) for item in items(4, prefix="r")))

    assert asyncio.run(after_restart()) == reference(items(4, prefix="r"))
    states = {w["name"]: w for w in ray.get(pool.workers.remote())}
    assert states["hf-0"]["alive"] and states["hf-1"]["alive"]


def test_a_mapping_section_is_checked_like_the_config():
    from audio_thinker.config import ConfigError
    from reward_workers.pool import _section

    assert _section({"backend": "hf", "num_workers": 2}) == JudgeSection(num_workers=2)
    with pytest.raises(ConfigError, match=r"unknown key audio_thinker.judge.num_worker; did you mean num_workers\? "
                                          r"Known keys: backend, model_path"):
        _section({"num_worker": 2})
    with pytest.raises(ConfigError, match="must be a mapping"):
        _section(["hf"])


def test_client_without_a_pool_returns_none_verdicts(pool):
    client = PoolJudgeClient(name="no_such_pool", deadline_s=5)

    async def call():
        return await client.judge(question="q", choices=CHOICES, think="t", answer="high")

    assert asyncio.run(call()) == {"consistency": None, "quality": None}
    assert asyncio.run(call()) == {"consistency": None, "quality": None}
    assert client.failed_calls == 2
