"""Every verl symbol audio-thinker depends on, in one list, pinned to verl |VERL_VERSION|.

The project extends verl through its extension points (the plugin entry point and registries) and,
where verl has none, by patching, reading or overriding names verl does not promise to keep.
:data:`CONTRACT` lists each of them: its dotted path, what we do with it, the parameter names we
rely on, the attributes we read or write on it, where our code uses it and what to revisit when
verl changes. ``tests/test_verl_contract_on_cpu.py`` checks the list against the installed verl
(every symbol exists with these exact parameter names) and against our source (every private verl
name, patch, subclass, override and call there is listed).

Upgrading verl: install the new version, run ``python -m audio_thinker.verl_ext.contract`` (it
prints every symbol that moved or changed its signature, with what to revisit), fix the uses,
update :data:`CONTRACT` and :data:`VERL_VERSION`.

``use`` is one of :data:`USES`. Paths are those our code imports, or the defining verl class for
methods and attributes. Importing this module is cheap: verl is imported by :func:`check_symbol`.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import inspect
import re
import sys
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CONTRACT", "USES", "VERL_VERSION", "VerlSymbol", "canonical_path", "check_contract", "check_symbol",
    "resolve",
]

#: the verl release this contract was written against (``pip install verl==0.9.1``)
VERL_VERSION = "0.9.1"

USES = {
    "patch": "we replace it, or add an entry to it, at run time",
    "read": "we read it (a private name, or attributes/fields listed in members)",
    "override": "a subclass of ours overrides it (params: verl's parameter names, which we accept)",
    "subclass": "we subclass it (members: the attributes of verl's we use on self)",
    "call": "we call it (params: its parameter names, the ones we pass by position or keyword)",
    "serve": "verl calls our code through it (params: the verl function's parameter names)",
}


@dataclass(frozen=True)
class VerlSymbol:
    """One verl name we depend on."""

    #: dotted path (``verl.utils.fsdp_utils._select_fsdp2_wrap_targets``, ``...PPOTrainer._validate``)
    path: str
    #: a key of :data:`USES`
    use: str
    #: ``file:name`` of each use in our code
    where: tuple[str, ...]
    #: what we rely on, i.e. what to re-check on a verl upgrade
    revisit: str
    #: expected ``inspect.signature`` parameter names (``self`` dropped); None: not checked
    params: tuple[str, ...] | None = None
    #: attributes, dataclass fields or ``self.<name>`` assignments of verl's that we use on it
    members: tuple[str, ...] = ()
    #: a module the symbol's verl module imports that verl does not require (``vllm``): without it
    #: installed the symbol cannot be checked (the check is skipped, saying so)
    needs: str | None = None


def _s(path: str, use: str, where: str | tuple[str, ...], revisit: str, params: tuple[str, ...] | None = None,
       members: tuple[str, ...] = (), needs: str | None = None) -> VerlSymbol:
    return VerlSymbol(path, use, (where,) if isinstance(where, str) else tuple(where), revisit, params, members,
                      needs)


_PLUGIN = "audio_thinker/verl_ext/plugin.py"
_PLATFORM = "audio_thinker/backends/cpu/platform.py"
_ENGINE = "audio_thinker/backends/cpu/engine.py"
_POOLS = "audio_thinker/backends/cpu/trainer.py"
_SERVER = "audio_thinker/backends/cpu/server.py"
_ROLLOUT = "audio_thinker/backends/cpu/rollout.py"
_VLLM_ROLLOUT = "audio_thinker/verl_ext/vllm_rollout.py"
_CPU_VLLM = "audio_thinker/backends/cpu/vllm.py"
_CPU_VLLM_WORKER = "audio_thinker/backends/cpu/vllm_worker.py"
_TRAINER = "audio_thinker/verl_ext/trainer.py"
_DATASET = "audio_thinker/verl_ext/dataset.py"
_SFT_DATASET = "audio_thinker/verl_ext/sft_dataset.py"
_REWARD = "audio_thinker/verl_ext/reward_manager.py"

_PPO = "verl.trainer.ppo.v1.trainer_base.PPOTrainer"
_PLATFORM_BASE = "verl.plugin.platform.platform_base.PlatformBase"
_FSDP_ENGINE = "verl.workers.engine.fsdp.transformer_impl.FSDPEngine"
_POOL_MANAGER = "verl.single_controller.ray.base.ResourcePoolManager"
_REPLICA = "verl.workers.rollout.replica.RolloutReplica"
_BASE_ROLLOUT = "verl.workers.rollout.base.BaseRollout"
_RLHF_DATASET = "verl.utils.dataset.rl_dataset.RLHFDataset"
_REWARD_BASE = "verl.experimental.reward_loop.reward_manager.base.RewardManagerBase"

#: PlatformBase members CPUPlatform implements -> parameter names (None: a property)
_PLATFORM_METHODS: dict[str, tuple[str, ...] | None] = {
    "device_name": None, "vendor_name": None, "device_module": None, "is_available": (),
    "is_platform_available": ("use_smi_check",), "current_device": (), "device_count": (),
    "set_device": ("device_index",), "synchronize": ("device_index",), "manual_seed": ("seed",),
    "manual_seed_all": ("seed",), "set_allocator_settings": ("settings",), "empty_cache": (),
    "get_device_capability": ("device_index",), "communication_backend_name": (), "visible_devices_envvar": (),
    "nvtx_range": ("msg",), "profiler_start": (), "profiler_stop": (), "ray_resource_name": (),
    "ray_resource_options": ("num_gpus",), "ray_noset_envvars": (), "is_ipc_supported": (), "cudart": (),
    "rollout_env_vars": (),
}

#: RolloutReplica methods that call the same-named method on each of our server actors
_REPLICA_SERVER_CALLS: dict[str, tuple[str, ...]] = {
    "wake_up": (), "sleep": (), "abort_all_requests": ("reject_request",), "resume_generation": (),
    "clear_kv_cache": (), "release_kv_cache": (), "resume_kv_cache": (), "start_profile": ("kwargs",),
    "stop_profile": (),
}

_PLUGIN_AND_PLATFORM = [
    _s("verl.utils.tokenizer.tokenizer.hf_processor", "patch", f"{_PLUGIN}:patch_hf_processor",
       "wrapped (and rebound in every verl module that imported it by name) so audio checkpoints get their "
       "processor: verl turns any non-vision processor into None. Drop the patch once verl keeps audio "
       "processors.", ("name_or_path", "kwargs")),
    _s("verl.utils.tokenizer.continuous_token_wiring._is_multimodal_processor", "patch",
       f"{_PLUGIN}:patch_multimodal_processor_check",
       "private; wrapped so processors with a feature_extractor count as multimodal (verl asks for an image "
       "processor and refuses audio prompts). Check the check and its callers.", ("processor",)),
    _s("verl.utils.fsdp_utils._select_fsdp2_wrap_targets", "patch", f"{_PLUGIN}:patch_fsdp2_wrap_targets",
       "private; wrapped to keep embed_positions in its parent's FSDP2 unit (Qwen2-Audio's encoder reads "
       "its weight directly). verl's apply_fsdp2 calls it positionally, so do we.",
       ("model", "fsdp_transformer_layer_cls_to_wrap")),
    _s("verl.utils.model.get_hf_auto_model_class", "call", ("audio_thinker/backends/cpu/weights.py:load_rollout_model",
       f"{_PLUGIN}:register_model_classes"),
       "resolves Qwen2-Audio / the Omni thinker through AutoModelForImageTextToText's mapping, which the plugin "
       "fills; the rollout loads the class verl's actor loads.", ("hf_config",)),
    _s(_PLATFORM_BASE, "subclass", f"{_PLATFORM}:CPUPlatform",
       "verl's platform interface; CPUPlatform implements every abstract member (listed below)."),
    *[_s(f"{_PLATFORM_BASE}.{name}", "override", f"{_PLATFORM}:CPUPlatform",
         "a member of verl's platform interface the CPU platform implements", params)
      for name, params in _PLATFORM_METHODS.items()],
    _s("verl.plugin.platform.PlatformRegistry.register", "call", f"{_PLATFORM}:register_cpu_platform",
       "registers CPUPlatform under 'cpu'; VERL_PLATFORM=cpu selects it.", ("platform",)),
    _s("verl.plugin.platform.PlatformRegistry.get", "call", f"{_PLATFORM}:register_cpu_platform",
       "idempotent registration looks the name up first.", ("name",)),
    _s("verl.plugin.platform.platform_manager._current_platform", "read", f"{_PLATFORM}:check_cpu_platform_selected",
       "private module global: the platform verl resolved in this process (None until first use); read to "
       "turn a missing VERL_PLATFORM=cpu into a fix-it error."),
]

_CPU_ENGINES_AND_POOLS = [
    _s("verl.workers.engine.base.EngineRegistry.register", "call", f"{_ENGINE}:register_cpu_engines",
       "registers the CPU engines for device='cpu'.", ("model_type", "backend", "device", "vendor")),
    _s("verl.workers.engine.base.EngineRegistry._engines", "read", f"{_ENGINE}:register_cpu_engines",
       "private dict model_type -> backend -> device -> class; read (never written) because the registry "
       "asserts on duplicates and has no 'is registered' query."),
    _s("verl.workers.engine.fsdp.transformer_impl.CPUOffloadPolicy", "patch", f"{_ENGINE}:_unpinned_cpu_offload_policy",
       "rebound in verl's module for the duration of _build_fsdp_module: verl hard-codes pin_memory=True, which "
       "needs a CUDA driver.", ("pin_memory",)),
    _s("verl.workers.engine.fsdp.transformer_impl.FSDPEngineWithLMHead", "subclass", f"{_ENGINE}:CPUFSDPEngineWithLMHead",
       "actor/reference engine, registered for device='cpu'."),
    _s("verl.workers.engine.fsdp.transformer_impl.FSDPEngineWithValueHead", "subclass",
       f"{_ENGINE}:CPUFSDPEngineWithValueHead", "critic engine, registered for device='cpu'."),
    _s(f"{_FSDP_ENGINE}.__init__", "override", f"{_ENGINE}:_CPUFSDPEngineMixin",
       "engine_config is read as keyword or second positional argument to refuse strategy=fsdp.",
       ("model_config", "engine_config", "optimizer_config", "checkpoint_config")),
    _s(f"{_FSDP_ENGINE}._build_fsdp_module", "override", f"{_ENGINE}:_CPUFSDPEngineMixin",
       "private; wrapped so CPUOffloadPolicy is built unpinned inside it.", ("module",)),
    _s("verl.utils.distributed.initialize_global_process_group_ray", "call", f"{_ENGINE}:init_gloo_process_group",
       "creates the gloo group first (verl's own backend string reads 'cpu:gloo,cpu:gloo' on this platform) and "
       "must keep skipping its own initialisation when a group exists.", ("timeout_second", "backend")),
    _s("verl.workers.engine_workers.TrainingWorker", "subclass", f"{_ENGINE}:CPUTrainingWorker",
       "verl's training worker with a gloo group and the CPU engines registered first."),
    _s("verl.workers.engine_workers.TrainingWorker.__init__", "override", f"{_ENGINE}:CPUTrainingWorker",
       "the worker is built with its config only.", ("config",)),
    _s("verl.workers.engine_workers.ActorRolloutRefWorker", "subclass", f"{_ENGINE}:CPUActorRolloutRefWorker",
       "the hybrid worker whose actor/ref worker classes are swapped."),
    _s("verl.workers.engine_workers.ActorRolloutRefWorker.__init__", "override", f"{_ENGINE}:CPUActorRolloutRefWorker",
       "arguments passed through unchanged.", ("config", "role", "distillation_config", "kwargs")),
    _s("verl.workers.engine_workers.ActorRolloutRefWorker.actor_worker_cls", "override",
       f"{_ENGINE}:CPUActorRolloutRefWorker", "class attribute verl provides to swap the actor's worker class."),
    _s("verl.workers.engine_workers.ActorRolloutRefWorker.ref_worker_cls", "override",
       f"{_ENGINE}:CPUActorRolloutRefWorker", "class attribute verl provides to swap the reference's worker class."),
    _s(_POOL_MANAGER, "subclass", f"{_POOLS}:use_cpu_resources",
       "CPUResourcePoolManager is built with verl's constructor from the fields of the manager verl built.",
       ("resource_pool_spec", "mapping", "max_colocate_count", "resource_pool_dict"),
       ("resource_pool_spec", "mapping", "max_colocate_count", "resource_pool_dict")),
    _s(f"{_POOL_MANAGER}.create_resource_pool", "override", f"{_POOLS}:CPUResourcePoolManager",
       "rebuilt with RayResourcePool(use_gpu=False)", ()),
    _s(f"{_POOL_MANAGER}._check_resource_available", "override", f"{_POOLS}:CPUResourcePoolManager",
       "private; verl counts GPUs/NPUs only, ours counts Ray's logical CPUs.", ()),
    _s(f"{_POOL_MANAGER}.get_n_gpus", "call", f"{_POOLS}:CPUResourcePoolManager",
       "worker processes the pools hold (one per 'GPU' slot).", ()),
    _s("verl.single_controller.ray.RayResourcePool", "call", f"{_POOLS}:CPUResourcePoolManager",
       "use_gpu=False pools with max_colocate_count CPUs per bundle.",
       ("process_on_nodes", "use_gpu", "name_prefix", "max_colocate_count", "detached", "accelerator_type")),
    _s(f"{_PPO}._init_resource_pool_mgr", "override", (f"{_TRAINER}:AudioThinkerTrainer", f"{_POOLS}:use_cpu_resources"),
       "private hook; verl's runs first and must leave role_worker_mapping (ray.remote ActorRolloutRefWorker / "
       "TrainingWorker) and resource_pool_manager, which use_cpu_resources replaces; the judge pool starts "
       "before it.", ()),
    _s(f"{_PPO}.role_worker_mapping", "patch", f"{_POOLS}:use_cpu_resources",
       "role -> ray.remote worker class set by _init_resource_pool_mgr; replaced by the CPU classes."),
    _s(f"{_PPO}.resource_pool_manager", "patch", f"{_POOLS}:use_cpu_resources",
       "set by _init_resource_pool_mgr; replaced by CPUResourcePoolManager."),
]

_HF_ROLLOUT = [
    _s("verl.workers.rollout.base._ROLLOUT_REGISTRY", "patch",
       (f"{_ROLLOUT}:register_cpu_rollout", f"{_VLLM_ROLLOUT}:register_audio_vllm_rollout"),
       "private dict (name, mode) -> adapter class path, read by get_rollout_class; verl has no register "
       "function for it. We add ('hf', 'async') and refuse to overwrite."),
    _s("verl.workers.rollout.base.get_rollout_class", "serve", f"{_ROLLOUT}:ADAPTER_FQDN",
       "how the actor worker and CheckpointEngineWorker find HFServerAdapter.", ("rollout_name", "mode")),
    _s(_BASE_ROLLOUT, "subclass", f"{_ROLLOUT}:HFServerAdapter", "the in-worker rollout.", members=("config",)),
    _s(f"{_BASE_ROLLOUT}.__init__", "override", f"{_ROLLOUT}:HFServerAdapter",
       "called positionally as super().__init__(config, model_config, device_mesh).",
       ("config", "model_config", "device_mesh", "args", "kwargs")),
    _s(f"{_BASE_ROLLOUT}.resume", "override", f"{_ROLLOUT}:HFServerAdapter", "no-op (weights stay)", ("tags",)),
    _s(f"{_BASE_ROLLOUT}.release", "override", f"{_ROLLOUT}:HFServerAdapter", "no-op (weights stay)", ()),
    _s(f"{_BASE_ROLLOUT}.update_weights", "override", f"{_ROLLOUT}:HFServerAdapter",
       "the naive checkpoint engine hands the actor's (name, tensor) stream here, with global_steps and "
       "peft_config as keywords.", ("weights", "wire_format", "kwargs")),
    _s(_REPLICA, "subclass", f"{_ROLLOUT}:HFRolloutReplica",
       "constructed by verl through RolloutReplicaRegistry; our launch_servers fills servers and the private "
       "_server_handle / _server_address that verl's server_handle / server_address properties return.",
       members=("config", "model_config", "workers", "replica_rank", "is_reward_model", "is_teacher_model",
                "name_suffix", "max_concurrency", "servers", "_server_handle", "_server_address")),
    _s(f"{_REPLICA}.launch_servers", "override", f"{_ROLLOUT}:HFRolloutReplica", "starts the server actor", ()),
    _s(f"{_REPLICA}.rollout_worker_use_gpu", "override", f"{_ROLLOUT}:HFRolloutReplica", "False on CPU", ()),
    *[_s(f"{_REPLICA}.{name}", "serve", f"{_SERVER}:HFRolloutServerActor.{name}",
         f"calls {name} on every server actor; HFRolloutServerActor.{name} answers it.", params)
      for name, params in _REPLICA_SERVER_CALLS.items()],
    _s("verl.workers.rollout.llm_server.LLMServerClient.generate", "serve", f"{_SERVER}:HFRolloutServerActor.generate",
       "the agent loop's call server.generate.remote(request_id=, prompt_ids=, sampling_params=, image_data=, "
       "video_data=, audio_data=, mm_processor_kwargs=, **kwargs) -> TokenOutput.",
       ("request_id", "prompt_ids", "sampling_params", "image_data", "video_data", "audio_data",
        "mm_processor_kwargs", "kwargs")),
    _s("verl.workers.rollout.replica.RolloutReplicaRegistry.register", "call",
       (f"{_ROLLOUT}:register_cpu_rollout", f"{_VLLM_ROLLOUT}:register_audio_vllm_rollout",
),
       "registers replica loaders under 'hf' and 'vllm' (ours replace verl's 'vllm' loader).", ("name", "loader")),
    _s("verl.workers.rollout.replica.TokenOutput", "call", f"{_SERVER}:HFRolloutServerActor.generate",
       "the server's answer (fields by keyword).",
       ("token_ids", "log_probs", "routed_experts", "stop_reason", "num_preempted", "extra_fields")),
    _s("verl.utils.config.omega_conf_to_dataclass", "call", f"{_SERVER}:HFRolloutServerActor",
       "turns the rollout/model OmegaConf nodes into verl's dataclasses.", ("config", "dataclass_type")),
    _s("verl.workers.config.RolloutConfig", "read", (f"{_SERVER}:HFRolloutServerActor", f"{_ROLLOUT}:HFServerAdapter",
       "audio_thinker/backends/cpu/options.py:engine_options"), "rollout settings the hf rollout honours.",
       members=("name", "prompt_length", "response_length", "max_model_len", "logprobs_mode", "seed",
                "repetition_penalty", "ignore_eos", "full_determinism", "tensor_model_parallel_size",
                "data_parallel_size", "pipeline_model_parallel_size", "checkpoint_engine", "engine_kwargs",
                "max_num_seqs")),
    _s("verl.workers.config.HFModelConfig", "read", (f"{_SERVER}:HFRolloutServerActor",
       "audio_thinker/backends/cpu/weights.py:load_rollout_model"), "the model the server loads.",
       members=("tokenizer", "processor", "hf_config", "generation_config", "local_path", "trust_remote_code")),
    _s("verl.utils.model.extract_multi_modal_inputs", "call", f"{_SERVER}:_collate_multi_modal_inputs",
       "batches per-request processor outputs as the actor does; called with one positional list.",
       ("batch_data", "indices")),
    _s("verl.workers.rollout.utils.get_max_position_embeddings", "call", f"{_SERVER}:HFRolloutServerActor._max_model_len",
       "context length when rollout.max_model_len is unset.", ("hf_config",)),
    _s("verl.utils.tokenizer.build_multimodal_processor_inputs", "call",
       (f"{_SERVER}:HFRolloutServerActor._multi_modal_inputs", f"{_SFT_DATASET}:AudioSFTDataset.encode"),
       "audio features computed exactly as verl's agent loop computes them for the actor.",
       ("processor", "text", "images", "videos", "audio", "mm_processor_kwargs", "return_tensors")),
    _s("verl.utils.tokenizer.normalize_token_ids", "call",
       (f"{_SERVER}:HFRolloutServerActor.generate", f"{_VLLM_ROLLOUT}:AudioVLLMHttpServer.generate"),
       "prompt ids as plain ints; called positionally.", ("tokenized_output",)),
]

_VLLM_SERVER = "verl.workers.rollout.vllm_rollout.vllm_async_server.vLLMHttpServer"
_VLLM_REPLICA = "verl.workers.rollout.vllm_rollout.vllm_async_server.vLLMReplica"
_VLLM_EXTENSION = "verl.workers.rollout.vllm_rollout.utils.vLLMColocateWorkerExtension"

#: verl's vLLM rollout with the audio rules (GPU and CPU) and the CPU pieces (these modules import vLLM)
_VLLM_ROLLOUT_SYMBOLS = [
    _s(_VLLM_SERVER, "subclass", (f"{_VLLM_ROLLOUT}:AudioVLLMHttpServer", f"{_CPU_VLLM}:CPUVLLMHttpServer"),
       "the audio rules around verl's server; self.config (max_model_len, prompt_length, response_length), "
       "self.model_config (hf_config, tokenizer, processor) and self.engine (collective_rpc) are read.",
       members=("config", "model_config", "engine"), needs="vllm"),
    _s(f"{_VLLM_SERVER}.generate", "override", f"{_VLLM_ROLLOUT}:AudioVLLMHttpServer.generate",
       "collapses audio runs, sets max_tokens, drops sampling_rate, then calls verl's generate with every argument.",
       ("prompt_ids", "sampling_params", "request_id", "image_data", "video_data", "audio_data",
        "mm_processor_kwargs", "priority", "kv_transfer_params"), needs="vllm"),
    _s(f"{_VLLM_SERVER}.run_server", "override", f"{_VLLM_ROLLOUT}:AudioVLLMHttpServer.run_server",
       "after verl's (which bans the vision placeholders with monkey_patch_model) bans the audio ones too.",
       ("args",), needs="vllm"),
    _s(f"{_VLLM_SERVER}._get_worker_extension_cls", "override", f"{_CPU_VLLM}:CPUVLLMHttpServer",
       "the dotted path of the worker extension vLLM's workers mix in (ours on the CPU).", (), needs="vllm"),
    _s(_VLLM_REPLICA, "subclass", (f"{_VLLM_ROLLOUT}:AudioVLLMReplica", f"{_CPU_VLLM}:CPUVLLMReplica"),
       "self.server_class is the ray.remote server class launch_servers starts; self.workers the rollout workers.",
       members=("server_class", "workers"), needs="vllm"),
    _s(f"{_VLLM_REPLICA}.__init__", "override", f"{_VLLM_ROLLOUT}:AudioVLLMReplica",
       "passes everything through, then replaces server_class.",
       ("replica_rank", "config", "model_config", "gpus_per_node", "is_reward_model", "is_teacher_model",
        "name_suffix"), needs="vllm"),
    _s(f"{_VLLM_REPLICA}.launch_servers", "override", f"{_CPU_VLLM}:CPUVLLMReplica",
       "verl reads ray's accelerator ids of each worker under the platform's resource name ('CPU': none); "
       "we install a CPU id in each worker first.", (), needs="vllm"),
    _s(_VLLM_EXTENSION, "subclass", f"{_CPU_VLLM_WORKER}:CPUWorkerExtension",
       "verl's weight-update / logits-mask worker extension; ours turns vLLM-CPU's weight repacking off first.",
       needs="vllm"),
    _s(f"{_VLLM_EXTENSION}.__new__", "override", f"{_CPU_VLLM_WORKER}:CPUWorkerExtension",
       "vLLM builds the worker with keyword arguments only (vllm_config=...).", ("kwargs",), needs="vllm"),
    _s(f"{_VLLM_EXTENSION}.monkey_patch_model", "serve", f"{_VLLM_ROLLOUT}:AudioVLLMHttpServer.run_server",
       "called through engine.collective_rpc(method='monkey_patch_model', kwargs=...) with our banned ids.",
       ("vocab_size", "banned_token_ids"), needs="vllm"),
    _s("verl.workers.rollout.vllm_rollout.vllm_rollout.ServerAdapter", "subclass",
       f"{_VLLM_ROLLOUT}:AudioServerAdapter", "verl's in-worker vLLM adapter; our update_weights watches the receiver.",
       needs="vllm"),
    _s("verl.workers.rollout.vllm_rollout.vllm_rollout.ServerAdapter.update_weights", "override",
       f"{_VLLM_ROLLOUT}:AudioServerAdapter", "runs verl's as a task and fails fast when the receiver fails.",
       ("weights", "global_steps", "wire_format", "kwargs"), needs="vllm"),
    _s("verl.workers.rollout.vllm_rollout.vllm_rollout.ServerAdapter._execute_method", "override",
       f"{_VLLM_ROLLOUT}:AudioServerAdapter",
       "private; verl's update_weights calls it for update_weights_from_ipc with non_block=True and gets the "
       "receiver's ObjectRef back, which we keep.", ("method", "non_block", "timeout", "args", "kwargs"),
       needs="vllm"),
    _s("verl.utils.tokenizer.get_processor_token_id", "call", f"{_PLUGIN}:add_vision_token_ids",
       "resolves image/video ids from token strings; verl's generate reads processor.image_token_id itself.",
       ("processor", "token_name")),
    _s("verl.workers.rollout.utils.get_vision_placeholder_token_ids", "call",
       f"{_VLLM_ROLLOUT}:AudioVLLMHttpServer.run_server", "verl's banned vision ids, kept in our list.",
       ("processor",)),
]

_TRAINER_AND_DATA = [
    _s("verl.trainer.ppo.v1.trainer_base.register_trainer", "call", f"{_TRAINER}:AudioThinkerTrainer",
       "registers the trainer as trainer.v1.trainer_mode=audio_thinker_sync.", ("name",)),
    _s("verl.trainer.ppo.v1.trainer_sync.PPOTrainerSync", "subclass", f"{_TRAINER}:AudioThinkerTrainer",
       "verl's sync V1 trainer, with the hooks below overridden.",
       members=("config", "global_steps", "total_training_steps", "timing_raw")),
    _s(f"{_PPO}.trainer_mode", "override", f"{_TRAINER}:AudioThinkerTrainer.trainer_mode",
       "assigned in verl's __init__ and compared with 'sync' in several places; ours is a property that "
       "always reads 'sync'. Re-check every use of trainer_mode."),
    _s(f"{_PPO}._build_replay_buffer", "override", f"{_TRAINER}:AudioThinkerTrainer._build_replay_buffer",
       "private hook; we set the buffer's poll_interval after verl builds it.", ()),
    _s("verl.trainer.ppo.v1.replay_buffer.ReplayBuffer", "read", f"{_TRAINER}:AudioThinkerTrainer._build_replay_buffer",
       "the sync trainer polls it every poll_interval seconds.", members=("poll_interval",)),
    _s(f"{_PPO}._validate", "override", f"{_TRAINER}:AudioThinkerTrainer._validate",
       "private hook; judge metrics are added to verl's validation metrics.", ()),
    _s(f"{_PPO}._val_metrics_update", "override", f"{_TRAINER}:AudioThinkerTrainer._val_metrics_update",
       "private hook; think-rate metrics added; the first four arguments are passed positionally.",
       ("data_sources", "sample_uids", "reward_extra_infos_dict", "sample_turns", "expected_acc_counts")),
    _s(f"{_PPO}._compute_advantage", "override", f"{_TRAINER}:AudioThinkerTrainer._compute_advantage",
       "private hook run after rollout, rule rewards and log-probs: the batch-level reward is written as "
       "rm_scores before verl's GRPO advantage. Re-check the step order and the TransferQueue fields "
       "(responses, extra_fields['reward_extra_info'], tags['is_padding']).", ("batch", "metrics")),
    _s("verl.trainer.ppo.padding_utils.upsample_batch_to_divisible_size", "read",
       f"{_TRAINER}:select_step_rows", "padding rows copy row 0 and carry tag is_padding=True; they are "
       "excluded from the step's reward statistics."),
    _s("verl.utils.tensordict_utils.get_tensordict", "call", f"{_TRAINER}:AudioThinkerTrainer._write_step_rewards",
       "builds the rm_scores fields written back.", ("tensor_dict", "non_tensor_dict")),
    _s("verl.utils.profiler.marked_timer", "call", f"{_TRAINER}:AudioThinkerTrainer._compute_advantage",
       "times the reward as timing_s/reward.", ("name", "timing_raw", "color", "domain", "category")),
    _s("transfer_queue.kv_batch_get", "call", f"{_TRAINER}:AudioThinkerTrainer._write_step_rewards",
       "verl's V1 data plane (TransferQueue): the step's fields.", ("keys", "partition_id", "select_fields")),
    _s("transfer_queue.kv_batch_put", "call", f"{_TRAINER}:AudioThinkerTrainer._write_step_rewards",
       "writes rm_scores back.", ("keys", "partition_id", "fields", "tags", "data_parser")),
    _s("transfer_queue.KVBatchMeta", "read", f"{_TRAINER}:AudioThinkerTrainer._write_step_rewards",
       "the step's batch handle.", members=("keys", "tags", "partition_id")),
    _s(_RLHF_DATASET, "subclass", f"{_DATASET}:AudioQADataset", "data.custom_cls for GRPO.",
       members=("audio_key", "dataframe", "data_files", "apply_chat_template_kwargs", "max_prompt_length",
                "processor", "prompt_key")),
    _s(f"{_RLHF_DATASET}.__init__", "override", f"{_DATASET}:AudioQADataset",
       "verl constructs data.custom_cls with these keywords.",
       ("data_files", "tokenizer", "config", "processor", "max_samples")),
    _s(f"{_RLHF_DATASET}._read_files_and_tokenize", "override", f"{_DATASET}:AudioQADataset._read_files_and_tokenize",
       "private hook; rows with missing audio files are dropped after verl reads the files.", ()),
    _s(f"{_RLHF_DATASET}._build_messages", "override", f"{_DATASET}:AudioQADataset._build_messages",
       "private hook; the prompt is rewritten for the prompt mode and the audio decoded.", ("example", "key")),
    _s(f"{_RLHF_DATASET}.__getitem__", "override", f"{_DATASET}:AudioQADataset.__getitem__",
       "unreadable clips are replaced by the next readable row.", ("item",)),
    _s("verl.trainer.sft_trainer.create_sft_dataset", "serve", f"{_SFT_DATASET}:AudioSFTDataset",
       "constructs data.custom_cls with parquet_files=, tokenizer=, config=, processor=, max_samples=.",
       ("data_paths", "data_config", "tokenizer", "processor", "max_samples")),
    _s("verl.utils.fs.copy_local_path_from_hdfs", "call", f"{_SFT_DATASET}:AudioSFTDataset._read_rows",
       "local copy of each parquet file.", ("src", "cache_dir", "filelock", "verbose", "always_recopy")),
]

_REWARD_AND_ENTRY_POINTS = [
    _s("verl.experimental.reward_loop.reward_manager.register", "call", f"{_REWARD}:_register_once",
       "registers the reward manager as 'audio_thinker'.", ("name",)),
    _s("verl.experimental.reward_loop.reward_manager.registry.REWARD_MANAGER", "read", f"{_REWARD}:_register_once",
       "name -> class; read so a second execution of the module does not register twice."),
    _s(_REWARD_BASE, "subclass", f"{_REWARD}:AudioThinkerRewardManager",
       "per-response rule rewards; verl's init_class sets _class_initialized on our subclass once it ran.",
       members=("tokenizer", "_class_initialized")),
    _s(f"{_REWARD_BASE}.__init__", "override", f"{_REWARD}:AudioThinkerRewardManager",
       "called positionally as super().__init__(config, tokenizer, compute_score); verl also passes "
       "reward_router_address= and reward_model_tokenizer=.", ("config", "tokenizer", "compute_score")),
    _s(f"{_REWARD_BASE}.run_single", "override", f"{_REWARD}:AudioThinkerRewardManager.run_single",
       "scores one trajectory; returns {'reward_score', 'reward_extra_info'}.", ("data",)),
    _s("verl.DataProto", "read", f"{_REWARD}:AudioThinkerRewardManager.run_single",
       "one trajectory: data[-1:][0].batch / .non_tensor_batch.", members=("batch", "non_tensor_batch")),
    _s("verl.trainer.main_ppo.run_ppo", "call", "audio_thinker/main_grpo.py:run",
       "starts verl's V1 task runner.", ("config", "task_runner_class")),
    _s("verl.trainer.main_ppo.TaskRunnerV1", "read", "audio_thinker/main_grpo.py:run", "the V1 task runner."),
    _s("verl.trainer.ppo.utils.need_critic", "call", ("audio_thinker/main_grpo.py:run",
       "audio_thinker/compose.py:verl_validate"), "as verl's main_ppo calls it.", ("config",)),
    _s("verl.trainer.ppo.utils.need_reference_policy", "call", ("audio_thinker/main_grpo.py:run",
       "audio_thinker/compose.py:verl_validate"), "as verl's main_ppo calls it.", ("config",)),
    _s("verl.utils.config.validate_config", "call", ("audio_thinker/main_grpo.py:run",
       "audio_thinker/compose.py:verl_validate"), "verl's own config check.",
       ("config", "use_reference_policy", "use_critic")),
    _s("verl.trainer.sft_trainer.SFTTrainer", "call", "audio_thinker/main_sft.py:run_rank",
       "verl's SFT trainer, built from the config and fitted.", ("config",), ("total_training_steps", "fit")),
    _s("verl.utils.distributed.initialize_global_process_group", "call", "audio_thinker/main_sft.py:_init_process_group",
       "the GPU process group of an SFT rank.", ("timeout_second",)),
    _s("verl.model_merger.base_model_merger.ModelMergerConfig", "call", "audio_thinker/verl_ext/merge.py:merge_checkpoint",
       "FSDP checkpoint -> Hugging Face directory (keyword arguments).",
       ("operation", "backend", "target_dir", "hf_upload_path", "private", "test_hf_dir", "tie_word_embedding",
        "trust_remote_code", "is_value_model", "local_dir", "hf_model_config_path", "use_cpu_initialization")),
    _s("verl.model_merger.fsdp_model_merger.FSDPModelMerger", "call", "audio_thinker/verl_ext/merge.py:merge_checkpoint",
       "built from the merger config; merge_and_save() then cleanup().", ("config",), ("merge_and_save", "cleanup")),
]

#: every verl symbol we depend on
CONTRACT: tuple[VerlSymbol, ...] = (
    *_PLUGIN_AND_PLATFORM, *_CPU_ENGINES_AND_POOLS, *_HF_ROLLOUT, *_VLLM_ROLLOUT_SYMBOLS, *_TRAINER_AND_DATA,
    *_REWARD_AND_ENTRY_POINTS,
)


# ------------------------------------------------------------------------------------ checking
_MISSING = object()
_THIRD_PARTY = ("verl", "transfer_queue")


def _import_prefix(path: str) -> tuple[Any, list[str]]:
    parts = path.split(".")
    for i in range(len(parts), 0, -1):
        try:
            return importlib.import_module(".".join(parts[:i])), parts[i:]
        except ImportError:
            continue
    raise ImportError(f"no module of {path!r} can be imported")


def _assigns_self(cls: type, name: str) -> bool:
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return False
    return re.search(rf"\bself\.{re.escape(name)}\s*(:[^=\n]*)?=(?!=)", source) is not None


def _defining_class(owner: type, name: str) -> type | None:
    """The class in ``owner``'s MRO that defines ``name`` (class attribute, field or ``self.name = ...``)."""
    for klass in owner.__mro__:
        if name in vars(klass):
            return klass
    for klass in owner.__mro__:
        fields = {f.name for f in dataclasses.fields(klass)} if dataclasses.is_dataclass(klass) else set()
        if name in fields or _assigns_self(klass, name):
            return klass
    return None


