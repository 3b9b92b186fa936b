"""audio-thinker: RL that teaches audio language models when and how to think (verl + Ray).

Importing this package is cheap: it does not import vLLM, start Ray or touch CUDA.
"""

__version__ = "0.1.0"
