"""A tiny, randomly initialised judge of the REAL Qwen3-8B-Base architecture, built fully offline.

``python -m audio_thinker.models.tiny_judge --out DIR [--seed S]`` writes a directory that loads
through the code path the real judge uses (``AutoTokenizer`` / ``AutoModelForCausalLM``
``.from_pretrained(DIR)``): a ``Qwen3ForCausalLM`` 64 wide and 2 layers deep (4 query heads, 2 KV
heads, ``head_dim`` 16, QK-norm, untied embeddings: the 8B release's layout at toy size).

Why it exists: the judge pool's ``hf`` backend (:mod:`reward_workers.hf_worker`) must be tested
end to end on CPU without downloads. Its verdicts are random (mostly unparseable, which exercises
the failure fallback); what the tests check is the plumbing: prompts in, batched left-padded
generation, continuations out, parsing, retries and restarts.

The tokenizer reuses :mod:`audio_thinker.models.tiny`'s locally trained byte-level BPE (Qwen2's
normaliser, split regex and byte-level pre-tokenizer) with Qwen3's added tokens appended in the
real order, so each keeps its real offset from ``<|endoftext|>`` (``<think>`` is base + 24 as in
Qwen3's 151667 = 151643 + 24). As in the real *base* model, ``<|endoftext|>`` is eos and pad.
The build is crash-safe and deterministic exactly like the audio tiny models (same marker file,
same staging-directory rename), with ``arch`` recorded as :data:`JUDGE_ARCH`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from audio_thinker.models.tiny import MARKER, _install, _replaceable, _train_bpe, is_complete, token_ids

__all__ = [
    "JUDGE_ARCH", "build_judge_config", "build_judge_tokenizer", "build_tiny_judge", "ensure_tiny_judge",
]

#: ``arch`` written into the marker file of a tiny judge build
JUDGE_ARCH = "qwen3_judge"

#: Qwen3 added tokens, in id order: special ones (real ids 151643..151656) ...
_QWEN3_SPECIALS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
)
#: ... then plain ones (151657..151666); ``_train_bpe`` appends ``<think>``/``</think>`` (151667/8)
#: and ``<answer>``/``</answer>`` (not in Qwen3; harmless extra ids) after these.
_QWEN3_PLAIN_ADDED = (
    "<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>",
    "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>", "<tool_response>", "</tool_response>",
)
#: Qwen3-8B-Base handles 32k tokens; the few-shot judge prompts need a few thousand tiny-BPE tokens.
_MAX_POSITIONS = 32768


def build_judge_tokenizer() -> Any:
    """A ``Qwen2Tokenizer`` (Qwen3's tokenizer class) on the tiny BPE; eos = pad = ``<|endoftext|>``."""
    from transformers import Qwen2Tokenizer

    return Qwen2Tokenizer(
        tokenizer_object=_train_bpe(_QWEN3_SPECIALS, _QWEN3_PLAIN_ADDED),
        bos_token=None, unk_token=None, eos_token="<|endoftext|>", pad_token="<|endoftext|>",
        extra_special_tokens=list(_QWEN3_SPECIALS[1:]), model_max_length=_MAX_POSITIONS,
        errors="replace", split_special_tokens=False, clean_up_tokenization_spaces=False,
    )


def build_judge_config(tokenizer: Any) -> Any:
    """Tiny ``Qwen3Config`` (real 8B: 4096 wide, 36 layers, 32/8 heads, head_dim 128, untied)."""
    from transformers import Qwen3Config

    ids = token_ids(tokenizer, ["<|endoftext|>"])
    config = Qwen3Config(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, hidden_act="silu",
        max_position_embeddings=_MAX_POSITIONS, rms_norm_eps=1e-6, tie_word_embeddings=False,
        rope_parameters={"rope_type": "default", "rope_theta": 1e6}, attention_bias=False,
        use_sliding_window=False, initializer_range=0.02,
        bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|endoftext|>"],
        pad_token_id=ids["<|endoftext|>"],
    )
    config.architectures = ["Qwen3ForCausalLM"]
    config.dtype = "float32"
    return config


def _write(out_dir: Path, *, seed: int) -> dict[str, Any]:
    import torch
    import transformers
    from transformers import GenerationConfig, Qwen3ForCausalLM
    from transformers.utils import logging as hf_logging

    started = time.perf_counter()
    tokenizer = build_judge_tokenizer()
    config = build_judge_config(tokenizer)
    torch.manual_seed(seed)
    model = Qwen3ForCausalLM(config).to(torch.float32).eval()
    eos = config.eos_token_id
    model.generation_config = GenerationConfig(bos_token_id=eos, eos_token_id=eos, pad_token_id=eos)
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        tokenizer.save_pretrained(out_dir)
        model.save_pretrained(out_dir)
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    return {
        "arch": JUDGE_ARCH, "seed": seed, "model_class": "Qwen3ForCausalLM",
        "num_parameters": sum(p.numel() for p in model.parameters()), "vocab_size": len(tokenizer),
        "transformers_version": transformers.__version__,
        "build_seconds": round(time.perf_counter() - started, 3),
    }


def _build(out_dir: str | Path, *, seed: int, keep_complete: bool) -> Path:
    out_dir = Path(out_dir).absolute()
    if not _replaceable(out_dir):
        raise FileExistsError(f"{out_dir} exists and is not a tiny-model directory: not replacing it")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        staging.chmod(0o755)
        info = _write(staging, seed=seed)
        (staging / MARKER).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
        _install(staging, out_dir, keep_complete=keep_complete, arch=JUDGE_ARCH, seed=seed)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir


def build_tiny_judge(out_dir: str | Path, *, seed: int = 0) -> Path:
    """Build the tiny Qwen3 judge into ``out_dir`` (an older tiny build there is replaced)."""
    return _build(out_dir, seed=seed, keep_complete=False)


def ensure_tiny_judge(out_dir: str | Path, *, seed: int = 0) -> Path:
    """``out_dir`` if it holds a complete tiny judge with ``seed``; else build it (concurrency-safe)."""
    if is_complete(out_dir, arch=JUDGE_ARCH, seed=seed):
        return Path(out_dir).absolute()
    return _build(out_dir, seed=seed, keep_complete=True)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the process exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m audio_thinker.models.tiny_judge",
        description="Build a tiny random judge of the Qwen3-8B-Base architecture (offline).",
    )
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument("--seed", type=int, default=0, help="weight-init seed (default 0)")
    args = parser.parse_args(argv)
    try:
        out = build_tiny_judge(args.out, seed=args.seed)
    except FileExistsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    info = json.loads((out / MARKER).read_text())
    print(f"{JUDGE_ARCH}: {info['num_parameters']} parameters, vocab {info['vocab_size']}, "
          f"built in {info['build_seconds']} s -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
