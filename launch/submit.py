#!/usr/bin/env python
"""Submit an audio-thinker job to an existing Ray cluster (Ray's Jobs API), follow it, return its status.

    python launch/submit.py --address http://HEAD:8265 [options] -- <hydra overrides>
    python launch/submit.py --address http://HEAD:8265 --recipe qwen2_audio_7b/grpo_atar [-- overrides]

The job runs ``python -m audio_thinker.main_grpo <overrides>`` (or the recipe's entry point and
overrides, yours last) on the cluster: everything after ``--`` is passed through unchanged. Before
submitting, the config is composed here with hydra's compose API and validated (the entry point's
own checks), so a misspelt key fails in seconds instead of after the upload.

What is added around your command (printed before submission):

* ``ray_kwargs.ray_init.num_cpus=null`` before your overrides (``main_grpo`` only): inside a job,
  verl's ``ray.init()`` joins the cluster (Ray sets ``RAY_ADDRESS``), and Ray raises
  ``ValueError: When connecting to an existing cluster, num_cpus and num_gpus must not be
  provided`` for the ``num_cpus`` the CPU preset sets for its own local cluster.
* the runtime_env (``launch/runtime_env.yaml``): the checkout as ``working_dir`` (with the excludes
  that keep the upload small), the env vars of the composed config's
  ``ray_kwargs.ray_init.runtime_env.env_vars`` (``VERL_USE_EXTERNAL_MODULES``; ``VERL_PLATFORM=cpu``
  for the CPU preset) and ``RAY_OVERRIDE_JOB_RUNTIME_ENV=1`` (``main_grpo``'s own ``ray.init()``
  names the same variables; Ray refuses that without it).

Environment of the nodes (``--install``): ``image`` (default) expects the pinned environment on
every node, ``pip install -c requirements/constraints.txt -e '.[gpu]'`` baked into the image;
``pip`` asks Ray to build a per-job virtualenv with the project's direct dependencies pinned to
``requirements/constraints.txt`` (best effort: transitive dependencies are not pinned, and every
node downloads them). See launch/README.md.

Logs are streamed to stdout while the job runs and written to ``--log-file`` (default
``runs/launch/<submission id>/job.log``). The exit status is the job's: 0 when it succeeded, the
entrypoint's exit code when it failed (``main_grpo``: 2 for config errors, 1 when training failed or
logged fewer steps than asked), 1 when it was stopped. Ctrl-C detaches (the job keeps running)
unless ``--stop-on-interrupt``.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import importlib
import json
import os
import re
import shlex
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

REPO = Path(__file__).resolve().parents[1]
RUNTIME_ENV_FILE = REPO / "launch" / "runtime_env.yaml"
DEFAULT_ENTRY = "audio_thinker.main_grpo"
#: Ray refuses ``num_cpus`` in a ray.init() that joins a cluster; main_grpo's config may set it
JOIN_OVERRIDES = ("ray_kwargs.ray_init.num_cpus=null",)
#: entry points whose config has verl's ray_kwargs (the ones that call ray.init())
RAY_ENTRIES = ("audio_thinker.main_grpo",)
#: imported on ``import verl`` when the project is not pip-installed on the nodes (``--install pip``):
#: verl loads it through the ``verl.plugins`` entry point only for an installed distribution
PLUGIN_MODULE = "audio_thinker.verl_ext.plugin"
ENV_MODULES = "VERL_USE_EXTERNAL_MODULES"
EXIT_STOPPED = 1


class LaunchError(Exception):
    """A problem found before anything was submitted (bad recipe, config error, bad option)."""


# --------------------------------------------------------------------------------------------
# command line of the job
# --------------------------------------------------------------------------------------------


def split_argv(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """``(own options, overrides)``: everything after the first ``--`` is passed through verbatim."""
    argv = list(argv)
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1:]
    return argv, []


def recipe_command(name: str, extra: Sequence[str] = ()) -> tuple[str, list[str], list[str]]:
    """``(entry, recipe overrides, extra overrides)`` of ``recipes/<name>.yaml``.

    Uses ``audio_thinker.recipes`` (its validation and ``command``) when it can be imported, else
    reads the YAML (keys ``entry`` and ``overrides``) directly."""
    sys.path.insert(0, str(REPO))
    try:
        recipes = importlib.import_module("audio_thinker.recipes")
    except ImportError:
        recipes = None
    finally:
        sys.path.remove(str(REPO))
    if recipes is not None and hasattr(recipes, "load_recipe"):
        try:
            recipe = recipes.load_recipe(name)
        except Exception as error:  # RecipeError: names the file and the field
            raise LaunchError(str(error)) from None
        entry, overrides = recipe.entry, list(recipe.overrides)
        if hasattr(recipes, "command"):
            try:
                argv = recipes.command(recipe, [])
            except Exception as error:
                raise LaunchError(str(error)) from None
            entry, overrides = argv[2], list(argv[3:])  # [python, -m, entry, *overrides]
        return entry, overrides, list(extra)
    import yaml

    path = REPO / "recipes" / f"{name.removesuffix('.yaml')}.yaml"
    if not path.is_file():
        raise LaunchError(f"no recipe {name!r}: {path} does not exist")
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, Mapping) or not isinstance(data.get("entry"), str):
        raise LaunchError(f"recipe {path}: needs the keys entry (a module) and overrides (a list)")
    overrides = data.get("overrides") or []
    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        raise LaunchError(f"recipe {path}: overrides must be a list of strings")
    return data["entry"], list(overrides), list(extra)


def job_overrides(entry: str, recipe_overrides: Sequence[str], user_overrides: Sequence[str]) -> list[str]:
    """The overrides the job runs with: the recipe's, then what joining a cluster needs, then yours
    (last, so they win; passed unchanged)."""
    added = list(JOIN_OVERRIDES) if entry in RAY_ENTRIES else []
    return [*recipe_overrides, *added, *user_overrides]


def build_entrypoint(python: str, entry: str, overrides: Sequence[str]) -> str:
    """The shell command Ray runs: every override stays one argument, byte for byte."""
    return shlex.join([python, "-m", entry, *overrides])


# --------------------------------------------------------------------------------------------
# config: compose + validate here, read the env vars the job needs
# --------------------------------------------------------------------------------------------


def compose_config(entry: str, overrides: Sequence[str]) -> Any:
    """The entry point's hydra config with ``overrides`` (hydra's compose API; starts nothing), after
    the entry point's own validation (and verl's ``validate_config`` for GRPO, as the recipes CLI
    does). Raises :class:`LaunchError` for config errors and ``ImportError`` when the entry point's
    modules are not importable here."""
    sys.path.insert(0, str(REPO))
    try:
        module = importlib.import_module(entry)
        from hydra import compose, initialize_config_dir
        from hydra.core.global_hydra import GlobalHydra
    finally:
        sys.path.remove(str(REPO))
    if not hasattr(module, "CONFIG_DIR"):
        raise ImportError(f"{entry} has no CONFIG_DIR: not a hydra entry point of this project")
    own = [o for o in overrides if not o.startswith(("hydra.", "+hydra.", "~hydra."))]
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=module.CONFIG_DIR, version_base=None):
            config = compose(config_name=module.CONFIG_NAME, overrides=own)
    except ImportError:
        raise
    except Exception as error:  # hydra: unknown key, bad value, missing group option
        raise LaunchError(f"config error: {error}") from None
    finally:
        GlobalHydra.instance().clear()
    try:
        if hasattr(module, "validate"):
            module.validate(config)
        if entry == "audio_thinker.main_grpo":
            try:
                recipes = importlib.import_module("audio_thinker.recipes")
            except ImportError:
                recipes = None
            if recipes is not None and hasattr(recipes, "verl_validate"):
                recipes.verl_validate(config)
    except ImportError:
        raise
    except Exception as error:  # ConfigError and friends
        raise LaunchError(f"config error: {error}") from None
    return config


def config_env_vars(config: Any) -> dict[str, str]:
    """``ray_kwargs.ray_init.runtime_env.env_vars`` of a composed config, as strings."""
    from omegaconf import OmegaConf

    node = OmegaConf.select(config, "ray_kwargs.ray_init.runtime_env.env_vars", default=None)
    if node is None:
        return {}
    values = OmegaConf.to_container(node, resolve=True)
    return {str(k): str(v) for k, v in values.items() if v is not None}


# --------------------------------------------------------------------------------------------
# runtime_env
# --------------------------------------------------------------------------------------------


def _requirement_name(requirement: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    return re.sub(r"[-_.]+", "-", match.group(1)).lower() if match else ""


def pip_packages(repo: Path = REPO, extras: Sequence[str] = ("gpu",)) -> list[str]:
    """The project's direct dependencies (``setup.py``: ``install_requires`` + ``extras``), each
    pinned to ``requirements/constraints.txt`` when it is listed there (``verl[verl-core]==0.9.1``)."""
    tree = ast.parse((repo / "setup.py").read_text(encoding="utf-8"))
    literals: dict[str, Any] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                literals[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                pass
    requirements = list(literals.get("INSTALL_REQUIRES", []))
    for extra in extras:
        try:
            requirements += list(literals.get("EXTRAS_REQUIRE", {})[extra])
        except KeyError:
            raise LaunchError(f"setup.py has no extra {extra!r}") from None
    pins: dict[str, str] = {}
    constraints = repo / "requirements" / "constraints.txt"
    if constraints.is_file():
        for line in constraints.read_text(encoding="utf-8").splitlines():
            line = line.split("#", 1)[0].strip()
            if "==" in line:
                name, version = line.split("==", 1)
                pins[_requirement_name(name)] = version.split(";")[0].strip()
    packages = []
    for requirement in requirements:
        name = _requirement_name(requirement)
        head = re.match(r"\s*[A-Za-z0-9][A-Za-z0-9._-]*(\[[^\]]*\])?", requirement).group(0).strip()
        packages.append(f"{head}=={pins[name]}" if name in pins else requirement)
    return packages


def package_files(root: Path, excludes: Sequence[str], include_gitignore: bool = False) -> list[Path] | None:
    """The files Ray would upload as the working_dir ``root`` with ``excludes`` (Ray's own matcher:
    gitignore-style patterns; ``.gitignore`` files only with ``include_gitignore``, Ray's default).
    None when this Ray has no such helper."""
    try:
        from ray._private.runtime_env.packaging import _dir_travel, _get_excludes
    except ImportError:
        return None
    root = Path(root).absolute()
    files: list[Path] = []

    def handler(path: Path) -> None:
        if path.is_file() and not path.is_symlink():
            files.append(path)

    import logging

    _dir_travel(root, [_get_excludes(root, list(excludes))], handler, include_gitignore=include_gitignore,
                logger=logging.getLogger("launch.package"))
    return files


def load_runtime_env_file(path: Path = RUNTIME_ENV_FILE) -> dict[str, Any]:
    import yaml

    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise LaunchError(f"{path}: a runtime_env must be a YAML mapping")
    return data


def build_runtime_env(
    base: Mapping[str, Any],
    *,
    code: str = "upload",
    config_env: Mapping[str, str] | None = None,
    extra_env: Mapping[str, str] | None = None,
    install: str = "image",
    pip: Sequence[str] = (),
    repo: Path = REPO,
) -> dict[str, Any]:
    """The job's runtime_env: ``base`` (launch/runtime_env.yaml) with ``working_dir`` resolved against
    the repository (``code="upload"``) or dropped (``code="installed"``: the nodes' own copy), the
    config's env vars, ``extra_env`` (``--env``), and ``pip`` for ``install="pip"``."""
    env: dict[str, Any] = {k: v for k, v in base.items() if k not in ("env_vars", "working_dir", "excludes")}
    if code == "upload":
        working_dir = Path(base.get("working_dir") or ".")
        env["working_dir"] = str(working_dir if working_dir.is_absolute() else (repo / working_dir).resolve())
        if base.get("excludes"):
            env["excludes"] = list(base["excludes"])
    elif code != "installed":
        raise LaunchError(f"--code must be upload or installed, got {code!r}")
    env_vars = {str(k): str(v) for k, v in (base.get("env_vars") or {}).items()}
    env_vars.update(config_env or {})
    if install == "pip":
        modules = [m for m in env_vars.get(ENV_MODULES, "").split(",") if m]
        env_vars[ENV_MODULES] = ",".join([PLUGIN_MODULE, *[m for m in modules if m != PLUGIN_MODULE]])
        env["pip"] = {"packages": list(pip), "pip_check": False}
    elif install != "image":
        raise LaunchError(f"--install must be image or pip, got {install!r}")
    env_vars.update(extra_env or {})
    if env_vars:
        env["env_vars"] = env_vars
    return env


# --------------------------------------------------------------------------------------------
# the job
# --------------------------------------------------------------------------------------------


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

    def describe(self) -> str:
        shown = dict(self.runtime_env)
        if "excludes" in shown:
            shown["excludes"] = f"[{len(shown['excludes'])} patterns, launch/runtime_env.yaml]"
        if "pip" in shown:
            shown["pip"] = {**shown["pip"], "packages": f"[{len(shown['pip']['packages'])} pinned packages]"}
        lines = [f"entrypoint: {self.entrypoint}", f"runtime_env: {json.dumps(shown, sort_keys=True)}"]
        if "working_dir" in self.runtime_env:
            files = package_files(Path(self.runtime_env["working_dir"]), self.runtime_env.get("excludes", []))
            if files is not None:
                size = sum(f.stat().st_size for f in files)
                lines.append(f"working_dir upload: {len(files)} files, {size / 2**20:.1f} MiB "
                             "before compression")
        for key in ("submission_id", "entrypoint_num_cpus", "entrypoint_num_gpus", "entrypoint_resources"):
            if getattr(self, key) is not None:
                lines.append(f"{key}: {getattr(self, key)}")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def parse_env(items: Sequence[str]) -> dict[str, str]:
    env = {}
    for item in items:
        if "=" not in item:
            raise LaunchError(f"--env {item!r}: write KEY=VALUE")
        key, value = item.split("=", 1)
        env[key] = value
    return env


def prepare_job(args: argparse.Namespace, user_overrides: Sequence[str]) -> JobSpec:
    """Everything up to submission: recipe, overrides, config check, runtime_env. Pure of Ray."""
    notes: list[str] = []
    if args.recipe:
        entry, recipe_overrides, user_overrides = recipe_command(args.recipe, user_overrides)
        if args.entry and args.entry != entry:
            raise LaunchError(f"--entry {args.entry} conflicts with recipe {args.recipe}'s entry {entry}")
        notes.append(f"recipe {args.recipe}: {entry} with {len(recipe_overrides)} overrides")
    else:
        entry, recipe_overrides = args.entry or DEFAULT_ENTRY, []
    overrides = job_overrides(entry, recipe_overrides, user_overrides)
    if entry in RAY_ENTRIES:
        notes.append(f"added {' '.join(JOIN_OVERRIDES)}: Ray refuses num_cpus when the job's ray.init() "
                     "joins the cluster")
    config_env: dict[str, str] = {}
    hydra_flags = [o for o in overrides if o.startswith("-")]
    if args.no_validate:
        notes.append("config not composed here (--no-validate): the job's own ray.init() sets its env vars")
    elif hydra_flags:
        notes.append(f"config not composed here: hydra flags {hydra_flags} are passed to the job as they are")
    else:
        try:
            config = compose_config(entry, overrides)
        except ImportError as error:
            notes.append(f"config not composed here ({error}); the job's own ray.init() sets its env vars")
        else:
            config_env = config_env_vars(config)
            notes.append(f"config composed and validated here ({entry}); env vars: "
                         f"{', '.join(sorted(config_env)) or 'none'}")
    pip: list[str] = []
    if args.install == "pip":
        pip = pip_packages(REPO, [e for e in args.pip_extras.split(",") if e])
        if entry in RAY_ENTRIES:
            if not config_env:
                raise LaunchError("--install pip needs the config composed here (hydra and the project "
                                  "importable, no --no-validate): the job's ray.init() must load the plugin")
            # the driver's ray.init() env vars win over the job's: it must name the plugin too
            modules = [PLUGIN_MODULE, *[m for m in config_env.get(ENV_MODULES, "").split(",")
                                        if m and m != PLUGIN_MODULE]]
            overrides.append(f"ray_kwargs.ray_init.runtime_env.env_vars.{ENV_MODULES}='{','.join(modules)}'")
            notes.append(f"--install pip: the project is not installed on the nodes; {PLUGIN_MODULE} "
                         f"is loaded through {ENV_MODULES}")
    base = load_runtime_env_file(Path(args.runtime_env))
    runtime_env = build_runtime_env(
        base, code=args.code, config_env=config_env, extra_env=parse_env(args.env),
        install=args.install, pip=pip,
    )
    resources = json.loads(args.entrypoint_resources) if args.entrypoint_resources else None
    metadata = {"launcher": "audio-thinker launch/submit.py", "entry": entry}
    if args.recipe:
        metadata["recipe"] = args.recipe
    return JobSpec(
        entrypoint=build_entrypoint(args.python, entry, overrides), runtime_env=runtime_env,
        submission_id=args.job_id, entrypoint_num_cpus=args.entrypoint_num_cpus,
        entrypoint_num_gpus=args.entrypoint_num_gpus, entrypoint_resources=resources,
        metadata=metadata, notes=notes,
    )


def connect(address: str | None, headers: Mapping[str, str] | None = None, timeout: float = 0.0) -> Any:
    """A ``JobSubmissionClient`` for the dashboard at ``address``; retried for ``timeout`` seconds."""
    from ray.job_submission import JobSubmissionClient

    if not address:
        raise LaunchError("no cluster address: pass --address http://HEAD:8265 or set RAY_ADDRESS")
    deadline = time.monotonic() + timeout
    while True:
        try:
            return JobSubmissionClient(address, headers=dict(headers) if headers else None)
        except Exception as error:  # ConnectionError, authentication errors
            if time.monotonic() >= deadline:
                hint = ""
                if re.search(r":6379/?$", address):
                    hint = " (that looks like the GCS port: the Jobs API is the dashboard, http://HEAD:8265)"
                raise LaunchError(f"cannot reach the Ray Jobs API at {address}{hint}: {error}") from None
            time.sleep(1.0)


def submit(client: Any, spec: JobSpec) -> str:
    kwargs: dict[str, Any] = {"entrypoint": spec.entrypoint, "runtime_env": spec.runtime_env,
                              "metadata": spec.metadata}
    for key in ("submission_id", "entrypoint_num_cpus", "entrypoint_num_gpus", "entrypoint_resources"):
        if getattr(spec, key) is not None:
            kwargs[key] = getattr(spec, key)
    return client.submit_job(**kwargs)


def exit_status(info: Any) -> int:
    """0 for SUCCEEDED, the entrypoint's exit code (or 1) for FAILED, 1 for STOPPED."""
    status = str(getattr(info.status, "value", info.status))
    if status == "SUCCEEDED":
        return 0
    if status == "FAILED":
        code = getattr(info, "driver_exit_code", None)
        return code if isinstance(code, int) and 0 < code < 256 else 1
    return EXIT_STOPPED


async def _tail(client: Any, job_id: str, sink: Callable[[str], None]) -> None:
    async for chunk in client.tail_job_logs(job_id):
        sink(chunk)


def follow(client: Any, job_id: str, *, log_file: Path | None, stream: TextIO | None = sys.stdout,
           poll_s: float = 1.0) -> Any:
    """Stream the job's logs until it ends; write the complete log to ``log_file``; the final JobInfo."""
    handle = None
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handle = log_file.open("w", encoding="utf-8")

    def sink(text: str) -> None:
        if stream is not None:
            stream.write(text)
            stream.flush()
        if handle is not None:
            handle.write(text)
            handle.flush()

    try:
        try:
            asyncio.run(_tail(client, job_id, sink))
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as error:  # websocket trouble: fall back to polling the status
            print(f"[launch] log streaming stopped ({error}); polling the job status", file=sys.stderr)
        while True:
            info = client.get_job_info(job_id)
            if info.status.is_terminal():
                break
            time.sleep(poll_s)
    finally:
        if handle is not None:
            handle.close()
    if log_file is not None:  # the authoritative copy (the stream may have missed the start)
        try:
            log_file.write_text(client.get_job_logs(job_id), encoding="utf-8")
        except Exception as error:
            print(f"[launch] could not fetch the full job log ({error}); {log_file} has the stream",
                  file=sys.stderr)
    return info


def default_log_file(job_id: str) -> Path:
    return REPO / "runs" / "launch" / job_id / "job.log"


def run_job(client: Any, spec: JobSpec, *, wait: bool = True, log_file: Path | None = None,
            stop_on_interrupt: bool = False, address: str = "") -> int:
    """Submit ``spec``; with ``wait``, follow it to the end and return its exit status."""
    job_id = submit(client, spec)
    print(f"[launch] submitted job {job_id} to {address or 'the cluster'}", flush=True)
    if not wait:
        print(f"[launch] follow it with: ray job logs --follow --address {address} {job_id}\n"
              f"[launch] stop it with:   ray job stop --address {address} {job_id}")
        return 0
    log_file = log_file or default_log_file(job_id)
    try:
        info = follow(client, job_id, log_file=log_file)
    except KeyboardInterrupt:
        if stop_on_interrupt:
            print(f"\n[launch] interrupted: stopping job {job_id}", file=sys.stderr, flush=True)
            try:
                client.stop_job(job_id)
            except Exception as error:
                print(f"[launch] could not stop job {job_id}: {error}", file=sys.stderr)
            raise
        print(f"\n[launch] detached; job {job_id} keeps running "
              f"(ray job stop --address {address} {job_id})", file=sys.stderr)
        return 130
    code = exit_status(info)
    status = str(getattr(info.status, "value", info.status))
    message = f" ({info.message})" if status != "SUCCEEDED" and getattr(info, "message", None) else ""
    if len(message) > 600:
        message = message[:600] + "...)"
    uploaded = (getattr(info, "runtime_env", None) or {}).get("working_dir")
    if uploaded:
        print(f"[launch] code: this checkout, uploaded as {uploaded}", flush=True)
    print(f"[launch] job {job_id}: {status}, exit status {code}{message}\n[launch] log: {log_file}",
          flush=True)
    return code


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def add_job_arguments(parser: argparse.ArgumentParser, code_default: str = "upload") -> None:
    """Options shared with launch/local.py."""
    parser.add_argument("--recipe", help="recipes/<NAME>.yaml: its entry point and overrides "
                                         "(yours after -- come last and win)")
    parser.add_argument("--entry", default=None,
                        help=f"module run as python -m ENTRY (default {DEFAULT_ENTRY}; "
                             "a recipe sets its own)")
    parser.add_argument("--python", default="python",
                        help="the interpreter on the nodes (default: python on the nodes' PATH)")
    parser.add_argument("--job-id", default=None, help="submission id (default: Ray's raysubmit_...)")
    parser.add_argument("--entrypoint-num-cpus", type=float, default=None,
                        help="CPUs reserved for the driver process (default: none, it runs on the head)")
    parser.add_argument("--entrypoint-num-gpus", type=float, default=None,
                        help="GPUs reserved for the driver (places it on a GPU node; e.g. SFT entries)")
    parser.add_argument("--entrypoint-resources", default=None,
                        help='custom resources for the driver, JSON: \'{"judge_node": 1}\'')
    parser.add_argument("--code", choices=("upload", "installed"), default=code_default,
                        help="upload: ship this checkout as the job's working_dir (relative paths then "
                             "resolve in that copy); installed: no upload, the installed audio_thinker runs "
                             f"in the nodes' current directory (default {code_default})")
    parser.add_argument("--runtime-env", default=str(RUNTIME_ENV_FILE),
                        help="base runtime_env YAML (default launch/runtime_env.yaml)")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="extra env var for the job (repeatable); visible in the dashboard: no secrets")
    parser.add_argument("--no-validate", action="store_true",
                        help="do not compose/validate the config here (no hydra/verl on this machine)")
    parser.add_argument("--log-file", type=Path, default=None,
                        help="where the job's log goes (default runs/launch/<submission id>/job.log)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the entrypoint and runtime_env, submit nothing")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python launch/submit.py",
        description="Submit an audio-thinker job to a running Ray cluster (Ray Jobs API). "
                    "Hydra overrides go after --, unchanged.",
        epilog="example: python launch/submit.py --address http://head:8265 --recipe "
               "qwen2_audio_7b/grpo_atar -- trainer.nnodes=2",
    )
    p.add_argument("--address",
                   default=os.environ.get("RAY_API_SERVER_ADDRESS") or os.environ.get("RAY_ADDRESS"),
                   help="the cluster's dashboard / Jobs API, http://HEAD:8265 "
                        "(default $RAY_API_SERVER_ADDRESS, then $RAY_ADDRESS)")
    p.add_argument("--no-wait", action="store_true", help="submit, print the job id and return")
    p.add_argument("--stop-on-interrupt", action="store_true",
                   help="Ctrl-C stops the job (default: Ctrl-C detaches, the job keeps running)")
    p.add_argument("--install", choices=("image", "pip"), default="image",
                   help="image: the nodes have the pinned environment (default); pip: Ray installs the "
                        "pinned direct dependencies into a per-job virtualenv on every node")
    p.add_argument("--pip-extras", default="gpu", help="setup.py extras for --install pip (default gpu)")
    add_job_arguments(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    own, overrides = split_argv(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(own)
    try:
        spec = prepare_job(args, overrides)
        print(spec.describe(), flush=True)
        if args.dry_run:
            return 0
        client = connect(args.address)
        return run_job(client, spec, wait=not args.no_wait, log_file=args.log_file,
                       stop_on_interrupt=args.stop_on_interrupt, address=args.address)
    except LaunchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
