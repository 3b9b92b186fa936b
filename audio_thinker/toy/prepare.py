"""The demo's assets, built when missing: the one function every entry point calls.

The embedded default runs on stand-ins for the real data and checkpoints. Which ones, and where,
is the top-level ``toy:`` section of a config (``main_grpo``, ``main_sft`` and ``evaluate`` all
read it; every path is a folder relative to the directory the command runs in, ``null`` builds
nothing)::

    toy:
      synthetic_data: data/synthetic                    # audio_thinker.data.synthetic
      tiny_model: models/tiny_qwen2_audio               # audio_thinker.toy.tiny
      tiny_arch: qwen2_audio                            # qwen2_audio | qwen2_5_omni_thinker
      tiny_judge: models/tiny_judge                     # audio_thinker.toy.tiny_judge
      warmstart_model: models/tiny_qwen2_audio_primed   # audio_thinker.toy.warmstart

:meth:`ToySection.load` validates the section (unknown keys, wrong types and inconsistent
combinations are refused with a message naming the key and the fix); :func:`prepare` builds what
it names and is missing. Builds are deterministic and skipped when a complete build is already
there, so calling :func:`prepare` before every run costs nothing once the assets exist.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audio_thinker.config import ConfigError, build_section
from audio_thinker.toy.tiny import ARCHS

__all__ = ["ToySection", "prepare"]

#: size and seed of the synthetic set ``toy.synthetic_data`` builds (the generator's CLI defaults)
SYNTHETIC_TRAIN, SYNTHETIC_VAL, SYNTHETIC_SEED = 256, 64, 0
#: keys of this section under their earlier names
_RENAMED = {"primed_model": "warmstart_model"}


@dataclass(frozen=True)
class ToySection:
    """The ``toy`` config section: the demo assets to build when missing (``null``: none)."""

    #: write the synthetic audio QA set here (train.parquet, val.parquet, wav files)
    synthetic_data: str | None = None
    #: build a tiny random model of a real architecture here (``audio_thinker.toy.tiny``)
    tiny_model: str | None = None
    #: architecture of ``tiny_model``: qwen2_audio | qwen2_5_omni_thinker
    tiny_arch: str = "qwen2_audio"
    #: build a tiny Qwen3 judge, verdict format primed, here (``audio_thinker.toy.tiny_judge``)
    tiny_judge: str | None = None
    #: warm-start ``tiny_model`` on the response format (answers drawn at chance) with the
    #: synthetic train split and write it here (``audio_thinker.toy.warmstart``)
    warmstart_model: str | None = None

    def __post_init__(self) -> None:
        if self.tiny_arch not in ARCHS:
            raise ConfigError(
                f"toy.tiny_arch={self.tiny_arch!r} is not valid; use one of: {', '.join(ARCHS)} "
                f"(e.g. toy.tiny_arch={ARCHS[0]} on the command line)"
            )
        if self.warmstart_model is not None and (self.tiny_model is None or self.synthetic_data is None):
            raise ConfigError(
                "toy.warmstart_model warm-starts toy.tiny_model on toy.synthetic_data: set both "
                "(or toy.warmstart_model=null)"
            )

    @classmethod
    def load(cls, section: Mapping[str, Any] | Any | None) -> ToySection:
        """Validate the ``toy`` section (a plain mapping, an OmegaConf node, or None for the defaults)."""
        if section is None:
            return cls()
        if not isinstance(section, Mapping):  # an OmegaConf DictConfig
            from omegaconf import OmegaConf

            section = OmegaConf.to_container(section, resolve=True)
        for old, new in _RENAMED.items():
            if isinstance(section, Mapping) and old in section:
                raise ConfigError(f"toy.{old} is now toy.{new}: rename the key")
        return build_section(cls, section, "", root="toy")


def prepare(section: ToySection, *, prompt_mode: str) -> None:
    """Build the synthetic data, the tiny model, the tiny judge and the warm-start ``section`` names,
    where missing. ``prompt_mode`` is the instruction the synthetic rows' prompts carry."""
    if section.synthetic_data:
        from audio_thinker.data import synthetic

        args = dict(n_train=SYNTHETIC_TRAIN, n_val=SYNTHETIC_VAL, seed=SYNTHETIC_SEED, prompt_mode=prompt_mode)
        if synthetic.is_generated(section.synthetic_data, **args):
            print(f"prepare: synthetic data in {section.synthetic_data} (already there)")
        else:
            print(f"prepare: writing the synthetic data set to {section.synthetic_data}")
            synthetic.generate_dataset(section.synthetic_data, **args)
    if section.tiny_model:
        from audio_thinker.toy.tiny import ensure_tiny_model, is_complete

        fresh = not is_complete(section.tiny_model, arch=section.tiny_arch, seed=0)
        ensure_tiny_model(section.tiny_arch, section.tiny_model)
        print(f"prepare: tiny {section.tiny_arch} model in {section.tiny_model}{'' if fresh else ' (already there)'}")
    if section.tiny_judge:
        from audio_thinker.toy.tiny_judge import DEMO_PRIME_STEPS, ensure_tiny_judge

        ensure_tiny_judge(section.tiny_judge, prime_steps=DEMO_PRIME_STEPS)
        print(f"prepare: tiny Qwen3 judge, verdict format primed, in {section.tiny_judge}")
    if section.warmstart_model:
        from audio_thinker.toy.warmstart import ensure_warmstart

        assert section.tiny_model and section.synthetic_data  # checked by ToySection
        data_dir = Path(section.synthetic_data)
        ensure_warmstart(
            section.tiny_model, data_dir / "train.parquet", section.warmstart_model,
            eval_data=data_dir / "val.parquet",
        )
        print(f"prepare: warm-started model in {section.warmstart_model}")
