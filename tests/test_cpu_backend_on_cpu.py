"""The CPU backend's platform, FSDP2 engines, engine workers and resource pools (no GPU).

Pure pieces (platform object, device module, registration) are tested in this process without
selecting anything. Everything that needs verl's platform to *be* ``cpu`` runs once in a fresh
interpreter with ``VERL_PLATFORM=cpu`` (verl resolves its platform once per process, and a
process group would leak into other tests): that probe builds the real reference and actor
workers (verl's ``ActorRolloutRefWorker`` with the CPU training worker, gloo, FSDP2) from a tiny
Qwen2-Audio directory composed with the ``tiny_cpu`` backbone, computes log-probs and one PPO
update, and builds the CPU resource pools from verl's own ``_init_resource_pool_mgr`` on a small
local Ray.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve()
REPO = HERE.parent.parent
FP32 = "{param_dtype:fp32,reduce_dtype:fp32,buffer_dtype:fp32}"


# --------------------------------------------------------------------------- in-process (pure)
def test_package_import_is_cheap():
    code = (
        "import sys, audio_thinker.backends, audio_thinker.backends.cpu as b; "
        "assert callable(b.register_cpu_backend); "
        "print([m for m in ('torch', 'verl', 'ray', 'transformers') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_platform_is_registered_but_never_auto_detected():
    from verl.plugin.platform import PlatformRegistry

    from audio_thinker.backends.cpu.platform import CPUPlatform, cpu_device_module, register_cpu_platform

    register_cpu_platform()
    register_cpu_platform()  # idempotent
    assert PlatformRegistry.get("cpu") is CPUPlatform
    platform = CPUPlatform()
    assert platform.is_platform_available(use_smi_check=True) is False  # selected only by VERL_PLATFORM
    assert platform.is_platform_available() is False
    assert platform.device_name == "cpu" and platform.current_device() == "cpu"
    assert platform.communication_backend_name() == "gloo"
    assert platform.ray_resource_name() == "CPU"
    assert platform.ray_resource_options(0.5) == {"num_cpus": 0.5}
    assert platform.device_module is cpu_device_module
    assert platform.get_device_capability() == (None, None)
    assert platform.ray_noset_envvars() == [] and platform.is_ipc_supported() is False
    with platform.nvtx_range("x"):
        pass


def _verl_device_module_calls() -> set[str]:
    """Every ``get_torch_device().<name>`` verl's source calls (read from the installed wheel)."""
    import verl

    names = set()
    for path in Path(verl.__file__).parent.rglob("*.py"):
        names.update(re.findall(r"get_torch_device\(\)\.([A-Za-z_]\w*)", path.read_text(errors="ignore")))
    return names


def test_device_module_has_everything_verl_calls():
    import torch

    from audio_thinker.backends.cpu.platform import cpu_device_module as dev

    called = _verl_device_module_calls()
    assert {"empty_cache", "synchronize", "mem_get_info", "max_memory_allocated"} <= called
    missing = sorted(name for name in called if not hasattr(dev, name))
    assert not missing, f"verl calls get_torch_device().{missing} which the CPU device module lacks"
    # plus the ones verl calls through a local variable (utils/memory_utils.py, profiler/performance.py)
    for name in ("memory_allocated", "memory_reserved", "max_memory_reserved", "reset_peak_memory_stats"):
        assert hasattr(dev, name)

    free, total = dev.mem_get_info()
    assert 0 < free <= total
    assert dev.max_memory_allocated() == 0 and dev.memory_reserved() == 0
    assert dev.is_available() and dev.device_count() == 1 and dev.current_device() == "cpu"
    assert dev.get_device_name() == "CPU"  # the key of verl's peak-FLOPs table
    dev.set_device(0)
    dev.synchronize()
    dev.empty_cache()
    dev.ipc_collect()
    dev.manual_seed(1)
    stream = dev.Stream()
    with dev.stream(stream):
        event = dev.Event()
        event.record()
    stream.wait_stream(dev.current_stream())
    state = dev.get_rng_state()
    first = torch.rand(3)
    dev.set_rng_state(state)
    assert torch.equal(first, torch.rand(3))


