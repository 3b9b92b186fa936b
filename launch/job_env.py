"""The environment a job runs in: its Ray runtime_env, the code it uploads, the packages it pins.

* :func:`build_runtime_env`: ``launch/runtime_env.yaml`` with ``working_dir`` resolved against this
  checkout (or dropped for ``--code installed``), the composed config's env vars, ``--env`` extras
  and, for ``--install pip``, the pinned direct dependencies;
* :func:`package_files`: what the ``working_dir`` upload holds, by our own walk over the excludes
  (gitignore-style patterns, the subset Ray documents for ``excludes``), for the printed plan and
  the test that keeps the upload small; :data:`SECRET_EXCLUDES` (dot-env files, keys, certificates,
  ``secrets/``) are added to every upload's excludes, whatever the runtime_env file says;
* :func:`pip_packages`: the project's direct dependencies from its installed metadata
  (``importlib.metadata``), pinned to ``requirements/constraints.txt``.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RUNTIME_ENV_FILE = REPO / "launch" / "runtime_env.yaml"
CONSTRAINTS_FILE = REPO / "requirements" / "constraints.txt"
DISTRIBUTION = "audio-thinker"
#: imported on ``import verl`` when the project is not pip-installed on the nodes (``--install pip``):
#: verl loads it through the ``verl.plugins`` entry point only for an installed distribution
PLUGIN_MODULE = "audio_thinker.verl_ext.plugin"
ENV_MODULES = "VERL_USE_EXTERNAL_MODULES"
#: never uploaded, whatever the runtime_env file lists (launch/runtime_env.yaml lists them too, for
#: ``ray job submit --runtime-env``): dot-env files, private keys and certificates, credential folders
SECRET_EXCLUDES = (
    ".env", ".env.*", "*.env", "*.key", "*.pem", "*.p12", "*.pfx", "id_rsa*", "id_dsa*", "id_ecdsa*",
    "id_ed25519*", ".netrc", "secrets/",
)


class LaunchError(Exception):
    """A problem found before anything was submitted (bad recipe, config error, bad option)."""


# --------------------------------------------------------------------------------------------
# runtime_env
# --------------------------------------------------------------------------------------------


def load_runtime_env_file(path: Path = RUNTIME_ENV_FILE) -> dict[str, Any]:
    import yaml

    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise LaunchError(f"{path}: a runtime_env must be a YAML mapping")
    return data


def with_plugin(modules: str) -> str:
    """``VERL_USE_EXTERNAL_MODULES`` with our verl plugin first (once)."""
    rest = [m for m in modules.split(",") if m and m != PLUGIN_MODULE]
    return ",".join([PLUGIN_MODULE, *rest])


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
    the repository (``code="upload"``, its excludes plus :data:`SECRET_EXCLUDES`) or dropped
    (``code="installed"``: the nodes' own copy), the config's env vars, ``extra_env`` (``--env``),
    and ``pip`` for ``install="pip"``."""
    env: dict[str, Any] = {k: v for k, v in base.items() if k not in ("env_vars", "working_dir", "excludes")}
    if code == "upload":
        working_dir = Path(base.get("working_dir") or ".")
        env["working_dir"] = str(working_dir if working_dir.is_absolute() else (repo / working_dir).resolve())
        excludes = list(base.get("excludes") or [])
        env["excludes"] = excludes + [p for p in SECRET_EXCLUDES if p not in excludes]
    elif code != "installed":
        raise LaunchError(f"--code must be upload or installed, got {code!r}")
    env_vars = {str(k): str(v) for k, v in (base.get("env_vars") or {}).items()}
    env_vars.update(config_env or {})
    if install == "pip":
        env_vars[ENV_MODULES] = with_plugin(env_vars.get(ENV_MODULES, ""))
        env["pip"] = {"packages": list(pip), "pip_check": False}
    elif install != "image":
        raise LaunchError(f"--install must be image or pip, got {install!r}")
    env_vars.update(extra_env or {})
    if env_vars:
        env["env_vars"] = env_vars
    return env


# --------------------------------------------------------------------------------------------
# the working_dir upload
# --------------------------------------------------------------------------------------------


def _glob_regex(glob: str) -> str:
    """A gitignore glob as a regex: ``*`` and ``?`` stay within one path part, ``**`` crosses parts."""
    out, i = [], 0
    while i < len(glob):
        if glob.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif glob.startswith("**", i):
            out.append(".*")
            i += 2
        elif glob[i] == "*":
            out.append("[^/]*")
            i += 1
        elif glob[i] == "?":
            out.append("[^/]")
            i += 1
        elif glob[i] == "[" and "]" in glob[i + 1:]:
            end = glob.index("]", i + 1)
            out.append("[" + glob[i + 1:end].replace("!", "^", 1) + "]")
            i = end + 1
        else:
            out.append(re.escape(glob[i]))
            i += 1
    return "".join(out)


