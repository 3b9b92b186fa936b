"""Entry point of the SFT baselines: ``python -m audio_thinker.main_sft <hydra overrides>``.

Paper Table 1 rows ``SFT`` (target ``<answer>{gold}</answer>``, direct prompt) and ``SFT + CoT``
(target ``<think>{rationale}</think><answer>{gold}</answer>``, think prompt), trained with
**verl's own SFT trainer** (``verl.trainer.sft_trainer.SFTTrainer``: verl's FSDP engine through its
``TrainingWorker``, ``sft_loss``, ``CheckpointHandler``, ``Tracking``), unchanged. What is ours:

* the config (``conf/sft/audio_thinker_sft.yaml``) composes verl's ``sft_trainer_engine`` defaults
  from the installed wheel (``pkg://verl.trainer.config``) plus a backbone (``backbone=``
  ``qwen2_audio_7b`` | ``qwen2_5_omni_7b`` on GPUs, ``tiny_cpu`` on the CPU; ``conf/sft/backbone/``);
* the data set, through verl's ``data.custom_cls`` hook
  (:class:`audio_thinker.verl_ext.sft_dataset.AudioSFTDataset`: rows of our training schema ->
  prompt + target ids, loss mask on the target, audio features from the processor);
* the audio model classes and processors come from the project's verl plugin (loaded on every
  ``import verl``), exactly as for GRPO;
* the launch. verl's SFT trainer is SPMD (one process per GPU, ``torchrun``), and its
  ``run_sft`` opens the process group with verl's backend string ``cpu:gloo,<device>:<backend>``,
  which torch refuses on the CPU platform (``cpu:gloo,cpu:gloo``). :func:`run_rank` is that
  function with the process group opened for the device (plain ``gloo`` on the CPU, verl's own
  function otherwise), the CPU platform and engines registered when ``trainer.device=cpu``
  (``VERL_PLATFORM=cpu`` set before verl resolves its platform), and the data/model preparation
  done by rank 0 before the trainer starts. Launched without ``torchrun``, a one-process job
  (``trainer.nnodes * trainer.n_gpus_per_node == 1``, e.g. ``tiny_cpu``) runs in this process and
  a single-node multi-GPU job re-launches itself under ``torchrun --standalone``; multi-node jobs
  run ``torchrun`` on every node (the command is in the error message).

Every launch logs metrics (verl's ``file`` logger) to ``{trainer.default_local_dir}/metrics/
{timestamp}.jsonl`` and ends with a summary (loss first -> last, validation loss, the checkpoint
and the command that evaluates it); the exit status is non-zero when training failed or logged
fewer steps than planned. ``audio_thinker.dry_run=true`` validates and prints the config only.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from audio_thinker.cli import check_or_exit, latest_checkpoint
from audio_thinker.config import AudioThinkerConfig, ConfigError, build_section, load_config
from audio_thinker.toy.prepare import ToySection

#: conf/sft/: its own folder, so ``backbone=`` selects the SFT backbones (conf/sft/backbone/)
CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "conf" / "sft")
CONFIG_NAME = "audio_thinker_sft"
#: ``data.custom_cls`` our audio SFT needs
DATASET_CLS = ("pkg://audio_thinker.verl_ext.sft_dataset", "AudioSFTDataset")
#: ``audio_thinker.sft.target`` values (paper Table 1 rows SFT and SFT + CoT)
TARGETS = ("answer", "cot")
#: (target, prompt mode) pairs that contradict each other
CONFLICTING_MODES = {("answer", "think"): "always think", ("cot", "direct"): "never think"}
DEVICES = ("cpu", "cuda", "npu")
#: the prompt mode the demo's synthetic set is built in (main_grpo's default)
SYNTHETIC_PROMPT_MODE = "adaptive"


@dataclass(frozen=True)
class SFTSection:
    """``audio_thinker.sft``: what the SFT baseline trains on."""

    #: answer: ``<answer>{gold}</answer>`` | cot: ``<think>{rationale}</think><answer>{gold}</answer>``
    target: str = "answer"
    #: ``extra_info`` key of the CoT rationale (written by ``python -m audio_thinker.data.cot``)
    rationale_key: str = "rationale"
    #: write template rationales of ``toy.synthetic_data`` here before training (CPU recipe)
    template_cot_data: str | None = None


def load_sections(config: DictConfig) -> tuple[AudioThinkerConfig, SFTSection, ToySection]:
    """The validated ``audio_thinker`` section, its ``sft`` subsection and the ``toy`` section."""
    section = OmegaConf.to_container(config.get("audio_thinker") or {}, resolve=True)
    sft = build_section(SFTSection, section.pop("sft", None) or {}, "", root="audio_thinker.sft")
    return load_config(section), sft, ToySection.load(config.get("toy"))


def _total_processes(config: DictConfig) -> int:
    return int(config.trainer.nnodes) * int(config.trainer.n_gpus_per_node)


def validate(config: DictConfig) -> None:
    """Fail fast on our keys and on the verl keys the audio SFT depends on."""
    ours, sft, toy = load_sections(config)
    if sft.target not in TARGETS:
        raise ConfigError(f"audio_thinker.sft.target={sft.target!r}: use one of {', '.join(TARGETS)}")
    conflict = CONFLICTING_MODES.get((sft.target, ours.prompt_mode))
    if conflict:
        fix = "direct (or adaptive)" if sft.target == "answer" else "think (or adaptive)"
        raise ConfigError(
            f"audio_thinker.sft.target={sft.target} with audio_thinker.prompt_mode={ours.prompt_mode}: the "
            f"prompt tells the model to {conflict}, the target does the opposite; set "
            f"audio_thinker.prompt_mode={fix}"
        )
    if sft.template_cot_data and not toy.synthetic_data:
        raise ConfigError(
            "audio_thinker.sft.template_cot_data writes rationales for toy.synthetic_data: "
            "set both (or audio_thinker.sft.template_cot_data=null)"
        )
    data = config.data
    custom = (data.custom_cls.get("path"), data.custom_cls.get("name"))
    if custom != DATASET_CLS:
        raise ConfigError(
            f"data.custom_cls={custom}: verl's own SFT data sets drop audio; keep "
            f"data.custom_cls.path={DATASET_CLS[0]} data.custom_cls.name={DATASET_CLS[1]}"
        )
    if data.pad_mode != "no_padding":
        raise ConfigError(f"data.pad_mode={data.pad_mode}: verl's FSDP engine trains SFT with no_padding "
                          "only; set data.pad_mode=no_padding")
    if not data.train_files:
        raise ConfigError("data.train_files is empty: name the training parquet(s) (rows of the schema "
                          "in audio_thinker.data.rows)")
    if not int(data.max_length) > 0:
        raise ConfigError(f"data.max_length={data.max_length} must be positive")
    processes = _total_processes(config)
    if processes < 1:
        raise ConfigError("trainer.nnodes and trainer.n_gpus_per_node must be >= 1")
    if int(data.train_batch_size) % processes:
        raise ConfigError(
            f"data.train_batch_size={data.train_batch_size} must be a multiple of the number of processes "
            f"(trainer.nnodes x trainer.n_gpus_per_node = {processes})"
        )
    steps, epochs = config.trainer.total_training_steps, config.trainer.total_epochs
    if (steps is not None and int(steps) < 1) or (steps is None and int(epochs) < 1):
        raise ConfigError("set trainer.total_epochs >= 1 or trainer.total_training_steps >= 1")
    test_freq = config.trainer.test_freq
    validates = test_freq == "after_each_epoch" or (isinstance(test_freq, int) and test_freq > 0)
    if not data.val_files and validates:
        raise ConfigError(f"trainer.test_freq={test_freq} validates on data.val_files, which is empty: "
                          "set data.val_files or trainer.test_freq=-1")
    device = str(config.trainer.device)
    if device not in DEVICES:
        raise ConfigError(f"trainer.device={device}: use one of {', '.join(DEVICES)}")
    if device == "cpu":
        if config.engine.strategy != "fsdp2":
            raise ConfigError(f"engine.strategy={config.engine.strategy}: the CPU engines run fsdp2 only")
        if int(config.trainer.nnodes) != 1:
            raise ConfigError("trainer.device=cpu runs on one machine: set trainer.nnodes=1")


# -- preparation -----------------------------------------------------------------------------------


def prepare(toy: ToySection, sft: SFTSection) -> None:
    """Build the demo assets (synthetic data, tiny model) and the template CoT rows the config names,
    if missing."""
    from audio_thinker.toy.prepare import prepare as prepare_toy

    # AudioSFTDataset rewrites every prompt for its own mode, so the synthetic set is built in the
    # generator's default (adaptive) mode: the same folder `make demo` builds, never rebuilt here
    prepare_toy(toy, prompt_mode=SYNTHETIC_PROMPT_MODE)
    if sft.template_cot_data:
        from audio_thinker.data.template_cot import write_template_cot

        assert toy.synthetic_data  # checked by validate
        files = write_template_cot(toy.synthetic_data, sft.template_cot_data)
        print(f"prepare: template CoT rows in {', '.join(map(str, files))}")


# -- one rank --------------------------------------------------------------------------------------


def _init_process_group(device: str) -> None:
    """verl's ``initialize_global_process_group`` for GPUs; plain gloo on the CPU platform.

    On the CPU a job this process launched itself (one process, ``MASTER_ADDR=127.0.0.1``) opens its
    group with the CPU backend's :func:`~audio_thinker.backends.cpu.engine.init_gloo_process_group`
    (the one GRPO's workers use): its store and gloo pairs listen on loopback only, where torch's own
    rendezvous would listen on every interface. Under torchrun the group joins torchrun's store.
    """
    import torch.distributed

    if device == "cpu":
        if os.environ.get("TORCHELASTIC_USE_AGENT_STORE"):
            torch.distributed.init_process_group(backend="gloo", init_method=os.environ.get("DIST_INIT_METHOD"))
        else:
            from audio_thinker.backends.cpu.engine import init_gloo_process_group

            init_gloo_process_group()
    else:
        from verl.utils.distributed import initialize_global_process_group

        initialize_global_process_group()


def _use_cpu_platform() -> None:
    """Select verl's ``cpu`` platform in this process (before verl resolves its platform)."""
    os.environ["VERL_PLATFORM"] = "cpu"
    from audio_thinker.backends.cpu import register_cpu_backend
    from audio_thinker.backends.cpu.platform import check_cpu_platform_selected

    register_cpu_backend(rollout=False)
    check_cpu_platform_selected()


def run_rank(config: DictConfig) -> int:
    """verl's ``run_sft`` for one rank (module docstring); returns the exit status."""
    import torch.distributed

    device = str(config.trainer.device)
    if device == "cpu":
        _use_cpu_platform()
    _init_process_group(device)
    rank = torch.distributed.get_rank()
    metrics_file, planned = None, None
    try:
        if rank == 0:
            _, sft, toy = load_sections(config)
            prepare(toy, sft)
            metrics_file = _configure_metrics(config)
        torch.distributed.barrier()
        from verl.trainer.sft_trainer import SFTTrainer

        trainer = SFTTrainer(config=config)
        planned = int(trainer.total_training_steps)
        trainer.fit()
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    return report(config, metrics_file, planned_steps=planned) if rank == 0 else 0


def _configure_metrics(config: DictConfig) -> Path | None:
    """A fresh metric file for verl's ``file`` logger under the run directory (rank 0 logs)."""
    if "file" not in list(config.trainer.logger or []):
        return None
    if os.environ.get("VERL_FILE_LOGGER_PATH"):
        return Path(os.environ["VERL_FILE_LOGGER_PATH"])
    from audio_thinker.run_summary import new_metrics_file

    path = new_metrics_file(Path(str(config.trainer.default_local_dir)).absolute())
    os.environ["VERL_FILE_LOGGER_PATH"] = str(path)
    return path


def _span(points: list[tuple[int, float]]) -> str:
    (first_step, first), (last_step, last) = points[0], points[-1]
    return f"step {first_step}: {first:.4f} -> step {last_step}: {last:.4f}"


def report(config: DictConfig, metrics_file: Path | None, *, planned_steps: int | None = None) -> int:
    """Print what the run did; 1 when it logged fewer training steps than planned."""
    from audio_thinker.run_summary import load_history, metric_files, series

    run_dir = Path(str(config.trainer.default_local_dir)).absolute()
    paths = metric_files(run_dir)
    if metrics_file is not None and metrics_file not in paths and metrics_file.exists():
        paths.append(metrics_file)
    history = load_history(paths)
    loss, val = series(history, "train/loss"), series(history, "val/loss")
    checkpoint = latest_checkpoint(run_dir)
    lines = [f"== SFT run {config.trainer.experiment_name} ({config.audio_thinker.sft.target} targets) =="]
    if loss:
        lines.append(f"train/loss  {_span(loss)}")
    if val:
        lines.append(f"val/loss    {_span(val)}")
    if checkpoint:
        lines.append(f"checkpoint  {checkpoint}")
        lines.append(f"evaluate:   python -m audio_thinker.evaluate model.path={run_dir} "
                     f"prompt_mode={config.audio_thinker.prompt_mode}")
    lines.append(f"metrics     {', '.join(map(str, paths)) or 'none'}")
    print("\n".join(lines))
    if metrics_file is None:
        return 0
    expected = planned_steps if planned_steps is not None else config.trainer.total_training_steps
    last = loss[-1][0] if loss else None
    if expected is not None and (last is None or last < expected):
        print(f"error: the run logged training steps up to {last} of {expected}", file=sys.stderr)
        return 1
    return 0


# -- launch ----------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def local_process_env() -> dict[str, str]:
    """The torch.distributed variables of a one-process job launched without torchrun: rank 0 of 1,
    its store on a free loopback port."""
    return {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "LOCAL_WORLD_SIZE": "1",
            "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port())}


def launch(config: DictConfig, argv: list[str]) -> int:
    """Run in this process (under torchrun, or a one-process job) or re-launch under torchrun."""
    if "RANK" in os.environ:
        return run_rank(config)
    processes = _total_processes(config)
    if processes == 1:
        os.environ.update(local_process_env())
        return run_rank(config)
    nodes, per_node = int(config.trainer.nnodes), int(config.trainer.n_gpus_per_node)
    if nodes > 1:
        print(
            f"error: a {nodes}-node job is started on every node by torchrun, e.g.\n  torchrun "
            f"--nnodes={nodes} --nproc_per_node={per_node} --node_rank=<0..{nodes - 1}> --rdzv_backend=c10d "
            f"--rdzv_endpoint=<head:port> -m audio_thinker.main_sft {' '.join(argv)}", file=sys.stderr,
        )
        return 2
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={per_node}",
               "-m", "audio_thinker.main_sft", *argv]
    print("launching:", " ".join(command))
    return subprocess.call(command)


@hydra.main(config_path=CONFIG_DIR, config_name=CONFIG_NAME, version_base=None)
def main(config: DictConfig) -> None:
    if not check_or_exit(config, validate):
        return
    sys.exit(launch(config, sys.argv[1:]))


if __name__ == "__main__":
    main()
