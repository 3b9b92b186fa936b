"""benchmarks/gpu_smoke.py: the tiny run on CPU, the real-size models on the meta device, and the
real run on a GPU (skipped without CUDA)."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu_smoke.py"
MODES = ("weights", "adamw_est", "train_ckpt", "train_nockpt", "logprob_fwd")
TIMED = ("train_ckpt", "train_nockpt", "logprob_fwd")


def _load_script():
    spec = importlib.util.spec_from_file_location("gpu_smoke", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


smoke = _load_script()


def _run(args: list[str], out: Path, timeout: int) -> dict:
    proc = subprocess.run([sys.executable, str(SCRIPT), *args, "--json", str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "| model | mode | batch x seq | peak GiB |" in proc.stdout
    return json.loads(out.read_text())


def _rows(report: dict) -> dict[tuple[str, str], dict]:
    return {(r["model"], r["mode"]): r for r in report["rows"]}


def _check_timed_rows(report: dict, *, loss_rel: float) -> None:
    """Invariants of every run: all rows, 3 timed steps, checkpointing does not change the loss."""
    rows = _rows(report)
    assert set(rows) == {(m, mode) for m in ("qwen2_audio", "omni_thinker") for mode in MODES}
    for model, settings in report["settings"].items():
        for mode in TIMED:
            row = rows[model, mode]
            assert row["error"] is None
            assert row["seq"] == settings["prompt_len"] + settings["response_len"]
            assert len(row["step_seconds"]) == 3 and all(t > 0 for t in row["step_seconds"])
            assert row["seconds_per_step"] == sorted(row["step_seconds"])[1]
        assert rows[model, "train_ckpt"]["batch"] == settings["micro_batch"]
        assert rows[model, "logprob_fwd"]["batch"] == settings["logprob_micro_batch"]
        ckpt, plain = rows[model, "train_ckpt"], rows[model, "train_nockpt"]
        assert ckpt["loss"] == pytest.approx(plain["loss"], rel=loss_rel)
        # the audio features reach the loss: the encoder gets a gradient
        assert ckpt["audio_grad_norm"] > 0 and plain["audio_grad_norm"] > 0
        assert rows[model, "adamw_est"]["peak_gib"] == pytest.approx(
            rows[model, "weights"]["params"] * 12 / 1024**3)


@pytest.mark.slow  # the whole smoke script on CPU (~20 s)
def test_tiny_run_on_cpu_writes_every_row(tmp_path):
    report = _run(["--tiny", "--device", "cpu"], tmp_path / "smoke.json", timeout=600)
    assert report["tiny"] and report["dtype"] == "float32"
    _check_timed_rows(report, loss_rel=1e-5)
    vocab = smoke.TINY_VOCAB
    for (model, mode), row in _rows(report).items():
        if mode in TIMED:
            # random init with small weights: near-uniform next-token distribution
            assert row["mean_logprob"] == pytest.approx(-math.log(vocab), abs=0.5), (model, mode)
            assert row["peak_gib"] is None  # no allocator statistics on CPU
        assert row["params"] < 1e6


@pytest.mark.parametrize("name", ["qwen2_audio", "omni_thinker"])
def test_recipe_shapes_fit_a_30s_clip(name):
    shapes = smoke.read_recipe_shapes(smoke.MODELS[name])
    assert shapes.mel_frames == 3000 and shapes.audio_tokens == 750  # 25 audio tokens per second
    assert shapes.prompt_len >= shapes.audio_tokens + 2
    assert shapes.micro_batch >= 1 and shapes.logprob_micro_batch >= 1 and shapes.response_len >= 1


@pytest.mark.parametrize(("name", "expected"), [("qwen2_audio", 8.40e9), ("omni_thinker", 8.9e9)])
def test_real_size_models_and_batches_on_meta(name, expected):
    """What the GPU run builds: the real architectures, and inputs whose audio placeholders match
    the number of embeddings the model's audio encoder produces for the clip."""
    spec = smoke.MODELS[name]
    config = smoke.load_model_config(spec, tiny=False)
    model = smoke.build_model(spec, config, device=torch.device("meta"), dtype=torch.bfloat16)
    params = sum(p.numel() for p in model.parameters())
    assert abs(params - expected) <= 0.01 * expected
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())
    shapes = smoke.read_recipe_shapes(spec)
    batch = smoke.make_batch(config, shapes, 2, device=torch.device("cpu"), dtype=torch.bfloat16, seed=0)
    ids = batch["input_ids"]
    assert ids.shape == (2, shapes.seq_len)
    _, encoder_tokens = model.audio_tower._get_feat_extract_output_lengths(torch.tensor([shapes.mel_frames]))
    assert ((ids == config.audio_token_index).sum(-1) == int(encoder_tokens)).all()
    assert batch["input_features"].shape == (2, config.audio_config.num_mel_bins, shapes.mel_frames)


@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: the real-size bf16 run (~17 GB of weights per model)")
def test_real_size_run_on_gpu(tmp_path):
    report = _run(["--device", "cuda"], tmp_path / "smoke.json", timeout=900)
    _check_timed_rows(report, loss_rel=2e-2)
    total = report["environment"]["gpu_total_gib"]
    rows = _rows(report)
    for model in ("qwen2_audio", "omni_thinker"):
        ckpt, plain, fwd = (rows[model, m] for m in TIMED)
        assert rows[model, "weights"]["peak_gib"] < ckpt["peak_gib"] < plain["peak_gib"] < total
        assert fwd["peak_gib"] < plain["peak_gib"]
