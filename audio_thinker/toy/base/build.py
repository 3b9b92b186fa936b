"""The base's output directory: build the tiny model, pre-train it, score it, save it with a manifest.

:func:`build_base` always builds; :func:`ensure_base` keeps an output whose manifest records the
same options and format version. :func:`pretrain` (model + training + profile, nothing written) is
what the benchmark script calls for each candidate.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from audio_thinker.toy import tiny
from audio_thinker.toy.base.clips import prepare_clips, synthetic_clips
from audio_thinker.toy.base.options import FORMAT_VERSION, RL_DATA_SEED, BaseOptions, base_rationale
from audio_thinker.toy.base.scoring import profile_ok, score_profile
from audio_thinker.toy.base.training import AudioEmbedder, train_base
from audio_thinker.toy.builds import build_dir, init_model, is_replaceable, quiet_hub, read_marker, sha256

__all__ = ["ARCH", "MARKER", "build_base", "build_base_model", "ensure_base", "is_complete", "pretrain",
           "read_manifest"]

#: Written last into the output directory: the manifest (options, profile, checksum, timings).
MARKER = "base_model.json"
#: The architecture the base has (the embedded default's).
ARCH = "qwen2_audio"
_REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json", "processor_config.json")


def read_manifest(out_dir: str | Path) -> dict[str, Any] | None:
    """The :data:`MARKER` manifest of ``out_dir`` as a dict, or None when absent or unreadable."""
    return read_marker(out_dir, MARKER)


def is_complete(out_dir: str | Path, options: BaseOptions | None = None) -> bool:
    """Whether ``out_dir`` holds a finished base (built with ``options``, if given)."""
    out = Path(out_dir)
    manifest = read_manifest(out)
    if not manifest or not all((out / name).is_file() for name in _REQUIRED_FILES):
        return False
    if manifest.get("format_version") != FORMAT_VERSION:
        return False
    return options is None or manifest.get("options") == options.as_dict()


def build_base_model(options: BaseOptions) -> tuple[Any, Any]:
    """The untrained model (the tiny Qwen2-Audio of :mod:`audio_thinker.toy.tiny` with the text model
    resized by ``options``, weights from ``options.seed``) and its processor."""
    import transformers

    tokenizer = tiny.build_tokenizer(ARCH)
    processor = tiny.build_processor(ARCH, tokenizer)
    config = tiny.build_config(ARCH, tokenizer)
    text = config.text_config
    text.hidden_size, text.intermediate_size = options.hidden_size, options.intermediate_size
    text.num_hidden_layers, text.num_attention_heads = options.num_layers, options.hidden_size // 32
    text.layer_types = ["full_attention"] * options.num_layers
    text.max_window_layers = min(getattr(text, "max_window_layers", options.num_layers), options.num_layers)
    model = init_model(getattr(transformers, tiny.get_spec(ARCH).model_class), config, seed=options.seed)
    model.generation_config = tiny.generation_config(tokenizer)
    return model, processor


def pretrain(options: BaseOptions, *, progress: bool = False) -> tuple[Any, Any, dict[str, Any]]:
    """Build, pre-train and score the base of ``options``: ``(model, processor, record)``."""
    started = time.perf_counter()
    model, processor = build_base_model(options)
    train = prepare_clips(processor, synthetic_clips(seed=options.pretrain_seed, split="train", count=options.clips))
    val = prepare_clips(processor, synthetic_clips(seed=RL_DATA_SEED, split="val", count=options.eval_clips))
    prepared = time.perf_counter()
    train_info = train_base(model, processor.tokenizer, train, options, progress=progress)
    trained = time.perf_counter()
    profile = score_profile(model, processor.tokenizer, val, AudioEmbedder(model, val, cache=True))
    scored = time.perf_counter()
    return model, processor, {
        "train": train_info,
        "profile": profile,
        "profile_ok": {mode: profile_ok(p) for mode, p in profile.items()},
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "seconds": {"data": round(prepared - started, 1), "train": round(trained - prepared, 1),
                    "score": round(scored - trained, 1)},
    }


def _replaceable(out_dir: Path) -> bool:
    return is_replaceable(out_dir, marker=MARKER, outputs=tiny.OUTPUT_NAMES | {MARKER}, foreign=(tiny.MARKER,))


def _write(staging: Path, options: BaseOptions, *, progress: bool) -> dict[str, Any]:
    import torch
    import transformers

    started = time.perf_counter()
    with quiet_hub():
        model, processor, record = pretrain(options, progress=progress)
        processor.save_pretrained(staging)
        model.save_pretrained(staging)
    record["seconds"]["total"] = round(time.perf_counter() - started, 1)
    return {
        "format_version": FORMAT_VERSION,
        "arch": ARCH, "model_class": tiny.get_spec(ARCH).model_class,
        "options": options.as_dict(),
        "data": {"pretrain": f"synthetic tasks, seed {options.pretrain_seed}, split train, {options.clips} clips",
                 "eval": f"synthetic tasks, seed {RL_DATA_SEED}, split val, first {options.eval_clips} clips"},
        "think_template": base_rationale({"task": "{task}"}, "{answer}"),
        **record,
        "weights_sha256": sha256(staging / "model.safetensors"),
        "torch_version": torch.__version__, "transformers_version": transformers.__version__,
    }


def build_base(out_dir: str | Path, *, progress: bool = True, keep_complete: bool = False, **options: Any) -> Path:
    """Build the base of ``options`` (:class:`~audio_thinker.toy.base.options.BaseOptions` fields) into
    ``out_dir``; returns it. Crash-safe like every demo build (:func:`audio_thinker.toy.builds.build_dir`):
    an existing base is replaced, a directory holding anything else is refused."""
    opts = BaseOptions.from_mapping(options)
    return build_dir(out_dir, lambda staging: _write(staging, opts, progress=progress), marker=MARKER,
                     replaceable=_replaceable, what="base-model",
                     done=lambda: keep_complete and is_complete(out_dir, opts))


def ensure_base(out_dir: str | Path, *, progress: bool = True, **options: Any) -> Path:
    """``out_dir`` if it holds a complete base built with these options; else build it there."""
    opts = BaseOptions.from_mapping(options)
    if is_complete(out_dir, opts):
        return Path(out_dir).absolute()
    return build_base(out_dir, progress=progress, keep_complete=True, **options)
