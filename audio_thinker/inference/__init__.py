"""Model generation, in one place: transformers batched generation and vLLM engines.

Evaluation, CoT generation, the demo's warm-start sampling and both judge workers generate
through this package. Importing it does not import vLLM or touch CUDA.
"""
