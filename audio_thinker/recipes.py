"""Recipes: one runnable experiment per row of the paper's Table 1, per backbone (``recipes/``).

A recipe is a small YAML file, ``recipes/<backbone>/<row>.yaml``, holding hydra overrides of an
entry point's config (``audio_thinker.main_grpo`` or ``audio_thinker.main_sft``), the expected cost
on the paper's setup and the paper's reported numbers::

    name: qwen2_audio_7b/grpo_atar_cr_tr         # = the path below recipes/, without .yaml
    row: GRPO + ATAR + CR + TR (Audio-Thinker)   # the Table 1 row
    entry: audio_thinker.main_grpo               # or audio_thinker.main_sft
    description: one or two sentences
    overrides: [backbone=qwen2_audio_7b, audio_thinker.reward.mode=atar_cr_tr, ...]
    cost: {gpus: 8, gpu_hours: 96, basis: "how the estimate was derived"}
    paper: {mmau_test_mini_avg: null, mmar_avg: null, air_avg: null}

The module is pure (:func:`list_recipes`, :func:`load_recipe`, :func:`command`) plus a thin CLI::

    python -m audio_thinker.recipes list
    python -m audio_thinker.recipes show NAME
    python -m audio_thinker.recipes run NAME [hydra overrides...]      # execs the entry point
    python -m audio_thinker.recipes compose NAME [hydra overrides...]  # prints the composed config

Extra overrides come after the recipe's, so they win (``run tiny_cpu/grpo trainer.total_training_steps=2``).
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audio_thinker.config import ConfigError

#: the folder holding ``<backbone>/<row>.yaml`` (beside the package, like ``conf/``)
RECIPES_DIR = Path(__file__).resolve().parent.parent / "recipes"
#: the entry points a recipe may name
ENTRIES = ("audio_thinker.main_grpo", "audio_thinker.main_sft")
#: the paper's reported figures a recipe carries (null when not known)
PAPER_KEYS = ("mmau_test_mini_avg", "mmar_avg", "air_avg")
COST_KEYS = ("gpus", "gpu_hours", "basis")
TOP_KEYS = ("name", "row", "entry", "description", "overrides", "cost", "paper")

# key=value | +key=value | ~key | ~key=value (hydra's override grammar, restricted to these forms)
_OVERRIDE = re.compile(
    r"^(?P<prefix>[+~]?)(?P<key>[A-Za-z_][\w\-]*(?:[./@][\w\-]+)*)(?P<eq>=)?(?P<value>.*)$", re.S
)


class RecipeError(ConfigError):
    """A malformed recipe file; the message names the file and the field."""


@dataclass(frozen=True)
class Cost:
    """Expected cost of the recipe on the paper's setup (an estimate; ``basis`` says how derived)."""

    gpus: int
    gpu_hours: float
    basis: str


@dataclass(frozen=True)
class Recipe:
    name: str
    row: str
    entry: str
    description: str
    overrides: tuple[str, ...]
    cost: Cost
    #: the paper's reported figures, ``None`` where not known
    paper: Mapping[str, float | None]
    path: Path

    @property
    def backbone(self) -> str:
        """The folder the recipe lives in (``qwen2_audio_7b``, ``qwen2_5_omni_7b``, ``tiny_cpu``)."""
        return self.name.split("/", 1)[0]

    @property
    def row_id(self) -> str:
        """The file stem: ``sft``, ``sft_cot``, ``grpo``, ``grpo_cot``, ``grpo_atar``, ..."""
        return self.name.split("/", 1)[1]


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


def recipe_path(name: str, root: str | Path | None = None) -> Path:
    return Path(root or RECIPES_DIR) / f"{name}.yaml"


def list_recipes(root: str | Path | None = None) -> list[str]:
    """Every recipe name below ``root`` (``<backbone>/<row>``), sorted."""
    folder = Path(root or RECIPES_DIR)
    return sorted(p.relative_to(folder).with_suffix("").as_posix() for p in folder.glob("*/*.yaml"))


def _fail(path: Path, message: str) -> RecipeError:
    return RecipeError(f"recipe {path}: {message}")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_overrides(path: Path, overrides: Any) -> tuple[str, ...]:
    if not isinstance(overrides, list):
        raise _fail(path, "overrides must be a list of hydra overrides (strings), "
                          f"got {type(overrides).__name__}")
    seen: dict[str, str] = {}
    for i, item in enumerate(overrides):
        if not isinstance(item, str):
            raise _fail(path, f"overrides[{i}] must be a string like key=value, got {item!r} "
                              "(quote values that YAML would parse, e.g. 'trainer.logger=[console,file]')")
        try:
            _, key, _ = parse_override(item)
        except ValueError as error:
            raise _fail(path, f"overrides[{i}]: {error}") from None
        if key in seen:
            raise _fail(path, f"overrides set {key} twice ({seen[key]!r} and {item!r}); keep one")
        seen[key] = item
    return tuple(overrides)


