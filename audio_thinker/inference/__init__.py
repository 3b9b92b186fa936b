"""Model generation, in one place: transformers batched generation and vLLM engines.

Evaluation, CoT generation, the demo's warm-start sampling and both judge workers generate
through this package. Importing it (or any module but those that load models on call) imports
neither vLLM nor torch and never touches CUDA.

* :mod:`~audio_thinker.inference.options`: :class:`GenerationOptions` (decoding),
  :class:`VLLMOptions` (offline engine).
* :mod:`~audio_thinker.inference.outputs`: :class:`PromptInput`, :class:`Generated`, the
  :class:`Generator` protocol, and ids -> text (:func:`cut_response`, :func:`decode_response`,
  :func:`eos_token_ids`).
* :mod:`~audio_thinker.inference.batching`: :func:`batches`, :func:`generate_isolating` (a failing
  batch retried prompt by prompt).
* :mod:`~audio_thinker.inference.backend`: :func:`choose_backend` (``auto``/``hf``/``vllm``),
  :func:`resolve_device_and_dtype`, :func:`release`.
* :mod:`~audio_thinker.inference.templates`: chat-template rendering of audio and text prompts.
* :mod:`~audio_thinker.inference.loading`: audio models, processors and causal LMs for generation.
* :mod:`~audio_thinker.inference.hf`: transformers: :class:`HFGenerator` (audio),
  :class:`HFTextGenerator` (text) and the shared core :func:`generate_new_ids`.
* :mod:`~audio_thinker.inference.continuations`: stop-string / deadline generation (the judge).
* :mod:`~audio_thinker.inference.vllm`: :class:`VLLMGenerator`, :class:`VLLMTextGenerator`
  (``vllm.LLM``), the judge's ``AsyncLLM`` helpers, :func:`import_vllm` and
  :class:`VLLMNotInstalledError`.
* :mod:`~audio_thinker.inference.vllm_models`: :func:`register_vllm_models` (our vLLM model
  classes: the vLLM plugin entry point, also called in-process) and :func:`prepare_vllm_model`;
  :mod:`~audio_thinker.inference.vllm_omni`: the thinker-only Qwen2.5-Omni for vLLM (imports vLLM).
* :mod:`~audio_thinker.inference.placeholders`: the multimodal placeholder ids no generator samples.
"""
