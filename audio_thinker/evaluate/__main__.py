"""``python -m audio_thinker.evaluate [key=value ...]``: evaluate a model on one benchmark (hydra).

The config is ``conf/evaluate.yaml`` (schema and key reference: :mod:`audio_thinker.evaluate.config`);
what a run writes and how it resumes: :mod:`audio_thinker.evaluate.run`. Prints the load report,
a progress bar, then the tables; exits 1 with the reason when the config is wrong or no item could
be evaluated.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from audio_thinker.config import ConfigError

CONFIG_DIR = str(Path(__file__).resolve().parents[2] / "conf")
CONFIG_NAME = "evaluate"


@hydra.main(config_path=CONFIG_DIR, config_name=CONFIG_NAME, version_base=None)
def main(config: DictConfig) -> None:
    from audio_thinker.evaluate.config import load_eval_config
    from audio_thinker.evaluate.run import EvaluationError, evaluate

    try:
        cfg = load_eval_config(config)
        outcome = evaluate(cfg)
    except (ConfigError, FileNotFoundError, ValueError, EvaluationError) as error:
        print(f"evaluate: {error}", file=sys.stderr)
        sys.exit(1)
    print(outcome.tables_markdown)
    print(f"results: {outcome.output_dir}")


if __name__ == "__main__":
    main()
