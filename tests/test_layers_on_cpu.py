"""The import contract: layers only point down (docs/architecture.md draws them).

Every ``import`` in ``audio_thinker/`` and ``reward_workers/`` is read with :mod:`ast` (also the
ones inside functions: a lazy import is still a dependency) and checked against two tables:

* :data:`LAYERS`: which of our own components a component may import. A component is the longest
  module prefix listed there; anything else is a violation.
* :data:`HEAVY`: which components may import ``ray``, ``verl`` or ``vllm`` (the glue and the
  entry points; vLLM also in the inference layer, which is its one home).

A failure names the importing file and line, what it imports, and the rule it breaks.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("audio_thinker", "reward_workers")

# -- the layers, bottom to top --------------------------------------------------------------------
#: pure core: prompts, rewards, the run summary (stdlib / numpy only)
CORE = {"audio_thinker.prompts", "audio_thinker.rewards", "audio_thinker.run_summary"}
#: data: audio I/O, rows, synthetic audio, data-set conversion, benchmark loaders
DATA = CORE | {"audio_thinker.data"}
#: the config schema and the benchmark scoring sit on the data layer
SCHEMA = DATA | {"audio_thinker.config", "audio_thinker.scoring"}
#: model generation (transformers, vLLM)
INFERENCE = SCHEMA | {"audio_thinker.inference"}
#: what the glue, the judge pool and the demo builders may use
BELOW_GLUE = INFERENCE | {"audio_thinker.models"}

LAYERS: dict[str, set[str]] = {
    "audio_thinker.prompts": set(),
    "audio_thinker.rewards": {"audio_thinker.rewards"},
    "audio_thinker.run_summary": set(),
    "audio_thinker.data": DATA,
    "audio_thinker.config": SCHEMA,
    "audio_thinker.scoring": SCHEMA,
    "audio_thinker.inference": INFERENCE,
    "audio_thinker.models": INFERENCE | {"audio_thinker.models"},
    # CoT generation is a data-building pipeline that runs models: above inference
    "audio_thinker.data.cot": INFERENCE,
    "audio_thinker.toy": BELOW_GLUE | {"audio_thinker.toy"},
    "reward_workers": BELOW_GLUE | {"reward_workers"},
    "audio_thinker.backends": BELOW_GLUE | {"audio_thinker.backends"},
    "audio_thinker.verl_ext": BELOW_GLUE | {"audio_thinker.verl_ext", "audio_thinker.backends", "reward_workers"},
    # entry points: may use every layer, never each other (shared CLI helpers live in cli)
    "audio_thinker.cli": BELOW_GLUE | {"audio_thinker.toy"},
    # main_grpo: compose.verl_validate is the one wrapper of verl's validate_config (its dry run uses it)
    "audio_thinker.main_grpo": BELOW_GLUE | {"audio_thinker.toy", "audio_thinker.cli", "audio_thinker.verl_ext",
                                             "audio_thinker.compose"},
    "audio_thinker.main_sft": BELOW_GLUE | {"audio_thinker.toy", "audio_thinker.cli", "audio_thinker.verl_ext",
                                            "audio_thinker.backends"},
    "audio_thinker.evaluate": BELOW_GLUE | {"audio_thinker.toy", "audio_thinker.cli", "audio_thinker.verl_ext",
                                            "audio_thinker.evaluate"},
    "audio_thinker.compose": BELOW_GLUE,
    "audio_thinker.recipes": BELOW_GLUE | {"audio_thinker.cli", "audio_thinker.compose", "audio_thinker.verl_ext"},
    "audio_thinker": set(),  # the package's __init__ imports nothing of ours
}

#: which components may import the heavy distributed stack
HEAVY: dict[str, set[str]] = {
    "ray": {"audio_thinker.backends", "audio_thinker.verl_ext", "reward_workers", "audio_thinker.main_grpo",
            "audio_thinker.main_sft", "audio_thinker.recipes"},
    "verl": {"audio_thinker.backends", "audio_thinker.verl_ext", "audio_thinker.main_grpo", "audio_thinker.main_sft",
             "audio_thinker.recipes", "audio_thinker.cli", "audio_thinker.compose"},
    "vllm": {"audio_thinker.inference", "audio_thinker.backends", "audio_thinker.verl_ext", "reward_workers"},
}


def component(module: str, table: dict[str, set[str]] | None = None) -> str | None:
    """The longest prefix of ``module`` that names a component of ``table`` (default :data:`LAYERS`).

    >>> component("audio_thinker.data.cot.store"), component("audio_thinker.data.audio")
    ('audio_thinker.data.cot', 'audio_thinker.data')
    """
    keys = LAYERS if table is None else table
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        prefix = ".".join(parts[:end])
        if prefix in keys:
            return prefix
    return None


def module_name(path: Path, root: Path = REPO) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, root: Path = REPO) -> list[tuple[int, str]]:
    """``(line, imported module)`` for every import statement in the file, relative ones resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module_name(path, root).rsplit(".", 0 if path.name == "__init__.py" else 1)[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.append((node.lineno, base))
            # `from audio_thinker import toy` imports the submodule audio_thinker.toy
            found.extend((node.lineno, f"{base}.{alias.name}") for alias in node.names
                         if f"{base}.{alias.name}".startswith(PACKAGES))
    return found


def source_files(root: Path = REPO) -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (root / pkg).rglob("*.py"))


