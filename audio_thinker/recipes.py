"""Recipes: the rows of the paper's Table 1 on each backbone, a thin view over the hydra groups.

A recipe ``<backbone>/<row>`` is nothing but ``python -m <entry> backbone=<backbone>
experiment=<row>``. The config lives in the entry point's config folder (``conf/`` for
``audio_thinker.main_grpo``, ``conf/sft/`` for ``audio_thinker.main_sft``)::

    backbone/<backbone>.yaml                     model, hardware, data and run layout of a backbone
    experiment/<row>.yaml                        what the row is: prompt mode, reward, run name
    backbone_experiment/<backbone>_<row>.yaml    what the row changes on one backbone only (few)

This module holds only what is not config, in one table: the Table 1 label of each row
(:data:`ROWS`), the expected cost of each recipe (:data:`COSTS`: estimates, see docs/recipes.md)
and the paper's reported figures (:data:`PAPER`). The CLI::

    python -m audio_thinker.recipes list
    python -m audio_thinker.recipes show NAME                 # files, overrides it amounts to, cost, paper
    python -m audio_thinker.recipes compose NAME [overrides]  # composed + validated config; starts nothing
    python -m audio_thinker.recipes run NAME [overrides]      # execs the entry point

Extra overrides come after the recipe's, so they win (``run tiny_cpu/grpo trainer.total_training_steps=2``).
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audio_thinker import compose as composing
from audio_thinker.config import ConfigError

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
#: entry point -> its hydra config folder (the module's CONFIG_DIR; a test checks they agree)
ENTRIES = {composing.GRPO_ENTRY: CONF_DIR, composing.SFT_ENTRY: CONF_DIR / "sft"}
#: the paper's figures per recipe, accuracy %: MMAU test-mini avg, MMAR avg, AIR-Bench foundation avg
PAPER_KEYS = ("mmau_test_mini_avg", "mmar_avg", "air_avg")
#: where the pair files live; files there that name no recipe are shared parts they include
PAIR_GROUP = "backbone_experiment"

# key=value | +key=value | ~key | ~key=value (hydra's override grammar, restricted to these forms)
_OVERRIDE = re.compile(
    r"^(?P<prefix>[+~]?)(?P<key>[A-Za-z_][\w\-]*(?:[./@][\w\-]+)*)(?P<eq>=)?(?P<value>.*)$", re.S
)


class RecipeError(ConfigError):
    """An unknown recipe, a bad extra override or a gap in the recipe table; the message says which."""


# ---------------------------------------------------------------------------------------------
# the table: what is not config
# ---------------------------------------------------------------------------------------------

#: Table 1 rows, in the paper's order: row id (the experiment file's name) -> the paper's label
ROWS = {
    "sft": "SFT",
    "sft_cot": "SFT + CoT",
    "grpo": "GRPO",
    "grpo_cot": "GRPO + CoT",
    "grpo_atar": "GRPO + ATAR",
    "grpo_atar_cr": "GRPO + ATAR + CR",
    "grpo_atar_cr_tr": "GRPO + ATAR + CR + TR (Audio-Thinker)",
}


@dataclass(frozen=True)
class Cost:
    """Expected cost of a recipe (an estimate unless ``basis`` says measured)."""

    gpus: int
    gpu_hours: float
    basis: str


def _grpo_cost(step_s: int, parts: str, hours: float, *, judge: bool = False) -> Cost:
    """One 8-GPU node, 1000 GRPO steps of 16 prompts x 8 responses + 11 validations (~0.2 h)."""
    layout = "4 training + 4 judge GPUs" if judge else "8 training GPUs"
    basis = (f"~{step_s} s per step ({parts}, weight sync and overhead ~12 s) x 1000 steps + ~0.2 h "
             f"of validation = {hours:g} h on one node ({layout})")
    return Cost(gpus=8, gpu_hours=round(hours * 8), basis=basis)


_OMNI = "compute x1.1 for the Omni thinker's 8.9B parameters"
_SFT_BASIS = ("2 epochs x 40,176 AVQA rows of ~380 tokens: ~29 TFLOP per row (7B forward + backward with "
              "recomputation, plus the audio encoder) = 2.3e18 FLOP = ~2 H100-hours at 30 % MFU; x3 for "
              "packing, audio decoding, validation and checkpoints = ~1 h on 8 GPUs")
_SFT_COT_BASIS = ("as SFT with ~250 more target tokens per row (the rationale, ~630 tokens): ~43 TFLOP per "
                  "row = 3.4e18 FLOP = ~3 H100-hours at 30 % MFU; x3 = ~1.5 h on 8 GPUs")
_TINY_GRPO = ("CPU only: 20 steps of 4 prompts x 4 responses {0} take about {1} on 2 cores (make demo, "
              "measured); a first run also builds what is missing (data, tiny models: 1-3 min)")

#: expected cost per recipe; GPU figures are estimates (no GPU run yet): docs/recipes.md, *Cost*
COSTS: dict[str, Cost] = {
    **{f"{backbone}/sft": Cost(8, 8, _SFT_BASIS) for backbone in ("qwen2_audio_7b", "qwen2_5_omni_7b")},
    **{f"{backbone}/sft_cot": Cost(8, 12, _SFT_COT_BASIS)
       for backbone in ("qwen2_audio_7b", "qwen2_5_omni_7b")},
    "qwen2_audio_7b/grpo": _grpo_cost(16, "direct answers of ~10 tokens: generation ~0.4 s, "
                                          "log-probs + update ~4 s", 4.8),
    "qwen2_audio_7b/grpo_cot": _grpo_cost(35, "think responses of ~300 tokens, the longest near the "
                                              "512 cap: generation ~15 s, log-probs + update ~7 s", 9.8),
    "qwen2_audio_7b/grpo_atar": _grpo_cost(33, "about half think: generation ~15 s, log-probs + "
                                               "update ~6 s", 9.4),
    "qwen2_5_omni_7b/grpo": _grpo_cost(17, f"as qwen2_audio_7b/grpo, {_OMNI}", 4.9),
    "qwen2_5_omni_7b/grpo_cot": _grpo_cost(35, f"as qwen2_audio_7b/grpo_cot, {_OMNI}", 10.0),
    "qwen2_5_omni_7b/grpo_atar": _grpo_cost(34, f"as qwen2_audio_7b/grpo_atar, {_OMNI}", 9.5),
    **{f"qwen2_audio_7b/{row}": _grpo_cost(45, "generation ~18 s, log-probs + update on 4 GPUs ~11 s, "
                                               "unhidden judging ~3 s", 12.6, judge=True)
       for row in ("grpo_atar_cr", "grpo_atar_cr_tr")},
    **{f"qwen2_5_omni_7b/{row}": _grpo_cost(46, f"as qwen2_audio_7b/{row}, {_OMNI}", 12.9, judge=True)
       for row in ("grpo_atar_cr", "grpo_atar_cr_tr")},
    **{f"tiny_cpu/{row}": Cost(0, 0, _TINY_GRPO.format("without the judge", "3 min 43 s"))
       for row in ("grpo", "grpo_cot", "grpo_atar")},
    **{f"tiny_cpu/{row}": Cost(0, 0, _TINY_GRPO.format("with the tiny judge", "4 min 10 s"))
       for row in ("grpo_atar_cr", "grpo_atar_cr_tr")},
    "tiny_cpu/sft": Cost(0, 0, "CPU only: 4 epochs of the 256-row synthetic set (64 steps of 16 rows), "
                               "measured 132 s on 2 cores including building the set and the tiny model"),
    "tiny_cpu/sft_cot": Cost(0, 0, "CPU only: as tiny_cpu/sft with template rationales, measured 155 s "
                                   "on 2 cores with the set and the tiny model already built"),
}

#: the paper's Table 1 (arXiv:2508.08039), accuracy %: backbone -> row id ("base": the untrained
#: model) -> (MMAU test-mini avg, MMAR avg, AIR-Bench foundation avg); tiny_cpu has none
PAPER: dict[str, dict[str, tuple[float, float, float]]] = {
    "qwen2_audio_7b": {
        "base": (54.90, 30.00, 61.3), "sft": (58.20, 48.90, 63.8), "sft_cot": (57.80, 49.80, 62.6),
        "grpo": (63.80, 50.20, 64.5), "grpo_cot": (65.00, 50.00, 64.1), "grpo_atar": (66.90, 50.70, 66.4),
        "grpo_atar_cr": (67.70, 50.90, 66.5), "grpo_atar_cr_tr": (68.00, 52.00, 66.8),
    },
    "qwen2_5_omni_7b": {
        "base": (66.30, 58.20, 64.9), "sft": (67.90, 60.90, 65.8), "sft_cot": (67.50, 59.80, 65.2),
        "grpo": (69.70, 62.50, 66.2), "grpo_cot": (69.80, 61.80, 65.9), "grpo_atar": (71.50, 64.20, 66.8),
        "grpo_atar_cr": (72.50, 64.40, 67.0), "grpo_atar_cr_tr": (73.70, 65.30, 67.1),
    },
}


# ---------------------------------------------------------------------------------------------
# recipes = backbones x experiment files of an entry point
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recipe:
    backbone: str
    #: the experiment file's name: sft, sft_cot, grpo, grpo_cot, grpo_atar, grpo_atar_cr, grpo_atar_cr_tr
    row_id: str
    entry: str
    #: the paper's label of the row
    row: str
    cost: Cost
    #: the paper's figures, ``None`` where there are none (tiny_cpu)
    paper: Mapping[str, float | None]

    @property
    def name(self) -> str:
        return f"{self.backbone}/{self.row_id}"

    @property
    def overrides(self) -> tuple[str, str]:
        return (f"backbone={self.backbone}", f"experiment={self.row_id}")

    @property
    def path(self) -> Path:
        """The experiment file."""
        return ENTRIES[self.entry] / "experiment" / f"{self.row_id}.yaml"

    def files(self) -> list[Path]:
        """The config files the recipe adds to the entry point's base config, in merge order."""
        folder = ENTRIES[self.entry]
        pair = folder / PAIR_GROUP / f"{self.backbone}_{self.row_id}.yaml"
        return [folder / "backbone" / f"{self.backbone}.yaml", self.path, *([pair] if pair.is_file() else [])]


