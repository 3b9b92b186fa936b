"""``python -m audio_thinker.evaluate``: evaluate a checkpoint on a benchmark (see ``__main__``).

``python -m audio_thinker.evaluate.compare RUN_DIR...`` prints several runs in the paper's Table 1 layout.
"""
