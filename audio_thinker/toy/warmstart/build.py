"""The warm-start's output directory: load the base model, train, check, save; keep what is current.

:func:`build_warmstart` always builds; :func:`ensure_warmstart` keeps an output whose marker records
the same fingerprint (options, base weights, training and held-out data, by content).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from audio_thinker.toy import tiny
from audio_thinker.toy.builds import build_dir, is_replaceable, quiet_hub, read_marker as read_json_marker, sha256
from audio_thinker.toy.warmstart.data import encode_rows, read_rows
from audio_thinker.toy.warmstart.sampling import sample_responses, summarize_responses
from audio_thinker.toy.warmstart.targets import (
    END_OF_TURN,
    FORMAT_VERSION,
    PROMPT_MODE,
    THINK_TEMPLATES,
    WarmstartOptions,
)
from audio_thinker.toy.warmstart.training import train_warmstart

__all__ = ["MARKER", "SUPPORTED_MODEL_TYPES", "build_warmstart", "ensure_warmstart", "is_complete", "read_marker"]

#: Written last into the output directory: its presence (with matching fingerprint) marks a
#: complete warm-start.
MARKER = "warmstart.json"
#: ``config.model_type`` values the warm-start supports.
SUPPORTED_MODEL_TYPES = ("qwen2_audio",)

_COMMANDS = {
    "model": "python -m audio_thinker.toy.tiny --arch qwen2_audio --out {path}",
    "data": "python -m audio_thinker.data.synthetic --out {parent}",
}
#: Files the base directory must hold (besides the weights) for a loadable output.
_REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json", "processor_config.json")


def read_marker(out_dir: str | Path) -> dict[str, Any] | None:
    """The :data:`MARKER` of ``out_dir`` as a dict, or None when absent or unreadable."""
    return read_json_marker(out_dir, MARKER)


def _fingerprint(
    base_dir: Path, data_file: Path, eval_data: Path | None, options: WarmstartOptions
) -> dict[str, Any]:
    """What an output depends on: options, base weights, training and eval data (by content)."""
    return {
        "format_version": FORMAT_VERSION,
        "options": options.as_dict(),
        "base_weights_sha256": sha256(base_dir / "model.safetensors"),
        "data_sha256": sha256(data_file),
        "eval_data_sha256": sha256(eval_data) if eval_data is not None else None,
    }


def is_complete(out_dir: str | Path, fingerprint: Mapping[str, Any] | None = None) -> bool:
    """Whether ``out_dir`` holds a finished warm-start (whose fingerprint matches, if given)."""
    out_dir = Path(out_dir)
    marker = read_marker(out_dir)
    if not marker or not all((out_dir / name).is_file() for name in _REQUIRED_FILES):
        return False
    return fingerprint is None or marker.get("fingerprint") == dict(fingerprint)


def _replaceable(out_dir: Path) -> bool:
    """Only our own (possibly half-written) outputs may be deleted, never a base model directory
    (it holds the tiny builder's marker) nor a foreign one."""
    return is_replaceable(out_dir, marker=MARKER, outputs=tiny.OUTPUT_NAMES | {MARKER}, foreign=(tiny.MARKER,))


def _check_inputs(base_dir: Path, data_file: Path, eval_data: Path | None, out_dir: Path) -> None:
    """Clear errors, naming the command that creates what is missing."""
    if not (base_dir / "config.json").is_file() or not (base_dir / "model.safetensors").is_file():
        raise FileNotFoundError(
            f"base model not found: {base_dir} has no config.json / model.safetensors; build the tiny "
            f"model with `{_COMMANDS['model'].format(path=base_dir)}`"
        )
    for path in (data_file, eval_data):
        if path is not None and not path.is_file():
            raise FileNotFoundError(
                f"data file not found: {path}; generate the synthetic data with "
                f"`{_COMMANDS['data'].format(parent=path.parent)}`"
            )
    if out_dir == base_dir:
        raise ValueError(f"--out must differ from the base model directory ({base_dir})")


def _split_rows(
    data_file: Path, eval_data: Path | None, options: WarmstartOptions
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Training rows and held-out rows (``eval_data``'s first rows, else train's last rows)."""
    rows = read_rows(data_file)
    if eval_data is not None:
        return rows, read_rows(eval_data)[: options.eval_rows]
    held = min(options.eval_rows, len(rows) // 4)
    return rows[: len(rows) - held], rows[len(rows) - held:]


def _load_base(base_dir: Path, staging: Path) -> tuple[Any, Any]:
    """The base model (float32, eval mode) and its processor; the processor is saved into ``staging``
    before use (calls change tokenizer state such as the padding side)."""
    import torch
    import transformers
    from transformers import AutoConfig, AutoProcessor

    config = AutoConfig.from_pretrained(base_dir, local_files_only=True)
    if config.model_type not in SUPPORTED_MODEL_TYPES:
        raise ValueError(
            f"{base_dir} is a {config.model_type!r} model; the warm-start supports "
            f"{', '.join(SUPPORTED_MODEL_TYPES)}"
        )
    processor = AutoProcessor.from_pretrained(base_dir, local_files_only=True)
    processor.save_pretrained(staging)
    architecture = (config.architectures or ["Qwen2AudioForConditionalGeneration"])[0]
    model_class = getattr(transformers, architecture)
    model = model_class.from_pretrained(base_dir, local_files_only=True, dtype=torch.float32).eval()
    tiny.token_ids(processor.tokenizer, [*tiny.REASONING_TOKENS, END_OF_TURN])  # single ids, or a clear error
    return model, processor


def _write(
    base_dir: Path, data_file: Path, eval_data: Path | None, staging: Path, options: WarmstartOptions,
    *, progress: bool,
) -> dict[str, Any]:
    """Load the base model, warm-start it, check it and save everything into ``staging``."""
    import torch
    import transformers

    from audio_thinker.data.audio import AudioConfig, AudioStats

    started = time.perf_counter()
    with quiet_hub():
        model, processor = _load_base(base_dir, staging)
        audio_config = AudioConfig()
        train_rows, eval_rows = _split_rows(data_file, eval_data, options)

        train_stats, eval_stats = AudioStats(), AudioStats()
        examples = encode_rows(model, processor, train_rows, audio_config=audio_config, stats=train_stats,
                               progress=progress)
        if not examples:
            raise ValueError(f"no row of {data_file} has readable audio ({train_stats.summary()})")
        encoded = time.perf_counter()
        train_info = train_warmstart(model, processor.tokenizer, examples, options, progress=progress)
        trained = time.perf_counter()
        samples = sample_responses(model, processor, eval_rows, options=options, audio_config=audio_config,
                                   seed=options.seed + 1, stats=eval_stats)
        figures = summarize_responses(samples)
        evaluated = time.perf_counter()

        model.requires_grad_(True)
        model.save_pretrained(staging)
    return {
        "train": {**train_info, "audio": train_stats.as_dict()},
        "eval": {
            **figures, "rows": len(eval_rows), "samples_per_row": options.eval_samples,
            "audio": eval_stats.as_dict(),
            "source": str(eval_data) if eval_data is not None
            else f"last {len(eval_rows)} rows of {data_file}",
            "temperature": options.eval_temperature, "max_new_tokens": options.eval_max_new_tokens,
            "examples": [text for _, text in samples[:: options.eval_samples][:6]],
        },
        "seconds": {
            "encode": round(encoded - started, 2), "train": round(trained - encoded, 2),
            "eval": round(evaluated - trained, 2),
        },
        "transformers_version": transformers.__version__, "torch_version": torch.__version__,
    }


def _paths(base_dir: Any, data_file: Any, eval_data: Any, out_dir: Any) -> tuple[Path, Path, Path | None, Path]:
    """The four paths made absolute and checked (:func:`_check_inputs`)."""
    base, data = Path(base_dir).absolute(), Path(data_file).absolute()
    evals = Path(eval_data).absolute() if eval_data is not None else None
    out = Path(out_dir).absolute()
    _check_inputs(base, data, evals, out)
    return base, data, evals, out


def build_warmstart(
    base_dir: str | Path, data_file: str | Path, out_dir: str | Path, *, eval_data: str | Path | None = None,
    progress: bool = True, keep_complete: bool = False, **options: Any,
) -> Path:
    """Warm-start the model in ``base_dir`` on ``data_file`` and write it to ``out_dir``; returns it.

    ``options`` are :class:`~audio_thinker.toy.warmstart.targets.WarmstartOptions` fields. An existing
    output in ``out_dir`` is replaced (a directory holding anything else is refused). Everything is
    written into a sibling temporary directory, :data:`MARKER` last, which is then renamed to
    ``out_dir``; with ``keep_complete`` an output a concurrent run finished first with the same
    fingerprint is kept instead.
    """
    started = time.perf_counter()
    opts = WarmstartOptions.from_mapping(options)
    base, data, evals, out = _paths(base_dir, data_file, eval_data, out_dir)
    fingerprint = _fingerprint(base, data, evals, opts)

    def write(staging: Path) -> dict[str, Any]:
        info = _write(base, data, evals, staging, opts, progress=progress)
        info["seconds"]["total"] = round(time.perf_counter() - started, 2)
        return {
            "fingerprint": fingerprint,
            "options": opts.as_dict(),
            "base_model": {"path": str(base), "marker": tiny.read_tiny_marker(base)},
            "data": {"train": str(data), "eval": str(evals) if evals is not None else None},
            "prompt_mode": PROMPT_MODE.value,
            "think_templates": list(THINK_TEMPLATES),
            **info,
        }

    return build_dir(out, write, marker=MARKER, replaceable=_replaceable, what="warm-start output",
                     done=lambda: keep_complete and is_complete(out, fingerprint))


def ensure_warmstart(base_dir: str | Path, data_file: str | Path, out_dir: str | Path, **options: Any) -> Path:
    """``out_dir`` if it holds a complete warm-start of these inputs with these options; else build it.

    Accepts :func:`build_warmstart`'s keywords (``eval_data``, ``progress`` and the
    :class:`~audio_thinker.toy.warmstart.targets.WarmstartOptions` fields). Safe to call from
    concurrent processes: each builds privately and the first to finish wins.
    """
    eval_data = options.pop("eval_data", None)
    progress = options.pop("progress", True)
    opts = WarmstartOptions.from_mapping(options)
    base, data, evals, out = _paths(base_dir, data_file, eval_data, out_dir)
    if is_complete(out, _fingerprint(base, data, evals, opts)):
        return out
    return build_warmstart(base, data, out, eval_data=evals, progress=progress, keep_complete=True, **options)