def _stems(folder: Path) -> list[str]:
    return sorted(p.stem for p in folder.glob("*.yaml"))


def _find(name: str) -> tuple[str, str, str] | None:
    backbone, _, row_id = name.removesuffix(".yaml").strip("/").partition("/")
    for entry, folder in ENTRIES.items():
        experiment, layer = folder / "experiment" / f"{row_id}.yaml", folder / "backbone" / f"{backbone}.yaml"
        if row_id and backbone and experiment.is_file() and layer.is_file():
            return backbone, row_id, entry
    return None


def list_recipes() -> list[str]:
    """Every recipe: each entry point's backbones x its experiment files, sorted."""
    return sorted(f"{b}/{r}" for folder in ENTRIES.values()
                  for b in _stems(folder / "backbone") for r in _stems(folder / "experiment"))


def load_recipe(name: str) -> Recipe:
    """The recipe ``<backbone>/<row>``; :class:`RecipeError` lists the known ones when there is none,
    or names the table entry that is missing."""
    found = _find(name)
    if found is None:
        raise RecipeError(f"no recipe {name!r}; known recipes: {', '.join(list_recipes())}")
    backbone, row_id, entry = found
    recipe_name = f"{backbone}/{row_id}"
    if row_id not in ROWS:
        raise RecipeError(f"{recipe_name}: row {row_id!r} has no label in audio_thinker.recipes.ROWS")
    if recipe_name not in COSTS:
        raise RecipeError(f"{recipe_name}: no expected cost in audio_thinker.recipes.COSTS")
    figures = PAPER.get(backbone, {}).get(row_id)
    paper = dict(zip(PAPER_KEYS, figures if figures else (None,) * len(PAPER_KEYS), strict=True))
    return Recipe(backbone=backbone, row_id=row_id, entry=entry, row=ROWS[row_id], cost=COSTS[recipe_name],
                  paper=paper)