def _check_cost(path: Path, cost: Any) -> Cost:
    if not isinstance(cost, Mapping) or set(cost) != set(COST_KEYS):
        raise _fail(path, f"cost must be a mapping with exactly the keys {', '.join(COST_KEYS)}, "
                          f"got {cost!r}")
    gpus, hours, basis = cost["gpus"], cost["gpu_hours"], cost["basis"]
    if not isinstance(gpus, int) or isinstance(gpus, bool) or gpus < 0:
        raise _fail(path, f"cost.gpus must be a whole number >= 0 (0 for CPU recipes), got {gpus!r}")
    if not _number(hours) or hours < 0:
        raise _fail(path, f"cost.gpu_hours must be a number >= 0, got {hours!r}")
    if not isinstance(basis, str) or not basis.strip():
        raise _fail(path, "cost.basis must say how the estimate was derived (a non-empty string)")
    return Cost(gpus=gpus, gpu_hours=float(hours), basis=basis.strip())


def _check_paper(path: Path, paper: Any) -> dict[str, float | None]:
    if not isinstance(paper, Mapping) or set(paper) != set(PAPER_KEYS):
        raise _fail(path, f"paper must be a mapping with exactly the keys {', '.join(PAPER_KEYS)} "
                          f"(null where the figure is not known), got {paper!r}")
    for key in PAPER_KEYS:
        if paper[key] is not None and not _number(paper[key]):
            raise _fail(path, f"paper.{key} must be a number or null, got {paper[key]!r}")
    return {key: (None if paper[key] is None else float(paper[key])) for key in PAPER_KEYS}


def parse_recipe(data: Any, path: Path, name: str) -> Recipe:
    """Validate the mapping read from ``path`` (the recipe ``name``) and build the :class:`Recipe`."""
    if not isinstance(data, Mapping):
        raise _fail(path, f"must be a YAML mapping with the keys {', '.join(TOP_KEYS)}")
    unknown = [k for k in data if k not in TOP_KEYS]
    if unknown:
        raise _fail(path, f"unknown key {unknown[0]!r}; a recipe has the keys {', '.join(TOP_KEYS)}")
    missing = [k for k in TOP_KEYS if k not in data]
    if missing:
        raise _fail(path, f"missing key {missing[0]!r}; a recipe has the keys {', '.join(TOP_KEYS)}")
    if data["name"] != name:
        raise _fail(path, f"name is {data['name']!r} but the file is recipes/{name}.yaml: set name: {name}")
    for key in ("row", "description"):
        if not isinstance(data[key], str) or not data[key].strip():
            raise _fail(path, f"{key} must be a non-empty string")
    if data["entry"] not in ENTRIES:
        raise _fail(path, f"entry is {data['entry']!r}; use one of: {', '.join(ENTRIES)}")
    return Recipe(
        name=name, row=data["row"].strip(), entry=data["entry"],
        description=" ".join(data["description"].split()),
        overrides=_check_overrides(path, data["overrides"]), cost=_check_cost(path, data["cost"]),
        paper=_check_paper(path, data["paper"]), path=path,
    )


def load_recipe(name: str, root: str | Path | None = None) -> Recipe:
    """Read and validate ``recipes/<name>.yaml``; :class:`RecipeError` names the file and field."""
    import yaml

    name = name.removesuffix(".yaml").strip("/")
    path = recipe_path(name, root)
    if not path.is_file():
        known = list_recipes(root)
        raise RecipeError(
            f"no recipe {name!r} ({path} does not exist); known recipes: {', '.join(known) or 'none'}"
        )
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise _fail(path, f"is not valid YAML: {error}") from None
    return parse_recipe(data, path, name)


def command(recipe: Recipe, extra_overrides: Sequence[str] = ()) -> list[str]:
    """The command line that runs ``recipe``; ``extra_overrides`` come last, so they win. From the
    first item starting with ``-`` on (hydra's own flags: ``--cfg job``, ``--info``) nothing is
    checked here; hydra parses them."""
    for item in extra_overrides:
        if item.startswith("-"):
            break
        try:
            parse_override(item)
        except ValueError as error:
            raise RecipeError(f"extra override: {error}") from None
    return [sys.executable, "-m", recipe.entry, *recipe.overrides, *extra_overrides]


