"""Data-loading throughput: clips/s for load + resample + Whisper (Qwen2-Audio) features.

Writes ``--clips`` synthetic clips of ``--seconds`` s at 44.1 kHz (PCM16 wav, tone + noise) to a
temporary folder, then for each worker count (processes) times the whole per-clip path used at
training time: :func:`audio_thinker.data.audio.load_audio` (decode, mono, validate, resample to
16 kHz with torchaudio) followed by ``transformers.WhisperFeatureExtractor(feature_size=128)``
(Qwen2-Audio's log-mel front end, built from its default config: nothing is downloaded).
Pool start-up and imports are excluded (each worker is warmed up first). A per-stage split for
one process is printed too.

    python benchmarks/bench_data.py [--clips 64] [--seconds 10] [--workers 1,2] [--torch-threads 1]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from audio_thinker.data.audio import load_audio

SOURCE_SR = 44_100
_EXTRACTOR: Any = None


def make_clips(folder: Path, *, n: int, seconds: float, seed: int = 0) -> list[str]:
    """Write ``n`` clips (random tone + noise, 44.1 kHz PCM16 mono) and return their paths."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SOURCE_SR)) / SOURCE_SR
    paths = []
    for i in range(n):
        x = 0.3 * np.sin(2 * np.pi * rng.uniform(200, 2000) * t) + rng.normal(0, 0.01, len(t))
        path = folder / f"clip{i:04d}.wav"
        sf.write(path, x.astype(np.float32), SOURCE_SR, subtype="PCM_16")
        paths.append(str(path))
    return paths


def _init_worker(torch_threads: int) -> None:
    """Build the feature extractor once per process and pin torch's thread count."""
    global _EXTRACTOR
    import torch
    from transformers import WhisperFeatureExtractor

    torch.set_num_threads(torch_threads)
    _EXTRACTOR = WhisperFeatureExtractor(feature_size=128)


def process(path: str) -> tuple[int, float, float]:
    """Load one clip and compute its features; returns (frames, load s, feature s)."""
    start = time.perf_counter()
    loaded = load_audio(path)
    mid = time.perf_counter()
    features = _EXTRACTOR(loaded.samples, sampling_rate=loaded.sample_rate, return_tensors="np")
    end = time.perf_counter()
    return int(features["input_features"].shape[-1]), mid - start, end - mid


def run(paths: list[str], *, workers: int, torch_threads: int) -> dict[str, float]:
    """Time ``process`` over ``paths`` on a warmed-up pool of ``workers`` processes."""
    with ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(torch_threads,)) as pool:
        list(pool.map(process, paths[:workers] * 2))  # warm-up: imports, first-call caches
        start = time.perf_counter()
        results = list(pool.map(process, paths, chunksize=1))
        wall = time.perf_counter() - start
    assert all(frames == 3000 for frames, _, _ in results), "Qwen2-Audio features are 3000 frames (30 s)"
    return {
        "wall": wall,
        "load_ms": 1000 * float(np.mean([r[1] for r in results])),
        "feat_ms": 1000 * float(np.mean([r[2] for r in results])),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--workers", default="1,2", help="comma-separated process counts")
    parser.add_argument("--torch-threads", type=int, default=1, help="torch threads per worker")
    args = parser.parse_args()
    counts = [int(w) for w in args.workers.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench_data_") as tmp:
        paths = make_clips(Path(tmp), n=args.clips, seconds=args.seconds)
        print(
            f"{args.clips} clips x {args.seconds:g} s at {SOURCE_SR} Hz -> 16 kHz + "
            "WhisperFeatureExtractor(128 mel); "
            f"{os.cpu_count()} CPUs, torch threads/worker {args.torch_threads}"
        )
        print(f"{'workers':>7} {'wall s':>8} {'clips/s':>9} {'x realtime':>11} {'load ms':>8} {'feat ms':>8}")
        for workers in counts:
            r = run(paths, workers=workers, torch_threads=args.torch_threads)
            rate = args.clips / r["wall"]
            print(
                f"{workers:>7} {r['wall']:>8.2f} {rate:>9.1f} {rate * args.seconds:>11.0f} "
                f"{r['load_ms']:>8.1f} {r['feat_ms']:>8.1f}"
            )


if __name__ == "__main__":
    main()