def test_cpu_platform_check_explains_a_missing_selection(monkeypatch):
    from audio_thinker.backends.cpu.platform import check_cpu_platform_selected

    monkeypatch.delenv("VERL_PLATFORM", raising=False)
    with pytest.raises(RuntimeError, match="VERL_PLATFORM=cpu"):
        check_cpu_platform_selected()


def test_trainer_device_selects_the_cpu_pools():
    from omegaconf import OmegaConf

    from audio_thinker.backends.cpu import trainer_uses_cpu

    assert trainer_uses_cpu(OmegaConf.create({"trainer": {"device": "cpu"}}))
    assert not trainer_uses_cpu(OmegaConf.create({"trainer": {"device": "cuda"}}))


# --------------------------------------------------------------------------- the probe (VERL_PLATFORM=cpu)
def _probe(model_dir: str) -> dict:
    """Runs in a fresh interpreter with VERL_PLATFORM=cpu; returns measurements as a dict."""
    import socket
    import time
    import types
    from copy import deepcopy

    t0 = time.time()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update(WORLD_SIZE="1", RANK="0", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1")
    os.environ["MASTER_PORT"] = str(port)

    from audio_thinker.backends.cpu import register_cpu_backend

    register_cpu_backend(rollout=False)
    register_cpu_backend(rollout=False)  # idempotent

    import torch
    from hydra import compose, initialize_config_dir
    from tensordict import TensorDict
    from verl.utils import hf_tokenizer
    from verl.utils import tensordict_utils as tu
    from verl.utils.device import (
        get_device_id,
        get_device_name,
        get_nccl_backend,
        get_resource_name,
        get_torch_device,
    )
    from verl.workers.config import FSDPEngineConfig
    from verl.workers.engine.base import EngineRegistry
    from verl.workers.engine.fsdp import transformer_impl
    from verl.workers.utils.padding import left_right_2_no_padding, no_padding_2_padding

    from audio_thinker.backends.cpu import engine as cpu_engine
    from audio_thinker.backends.cpu.platform import cpu_device_module
    from audio_thinker.toy.tiny import ensure_tiny_model

    out: dict = {"import_s": time.time() - t0}
    out["device"] = [get_device_name(), get_nccl_backend(), get_resource_name(), get_device_id()]
    out["device_module_is_ours"] = get_torch_device() is cpu_device_module
    out["engines"] = {
        f"{model_type}/{backend}": EngineRegistry.get_engine_cls(model_type, backend).__name__
        for model_type in ("language_model", "value_model")
        for backend in ("fsdp", "fsdp2")
    }
    try:
        cpu_engine.CPUFSDPEngineWithLMHead(
            model_config=None, engine_config=FSDPEngineConfig(strategy="fsdp"), optimizer_config=None,
            checkpoint_config=None,
        )
        out["fsdp1"] = "accepted"
    except ValueError as error:
        out["fsdp1"] = str(error)

    # --- the real workers, configured by the tiny_cpu backbone
    path = str(ensure_tiny_model("qwen2_audio", model_dir))
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base=None):
        cfg = compose(config_name="audio_thinker_grpo", overrides=[
            "backbone=tiny_cpu", f"actor_rollout_ref.model.path={path}",
            f"+actor_rollout_ref.actor.fsdp_config.mixed_precision={FP32}",
            f"+actor_rollout_ref.ref.fsdp_config.mixed_precision={FP32}",
        ])
    original_policy = transformer_impl.CPUOffloadPolicy
    t = time.time()
    ref = cpu_engine.CPUActorRolloutRefWorker(config=deepcopy(cfg.actor_rollout_ref), role="ref")
    ref.init_model()
    out["ref_init_s"] = time.time() - t
    t = time.time()
    actor = cpu_engine.CPUActorRolloutRefWorker(config=deepcopy(cfg.actor_rollout_ref), role="actor")
    actor.init_model()
    out["actor_init_s"] = time.time() - t
    out["policy_restored"] = transformer_impl.CPUOffloadPolicy is original_policy
    out["ref_uses_offload_policy"] = ref.ref.engine._uses_fsdp2_cpu_offload_policy
    out["engine_classes"] = [type(ref.ref.engine).__name__, type(actor.actor.engine).__name__]
    out["process_group"] = [torch.distributed.get_backend(), torch.distributed.get_world_size()]

    # --- a tiny batch: left-padded prompts, right-padded responses (what verl's trainer feeds)
    tok = hf_tokenizer(path)
    prompts = ["Which half is louder?", "Count the beeps.", "Is the tone high or low? Answer now", "Hi"] * 2
    responses = ["<think>the first</think><answer>the first half</answer>", "<answer>3</answer>",
                 "<answer>high</answer>", "<answer>low low low</answer>"] * 2
    P = [tok(p)["input_ids"] for p in prompts]
    R = [tok(r)["input_ids"] + [tok.eos_token_id] for r in responses]
    bs, pl, rl = len(P), max(map(len, P)), max(map(len, R))
    ids = torch.full((bs, pl + rl), tok.pad_token_id)
    att = torch.zeros(bs, pl + rl, dtype=torch.long)
    rmask = torch.zeros(bs, rl, dtype=torch.long)
    for i, (p, r) in enumerate(zip(P, R)):
        ids[i, pl - len(p):pl], att[i, pl - len(p):pl] = torch.tensor(p), 1
        ids[i, pl:pl + len(r)], att[i, pl:pl + len(r)], rmask[i, :len(r)] = torch.tensor(r), 1, 1
    pos = (att.cumsum(-1) - 1).clamp(min=0)

    def batch(**fields):
        columns = {"input_ids": ids, "attention_mask": att, "position_ids": pos, "response_mask": rmask,
                   "responses": ids[:, pl:], "prompts": ids[:, :pl]}
        td = TensorDict({**{k: v.clone() for k, v in columns.items()}, **fields}, batch_size=bs)
        return left_right_2_no_padding(td)

    def logprobs(worker, method):
        td = batch()
        tu.assign_non_tensor(td, calculate_entropy=True, compute_loss=False, temperature=1.0)
        result = getattr(worker, method)(td)
        return no_padding_2_padding(tu.get(result, "log_probs"), td).float() * rmask

    t = time.time()
    ref_lp = logprobs(ref, "compute_ref_log_prob")
    old_lp = logprobs(actor, "compute_log_prob")
    out["logprob_s"] = time.time() - t
    out["ref_vs_actor"] = (ref_lp - old_lp).abs().max().item()

    from transformers import AutoConfig
    from verl.utils.model import get_hf_auto_model_class

    plain_model = get_hf_auto_model_class(AutoConfig.from_pretrained(path))
    plain_model = plain_model.from_pretrained(path, attn_implementation="eager").eval()
    with torch.no_grad():
        logits = plain_model(input_ids=ids, attention_mask=att, position_ids=pos).logits[:, pl - 1:-1]
    plain = torch.log_softmax(logits.float(), -1).gather(-1, ids[:, pl:, None])[..., 0] * rmask
    out["actor_vs_transformers"] = (plain - old_lp).abs().max().item()

    advantage = torch.tensor([1.0, -1.0, 0.5, -0.5] * 2)[:, None] * rmask
    td = batch(old_log_probs=old_lp, advantages=advantage.float(), ref_log_prob=ref_lp)
    tu.assign_non_tensor(td, calculate_entropy=False, global_batch_size=bs, mini_batch_size=bs, epochs=1,
                         seed=0, dataloader_kwargs={"shuffle": False}, temperature=1.0, compute_loss=True)
    t = time.time()
    metrics = tu.get(actor.update_actor(td), "metrics")
    out["update_s"] = time.time() - t
    out["metrics"] = {k: float(v[0]) for k, v in metrics.items() if isinstance(v, list) and v}
    new_lp = logprobs(actor, "compute_log_prob")
    out["mean_logprob_change"] = (((new_lp - old_lp) * rmask).sum(-1) / rmask.sum(-1)).tolist()
    out["advantage_sign"] = advantage[:, 0].sign().tolist()
    params, _ = actor.actor.engine.get_per_tensor_param()
    exported = dict(params)
    out["exported"] = [len(exported), sorted({t.device.type for t in exported.values()})]
    out["exported_match_state_dict"] = len(exported) == len(plain_model.state_dict())

    # --- resource pools: verl's own role/pool logic, then the CPU swap, on a small local Ray
    import ray
    from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync

    from audio_thinker.backends.cpu.trainer import CPUResourcePoolManager, use_cpu_resources

    t = time.time()
    fake = types.SimpleNamespace(config=deepcopy(cfg))
    PPOTrainerSync._init_resource_pool_mgr(fake)
    use_cpu_resources(fake)
    mapping = fake.role_worker_mapping
    out["workers"] = {str(role): w.__ray_actor_class__.__name__ for role, w in mapping.items()}
    manager = fake.resource_pool_manager
    out["manager"] = [type(manager).__name__, dict(manager.resource_pool_spec), manager.required_cpus()]
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    try:
        manager.create_resource_pool()
        pool = manager.resource_pool_dict["global_pool"]
        pgs = pool.get_placement_groups(device_name="cpu")
        out["pool"] = [pool.use_gpu, pool.world_size, [pg.bundle_specs for pg in pgs]]
        too_big = CPUResourcePoolManager(resource_pool_spec={"global_pool": [2]}, mapping=manager.mapping)
        try:
            too_big.create_resource_pool()
            out["too_big"] = "accepted"
        except ValueError as error:
            out["too_big"] = str(error)
    finally:
        ray.shutdown()
    out["pools_s"] = time.time() - t
    out["total_s"] = time.time() - t0
    return out


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    work = tmp_path_factory.mktemp("cpu_backend")
    env = {**os.environ, "VERL_PLATFORM": "cpu"}
    command = [sys.executable, str(HERE), "probe", str(work / "tiny_qwen2_audio")]
    run = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, cwd=str(work))
    lines = [line for line in run.stdout.splitlines() if line.startswith("PROBE ")]
    assert run.returncode == 0 and lines, (run.stdout[-3000:], run.stderr[-5000:])
    return json.loads(lines[-1][len("PROBE "):])