def _qualified(obj: Any) -> str | None:
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if isinstance(module, str) and isinstance(qualname, str) and "<locals>" not in qualname:
        return f"{module}.{qualname}"
    return None


def resolve(path: str) -> tuple[str, Any]:
    """``(canonical path, value)`` of a dotted path; ``value`` is ``_MISSING`` for an instance attribute.

    The canonical path names the defining module / class (``PPOTrainerSync._validate`` ->
    ``...trainer_base.PPOTrainer._validate``). Raises ``LookupError`` when the name is gone.
    """
    obj, rest = _import_prefix(path)
    current = obj.__name__
    for position, attr in enumerate(rest):
        if isinstance(obj, type):
            definer = _defining_class(obj, attr)
            if definer is None:
                raise LookupError(f"{current} has no attribute {attr!r}")
            current = f"{_qualified(definer) or current}.{attr}"
            value = vars(definer).get(attr, _MISSING)
        else:
            value = getattr(obj, attr, _MISSING)
            if value is _MISSING:
                raise LookupError(f"{current} has no attribute {attr!r}")
            current = f"{current}.{attr}"
        if value is _MISSING:
            if position != len(rest) - 1:
                raise LookupError(f"{current} is an instance attribute: nothing below it can be checked")
            return current, _MISSING
        value = getattr(value, "__func__", value)  # classmethod / staticmethod
        qualified = _qualified(value)
        if (inspect.isclass(value) or inspect.isfunction(value)) and getattr(value, "__name__", None) == attr \
                and qualified and qualified.startswith(_THIRD_PARTY):
            current = qualified
        obj = value
    return current, obj


