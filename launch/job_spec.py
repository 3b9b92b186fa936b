"""What a job is, before anything is submitted: its command line, its checked config, its runtime_env.

Pure of Ray (``launch/job_client.py`` talks to the cluster): ``prepare_job`` turns the launcher's
options and your hydra overrides into a :class:`JobSpec`:

* ``--recipe <backbone>/<row>`` expands to the recipe's entry point and ``backbone=<backbone>
  experiment=<row>`` (``audio_thinker.recipes``); your overrides come after it and win;
* ``ray_kwargs.ray_init.num_cpus=null`` goes before your overrides for ``main_grpo``: inside a job,
  verl's ``ray.init()`` joins the cluster, and Ray refuses ``num_cpus`` there (the CPU preset sets it
  for the local cluster it starts);
* the config is composed and validated here with ``audio_thinker.compose`` (the same function as
  ``python -m audio_thinker.recipes compose``), so a misspelt key fails in seconds, before the upload;
  its ``ray_kwargs.ray_init.runtime_env.env_vars`` go into the job's runtime_env
  (``launch/job_env.py``).

Env var values given with ``--env`` (and those of variables named like secrets: ``*KEY*``,
``*TOKEN*``, ``*SECRET*``, ``*PASSW*``, ``*CREDENTIAL*``, ``*AUTH*``) are never printed: the plan
shows ``KEY=***``, and :meth:`JobSpec.redact` masks them in the job's log and status messages.
Ray still stores them in the job's runtime_env, which anyone with access to the cluster's dashboard
can read: see docs/clusters.md, "Security".
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import job_env
from job_env import REPO, LaunchError

DEFAULT_ENTRY = "audio_thinker.main_grpo"
#: Ray refuses ``num_cpus`` in a ray.init() that joins a cluster; main_grpo's config may set it
JOIN_OVERRIDES = ("ray_kwargs.ray_init.num_cpus=null",)
#: entry points whose config has verl's ray_kwargs (the ones that call ray.init())
RAY_ENTRIES = ("audio_thinker.main_grpo",)
#: shown instead of a hidden value
MASK = "***"
#: env var names whose values are hidden whatever their source (``--env`` values always are)
SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSW|CREDENTIAL|AUTH", re.IGNORECASE)
#: hidden values at least this long are masked inside other text too (logs, status messages);
#: shorter ones only where the plan prints them
MIN_MASKED_IN_TEXT = 8

__all__ = ["LaunchError", "MASK", "REPO", "JobSpec", "prepare_job", "split_argv", "recipe_command",
           "compose_config"]


def split_argv(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """``(own options, overrides)``: everything after the first ``--`` is passed through verbatim."""
    argv = list(argv)
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1:]
    return argv, []


def _import(name: str) -> Any:
    """Import ``name`` from this checkout (the launcher runs as a script, not from the package)."""
    sys.path.insert(0, str(REPO))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(REPO))


def recipe_command(name: str, extra: Sequence[str] = ()) -> tuple[str, list[str], list[str]]:
    """``(entry, recipe overrides, extra overrides)`` of the recipe ``<backbone>/<row>``."""
    try:
        recipes = _import("audio_thinker.recipes")
    except ImportError as error:
        raise LaunchError(
            f"--recipe needs audio_thinker.recipes importable here ({error}): install the project "
            "(pip install -e .), or pass --entry and the overrides backbone=<backbone> experiment=<row>"
        ) from None
    try:
        argv = recipes.command(recipes.load_recipe(name), [])
    except recipes.ConfigError as error:  # RecipeError: an unknown recipe lists the known ones
        raise LaunchError(str(error)) from None
    return argv[2], list(argv[3:]), list(extra)  # [python, -m, entry, *overrides]


def job_overrides(entry: str, recipe_overrides: Sequence[str], user_overrides: Sequence[str]) -> list[str]:
    """The overrides the job runs with: the recipe's, then what joining a cluster needs, then yours
    (last, so they win; passed unchanged)."""
    added = list(JOIN_OVERRIDES) if entry in RAY_ENTRIES else []
    return [*recipe_overrides, *added, *user_overrides]


def build_entrypoint(python: str, entry: str, overrides: Sequence[str]) -> str:
    """The shell command Ray runs: every override stays one argument, byte for byte."""
    return shlex.join([python, "-m", entry, *overrides])


def compose_config(entry: str, overrides: Sequence[str]) -> Any:
    """The entry point's config with ``overrides``, composed and validated here by
    ``audio_thinker.compose.compose_and_validate`` (starts nothing). :class:`LaunchError` for a
    config error; ``ImportError`` when hydra, verl or the entry point cannot be imported here, or the
    entry point is not a hydra entry point of this project."""
    composing = _import("audio_thinker.compose")
    if not hasattr(_import(entry), "CONFIG_DIR"):
        raise ImportError(f"{entry} has no CONFIG_DIR: not a hydra entry point of this project")
    try:
        return composing.compose_and_validate(entry, overrides)
    except composing.ConfigError as error:
        raise LaunchError(f"config error: {error}") from None


def config_env_vars(config: Any) -> dict[str, str]:
    """``ray_kwargs.ray_init.runtime_env.env_vars`` of a composed config, as strings."""
    from omegaconf import OmegaConf

    node = OmegaConf.select(config, "ray_kwargs.ray_init.runtime_env.env_vars", default=None)
    if node is None:
        return {}
    values = OmegaConf.to_container(node, resolve=True)
    return {str(k): str(v) for k, v in values.items() if v is not None}


@dataclass
class JobSpec:
    entrypoint: str
    runtime_env: dict[str, Any]
    submission_id: str | None = None
    entrypoint_num_cpus: float | None = None
    entrypoint_num_gpus: float | None = None
    entrypoint_resources: dict[str, float] | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    #: what the launcher added or checked, for the printed plan
    notes: list[str] = field(default_factory=list)
    #: env vars whose values are never printed (``--env`` ones, secret-looking names)
    hidden_env: frozenset[str] = frozenset()

    def redact(self, text: str) -> str:
        """``text`` with the hidden env values of :data:`MIN_MASKED_IN_TEXT`+ characters masked."""
        env_vars = self.runtime_env.get("env_vars") or {}
        values = sorted({str(env_vars[k]) for k in self.hidden_env if k in env_vars}, key=len, reverse=True)
        for value in values:
            if len(value) >= MIN_MASKED_IN_TEXT:
                text = text.replace(value, MASK)
        return text

    def describe(self) -> str:
        shown = dict(self.runtime_env)
        if "env_vars" in shown:
            shown["env_vars"] = {k: MASK if k in self.hidden_env else v for k, v in shown["env_vars"].items()}
        if "excludes" in shown:
            shown["excludes"] = f"[{len(shown['excludes'])} patterns, launch/runtime_env.yaml]"
        if "pip" in shown:
            shown["pip"] = {**shown["pip"], "packages": f"[{len(shown['pip']['packages'])} pinned packages]"}
        lines = [f"entrypoint: {self.entrypoint}", f"runtime_env: {json.dumps(shown, sort_keys=True)}"]
        if "working_dir" in self.runtime_env:
            files = job_env.package_files(Path(self.runtime_env["working_dir"]),
                                          self.runtime_env.get("excludes", []))
            size = sum(f.stat().st_size for f in files)
            lines.append(f"working_dir upload: {len(files)} files, {size / 2**20:.1f} MiB before compression "
                         "(.gitignore not applied)")
        for key in ("submission_id", "entrypoint_num_cpus", "entrypoint_num_gpus", "entrypoint_resources"):
            if getattr(self, key) is not None:
                lines.append(f"{key}: {getattr(self, key)}")
        lines += [f"note: {n}" for n in self.notes]
        return self.redact("\n".join(lines))


def parse_env(items: Sequence[str]) -> dict[str, str]:
    """``--env KEY=VALUE`` items as a dict; the error for an item without ``=`` shows it only when it
    looks like a variable name (a pasted secret is not echoed)."""
    env = {}
    for item in items:
        if "=" not in item:
            named = re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,63}", item)
            shown = repr(item) if named else f"<{len(item)} characters>"
            raise LaunchError(f"--env {shown}: write KEY=VALUE")
        key, value = item.split("=", 1)
        env[key] = value
    return env


def _checked_env(entry: str, overrides: list[str], args: argparse.Namespace,
                 notes: list[str]) -> dict[str, str]:
    """Compose and validate here (unless told not to); the config's env vars for the runtime_env."""
    hydra_flags = [o for o in overrides if o.startswith("-")]
    if args.no_validate:
        notes.append("config not composed here (--no-validate): the job's own ray.init() sets its env vars")
        return {}
    if hydra_flags:
        notes.append(f"config not composed here: hydra flags {hydra_flags} are passed to the job as they are")
        return {}
    try:
        config = compose_config(entry, overrides)
    except ImportError as error:
        notes.append(f"config not composed here ({error}); the job's own ray.init() sets its env vars")
        return {}
    config_env = config_env_vars(config)
    notes.append(f"config composed and validated here ({entry}); env vars: "
                 f"{', '.join(sorted(config_env)) or 'none'}")
    return config_env