def test_verl_resolves_the_cpu_platform_and_engines(probe):
    assert probe["device"] == ["cpu", "gloo", "CPU", "cpu"]
    assert probe["device_module_is_ours"]
    assert probe["engines"] == {
        "language_model/fsdp": "CPUFSDPEngineWithLMHead", "language_model/fsdp2": "CPUFSDPEngineWithLMHead",
        "value_model/fsdp": "CPUFSDPEngineWithValueHead", "value_model/fsdp2": "CPUFSDPEngineWithValueHead",
    }
    assert "strategy=fsdp2" in probe["fsdp1"]


def test_actor_and_reference_workers_initialise_on_gloo(probe):
    assert probe["engine_classes"] == ["CPUFSDPEngineWithLMHead", "CPUFSDPEngineWithLMHead"]
    assert probe["process_group"] == ["gloo", 1]
    # the reference keeps verl's CPU offload policy (unpinned) and verl's module is left as it was
    assert probe["ref_uses_offload_policy"] and probe["policy_restored"]


def test_log_probs_equal_a_plain_transformers_forward(probe):
    assert probe["ref_vs_actor"] == 0.0  # same initial weights
    assert probe["actor_vs_transformers"] < 1e-5  # fp32: verl's engine == transformers


def test_one_ppo_update_moves_log_probs_with_the_advantage(probe):
    metrics = probe["metrics"]
    assert metrics["actor/ppo_kl"] == pytest.approx(0.0, abs=1e-6)  # first mini-batch is on-policy
    assert metrics["actor/pg_clipfrac"] == 0.0
    assert metrics["grad_norm"] > 0 and metrics["lr"] > 0
    for change, sign in zip(probe["mean_logprob_change"], probe["advantage_sign"]):
        assert change * sign > 0, probe["mean_logprob_change"]
    count, devices = probe["exported"]
    assert probe["exported_match_state_dict"] and devices == ["cpu"] and count > 0


def test_cpu_pools_replace_gpu_pools(probe):
    assert probe["workers"] == {"actor_rollout_ref": "CPUActorRolloutRefWorker"}
    kind, spec, required = probe["manager"]
    assert kind == "CPUResourcePoolManager" and spec == {"global_pool": [1]} and required == 3
    use_gpu, world_size, bundles = probe["pool"]
    assert use_gpu is False and world_size == 1 and bundles == [[{"CPU": 3.0}]]
    assert "ray_kwargs.ray_init.num_cpus" in probe["too_big"]


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "probe":
    result = _probe(sys.argv[2])
    print("PROBE " + json.dumps(result), flush=True)
    os._exit(0)  # skip interpreter teardown of gloo / Ray threads
