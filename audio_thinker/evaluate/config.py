"""The evaluation config (``conf/evaluate.yaml``): one typed schema, checked before any work starts.

Every key, its default and meaning is a field comment below; :func:`load_eval_config` rejects
unknown keys (with a did-you-mean), wrong types and bad values with a message saying how to fix
them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from audio_thinker.config import ConfigError, _check_audio, build_section
from audio_thinker.data.audio import AudioConfig
from audio_thinker.inference.backend import BACKENDS
from audio_thinker.inference.options import GenerationOptions, VLLMOptions
from audio_thinker.scoring.items import EVAL_BENCHMARKS, eval_benchmark_name
from audio_thinker.inference.vllm import engine_kwargs
from audio_thinker.prompts import PromptMode
from audio_thinker.toy.prepare import ToySection


@dataclass(frozen=True)
class ModelSection:
    #: a Hugging Face model directory, a verl run directory (its latest checkpoint), or a verl
    #: checkpoint (global_step_N or global_step_N/actor), merged with verl's model merger
    path: str = "models/tiny_qwen2_audio_primed"
    #: where a verl checkpoint is merged (default <actor>/merged_hf; reused while current)
    merged_dir: str | None = None
    #: the name this model gets in tables and in `compare` (default: derived from the path)
    label: str | None = None


@dataclass(frozen=True)
class BenchmarkSection:
    #: mmau | mmar | air-bench-foundation | synthetic
    name: str = "synthetic"
    #: the metadata file: MMAU test-mini JSON, MMAR-meta.json(l), AIR-Bench Foundation_meta.json,
    #: or a parquet of the training schema for synthetic
    meta: str = "data/synthetic/val.parquet"
    #: folder the metadata's audio paths are relative to (default: the metadata file's folder)
    audio_root: str | None = None
    #: a version label shown in results (e.g. v05.15.25 for MMAU test-mini); free text
    version: str | None = None
    #: evaluate only the first N items (null: all)
    limit: int | None = None


@dataclass(frozen=True)
class HFSection:
    #: torch device for the transformers backend (cpu, cuda, cuda:1)
    device: str = "cpu"
    #: float32 | bfloat16 | float16 | auto (the checkpoint's dtype)
    dtype: str = "float32"
    #: sdpa | eager
    attn_implementation: str = "sdpa"
    #: torch CPU threads (null: torch's default)
    num_threads: int | None = None


@dataclass(frozen=True)
class EvalConfig:
    model: ModelSection = field(default_factory=ModelSection)
    benchmark: BenchmarkSection = field(default_factory=BenchmarkSection)
    #: adaptive | think | direct: the instruction the prompt carries (as in training)
    prompt_mode: str = "adaptive"
    #: auto (vllm when CUDA and vLLM are available, else hf) | hf (transformers) | vllm
    backend: str = "auto"
    #: decoding (audio_thinker.inference.options.GenerationOptions: every key documented there)
    generation: GenerationOptions = field(default_factory=GenerationOptions)
    hf: HFSection = field(default_factory=HFSection)
    #: vLLM engine (audio_thinker.inference.options.VLLMOptions: vllm.LLM arguments of the same names)
    vllm: VLLMOptions = field(default_factory=VLLMOptions)
    audio: AudioConfig = field(default_factory=AudioConfig)
    #: the longest prompt generated from, in tokens (the chat template's text plus the clip's audio
    #: tokens, 25 per second); a longer item is not generated and is recorded missing with the reason
    #: prompt_too_long. 4096 leaves room for long benchmark questions with 30 s of audio (~900 tokens)
    #: and for generation.max_new_tokens within vllm.max_model_len (8192)
    max_prompt_length: int = 4096
    #: the run directory (records, predictions, results, tables, plot); re-running with the same
    #: directory resumes: items already in records.jsonl are not generated again
    output_dir: str | None = None
    #: resume an existing run directory (false: refuse to touch a directory with records)
    resume: bool = True
    #: the demo assets (audio_thinker.toy.prepare.ToySection), built when missing as main_grpo
    #: builds them; only those the model and benchmark paths name
    toy: ToySection = field(default_factory=ToySection)
    #: show progress bars
    progress: bool = True


def _fail(key: str, value: Any, valid: list[str] | tuple[str, ...]) -> ConfigError:
    return ConfigError(f"{key}={value!r} is not valid; use one of: {', '.join(valid)} (e.g. {key}={valid[0]})")


def load_eval_config(section: Mapping[str, Any] | Any) -> EvalConfig:
    """Validate the composed evaluation config (a mapping or an OmegaConf node)."""
    if not isinstance(section, Mapping):
        from omegaconf import OmegaConf

        section = OmegaConf.to_container(section, resolve=True)
    data = {k: v for k, v in dict(section).items() if k != "hydra"}
    toy = ToySection.load(data.pop("toy", None))
    try:
        cfg: EvalConfig = build_section(EvalConfig, data, "", root="")
    except ConfigError:
        raise
    except ValueError as error:  # GenerationOptions checks its values when built
        raise ConfigError(f"generation: {error}") from None
    try:
        name = eval_benchmark_name(cfg.benchmark.name)
    except ValueError:
        raise _fail("benchmark.name", cfg.benchmark.name, EVAL_BENCHMARKS) from None
    cfg = _replace(cfg, toy=toy)
    if name != cfg.benchmark.name:
        cfg = _replace(cfg, benchmark=_replace(cfg.benchmark, name=name))
    modes = [m.value for m in PromptMode]
    if cfg.prompt_mode not in modes:
        raise _fail("prompt_mode", cfg.prompt_mode, modes)
    if cfg.backend not in BACKENDS:
        raise _fail("backend", cfg.backend, BACKENDS)
    if cfg.hf.dtype not in ("float32", "bfloat16", "float16", "auto"):
        raise _fail("hf.dtype", cfg.hf.dtype, ("float32", "bfloat16", "float16", "auto"))
    if isinstance(cfg.max_prompt_length, bool) or not isinstance(cfg.max_prompt_length, int) \
            or cfg.max_prompt_length <= 0:
        raise ConfigError(f"max_prompt_length={cfg.max_prompt_length!r}: use a positive number of tokens "
                          "(e.g. max_prompt_length=4096)")
    if cfg.benchmark.limit is not None and cfg.benchmark.limit <= 0:
        raise ConfigError(f"benchmark.limit={cfg.benchmark.limit}: use a positive number of items, or null for all")
    try:  # VLLMOptions itself does not validate; engine_kwargs does (its messages name vllm.<key>)
        engine_kwargs(cfg.model.path, cfg.vllm)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    try:
        _check_audio(cfg.audio)
    except ConfigError as error:
        raise ConfigError(str(error).replace("audio_thinker.audio", "audio")) from None
    return cfg


def _replace(obj: Any, **changes: Any) -> Any:
    import dataclasses

    return dataclasses.replace(obj, **changes)
