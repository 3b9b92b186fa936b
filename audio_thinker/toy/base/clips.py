"""Synthetic clips in memory -> what the base trains and is scored on: prompt ids and short mel windows.

Qwen2-Audio's encoder runs over a padded 30 s window (3000 mel frames, 1500 positions) and masks
the padding: an encoder run on a window just longer than the clip gives the same audio embeddings
(:func:`encode_window`; a test compares it with the model's own forward). Clips of the synthetic
tasks last 1-3 s, so this makes the audio path ~10x cheaper and lets it be trained.

* :func:`synthetic_clips` plans and synthesizes clips of one split of the synthetic tasks
  (:mod:`audio_thinker.data.synthetic_tasks`) without writing files, and builds the rows of the
  training schema for them (:func:`audio_thinker.data.synthetic.build_row`, audio path
  ``memory://...``).
* :func:`prepare_clips` turns them into :class:`Clip` records: the prompt ids exactly as the processor
  builds them for the rollout (adaptive prompt, chat template, expanded ``<|AUDIO|>`` slots: one
  processor call per distinct (question, choices, clip length), since the ids depend on nothing
  else) and the clip's mel features from the model's own ``WhisperFeatureExtractor``, cut to the
  valid frames plus a margin (equal to the padded 30 s features there; a test checks it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from audio_thinker.toy.warmstart.data import processor_inputs

__all__ = ["MEL_MARGIN", "Clip", "encode_window", "prepare_clips", "stack_windows", "synthetic_clips"]

#: Mel frames kept past a clip's valid frames (the encoder's two convolutions read up to 2 past
#: the last valid frame; the rest is masked).
MEL_MARGIN = 8
#: Zero samples appended before the short feature extraction, so the last frames see the same
#: zeros as in the padded 30 s input (more than the STFT window and the margin).
_ZERO_TAIL = 3200


@dataclass
class Clip:
    """One synthetic clip ready for the base: its row, prompt ids and mel window."""

    row: dict[str, Any]
    prompt_ids: Any  # LongTensor[P], <|AUDIO|> slots expanded
    mel: Any  # FloatTensor[n_mels, n_frames + MEL_MARGIN]
    n_frames: int  # valid mel frames (the processor's feature_attention_mask sum)


def synthetic_clips(*, seed: int, split: str, count: int) -> list[tuple[dict[str, Any], Any]]:
    """``(row, samples)`` for examples ``0..count-1`` of ``split`` with ``seed``: the very plans and
    audio :func:`audio_thinker.data.synthetic.generate_dataset` writes, kept in memory."""
    from audio_thinker.data.synthetic import build_row
    from audio_thinker.data.synthetic_tasks import plan_example, synthesize_example
    from audio_thinker.prompts import PromptMode

    out = []
    for index in range(count):
        plan = plan_example(seed=seed, split=split, index=index)
        row = build_row(plan, audio_path=f"memory://synthetic/{seed}/{split}/{index:06d}.wav", seed=seed,
                        prompt_mode=PromptMode.ADAPTIVE)
        out.append((row, synthesize_example(plan, seed=seed)))
    return out


def _short_features(feature_extractor: Any, samples: Any) -> Any:
    """The clip's mel features without the 30 s padding: ``[n_mels, frames]`` (frames > valid + margin)."""
    import numpy as np
    import torch

    padded = np.concatenate([np.asarray(samples, dtype=np.float32), np.zeros(_ZERO_TAIL, np.float32)])
    features = feature_extractor(padded, sampling_rate=feature_extractor.sampling_rate, padding="longest",
                                 return_tensors="np")["input_features"][0]
    return torch.from_numpy(np.ascontiguousarray(features))


def prepare_clips(processor: Any, pairs: Sequence[tuple[dict[str, Any], Any]]) -> list[Clip]:
    """:class:`Clip` records of ``(row, samples)`` pairs (see the module docstring)."""
    prompts: dict[tuple[Any, ...], tuple[Any, int]] = {}
    clips = []
    for row, samples in pairs:
        info = row["extra_info"]
        key = (info["question"], tuple(info["choices"]), len(samples))
        if key not in prompts:
            inputs = processor_inputs(processor, [row], [[samples]])
            ids = inputs["input_ids"][0][inputs["attention_mask"][0].bool()].clone()
            prompts[key] = (ids, int(inputs["feature_attention_mask"][0].sum()))
        ids, n_frames = prompts[key]
        mel = _short_features(processor.feature_extractor, samples)[:, : n_frames + MEL_MARGIN].clone()
        if mel.shape[1] < n_frames + MEL_MARGIN:
            raise ValueError(f"short features of {mel.shape[1]} frames for a clip of {n_frames} valid frames")
        clips.append(Clip(row=row, prompt_ids=ids, mel=mel, n_frames=n_frames))
    return clips


def stack_windows(clips: Sequence[Clip]) -> tuple[Any, Any]:
    """``[B, n_mels, W]`` mel windows (zero past each clip's margin, W even) and ``[B]`` valid frames."""
    import torch

    width = max(c.mel.shape[1] for c in clips)
    width += width % 2
    mel = torch.zeros(len(clips), clips[0].mel.shape[0], width)
    for i, clip in enumerate(clips):
        mel[i, :, : clip.mel.shape[1]] = clip.mel
    return mel, torch.tensor([c.n_frames for c in clips], dtype=torch.long)


def encode_window(audio_tower: Any, mel: Any, n_frames: Any) -> list[Any]:
    """The encoder's output for each clip, ``[n_audio_tokens_i, d_model]``, from short mel windows.

    ``mel``: ``[B, n_mels, W]`` (:func:`stack_windows`), ``n_frames``: ``[B]`` valid frames. The same
    computation as ``Qwen2AudioEncoder.forward`` inside ``Qwen2AudioForConditionalGeneration.forward``
    (convolutions, positions, padding-masked self-attention, pooling, layer norm) on ``W`` frames
    instead of 3000: the padding is masked there, so the valid outputs agree.
    """
    import torch
    from torch import nn
    from transformers.masking_utils import create_bidirectional_mask

    feat_lengths, out_lengths = audio_tower._get_feat_extract_output_lengths(n_frames)
    x = mel.to(dtype=audio_tower.conv1.weight.dtype)
    x = nn.functional.gelu(audio_tower.conv1(x))
    x = nn.functional.gelu(audio_tower.conv2(x)).permute(0, 2, 1)
    positions = x.shape[1]
    if positions > audio_tower.embed_positions.weight.shape[0]:
        raise ValueError(f"a window of {mel.shape[-1]} mel frames exceeds the encoder's 30 s")
    hidden = x + audio_tower.embed_positions.weight[:positions]
    valid = torch.arange(positions)[None, :] < feat_lengths[:, None]
    mask = create_bidirectional_mask(config=audio_tower.config, inputs_embeds=hidden[..., :1],
                                     attention_mask=valid.long())
    for layer in audio_tower.layers:
        hidden = layer(hidden, mask)
    hidden = audio_tower.avg_pooler(hidden.permute(0, 2, 1)).permute(0, 2, 1)
    hidden = audio_tower.layer_norm(hidden)
    return [hidden[i, : int(n)] for i, n in enumerate(out_lengths)]