def entry_module(recipe: Recipe) -> Any:
    """The entry point's module (it exposes ``CONFIG_DIR`` and ``CONFIG_NAME``)."""
    return importlib.import_module(recipe.entry)


def compose(recipe: Recipe, extra_overrides: Sequence[str] = ()) -> Any:
    """The entry point's hydra config with the recipe's overrides (and ``extra_overrides``) applied,
    composed with hydra's compose API: nothing is started. Unknown keys raise (unless ``+key``)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    flags = [item for item in extra_overrides if item.startswith("-")]
    if flags:
        raise RecipeError(f"compose takes hydra overrides only, not flags: {' '.join(flags)}")
    module = entry_module(recipe)
    overrides = command(recipe, extra_overrides)[3:]
    with initialize_config_dir(config_dir=module.CONFIG_DIR, version_base=None):
        return hydra_compose(config_name=module.CONFIG_NAME, overrides=overrides)


def validate(recipe: Recipe, config: Any) -> None:
    """The entry point's own fail-fast validation (``validate(config)``) when it has one; for GRPO
    also verl's own ``validate_config`` (what ``main_grpo`` runs before starting Ray: batch sizes
    against the GPU count, micro-batch settings), so a recipe that verl would refuse fails here."""
    check = getattr(entry_module(recipe), "validate", None)
    if check is not None:
        check(config)
    if recipe.entry == "audio_thinker.main_grpo":
        verl_validate(config)


def verl_validate(config: Any) -> None:
    """verl's ``validate_config`` as ``main_grpo.run`` calls it; its failures become :class:`ConfigError`.
    verl prints a line when it passes: that goes to stderr, so stdout stays the config."""
    import contextlib
    import warnings

    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config

    try:
        with contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "Disabled critic as adv_estimator != gae"
            validate_config(config=config, use_reference_policy=need_reference_policy(config),
                            use_critic=need_critic(config))
    except (AssertionError, ValueError) as error:
        raise ConfigError(f"verl refuses this config: {error}") from None


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------


def _format_list(root: str | Path | None = None) -> str:
    rows = [("recipe", "entry", "GPUs", "GPU-h", "row")]
    for name in list_recipes(root):
        r = load_recipe(name, root)
        rows.append((name, r.entry.rsplit(".", 1)[-1], str(r.cost.gpus), f"{r.cost.gpu_hours:g}", r.row))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths, strict=True)) + "  " + row[4]
        for row in rows
    )


def _format_show(recipe: Recipe) -> str:
    import shlex

    paper = ", ".join(f"{k}={'n/a' if v is None else v}" for k, v in recipe.paper.items())
    lines = [
        f"recipe:      {recipe.name}  ({recipe.path})",
        f"row:         {recipe.row}",
        f"entry:       {recipe.entry}",
        f"description: {recipe.description}",
        f"cost:        {recipe.cost.gpus} GPUs, {recipe.cost.gpu_hours:g} GPU-hours ({recipe.cost.basis})",
        f"paper:       {paper}",
        "overrides:",
        *(f"  {o}" for o in recipe.overrides),
        "command:",
        "  " + " ".join(shlex.quote(part) for part in command(recipe)),
    ]
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m audio_thinker.recipes",
        description="Paper Table 1 rows as runnable recipes (recipes/<backbone>/<row>.yaml).",
    )
    sub = p.add_subparsers(dest="action", required=True)
    sub.add_parser("list", help="every recipe with its entry point, GPUs and expected GPU-hours")
    show = sub.add_parser("show", help="a recipe's fields, overrides and command")
    show.add_argument("name")
    run = sub.add_parser("run", help="run the recipe's entry point (extra hydra overrides win)")
    run.add_argument("name")
    run.add_argument("overrides", nargs=argparse.REMAINDER, help="extra hydra overrides")
    comp = sub.add_parser("compose", help="print the composed, validated config; starts nothing")
    comp.add_argument("name")
    comp.add_argument("overrides", nargs=argparse.REMAINDER, help="extra hydra overrides")
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
        # compose
        from omegaconf import OmegaConf

        config = compose(recipe, args.overrides)
        validate(recipe, config)
        try:
            text = OmegaConf.to_yaml(config, resolve=True)
        except Exception:  # noqa: BLE001 - a value only the running job can resolve: print it as written
            text = OmegaConf.to_yaml(config)
        print(text)
        print(f"config OK: {recipe.name} ({recipe.entry}); nothing was started")
        return 0
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except Exception as error:  # hydra composition errors (unknown keys, bad values)
        from hydra.errors import HydraException

        if isinstance(error, HydraException):
            print(f"error: recipe {args.name}: {error}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