def check_table() -> list[str]:
    """Problems of the table against the config groups (empty when every recipe has its label and
    cost and every entry names a recipe); each problem names the table and the key."""
    names, problems = set(list_recipes()), []
    problems += [f"ROWS[{r!r}]: no experiment file of that name" for r in ROWS
                 if not any(n.endswith(f"/{r}") for n in names)]
    problems += [f"COSTS[{n!r}]: no such recipe" for n in COSTS if n not in names]
    problems += [f"PAPER[{b!r}][{r!r}]: no such recipe" for b, rows in PAPER.items() for r in rows
                 if r != "base" and f"{b}/{r}" not in names]
    for name in sorted(names):
        try:
            load_recipe(name)
        except RecipeError as error:
            problems.append(str(error))
    return problems


def parse_override(text: str) -> tuple[str, str, str | None]:
    """``(prefix, key, value)`` of one hydra override; ``prefix`` is ``""``, ``"+"`` or ``"~"``,
    ``value`` is ``None`` for ``~key``. Raises :class:`ValueError` for anything else."""
    match = _OVERRIDE.match(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"{text!r} is not a hydra override of the form key=value, +key=value or ~key")
    prefix, key = match["prefix"], match["key"]
    if match["eq"] is None:
        if prefix != "~":
            raise ValueError(f"{text!r} has no '=': write key=value (or ~key to delete a key)")
        return prefix, key, None
    if match["value"].startswith("="):
        raise ValueError(f"{text!r}: '==' is not an override")
    return prefix, key, match["value"]


def command(recipe: Recipe, extra_overrides: Sequence[str] = ()) -> list[str]:
    """The command line that runs ``recipe``; ``extra_overrides`` come last, so they win. From the
    first item starting with ``-`` on (hydra's own flags: ``--cfg job``) nothing is checked here."""
    for item in extra_overrides:
        if item.startswith("-"):
            break
        try:
            parse_override(item)
        except ValueError as error:
            raise RecipeError(f"extra override: {error}") from None
    return [sys.executable, "-m", recipe.entry, *recipe.overrides, *extra_overrides]


