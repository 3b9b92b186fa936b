"""Demo assets: the embedded default's tiny stand-ins for the real checkpoints.

Nothing here is used by a real (GPU) run. The entry points reach it through one function,
:func:`audio_thinker.toy.prepare.prepare`, which builds what a config names and is missing.
Importing this package is cheap: torch / transformers are imported inside the functions.

* :mod:`audio_thinker.toy.tiny`: randomly initialised, few-MB models of the real Qwen2-Audio and
  Qwen2.5-Omni-thinker architectures (+ a locally trained tokenizer with the real special tokens).
* :mod:`audio_thinker.toy.tiny_judge`: a tiny Qwen3 judge primed to write verdicts in the format.
* :mod:`audio_thinker.toy.warmstart`: the policy's format warm-start on the synthetic set.
"""
