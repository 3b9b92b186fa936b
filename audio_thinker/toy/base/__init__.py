"""The hearing base: a tiny Qwen2-Audio trained on TRUE answers, the embedded default's stand-in
for an instruct checkpoint.

The tiny random model (:mod:`audio_thinker.toy.tiny`) hears nothing, and the warm-start
(:mod:`audio_thinker.toy.warmstart`) only teaches it the response format with random answers: every
task stays at chance, so GRPO with ATAR can only push thinking up everywhere. ATAR needs a base that
is good at some tasks and poor at others. This package builds one::

    python -m audio_thinker.toy.base --out models/tiny_qwen2_audio_base [--seed 0] [--scaled]
        [--clips N] [--steps N] [--batch-size B] [--lr LR] [--projector-lr LR] [--encoder-lr LR]
        [--pretrain-seed S] [--eval-clips N] [--if-missing] [--no-progress]

or from code :func:`ensure_base` / :func:`build_base` (``out_dir, **options``). Everything is a
deterministic function of the options (:class:`BaseOptions`; seeds included).

Design decisions
----------------
* **Its own data.** A pre-training split of the synthetic tasks
  (:mod:`audio_thinker.data.synthetic_tasks`) drawn with ``pretrain_seed`` (default 1000; the RL
  data's seed 0 is refused), synthesized in memory: never an RL train or validation clip. The
  profile is measured on the RL data's validation split (seed 0, split ``val``; its first 64 clips
  are the demo's validation set).
* **TRUE answers in both formats.** Each visit of a clip draws a target: with probability
  ``think_fraction`` (0.5) THINK, ``<think>`` + a template rationale naming the question type and
  the gold answer + ``</think><answer>GOLD</answer>``, else NO-THINK ``<answer>GOLD</answer>``; both
  end with ``<|im_end|>`` (:mod:`~audio_thinker.toy.base.options`). The rationale is kept to ~20
  tokens so a THINK response fits the demo's 48-token response budget.
* **Short audio windows.** Qwen2-Audio's encoder runs over 30 s of padded mel frames and masks the
  padding; the same computation on a window just past the clip gives identical embeddings (a test
  checks it against the model's forward) at a tenth of the cost
  (:mod:`~audio_thinker.toy.base.clips`). A frozen encoder runs once per clip; a trained one runs
  every step on those windows. The prompt ids are the processor's own, the features the model's
  own ``WhisperFeatureExtractor``'s.
* **Training** is the demo builders' AdamW loop (:func:`audio_thinker.toy.loop.fit`) with one
  parameter group per part (language model, projector, encoder), next-token loss on the response
  tokens (:mod:`~audio_thinker.toy.base.training`).
* **Skill profile** (:mod:`~audio_thinker.toy.base.scoring`): accuracy per task and difficulty
  by choice log-likelihood of the full response, in both formats; the manifest records it with the
  target checks (two tasks >= 0.90, easy >= 0.75, hard within 0.10 of chance).
* **Output** (:mod:`~audio_thinker.toy.base.build`): a Hugging Face directory like the tiny model's
  (same architecture class, tokenizer, processor and chat template; loads with transformers and
  verl), built in a sibling temporary directory and renamed into place, with the manifest
  :data:`MARKER` (options, data, profile, timings, weights sha256) written last.

The recipe (sizes, what is frozen, learning rates, data size, steps) was chosen by experiment:
``benchmarks/bench_base_model.py`` records the candidates and their profiles.
"""

from audio_thinker.toy.base.build import MARKER, build_base, build_base_model, ensure_base, is_complete, read_manifest
from audio_thinker.toy.base.options import (
    DEFAULT_OPTIONS,
    FORMAT_VERSION,
    RL_DATA_SEED,
    SCALED_OPTIONS,
    BaseOptions,
    base_rationale,
    build_base_target,
)

__all__ = [
    "DEFAULT_OPTIONS", "FORMAT_VERSION", "MARKER", "RL_DATA_SEED", "SCALED_OPTIONS", "BaseOptions", "base_rationale",
    "build_base", "build_base_model", "build_base_target", "ensure_base", "is_complete", "read_manifest",
]