def canonical_path(path: str) -> str:
    """The canonical form of ``path`` (see :func:`resolve`)."""
    return resolve(path)[0]


def _parameters(value: Any) -> tuple[str, ...] | None:
    value = getattr(value, "__wrapped_original__", value)  # our own patches keep verl's original here
    if isinstance(value, property):
        return None
    names = tuple(inspect.signature(value).parameters)
    return names[1:] if names[:1] in (("self",), ("cls",)) else names


def check_symbol(symbol: VerlSymbol) -> str | None:
    """None when ``symbol`` holds in the installed verl, else a message saying what to revisit."""
    where = ", ".join(symbol.where)
    tail = f"(used in {where}; {symbol.use}: {USES[symbol.use]}). On a verl upgrade revisit: {symbol.revisit}"
    if symbol.needs is not None and importlib.util.find_spec(symbol.needs) is None:
        return None
    try:
        _, value = resolve(symbol.path)
    except (ImportError, LookupError) as error:
        return f"{symbol.path} is gone ({error}) {tail}"
    if symbol.params is not None:
        if value is _MISSING:
            return f"{symbol.path} is an attribute, it has no parameters {tail}"
        actual = _parameters(value)
        if actual != symbol.params:
            return f"{symbol.path} takes {actual}, the contract expects {symbol.params} {tail}"
    if symbol.members:
        if not inspect.isclass(value):
            return f"{symbol.path} is not a class, cannot hold members {symbol.members} {tail}"
        missing = [m for m in symbol.members if _defining_class(value, m) is None]
        if missing:
            return f"{symbol.path} no longer has {missing} {tail}"
    return None


def installed_verl_version() -> str:
    from importlib.metadata import version

    return version("verl")


def check_contract() -> list[str]:
    """Every problem of :data:`CONTRACT` against the installed verl (empty: all good)."""
    problems = []
    if installed_verl_version() != VERL_VERSION:
        problems.append(f"verl {installed_verl_version()} is installed, the contract pins {VERL_VERSION}")
    problems += [message for message in map(check_symbol, CONTRACT) if message]
    return problems


if __name__ == "__main__":
    found = check_contract()
    print("\n\n".join(found) if found else f"all {len(CONTRACT)} verl symbols hold (verl {VERL_VERSION})")
    sys.exit(1 if found else 0)