def compose(recipe: Recipe, extra_overrides: Sequence[str] = ()) -> Any:
    """The recipe's resolved config (hydra's compose API; nothing is started)."""
    return composing.compose(recipe.entry, [*recipe.overrides, *extra_overrides])


def validate(recipe: Recipe, config: Any) -> None:
    """The entry point's checks (for GRPO also verl's ``validate_config``)."""
    composing.validate(recipe.entry, config)


def _leaves(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, Mapping) and node:
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(_leaves(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: node}


def _format_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return "[" + ",".join(_format_value(v) for v in value) + "]"
    return str(value)


def overrides_delta(recipe: Recipe) -> list[str]:
    """What the recipe changes on its backbone, as the overrides that would do the same
    (``key=value``; ``+key=value`` for keys the backbone's config does not have)."""
    from omegaconf import OmegaConf

    base = _leaves(OmegaConf.to_container(composing.compose(recipe.entry, [recipe.overrides[0]])))
    full = _leaves(OmegaConf.to_container(compose(recipe)))
    return [f"{'' if key in base else '+'}{key}={_format_value(value)}"
            for key, value in full.items() if key not in base or base[key] != value]


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------


def format_figure(key: str, value: float | None) -> str:
    """A paper figure as the paper prints it (MMAU and MMAR with 2 decimals, AIR-Bench with 1)."""
    if value is None:
        return "–"
    return f"{value:.1f}" if key == "air_avg" else f"{value:.2f}"


def _paper_cells(recipe: Recipe) -> list[str]:
    return [format_figure(k, v) for k, v in recipe.paper.items()]


def _format_list() -> str:
    header = ("recipe", "entry", "GPUs", "GPU-h", "MMAU", "MMAR", "AIR", "row")
    rows = [header]
    for name in list_recipes():
        r = load_recipe(name)
        rows.append((name, r.entry.rsplit(".", 1)[-1], str(r.cost.gpus), f"{r.cost.gpu_hours:g}",
                     *_paper_cells(r), r.row))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) + "  " + row[-1]
                     for row in rows)


def _description(recipe: Recipe) -> str:
    """The experiment file's leading comment (its description), without the command line."""
    lines = []
    for line in recipe.path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# @package"):
            continue
        if not line.startswith("#"):
            break
        text = line[1:].strip()
        if not text.startswith("python -m "):
            lines.append(text)
    return " ".join(lines)


def _format_show(recipe: Recipe) -> str:
    paper = ", ".join(f"{k}={'n/a' if v is None else format_figure(k, v)}" for k, v in recipe.paper.items())
    root = CONF_DIR.parent
    lines = [
        f"recipe:      {recipe.name}",
        f"row:         {recipe.row}",
        f"entry:       {recipe.entry}",
        f"description: {_description(recipe)}",
        f"files:       {', '.join(str(p.relative_to(root)) for p in recipe.files())}",
        f"cost:        {recipe.cost.gpus} GPUs, {recipe.cost.gpu_hours:g} GPU-hours ({recipe.cost.basis})",
        f"paper:       {paper}",
        f"command:     python {shlex.join(command(recipe)[1:])}",
        f"what it changes on backbone={recipe.backbone}, as overrides:",
        *(f"  {o}" for o in overrides_delta(recipe)),
    ]
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m audio_thinker.recipes",
                                description="Paper Table 1 rows on each backbone (backbone= x experiment=).")
    sub = p.add_subparsers(dest="action", required=True)
    sub.add_parser("list", help="every recipe with its entry point, GPUs, GPU-hours and paper figures")
    show = sub.add_parser("show", help="a recipe's files, what it changes, cost and paper figures")
    show.add_argument("name")
    for action, text in (("run", "run the recipe's entry point (extra hydra overrides win)"),
                         ("compose", "print the composed, validated config; starts nothing")):
        cmd = sub.add_parser(action, help=text)
        cmd.add_argument("name")
        cmd.add_argument("overrides", nargs=argparse.REMAINDER, help="extra hydra overrides")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.action == "list":
            print(_format_list())
            return 0
        recipe = load_recipe(args.name)
        if args.action == "show":
            print(_format_show(recipe))
            return 0
        if args.action == "run":
            argv_run = command(recipe, args.overrides)
            print(f"recipe {recipe.name}: {' '.join(argv_run[1:])}", file=sys.stderr, flush=True)
            sys.stdout.flush()
            os.execv(argv_run[0], argv_run)
        from omegaconf import OmegaConf

        config = composing.compose_and_validate(recipe.entry, [*recipe.overrides, *args.overrides])
        print(OmegaConf.to_yaml(config))
        print(f"config OK: {recipe.name} ({recipe.entry}); nothing was started")
        return 0
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
