"""Checkpoint tooling for the real backbones.

* :mod:`audio_thinker.models.omni_thinker`: full Qwen2.5-Omni checkpoint -> thinker-only checkpoint.
"""
