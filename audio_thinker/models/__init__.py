"""Model tooling: checkpoint conversion and tiny offline stand-ins for the real audio LMs.

Importing this package (or either submodule) is cheap: torch / transformers / tokenizers are
imported inside the functions that need them.

* :mod:`audio_thinker.models.omni_thinker`: full Qwen2.5-Omni checkpoint -> thinker-only checkpoint.
* :mod:`audio_thinker.models.tiny`: randomly initialised, few-MB models of the real Qwen2-Audio and
  Qwen2.5-Omni-thinker architectures (+ locally trained tokenizer and the real processor classes)
  for CPU tests and demos; ``python -m audio_thinker.models.tiny --arch ARCH --out DIR``.
"""
