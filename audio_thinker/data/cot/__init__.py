"""CoT rationales for the SFT-CoT / GRPO-CoT baselines (paper appendix A.2).

``python -m audio_thinker.data.cot --rows data/avqa/train.parquet --out data/avqa_cot
--caption-model PATH --text-model PATH`` runs three stages over training rows
(:mod:`audio_thinker.data.rows`):

1. **Captions.** The base audio LALM (Qwen2-Audio-7B-Instruct in the paper) describes each clip:
   one user turn holding the audio and :data:`~audio_thinker.prompts.CAPTION_TEMPLATE`, generated
   by :class:`~audio_thinker.inference.hf.HFGenerator` (transformers, CPU or one GPU) or
   :class:`~audio_thinker.inference.vllm.VLLMGenerator` (vLLM), greedy by default.
2. **Rationales.** A large text LLM (Qwen2.5-72B-Instruct in the paper; any Hugging Face causal
   LM) gets :func:`~audio_thinker.prompts.build_cot_generation_prompt` (caption, question,
   choices, gold answer), rendered with its chat template when it has one (Qwen3's with
   ``enable_thinking=False``), else as raw text;
   :class:`~audio_thinker.inference.hf.HFTextGenerator` (batched, left padding) or
   :class:`~audio_thinker.inference.vllm.VLLMTextGenerator` (``--tensor-parallel-size``).
3. **Filter.** The output is parsed with :func:`audio_thinker.rewards.parsing.parse_response`
   on its tagged span (from the first ``<think>`` to the last ``</answer>``: chatter a chat model
   writes around the tags is trimmed and counted as ``trimmed``); it must be THINK (non-empty
   ``<think>`` then ``<answer>``) and its answer must name the gold choice
   (:func:`audio_thinker.rewards.accuracy.is_correct`). Every row ends up kept or dropped under
   exactly one reason: ``audio_error`` (clip missing or undecodable), ``generation_error``
   (caption or rationale), ``empty_caption``, ``malformed``, ``answer_mismatch``.

An input row that does not follow the row schema (:func:`audio_thinker.data.rows.validate_row`)
is skipped before the stages and counted by reason in the summary (``invalid_rows``, with the
first such row per reason in ``invalid_examples``); only a file with no valid row is refused.

Output folder::

    OUT/config.json       the settings that decide the content (models, token limits, decoding,
                          templates, rows file); a run with other settings is refused
    OUT/captions.jsonl    one record per captioned row  {"key", "caption", "error", "detail", ...}
    OUT/rationales.jsonl  one record per rationalised row {"key", "caption_sha", "text", "error", ...}
    OUT/cot.parquet       kept rows of the training schema in the ``think`` prompt mode, with
                          extra_info ``rationale`` (the think text), ``caption``, ``cot_model``
                          and ``caption_model``; the other columns and keys as in the input
    OUT/summary.json      counts (kept, dropped by reason), models, settings, timing

Resumable: records are appended batch by batch (flushed and fsynced), keyed by
:func:`~audio_thinker.data.cot.filter.row_key`, and a re-run skips every row that already has its
caption / rationale (a partial last line left by a crash is cut off). Rows whose caption or rationale failed
(``audio_error``, ``generation_error``) are tried again; the others are final. A model is loaded
only when some row still needs it, so a finished run re-writes its outputs without loading any.
``--stage captions`` stops after the captions: on one GPU, run the captioner and the text LLM in
two processes (``--stage captions``, then the same command without it). With vLLM,
``--batch-size`` is both the submission chunk and the engine's ``max_num_seqs``: use 64 or more.

The package, by job: :mod:`~audio_thinker.data.cot.settings` (:class:`CotConfig`, :class:`RunOptions`),
:mod:`~audio_thinker.data.cot.filter` (prompts, the keep/drop decision, counts; pure),
:mod:`~audio_thinker.data.cot.store` (the output folder), :mod:`~audio_thinker.data.cot.pipeline`
(:func:`generate_cot`: the stages) and :mod:`~audio_thinker.data.cot.cli` (the command line).
"""

from audio_thinker.data.cot.pipeline import generate_cot
from audio_thinker.data.cot.settings import CotConfig, CotConfigError, RunOptions

__all__ = ["CotConfig", "CotConfigError", "RunOptions", "generate_cot"]
