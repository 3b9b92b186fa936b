"""``python -m audio_thinker.data.cot``: the command line of the CoT pipeline."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from audio_thinker.data.cot import pipeline
from audio_thinker.data.cot.filter import format_summary_line
from audio_thinker.data.cot.settings import STAGES, CotConfig, RunOptions, check_model
from audio_thinker.inference.backend import BACKENDS


def _parser() -> argparse.ArgumentParser:
    """Command-line arguments of ``python -m audio_thinker.data.cot``."""
    run, cfg = RunOptions(), CotConfig(rows="", caption_model="", text_model="")
    p = argparse.ArgumentParser(
        prog="python -m audio_thinker.data.cot",
        description="Generate CoT rationales (paper A.2): captions by the audio model, rationales by a text "
                    "LLM, filtered to the gold answer; writes OUT/cot.parquet (think prompt mode).",
    )
    p.add_argument("--rows", required=True, help="training rows parquet (e.g. data/avqa/train.parquet)")
    p.add_argument("--out", required=True, help="output folder (resumable)")
    p.add_argument("--caption-model", required=True, help="audio model folder (Qwen2-Audio-7B-Instruct)")
    p.add_argument("--text-model", required=True, help="text LLM folder or hub id (Qwen2.5-72B-Instruct)")
    p.add_argument("--backend", choices=BACKENDS, default=run.backend,
                   help="auto: vllm when CUDA and vLLM are available, else hf (transformers)")
    p.add_argument("--batch-size", type=int, default=run.batch_size, help="prompts per generation call")
    p.add_argument("--max-caption-tokens", type=int, default=cfg.max_caption_tokens)
    p.add_argument("--max-rationale-tokens", type=int, default=cfg.max_rationale_tokens)
    p.add_argument("--temperature", type=float, default=cfg.temperature, help="0 = greedy (default)")
    p.add_argument("--top-p", type=float, default=cfg.top_p)
    p.add_argument("--seed", type=int, default=cfg.seed)
    p.add_argument("--limit", type=int, default=None, help="only the first N rows")
    p.add_argument("--tensor-parallel-size", type=int, default=run.tensor_parallel_size,
                   help="GPUs of the text LLM (vllm)")
    p.add_argument("--caption-tensor-parallel-size", type=int, default=run.caption_tensor_parallel_size,
                   help="GPUs of the audio model (vllm)")
    p.add_argument("--gpu-memory-utilization", type=float, default=run.gpu_memory_utilization)
    p.add_argument("--max-model-len", type=int, default=run.max_model_len)
    p.add_argument("--device", default=None, help="hf torch device (default: cuda when available, else cpu)")
    p.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16", "auto"],
                   help="model dtype (default: float32 on cpu, bfloat16 on GPU)")
    p.add_argument("--num-threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--stage", choices=STAGES, default=run.stage,
                   help="captions: stop after the captions (then re-run without it for the rationales)")
    p.add_argument("--max-question-chars", type=int, default=run.max_question_chars,
                   help="skip input rows whose question and choices hold more characters (prompt_too_long)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point: runs the pipeline, prints the summary line and returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        config = CotConfig(
            rows=str(Path(args.rows).expanduser().resolve()),
            caption_model=check_model(args.caption_model, what="audio model", flag="--caption-model"),
            text_model=check_model(args.text_model, what="causal LM", flag="--text-model"),
            max_caption_tokens=args.max_caption_tokens, max_rationale_tokens=args.max_rationale_tokens,
            temperature=args.temperature, top_p=args.top_p, seed=args.seed,
        )
        run = RunOptions(
            backend=args.backend, batch_size=args.batch_size, device=args.device, dtype=args.dtype,
            num_threads=args.num_threads, tensor_parallel_size=args.tensor_parallel_size,
            caption_tensor_parallel_size=args.caption_tensor_parallel_size,
            gpu_memory_utilization=args.gpu_memory_utilization, max_model_len=args.max_model_len,
            stage=args.stage, max_question_chars=args.max_question_chars,
        )
        summary = pipeline.generate_cot(config, args.out, run=run, limit=args.limit,
                                        progress=not args.no_progress)
    except (ValueError, OSError, RuntimeError, ImportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(format_summary_line(summary))
    return 0
