"""The base's supervised run: TRUE answers in both formats, the audio path on short mel windows.

One step: ``batch_size`` clips drawn in shuffled epochs, a fresh target per visit
(:func:`~audio_thinker.toy.base.options.build_base_target`), the audio embeddings of the clips
(encoder on short windows, :func:`~audio_thinker.toy.base.clips.encode_window`, then the
projector) scattered into the prompt, next-token loss on the response tokens only. A frozen encoder
(``encoder_lr=0``) runs once per clip before training. The optimiser is the demo builders' AdamW
loop (:func:`audio_thinker.toy.loop.fit`) with one parameter group per part of the model.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

from audio_thinker.toy.base.clips import Clip, encode_window, stack_windows
from audio_thinker.toy.base.options import BaseOptions, build_base_target
from audio_thinker.toy.loop import fit, loss_figures, warmup_then_decay
from audio_thinker.toy.warmstart.data import Example, collate
from audio_thinker.toy.warmstart.training import shuffled_batches

__all__ = ["AudioEmbedder", "param_groups", "response_logits", "train_base"]


def response_logits(model: Any, batch: Mapping[str, Any]) -> tuple[Any, Any]:
    """``(logits, labels)`` at the response tokens of ``batch`` (:func:`collate`'s output) only:
    ``[n_response_tokens, vocab]`` and ``[n_response_tokens]``. Numerically the model's logits at
    those positions; the language-model head runs on the response positions alone (most of a
    sequence is prompt, and the head is the widest matrix of the tiny model)."""
    causal_lm = model.language_model
    hidden = causal_lm.model(inputs_embeds=batch["inputs_embeds"], attention_mask=batch["attention_mask"])
    labels = batch["labels"][:, 1:]
    keep = labels != -100
    return causal_lm.lm_head(hidden.last_hidden_state[:, :-1][keep]).float(), labels[keep]


def param_groups(model: Any, options: BaseOptions) -> list[dict[str, Any]]:
    """AdamW groups: language model at ``lr``, projector at ``projector_lr``, encoder at ``encoder_lr``
    (its position table included); a part whose learning rate is 0 is frozen (``requires_grad`` off)
    and left out."""
    parts = [(model.language_model, options.lr), (model.multi_modal_projector, options.projector_lr),
             (model.audio_tower, options.encoder_lr)]
    groups = []
    for module, lr in parts:
        module.requires_grad_(lr > 0)
        params = [p for p in module.parameters() if p.requires_grad]
        if lr > 0 and params:
            groups.append({"params": params, "lr": lr})
    return groups


class AudioEmbedder:
    """What the language model receives at a clip's ``<|AUDIO|>`` slots, ``[n_audio_tokens, hidden]``.

    With a frozen encoder its outputs are computed once per clip (``cache=True``); otherwise every
    call runs it on the clips' short mel windows (with gradients when training).
    """

    def __init__(self, model: Any, clips: Sequence[Clip], *, cache: bool, chunk: int = 64) -> None:
        import torch

        self.model, self.clips = model, clips
        self.cached: list[Any] | None = None
        if cache:
            self.cached = []
            with torch.no_grad():
                for start in range(0, len(clips), chunk):
                    self.cached.extend(self._encode(range(start, min(start + chunk, len(clips)))))

    def _encode(self, indices: Sequence[int]) -> list[Any]:
        mel, n_frames = stack_windows([self.clips[i] for i in indices])
        return encode_window(self.model.audio_tower, mel, n_frames)

    def __call__(self, indices: Sequence[int]) -> list[Any]:
        import torch

        encoded = [self.cached[i] for i in indices] if self.cached is not None else self._encode(indices)
        projector = self.model.multi_modal_projector
        return list(projector(torch.cat(encoded)).split([len(e) for e in encoded]))


def train_base(
    model: Any, tokenizer: Any, clips: Sequence[Clip], options: BaseOptions, *, progress: bool
) -> dict[str, Any]:
    """Train ``model`` on TRUE-answer targets for ``clips`` (see the module docstring); loss figures."""
    import torch

    rng = random.Random(options.seed)
    torch.manual_seed(options.seed)
    groups = param_groups(model, options)
    embed = AudioEmbedder(model, clips, cache=options.encoder_lr == 0)
    pad_id = int(tokenizer.pad_token_id)
    encoded: dict[str, Any] = {}

    def response_ids(text: str) -> Any:
        if text not in encoded:
            encoded[text] = torch.tensor(tokenizer(text, add_special_tokens=False)["input_ids"], dtype=torch.long)
        return encoded[text]

    batches = shuffled_batches(len(clips), options.batch_size, rng)

    def batch_loss(step: int) -> Any:
        indices = next(batches)
        audio = embed(indices)
        examples = [Example(clips[i].row, clips[i].prompt_ids, a) for i, a in zip(indices, audio)]
        targets = [build_base_target(clips[i].row["extra_info"], rng, think_fraction=options.think_fraction)
                   for i in indices]
        batch = collate(model, examples, [response_ids(t.text) for t in targets], pad_id=pad_id)
        logits, labels = response_logits(model, batch)
        return torch.nn.functional.cross_entropy(logits, labels)

    losses = fit(model, groups, batch_loss, steps=options.steps, lr=options.lr, weight_decay=options.weight_decay,
                 lr_factor=lambda step: warmup_then_decay(step, options.steps, options.warmup_fraction), progress=progress, desc="base")
    model.requires_grad_(True)
    trainable = sum(p.numel() for g in groups for p in g["params"])
    return {
        **loss_figures(losses),
        "trainable_parameters": trainable,
        "frozen_parameters": sum(p.numel() for p in model.parameters()) - trainable,
        "train_clips": len(clips), "targets_seen": options.steps * options.batch_size,
    }