def compile_excludes(patterns: Iterable[str]) -> list[tuple[re.Pattern[str], bool]]:
    """``(regex over the path relative to working_dir, directories only)`` per pattern. A pattern
    with a ``/`` before its end is anchored to working_dir, one without matches at any depth
    (gitignore's rules); negations (``!pattern``) are refused rather than half supported."""
    compiled = []
    for raw in patterns:
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        if pattern.startswith("!"):
            raise LaunchError(f"excludes: {raw!r}: negated patterns are not supported here; "
                              "list what to exclude")
        dir_only = pattern.endswith("/")
        pattern = pattern.rstrip("/")
        anchored = "/" in pattern
        body = _glob_regex(pattern.lstrip("/"))
        compiled.append((re.compile(("^" if anchored else "^(?:.*/)?") + body + "$"), dir_only))
    return compiled


def is_excluded(relative: str, is_dir: bool, excludes: Sequence[tuple[re.Pattern[str], bool]]) -> bool:
    return any(regex.match(relative) and (is_dir or not dir_only) for regex, dir_only in excludes)


def package_files(root: Path, excludes: Sequence[str]) -> list[Path]:
    """The files the ``working_dir`` upload of ``root`` holds with ``excludes`` (an excluded folder is
    not entered; symlinks are skipped). ``.gitignore`` files are not applied: the excludes of
    launch/runtime_env.yaml are complete on their own (Ray applies both)."""
    root = Path(root).absolute()
    compiled = compile_excludes(excludes)
    files: list[Path] = []
    for folder, dirnames, filenames in os.walk(root):
        here = Path(folder)
        prefix = here.relative_to(root).as_posix()
        prefix = "" if prefix == "." else prefix + "/"
        dirnames[:] = sorted(d for d in dirnames if not (here / d).is_symlink()
                             and not is_excluded(prefix + d, True, compiled))
        files += [here / name for name in sorted(filenames)
                  if not is_excluded(prefix + name, False, compiled) and not (here / name).is_symlink()]
    return files


# --------------------------------------------------------------------------------------------
# --install pip: the pinned direct dependencies
# --------------------------------------------------------------------------------------------


def _requirement_name(requirement: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    return re.sub(r"[-_.]+", "-", match.group(1)).lower() if match else ""


def _pins(constraints: Path) -> dict[str, str]:
    pins: dict[str, str] = {}
    if constraints.is_file():
        for line in constraints.read_text(encoding="utf-8").splitlines():
            line = line.split("#", 1)[0].strip()
            if "==" in line:
                name, version = line.split("==", 1)
                pins[_requirement_name(name)] = version.split(";")[0].strip()
    return pins


def pip_packages(extras: Sequence[str] = ("gpu",), *, distribution: str = DISTRIBUTION,
                 constraints: Path = CONSTRAINTS_FILE) -> list[str]:
    """The project's direct dependencies (its installed metadata: ``install_requires`` plus
    ``extras``), each pinned to ``constraints`` when listed there (``verl[verl-core]==0.9.1``)."""
    try:
        meta = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        raise LaunchError(f"--install pip reads the dependencies of the installed {distribution}: "
                          "pip install -e . here first") from None
    known = meta.metadata.get_all("Provides-Extra") or []
    for extra in extras:
        if extra not in known:
            raise LaunchError(f"{distribution} has no extra {extra!r} (extras: {', '.join(known) or 'none'})")
    requirements = []
    for requirement in meta.requires or []:
        spec, _, marker = requirement.partition(";")
        wanted = re.fullmatch(r"""\s*extra\s*==\s*["']([^"']+)["']\s*""", marker)
        if not marker.strip() or (wanted and wanted.group(1) in extras):
            requirements.append(spec.strip())
        elif not wanted:
            requirements.append(requirement.strip())  # another environment marker: pip evaluates it
    pins = _pins(constraints)
    packages = []
    for requirement in requirements:
        name = _requirement_name(requirement)
        head = re.match(r"\s*[A-Za-z0-9][A-Za-z0-9._-]*(\[[^\]]*\])?", requirement).group(0).strip()
        packages.append(f"{head}=={pins[name]}" if name in pins else requirement)
    return packages
