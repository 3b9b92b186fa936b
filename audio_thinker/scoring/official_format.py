"""The official prediction-file formats: file names, prediction keys, tallied groups, and the
figures an official script computes (:class:`OfficialScore`). Shared by the writer
(:mod:`audio_thinker.scoring.official`) and the readers (:mod:`audio_thinker.scoring.official_read`).

>>> official_filename("mmau"), official_filename("air_bench")
('mmau_predictions.json', 'Foundation_result_modelx.jsonl')
>>> Tally(3, 4).accuracy, Tally(0, 0).accuracy is None
(0.75, True)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from audio_thinker.data.benchmarks import AIR_BENCH, MMAR, MMAU
from audio_thinker.scoring.items import SYNTHETIC, eval_benchmark_name

#: The file each benchmark's predictions are written to (in a run directory).
OFFICIAL_FILENAMES: dict[str, str] = {
    MMAU: "mmau_predictions.json",
    MMAR: "mmar_predictions.json",
    # score_foundation.py opens this fixed name (input_file = 'Foundation_result_modelx.jsonl')
    AIR_BENCH: "Foundation_result_modelx.jsonl",
    SYNTHETIC: "synthetic_predictions.json",
}
#: The key holding the prediction in the JSON-list formats.
PREDICTION_KEYS: dict[str, str] = {MMAU: "model_output", MMAR: "answer_prediction", SYNTHETIC: "model_output"}
#: The keys of one line of ``Inference_Foundation.py``'s output, in its order.
AIR_BENCH_KEYS: tuple[str, ...] = (
    "path", "question", "choice_a", "choice_b", "choice_c", "choice_d", "answer_gt", "task_name",
    "dataset_name", "response", "uniq_id",
)
#: The group name of AIR-Bench's per-task tally (``task_name + '_' + dataset_name``).
AIR_BENCH_TASK_ID = "task_id"



@dataclass(frozen=True)
class Group:
    """A tallied field of an official script.

    ``values``: the script's fixed dictionary keys in print order (None: opened as values are
    seen); ``optional``: read with ``sample.get`` (absent or null: left out) rather than indexed.
    """

    values: tuple[str, ...] | None = None
    optional: bool = False


MMAU_GROUPS: dict[str, Group] = {
    "task": Group(("sound", "music", "speech")),
    "difficulty": Group(("easy", "hard", "medium")),
    "sub-category": Group(optional=True),
}
MMAR_GROUPS: dict[str, Group] = {
    "modality": Group(("sound", "music", "speech", "mix-sound-music", "mix-sound-speech",
                        "mix-music-speech", "mix-sound-music-speech")),
    "category": Group(("Signal Layer", "Perception Layer", "Semantic Layer", "Cultural Layer")),
    "sub-category": Group(optional=True),
}
SYNTHETIC_GROUPS: dict[str, Group] = {"task": Group(optional=True), "difficulty": Group(optional=True)}


class OfficialScriptError(ValueError):
    """The official script would crash (or exit) on this predictions file."""


class RoundTripError(ValueError):
    """A written predictions file does not reproduce the tally of the records."""


@dataclass(frozen=True)
class Tally:
    """Correct and counted items of one official tally (``[n_correct, n_total]`` in the scripts)."""

    correct: int = 0
    counted: int = 0

    @property
    def accuracy(self) -> float | None:
        """``correct / counted`` (None when nothing was counted)."""
        return self.correct / self.counted if self.counted else None

    def to_dict(self) -> dict[str, Any]:
        return {"correct": self.correct, "counted": self.counted, "accuracy": self.accuracy}


@dataclass(frozen=True)
class OfficialScore:
    """What an official script computes from a predictions file.

    ``groups`` maps each tallied field to its values in the script's print order (fixed values
    appear even with nothing counted, as the script prints them). ``verdicts`` maps each row's id
    (``id``; AIR-Bench ``uniq_id``) to ``correct``, ``wrong``, ``skipped`` (no prediction key, or
    AIR-Bench's null ``task_name``) or ``failed`` (AIR-Bench: no readable letter).
    """

    benchmark: str
    path: str
    total: Tally
    groups: Mapping[str, Mapping[str, Tally]] = field(hash=False)
    #: rows (JSON list) or lines (JSON lines) in the file
    n_rows: int = 0
    #: rows the script skips without counting them anywhere
    n_skipped: int = 0
    #: AIR-Bench's ``fail_num`` (0 elsewhere)
    n_failed: int = 0
    #: how the script's final report would crash on these figures (None: it completes)
    report_crash: str | None = None
    verdicts: Mapping[str, str] = field(default_factory=dict, hash=False, repr=False)

    @property
    def total_sum(self) -> int:
        """AIR-Bench's ``total_sum``: lines counted (the denominator of the total)."""
        return self.total.counted

    @property
    def fail_num(self) -> int:
        """AIR-Bench's ``fail_num``: lines without a readable letter."""
        return self.n_failed

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (verdicts left out)."""
        return {
            "benchmark": self.benchmark,
            "path": self.path,
            "total": self.total.to_dict(),
            "groups": {name: {value: t.to_dict() for value, t in values.items()}
                       for name, values in self.groups.items()},
            "n_rows": self.n_rows,
            "n_skipped": self.n_skipped,
            "n_failed": self.n_failed,
            "report_crash": self.report_crash,
        }


def official_filename(benchmark: str) -> str:
    """The name of ``benchmark``'s predictions file in a run directory (:data:`OFFICIAL_FILENAMES`)."""
    return OFFICIAL_FILENAMES[eval_benchmark_name(benchmark)]


def group_spec(benchmark: str) -> Mapping[str, Group]:
    return {MMAU: MMAU_GROUPS, MMAR: MMAR_GROUPS, SYNTHETIC: SYNTHETIC_GROUPS}[benchmark]
