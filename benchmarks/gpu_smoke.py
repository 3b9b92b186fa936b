"""GPU smoke run of the two real backbones: memory and time of one actor micro-batch step.

Builds randomly initialised, real-size ``Qwen2AudioForConditionalGeneration``
(Qwen2-Audio-7B-Instruct) and ``Qwen2_5OmniThinkerForConditionalGeneration`` (the thinker of
Qwen2.5-Omni-7B) from the published configs in ``tests/data/real_configs/``, directly on the
device in bf16, and measures peak memory (``torch.cuda.max_memory_allocated``) and seconds per
step for what verl's actor does on one GPU:

* ``train_ckpt``   forward + backward of one actor micro-batch with gradient checkpointing on
  (verl enables it: ``enable_gradient_checkpointing: true`` in the GPU backbones);
* ``train_nockpt`` the same with checkpointing off;
* ``logprob_fwd``  the forward-only log-prob pass (old/ref log-probs) at the log-prob micro-batch;
* ``weights``      the bf16 weights alone, and ``adamw_est`` the fp32 AdamW state estimate
  (params x 12 B: fp32 master weights + exp_avg + exp_avg_sq), both computed, not timed.

Micro-batch sizes and lengths come from the GPU recipes (``conf/backbone/<model>.yaml``:
``ppo_micro_batch_size_per_gpu``, ``log_prob_micro_batch_size_per_gpu``, ``max_prompt_length`` +
``max_response_length``) and the clip length from ``conf/audio_thinker_grpo.yaml``
(``audio_thinker.audio.max_seconds``: 30 s = 3000 mel frames = 750 audio tokens). Every sequence
is full length (no padding, the worst case): ``<|audio_bos|>``, the audio placeholder token
repeated once per audio token (as the processors expand it), ``<|audio_eos|>``, random text up to
``max_prompt_length``, then ``max_response_length`` response tokens whose log-probs are taken the
way verl does (logits of the response positions -> fp32 ``log_softmax`` -> gather).

Needs only torch and transformers (no verl, Ray or vLLM; nothing from ``audio_thinker``), so it
runs on a bare CUDA machine from the repository root::

    python benchmarks/gpu_smoke.py --device cuda --json gpu_smoke.json
    python benchmarks/gpu_smoke.py --tiny --device cpu          # 2-layer, narrow configs, seconds

It prints one table row per (model, mode) with the README's planned figure ("GPU memory plans")
next to it. Measured on one GPU without FSDP: "act" is peak minus the bf16 weights (and minus the
bf16 gradients in the train modes), i.e. activations + logits, the README's "actor activations"
row.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
REAL_CONFIGS = REPO / "tests" / "data" / "real_configs"
BACKBONE_DIR = REPO / "conf" / "backbone"
BASE_CONFIG = REPO / "conf" / "audio_thinker_grpo.yaml"
#: Whisper features: 100 mel frames per second (hop 160 at 16 kHz).
MEL_FRAMES_PER_SECOND = 100
#: AdamW state in fp32: master weights + exp_avg + exp_avg_sq.
ADAMW_BYTES_PER_PARAM = 12
GIB = 1024**3
GB = 1e9


@dataclass(frozen=True)
class ModelSpec:
    """One backbone: its transformers class, published config and GPU recipe."""

    name: str
    class_name: str
    config_file: str
    sub_config: str | None
    backbone_yaml: str
    #: the README's planned figures (section "GPU memory plans"), keyed by mode
    plan: dict[str, str] = field(default_factory=dict)


MODELS: dict[str, ModelSpec] = {
    "qwen2_audio": ModelSpec(
        name="qwen2_audio", class_name="Qwen2AudioForConditionalGeneration",
        config_file="qwen2_audio_7b_instruct.json", sub_config=None, backbone_yaml="qwen2_audio_7b.yaml",
        plan={
            "weights": "8.40 B params; vLLM weights 16.8 GB",
            "train_ckpt": "act+logits ~10-15 GB",
            "adamw_est": "16 B/param / G: 16.8 GB (G=8)",
        },
    ),
    "omni_thinker": ModelSpec(
        name="omni_thinker", class_name="Qwen2_5OmniThinkerForConditionalGeneration",
        config_file="qwen2_5_omni_7b.json", sub_config="thinker_config", backbone_yaml="qwen2_5_omni_7b.yaml",
        plan={
            "weights": "~8.9 B params; bf16 2 B/param",
            "train_ckpt": "act+logits ~10-15 GB",
            "adamw_est": "16 B/param / G: 17.8 GB (G=8)",
        },
    ),
}


@dataclass(frozen=True)
class Shapes:
    """Micro-batch sizes and lengths of one run (from the recipe, or the --tiny ones)."""

    micro_batch: int
    logprob_micro_batch: int
    prompt_len: int
    response_len: int
    mel_frames: int

    @property
    def seq_len(self) -> int:
        return self.prompt_len + self.response_len

    @property
    def audio_tokens(self) -> int:
        """Audio placeholder tokens of one clip: conv stride 2, then pooling by 2 (both encoders)."""
        after_conv = (self.mel_frames - 1) // 2 + 1
        return (after_conv - 2) // 2 + 1


@dataclass
class Row:
    """One line of the table (and of the JSON ``rows``)."""

    model: str
    mode: str
    batch: int | None = None
    seq: int | None = None
    audio_tokens: int | None = None
    params: int | None = None
    peak_gib: float | None = None
    act_gb: float | None = None
    seconds_per_step: float | None = None
    step_seconds: list[float] = field(default_factory=list)
    loss: float | None = None
    mean_logprob: float | None = None
    audio_grad_norm: float | None = None
    measured: str = ""
    planned: str = ""
    error: str | None = None


# ----------------------------------------------------------------------------------------------
# Recipe values and configs
# ----------------------------------------------------------------------------------------------

def _dig(tree: dict, dotted: str, source: Path) -> Any:
    node: Any = tree
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(f"{source}: no key {dotted!r}; pass the value on the command line instead")
        node = node[part]
    return node


def read_recipe_shapes(spec: ModelSpec) -> Shapes:
    """The micro-batch sizes and lengths the GPU recipe of ``spec`` trains with."""
    import yaml

    path = BACKBONE_DIR / spec.backbone_yaml
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run from a checkout, or pass --micro-batch, "
                                "--logprob-micro-batch, --prompt-len, --response-len and --audio-seconds")
    recipe = yaml.safe_load(path.read_text())
    base = yaml.safe_load(BASE_CONFIG.read_text()) if BASE_CONFIG.exists() else {}
    arr = "actor_rollout_ref"
    logprob = max(_dig(recipe, f"{arr}.rollout.log_prob_micro_batch_size_per_gpu", path),
                  _dig(recipe, f"{arr}.ref.log_prob_micro_batch_size_per_gpu", path))
    seconds = float(_dig(base, "audio_thinker.audio.max_seconds", BASE_CONFIG)) if base else 30.0
    return Shapes(
        micro_batch=int(_dig(recipe, f"{arr}.actor.ppo_micro_batch_size_per_gpu", path)),
        logprob_micro_batch=int(logprob),
        prompt_len=int(_dig(recipe, "data.max_prompt_length", path)),
        response_len=int(_dig(recipe, "data.max_response_length", path)),
        mel_frames=int(round(seconds * MEL_FRAMES_PER_SECOND)),
    )


#: --tiny: text 64 wide x 2 layers, audio 64 wide x 2 layers, vision 32 wide x 2 layers, 1024 ids.
TINY_VOCAB = 1024
TINY_FIRST_SPECIAL = 900
_REAL_FIRST_SPECIAL = 151643
_TINY_TEXT = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
              "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": TINY_VOCAB,
              "max_window_layers": 2}
_TINY_AUDIO = {"d_model": 64, "encoder_ffn_dim": 128, "encoder_layers": 2, "encoder_attention_heads": 4}
_TINY_VISION = {"depth": 2, "hidden_size": 32, "embed_dim": 32, "num_heads": 2, "intermediate_size": 64,
                "fullatt_block_indexes": [1]}


def _remap_ids(tree: Any) -> Any:
    """Special-token ids >= 151643 moved below ``TINY_VOCAB`` (same offsets from the first one)."""
    if isinstance(tree, dict):
        return {k: (_remap_ids(v) if k.endswith(("_id", "_index", "_ids")) or isinstance(v, dict) else v)
                for k, v in tree.items()}
    if isinstance(tree, int) and not isinstance(tree, bool) and tree >= _REAL_FIRST_SPECIAL:
        return TINY_FIRST_SPECIAL + tree - _REAL_FIRST_SPECIAL
    return tree


def shrink_config(model_config: dict, *, mel_frames: int) -> dict:
    """``model_config`` (a model's own config dict) scaled down for CPU runs: same structure.

    Qwen2-Audio's encoder takes exactly ``2 * max_source_positions`` mel frames, so that one
    follows the clip length (``mel_frames``) instead of staying at 1500 (a 30 s clip).
    """
    out = _remap_ids(json.loads(json.dumps(model_config)))
    out["text_config"].update(_TINY_TEXT)
    rope = out["text_config"].get("rope_scaling") or {}
    if "mrope_section" in rope:
        rope["mrope_section"] = [2, 3, 3]  # sums to head_dim / 2 = 64 / 4 / 2
    audio = out["audio_config"]
    audio.update(_TINY_AUDIO)
    if "num_hidden_layers" in audio:  # an alias of encoder_layers some configs also carry
        audio["num_hidden_layers"] = audio["encoder_layers"]
    if "output_dim" in audio:
        audio["output_dim"] = _TINY_TEXT["hidden_size"]
    else:
        audio["max_source_positions"] = mel_frames // 2
    if "vision_config" in out:
        out["vision_config"].update(_TINY_VISION, out_hidden_size=_TINY_TEXT["hidden_size"])
    if "vocab_size" in out:
        out["vocab_size"] = TINY_VOCAB
    return out


def tiny_shapes(recipe: Shapes) -> Shapes:
    """The recipe's micro-batch sizes with a 1 s clip (25 audio tokens) and 64 + 32 tokens."""
    return Shapes(micro_batch=recipe.micro_batch, logprob_micro_batch=recipe.logprob_micro_batch,
                  prompt_len=64, response_len=32, mel_frames=MEL_FRAMES_PER_SECOND)


def load_model_config(spec: ModelSpec, *, tiny: bool, mel_frames: int = 3000) -> Any:
    """The transformers config object of the model ``spec`` builds (the thinker for Omni)."""
    from transformers import AutoConfig

    full = json.loads((REAL_CONFIGS / spec.config_file).read_text())
    own = full[spec.sub_config] if spec.sub_config else full
    own = {k: v for k, v in own.items() if k not in ("architectures", "transformers_version")}
    if tiny:
        own = shrink_config(own, mel_frames=mel_frames)
    model_type = own.pop("model_type")
    return AutoConfig.for_model(model_type, **own)


# ----------------------------------------------------------------------------------------------
# Inputs and steps
# ----------------------------------------------------------------------------------------------

def make_batch(config: Any, shapes: Shapes, batch: int, *, device: Any, dtype: Any, seed: int) -> dict:
    """A full-length micro-batch: one clip per row, its placeholder expanded, random text.

    Layout of each row (``prompt_len + response_len`` tokens, no padding)::

        text[:8] <|audio_bos|> <|AUDIO|> x audio_tokens <|audio_eos|> text ... | response

    ``input_features``: ``(batch, num_mel_bins, mel_frames)`` in ``dtype``;
    ``feature_attention_mask``: ``(batch, mel_frames)`` ones.
    """
    import torch

    audio_id = int(config.audio_token_index)
    n_audio, start = shapes.audio_tokens, 8
    if start + n_audio + 2 > shapes.prompt_len:
        raise ValueError(f"{n_audio} audio tokens do not fit a {shapes.prompt_len}-token prompt")
    gen = torch.Generator().manual_seed(seed)
    text_hi = audio_id - 3  # ids below the first special token (<|endoftext|>) are plain text
    ids = torch.randint(0, text_hi, (batch, shapes.seq_len), generator=gen)
    ids[:, start] = audio_id + 1  # <|audio_bos|>
    ids[:, start + 1:start + 1 + n_audio] = audio_id
    ids[:, start + 1 + n_audio] = audio_id + 2  # <|audio_eos|>
    mel_bins = int(config.audio_config.num_mel_bins)
    features = torch.randn(batch, mel_bins, shapes.mel_frames, generator=gen)
    return {
        "input_ids": ids.to(device),
        "attention_mask": torch.ones_like(ids).to(device),
        "input_features": features.to(device=device, dtype=dtype),
        "feature_attention_mask": torch.ones(batch, shapes.mel_frames, dtype=torch.long).to(device),
    }


def response_logprobs(model: Any, inputs: dict, response_len: int) -> Any:
    """``(batch, response_len)`` log-probs of the response tokens, as verl's actor computes them."""
    import torch

    logits = model(**inputs, use_cache=False).logits
    response_logits = logits[:, -response_len - 1:-1].float()
    responses = inputs["input_ids"][:, -response_len:]
    return torch.log_softmax(response_logits, dim=-1).gather(-1, responses.unsqueeze(-1)).squeeze(-1)


def _grad_norm(module: Any) -> float:
    norms = [p.grad.float().norm() ** 2 for p in module.parameters() if p.grad is not None]
    return float(sum(norms) ** 0.5) if norms else 0.0


def _audio_tower(model: Any) -> Any:
    """The audio encoder: a top-level attribute in transformers 5.9, under ``model.model`` in later releases."""
    for owner in (model, getattr(model, "model", None)):
        tower = getattr(owner, "audio_tower", None)
        if tower is not None:
            return tower
    raise AttributeError(f"{type(model).__name__} has no audio_tower (looked at the model and model.model)")


def train_step(model: Any, inputs: dict, response_len: int) -> dict:
    """Forward + backward of one micro-batch (loss: minus the mean response log-prob)."""
    model.zero_grad(set_to_none=True)
    logprobs = response_logprobs(model, inputs, response_len)
    loss = -logprobs.mean()
    loss.backward()
    return {"loss": float(loss.detach()), "mean_logprob": float(logprobs.detach().mean()),
            "audio_grad_norm": _grad_norm(_audio_tower(model))}


def logprob_step(model: Any, inputs: dict, response_len: int) -> dict:
    """The forward-only log-prob pass (no autograd graph)."""
    import torch

    with torch.no_grad():
        logprobs = response_logprobs(model, inputs, response_len)
    return {"mean_logprob": float(logprobs.mean())}


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(step: Callable[[], dict], *, device: Any, warmup: int, repeats: int) -> tuple[list[float], float | None, dict]:
    """Seconds of each of ``repeats`` steps after ``warmup`` ones, peak bytes (CUDA only), last result."""
    import torch

    if device.type == "cuda":
        _sync(device)
        torch.cuda.reset_peak_memory_stats(device)
    result: dict = {}
    times = []
    for i in range(warmup + repeats):
        start = time.perf_counter()
        result = step()
        _sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    peak = float(torch.cuda.max_memory_allocated(device)) if device.type == "cuda" else None
    return times, peak, result


# ----------------------------------------------------------------------------------------------
# One model
# ----------------------------------------------------------------------------------------------

def build_model(spec: ModelSpec, config: Any, *, device: Any, dtype: Any) -> Any:
    """The randomly initialised model, allocated directly on ``device`` in ``dtype``."""
    import torch
    import transformers

    cls = getattr(transformers, spec.class_name)
    with torch.device(device):
        model = cls._from_config(config, dtype=dtype, attn_implementation="sdpa")
    model.config.use_cache = False
    return model


def _mode_row(spec: ModelSpec, mode: str, *, batch: int, shapes: Shapes, params: int, weight_bytes: int,
              times: list[float], peak: float | None, result: dict) -> Row:
    grads = weight_bytes if mode.startswith("train") else 0
    act = None if peak is None else (peak - weight_bytes - grads) / GB
    return Row(
        model=spec.name, mode=mode, batch=batch, seq=shapes.seq_len, audio_tokens=shapes.audio_tokens,
        params=params, peak_gib=None if peak is None else peak / GIB, act_gb=act,
        seconds_per_step=statistics.median(times), step_seconds=times, loss=result.get("loss"),
        mean_logprob=result.get("mean_logprob"), audio_grad_norm=result.get("audio_grad_norm"),
        measured="" if act is None else f"act+logits {act:.1f} GB", planned=spec.plan.get(mode, "-"),
    )


def _count(params: int) -> str:
    return f"{params / 1e9:.2f} B" if params >= 1e8 else f"{params / 1e6:.2f} M"


def _static_rows(spec: ModelSpec, params: int, weight_bytes: int) -> list[Row]:
    adamw = params * ADAMW_BYTES_PER_PARAM
    return [
        Row(model=spec.name, mode="weights", params=params, peak_gib=weight_bytes / GIB,
            measured=f"{_count(params)} params, {weight_bytes / GB:.1f} GB", planned=spec.plan["weights"]),
        Row(model=spec.name, mode="adamw_est", params=params, peak_gib=adamw / GIB,
            measured=f"12 B/param {adamw / GB:.1f} GB; 16 B/param / 8 = {params * 16 / 8 / GB:.2f} GB",
            planned=spec.plan["adamw_est"]),
    ]


def run_model(spec: ModelSpec, shapes: Shapes, *, device: Any, dtype: Any, tiny: bool,
              warmup: int, repeats: int, log: Callable[[str], None]) -> list[Row]:
    """Every row of one model; the model is freed before returning."""
    import torch

    config = load_model_config(spec, tiny=tiny, mel_frames=shapes.mel_frames)
    start = time.perf_counter()
    model = build_model(spec, config, device=device, dtype=dtype)
    params = sum(p.numel() for p in model.parameters())
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    log(f"{spec.name}: built {_count(params)} params on {device} in {time.perf_counter() - start:.1f} s")
    rows = _static_rows(spec, params, weight_bytes)
    plan = [("train_ckpt", shapes.micro_batch, train_step, True),
            ("train_nockpt", shapes.micro_batch, train_step, False),
            ("logprob_fwd", shapes.logprob_micro_batch, logprob_step, False)]
    for mode, batch, step, ckpt in plan:
        if ckpt:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_disable()
        model.train(mode.startswith("train"))
        inputs = make_batch(config, shapes, batch, device=device, dtype=dtype, seed=0)
        try:
            times, peak, result = measure(lambda: step(model, inputs, shapes.response_len),
                                          device=device, warmup=warmup, repeats=repeats)
            row = _mode_row(spec, mode, batch=batch, shapes=shapes, params=params, weight_bytes=weight_bytes,
                            times=times, peak=peak, result=result)
        except torch.cuda.OutOfMemoryError as exc:
            row = Row(model=spec.name, mode=mode, batch=batch, seq=shapes.seq_len, params=params,
                      planned=spec.plan.get(mode, "-"), error=f"OOM: {str(exc).splitlines()[0][:120]}")
            gc.collect()
            torch.cuda.empty_cache()
        model.zero_grad(set_to_none=True)
        del inputs
        rows.append(row)
        log(f"  {mode}: {row.error or f'{row.seconds_per_step:.2f} s/step'}")
    del model
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return rows


# ----------------------------------------------------------------------------------------------
# Report and entry point
# ----------------------------------------------------------------------------------------------

def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def format_table(rows: Sequence[Row]) -> str:
    """The rows as a Markdown table (peak in GiB; the README's figures are decimal GB)."""
    head = ["model", "mode", "batch x seq", "peak GiB", "s/step", "measured", "README plan"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        shape = f"{r.batch} x {r.seq}" if r.batch else "-"
        cells = [r.model, r.mode, shape, _fmt(r.peak_gib, ".2f"), _fmt(r.seconds_per_step, ".3f"),
                 r.error or r.measured or "-", r.planned or "-"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _environment(device: Any) -> dict:
    import torch
    import transformers

    env = {"torch": torch.__version__, "transformers": transformers.__version__, "device": str(device)}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update(gpu=props.name, gpu_total_gib=props.total_memory / GIB)
    return env


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="qwen2_audio,omni_thinker",
                        help=f"comma-separated, from: {', '.join(MODELS)}")
    parser.add_argument("--device", default="cuda", help="cuda | cuda:N | cpu")
    parser.add_argument("--tiny", action="store_true", help="2-layer narrow configs, 1 s clip, 96 tokens")
    parser.add_argument("--json", type=Path, help="write the rows and settings here")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", choices=("bfloat16", "float32"), help="default: bfloat16 on cuda, float32 on cpu")
    for name in ("micro-batch", "logprob-micro-batch", "prompt-len", "response-len"):
        parser.add_argument(f"--{name}", type=int, help="default: from conf/backbone/<model>.yaml")
    parser.add_argument("--audio-seconds", type=float, help="default: audio_thinker.audio.max_seconds")
    args = parser.parse_args(argv)
    unknown = [m for m in args.models.split(",") if m not in MODELS]
    if unknown:
        parser.error(f"unknown model(s) {unknown}: use {', '.join(MODELS)}")
    return args


def _shapes_for(spec: ModelSpec, args: argparse.Namespace) -> Shapes:
    shapes = read_recipe_shapes(spec)
    if args.tiny:
        shapes = tiny_shapes(shapes)
    overrides = {"micro_batch": args.micro_batch, "logprob_micro_batch": args.logprob_micro_batch,
                 "prompt_len": args.prompt_len, "response_len": args.response_len}
    if args.audio_seconds is not None:
        overrides["mel_frames"] = int(round(args.audio_seconds * MEL_FRAMES_PER_SECOND))
    values = {**asdict(shapes), **{k: v for k, v in overrides.items() if v is not None}}
    return Shapes(**values)


def main(argv: Sequence[str] | None = None) -> int:
    import torch

    args = _parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("CUDA is not available here: run with --device cpu --tiny, or on a GPU machine", file=sys.stderr)
        return 2
    dtype = getattr(torch, args.dtype or ("bfloat16" if device.type == "cuda" else "float32"))
    torch.manual_seed(0)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    started = time.perf_counter()
    rows: list[Row] = []
    settings = {}
    for name in args.models.split(","):
        spec = MODELS[name]
        shapes = _shapes_for(spec, args)
        settings[name] = {**asdict(shapes), "seq_len": shapes.seq_len, "audio_tokens": shapes.audio_tokens}
        rows += run_model(spec, shapes, device=device, dtype=dtype, tiny=args.tiny,
                          warmup=args.warmup, repeats=args.repeats, log=log)
    report = {"environment": _environment(device), "dtype": str(dtype).removeprefix("torch."),
              "tiny": args.tiny, "settings": settings, "rows": [asdict(r) for r in rows],
              "wall_seconds": time.perf_counter() - started}
    print(format_table(rows))
    print(f"\n{report['environment']}; dtype {report['dtype']}; {report['wall_seconds']:.0f} s in all")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 1 if any(r.error for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
