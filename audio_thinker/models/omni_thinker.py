"""Convert a full Qwen2.5-Omni checkpoint into a thinker-only checkpoint verl can train.

The full ``Qwen2_5OmniForConditionalGeneration`` (thinker + talker + token2wav) has no
``forward``; Audio-Thinker trains only the thinker (audio/vision encoders + the language model
that writes text). This tool streams the ``thinker.*`` tensors shard by shard (never loading the
whole model), strips the prefix, and writes::

    OUT/config.json              Qwen2_5OmniThinkerConfig (architectures: the thinker class)
    OUT/model-0000i-of-0000n.safetensors + model.safetensors.index.json
    OUT/<processor + tokenizer files>   copied from the source directory
    OUT/generation_config.json   when the source has one

    python -m audio_thinker.models.omni_thinker --src /models/Qwen2.5-Omni-7B --out /models/omni-thinker

The output loads with ``Qwen2_5OmniThinkerForConditionalGeneration.from_pretrained(OUT)`` and
through verl's own model helpers (``AutoModelForImageTextToText`` maps the thinker config).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

PREFIX = "thinker."
THINKER_ARCH = "Qwen2_5OmniThinkerForConditionalGeneration"
#: non-weight files copied as they are (processor, tokenizer, templates)
COPIED_SUFFIXES = (".txt", ".jinja", ".model", ".tiktoken")
COPIED_NAMES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
    "vocab.json", "merges.txt", "preprocessor_config.json", "processor_config.json",
    "chat_template.json", "chat_template.jinja", "video_preprocessor_config.json",
    "generation_config.json",
)


def _shards(src: Path) -> list[Path]:
    index = src / "model.safetensors.index.json"
    if index.exists():
        names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return [src / name for name in names]
    single = src / "model.safetensors"
    if single.exists():
        return [single]
    raise FileNotFoundError(f"{src}: no model.safetensors or model.safetensors.index.json found")


def thinker_config(src: Path) -> dict:
    """The thinker's config dict from a full Omni ``config.json`` (already-thinker configs pass)."""
    config = json.loads((src / "config.json").read_text())
    model_type = config.get("model_type")
    if model_type == "qwen2_5_omni_thinker":
        return config
    if model_type != "qwen2_5_omni" or "thinker_config" not in config:
        raise ValueError(
            f"{src}/config.json has model_type={model_type!r}: expected a full Qwen2.5-Omni checkpoint "
            "(model_type 'qwen2_5_omni' with a thinker_config)"
        )
    thinker = dict(config["thinker_config"])
    thinker["model_type"] = "qwen2_5_omni_thinker"
    thinker["architectures"] = [THINKER_ARCH]
    for key in ("torch_dtype", "dtype", "transformers_version"):
        if key in config and key not in thinker:
            thinker[key] = config[key]
    return thinker


def convert(src: str | Path, out: str | Path, *, overwrite: bool = False) -> Path:
    """Write the thinker-only checkpoint of ``src`` to ``out``; returns ``out``."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    src, out = Path(src), Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} is not empty: pass --overwrite to replace it")
    config = thinker_config(src)
    shards = _shards(src)
    out.mkdir(parents=True, exist_ok=True)
    weight_map: dict[str, str] = {}
    total_size = 0
    kept_shards = [s for s in shards if _has_thinker_tensors(s, safe_open)]
    if not kept_shards:
        raise ValueError(f"{src}: no tensor name starts with {PREFIX!r}; is this a Qwen2.5-Omni checkpoint?")
    for number, shard in enumerate(kept_shards, start=1):
        name = f"model-{number:05d}-of-{len(kept_shards):05d}.safetensors"
        tensors = {}
        with safe_open(str(shard), framework="pt") as handle:
            for key in handle.keys():
                if key.startswith(PREFIX):
                    tensors[key[len(PREFIX):]] = handle.get_tensor(key)
        save_file(tensors, str(out / name), metadata={"format": "pt"})
        for key, tensor in tensors.items():
            weight_map[key] = name
            total_size += tensor.numel() * tensor.element_size()
        print(f"[{number}/{len(kept_shards)}] {shard.name}: {len(tensors)} thinker tensors -> {name}")
    index = {"metadata": {"total_size": total_size}, "weight_map": dict(sorted(weight_map.items()))}
    (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    (out / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
    for path in src.iterdir():
        if path.name in COPIED_NAMES or (path.suffix in COPIED_SUFFIXES and path.is_file()):
            shutil.copy2(path, out / path.name)
    return out


def _has_thinker_tensors(shard: Path, safe_open) -> bool:
    with safe_open(str(shard), framework="pt") as handle:
        return any(key.startswith(PREFIX) for key in handle.keys())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", required=True, type=Path, help="full Qwen2.5-Omni checkpoint directory")
    parser.add_argument("--out", required=True, type=Path, help="output directory (thinker only)")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    try:
        out = convert(args.src, args.out, overwrite=args.overwrite)
    except (FileNotFoundError, FileExistsError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"thinker-only checkpoint written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