def _plugin_override(entry: str, config_env: dict[str, str], overrides: list[str], notes: list[str]) -> None:
    """``--install pip``: the project is not installed on the nodes, so verl's plugin entry point is
    not there either; the job's ``ray.init()`` (whose env vars win over the job's) must name it."""
    if entry not in RAY_ENTRIES:
        return
    if not config_env:
        raise LaunchError("--install pip needs the config composed here (hydra and the project "
                          "importable, no --no-validate): the job's ray.init() must load the plugin")
    modules = job_env.with_plugin(config_env.get(job_env.ENV_MODULES, ""))
    overrides.append(f"ray_kwargs.ray_init.runtime_env.env_vars.{job_env.ENV_MODULES}='{modules}'")
    notes.append(f"--install pip: the project is not installed on the nodes; {job_env.PLUGIN_MODULE} "
                 f"is loaded through {job_env.ENV_MODULES}")


def prepare_job(args: argparse.Namespace, user_overrides: Sequence[str]) -> JobSpec:
    """Everything up to submission: recipe, overrides, config check, runtime_env. Pure of Ray."""
    notes: list[str] = []
    if args.recipe:
        entry, recipe_overrides, user_overrides = recipe_command(args.recipe, user_overrides)
        if args.entry and args.entry != entry:
            raise LaunchError(f"--entry {args.entry} conflicts with recipe {args.recipe}'s entry {entry}")
        notes.append(f"recipe {args.recipe}: {entry} {' '.join(recipe_overrides)}")
    else:
        entry, recipe_overrides = args.entry or DEFAULT_ENTRY, []
    overrides = job_overrides(entry, recipe_overrides, user_overrides)
    if entry in RAY_ENTRIES:
        notes.append(f"added {' '.join(JOIN_OVERRIDES)}: Ray refuses num_cpus when the job's ray.init() "
                     "joins the cluster")
    config_env = _checked_env(entry, overrides, args, notes)
    pip: list[str] = []
    if args.install == "pip":
        pip = job_env.pip_packages([e for e in args.pip_extras.split(",") if e])
        _plugin_override(entry, config_env, overrides, notes)
    extra_env = parse_env(args.env)
    runtime_env = job_env.build_runtime_env(
        job_env.load_runtime_env_file(Path(args.runtime_env)), code=args.code, config_env=config_env,
        extra_env=extra_env, install=args.install, pip=pip,
    )
    env_vars = runtime_env.get("env_vars") or {}
    hidden = frozenset(extra_env) | {k for k in env_vars if SECRET_NAME.search(k)}
    resources = json.loads(args.entrypoint_resources) if args.entrypoint_resources else None
    metadata = {"launcher": "audio-thinker launch/submit.py", "entry": entry}
    if args.recipe:
        metadata["recipe"] = args.recipe
    return JobSpec(
        entrypoint=build_entrypoint(args.python, entry, overrides), runtime_env=runtime_env,
        submission_id=args.job_id, entrypoint_num_cpus=args.entrypoint_num_cpus,
        entrypoint_num_gpus=args.entrypoint_num_gpus, entrypoint_resources=resources,
        metadata=metadata, notes=notes, hidden_env=hidden,
    )
