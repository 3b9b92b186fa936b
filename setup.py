"""Package metadata for audio-thinker.

The runtime stack is pinned to the set verl 0.9.1 itself is tested with (see verl's ``cpu`` and
``vllm`` extras). ``requirements/constraints.txt`` freezes every transitive dependency so that
``make test`` / ``make demo`` build the same environment on every machine.
"""

from setuptools import find_packages, setup

INSTALL_REQUIRES = [
    "verl[verl-core]==0.9.1",
    "torch==2.11.0",
    "torchaudio==2.11.0",
    "torchvision==0.26.0",  # the Qwen2.5-Omni processor insists on a video processor
    "transformers==5.9.0",
    "ray[default]>=2.41",
    "hydra-core>=1.3,<1.4",
    "omegaconf>=2.3",
    "numpy>=2.0",
    "wandb",
    "soundfile",
    "pandas",
    "pyarrow>=19.0.0",
    "matplotlib",
    "tqdm",
]

EXTRAS_REQUIRE = {
    # vLLM needs CUDA: never installed on CPU machines (tests, CI, the embedded default).
    "gpu": ["vllm==0.24.0"],
    "test": ["pytest>=8", "hypothesis>=6"],
}

setup(
    name="audio-thinker",
    version="0.1.0",
    description=(
        "Audio-Thinker on verl + Ray: RL that teaches audio language models when and how to think"
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["audio_thinker", "audio_thinker.*", "reward_workers", "reward_workers.*"]),
    package_data={"audio_thinker": ["py.typed"]},
    include_package_data=True,
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
    entry_points={
        # verl imports every `verl.plugins` entry point on `import verl`, in every process.
        "verl.plugins": ["audio_thinker = audio_thinker.verl_ext.plugin"],
        # vLLM calls every `vllm.general_plugins` entry point in every process of an engine (the one
        # that builds it, its engine core, its workers): our model classes (the thinker-only Omni)
        "vllm.general_plugins": ["audio_thinker = audio_thinker.inference.vllm_models:register_vllm_models"],
    },
    license="Apache-2.0",
)
