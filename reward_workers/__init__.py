"""Ray actors hosting reward computation (the LLM-judge pool).

Dependencies point one way: this package uses only the pure pieces of ``audio_thinker``
(``prompts``, ``rewards.*``, the ``config`` schema) and its ``inference`` code; ``audio_thinker``
reaches it only from the verl glue (``audio_thinker.verl_ext``) and the entry points.
"""
