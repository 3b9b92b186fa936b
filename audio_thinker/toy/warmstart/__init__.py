"""The warm-start: teach a tiny random audio LM the response FORMAT, not the answers.

A randomly initialised model (:mod:`audio_thinker.toy.tiny`) never writes a well-formed
response, so every GRPO reward in a group is equal, every advantage is 0 and RL has no signal.
The warm-start trains such a model for a few seconds on targets that have the adaptive format of
DESIGN.md but carry **no answer information**::

    python -m audio_thinker.toy.warmstart --model models/tiny_qwen2_audio \\
        --data data/synthetic/train.parquet --out models/tiny_qwen2_audio_primed \\
        [--eval-data data/synthetic/val.parquet] [--steps N] [--batch-size B] [--lr LR] \\
        [--think-fraction 0.5] [--seed S] [--if-missing] [--no-progress]

or from code, :func:`ensure_warmstart` (``base_dir, data_file, out_dir, **options``; what
``toy.warmstart_model`` builds through :func:`audio_thinker.toy.prepare.prepare`). One module per job:

:mod:`~audio_thinker.toy.warmstart.targets` (pure: options and format-only targets)
    For every visit of a training row, with probability ``think_fraction`` a THINK response
    ``<think>`` + a short generic sentence naming the question type (one of
    :data:`THINK_TEMPLATES`) + ``</think><answer>CHOICE</answer>``, otherwise a NO-THINK response
    ``<answer>CHOICE</answer>``; both end with the end-of-turn token ``<|im_end|>``. CHOICE is drawn
    uniformly from the row's choices, independently of the gold answer (and re-drawn every time the
    row is visited), so the best the model can learn is "one of the listed choices, at random":
    accuracy after the warm-start is at chance and RL has to learn the rest.

:mod:`~audio_thinker.toy.warmstart.data` (rows -> model inputs)
    Exactly what training feeds the policy: the row's question and choices become the adaptive
    prompt (:func:`audio_thinker.data.rows.build_prompt_messages`), the ``<audio>`` placeholder
    becomes an audio content item holding the clip decoded by
    :func:`audio_thinker.data.audio.load_audio` (as :class:`~audio_thinker.verl_ext.dataset.AudioQADataset`
    and verl's ``RLHFDataset._build_messages`` do), the processor's chat template renders the
    prompt with the generation prompt, and the processor turns text + audio into ``input_ids``
    (expanded ``<|AUDIO|>`` placeholders), ``input_features`` and ``feature_attention_mask``. The
    response ids follow the prompt ids, as in a rollout; the loss covers the response tokens only.

:mod:`~audio_thinker.toy.warmstart.training` (the supervised run)
    The audio path (encoder + projector) is **frozen**: format is a property of the language
    model, and Qwen2-Audio's encoder always runs over a padded 30 s window (1500 positions), which
    would dominate every step on CPU. Each clip's audio embeddings (what the language model
    receives at the ``<|AUDIO|>`` positions) are therefore computed once, by the model's own
    forward, and re-used every step: the training forward is the model's forward with those
    ``inputs_embeds`` (numerically the same as passing ``input_features``; a test checks it).
    Training is the demo builders' AdamW loop (:func:`audio_thinker.toy.loop.fit`) in float32 on
    CPU, deterministic given the seed. With the defaults (:data:`DEFAULT_OPTIONS`: 160 steps x 16,
    lr 1e-2) the tiny Qwen2-Audio on the 256 synthetic training rows warm-starts in about 30 s on
    two idle CPU cores (encoding 10 s, training 12 s, sampling 5 s); sampled at temperature 1.0,
    94-99 % of its responses are well-formed (about half THINK) and its accuracy is at chance
    (0.27-0.41 measured, chance 0.375).

:mod:`~audio_thinker.toy.warmstart.sampling` (the check after training)
    Responses *sampled* (temperature 1.0, no top-k / top-p, like GRPO rollouts) on up to
    ``eval_rows`` held-out rows (``--eval-data``, else the last rows of the training file, which
    are then left out of training): well-formed rate, think rate, accuracy vs chance.

:mod:`~audio_thinker.toy.warmstart.build` (the output directory) and ``cli`` (the command line)
    A complete Hugging Face model directory (weights, config, generation config, tokenizer,
    processor and chat template; loads like the base directory), built in a sibling temporary
    directory and renamed into place, with the marker :data:`MARKER` written last: the options,
    the base model's marker, fingerprints of the inputs, the figures of the check and the wall
    time. :func:`ensure_warmstart` keeps an output whose fingerprint matches.

Only Qwen2-Audio models are supported (the embedded default); other architectures are refused
with a clear error.
"""

from audio_thinker.toy.warmstart.build import (
    MARKER,
    SUPPORTED_MODEL_TYPES,
    build_warmstart,
    ensure_warmstart,
    is_complete,
    read_marker,
)
from audio_thinker.toy.warmstart.targets import (
    DEFAULT_OPTIONS,
    END_OF_TURN,
    FORMAT_VERSION,
    THINK_TEMPLATES,
    Target,
    WarmstartOptions,
    build_target,
)

__all__ = [
    "DEFAULT_OPTIONS", "END_OF_TURN", "FORMAT_VERSION", "MARKER", "SUPPORTED_MODEL_TYPES", "THINK_TEMPLATES",
    "Target", "WarmstartOptions", "build_target", "build_warmstart", "ensure_warmstart", "is_complete",
    "read_marker",
]
