"""Demo assets: the embedded default's tiny stand-ins for the real checkpoints.

Nothing here is used by a real (GPU) run. The entry points reach it through one function,
:func:`audio_thinker.toy.prepare.prepare`, which builds what the top-level ``toy:`` config section
names and is missing. Importing this package is cheap: torch / transformers are imported inside
the functions.

* :mod:`audio_thinker.toy.prepare`: the ``toy`` section (:class:`~audio_thinker.toy.prepare.ToySection`)
  and :func:`~audio_thinker.toy.prepare.prepare`.
* :mod:`audio_thinker.toy.tiny`: randomly initialised, few-MB models of the real Qwen2-Audio and
  Qwen2.5-Omni-thinker architectures.
* :mod:`audio_thinker.toy.tiny_judge`: a tiny Qwen3 judge primed to write verdicts in the format.
* :mod:`audio_thinker.toy.warmstart`: the policy's warm-start (the response format, answers at chance).
* shared by them: :mod:`~audio_thinker.toy.tokenizer` (the tiny BPE with the real special tokens),
  :mod:`~audio_thinker.toy.builds` (crash-safe output directories) and :mod:`~audio_thinker.toy.loop`
  (the one supervised training loop).
"""