def violations(root: Path = REPO) -> list[str]:
    problems: list[str] = []
    for path in source_files(root):
        importer = module_name(path, root)
        owner = component(importer)
        if owner is None:
            problems.append(f"{path.relative_to(root)}: module {importer} belongs to no layer: add it to LAYERS "
                            "(tests/test_layers_on_cpu.py) and to docs/architecture.md")
            continue
        for line, target in imports_of(path, root):
            top = target.split(".")[0]
            where = f"{path.relative_to(root)}:{line}"
            if top in PACKAGES:
                if target == "audio_thinker":
                    continue
                dep = component(target)
                if dep is None:
                    problems.append(f"{where}: imports {target}, which belongs to no layer")
                elif dep != owner and dep not in LAYERS[owner] and not owner.startswith(dep + "."):
                    problems.append(f"{where}: {owner} may not import {dep}: layers only point down")
            elif top in HEAVY and component(importer, {k: set() for k in HEAVY[top]}) is None:
                problems.append(f"{where}: {owner} imports {top}: only {sorted(HEAVY[top])} may")
    return list(dict.fromkeys(problems))  # one line per (place, rule): `from a import b, c` reports once


def test_layers_only_point_down():
    problems = violations()
    assert not problems, "import contract broken (docs/architecture.md):\n" + "\n".join(problems)


def test_contract_sees_every_file_and_its_imports():
    files = source_files()
    assert len(files) > 40
    names = {module_name(p) for p in files}
    assert "audio_thinker.rewards.combine" in names and "reward_workers.pool" in names
    combine = imports_of(REPO / "audio_thinker/rewards/combine.py")
    assert any(t == "audio_thinker.rewards.atar" for _, t in combine)


@pytest.mark.parametrize("source, expected", [
    ("import ray\n", "imports ray"),
    ("from verl.utils import x\n", "imports verl"),
    ("def f():\n    import vllm\n", "imports vllm"),
    ("from audio_thinker.verl_ext import trainer\n", "may not import audio_thinker.verl_ext"),
    ("from audio_thinker import toy\n", "may not import audio_thinker.toy"),
    ("from audio_thinker.main_grpo import prepare\n", "may not import audio_thinker.main_grpo"),
])
def test_a_violation_is_reported(tmp_path, source, expected):
    """A pure-core module that imports upwards or the distributed stack is caught (with the line)."""
    bad = tmp_path / "audio_thinker" / "rewards" / "probe.py"
    bad.parent.mkdir(parents=True)
    bad.write_text(source, encoding="utf-8")
    problems = violations(tmp_path)
    assert len(problems) == 1 and expected in problems[0] and "probe.py:" in problems[0], problems


def test_allowed_imports_pass(tmp_path):
    """Downward and same-component imports are fine, also relative ones."""
    ok = tmp_path / "audio_thinker" / "inference" / "probe.py"
    ok.parent.mkdir(parents=True)
    ok.write_text("from audio_thinker.data.rows import x\nfrom . import hf\nfrom ..rewards import parsing\n"
                  "def f():\n    import vllm\n", encoding="utf-8")
    assert violations(tmp_path) == []
