"""The verl contract (:mod:`audio_thinker.verl_ext.contract`) holds and is complete.

* verl is exactly the pinned version, and every listed symbol exists with the listed parameter
  names and members; a failure names the symbol, where we use it and what to revisit.
* Completeness, read from our source (``audio_thinker/`` and ``reward_workers/``): every verl name
  starting with ``_`` that we import or read, every assignment / ``setattr`` / item assignment on a
  verl object, every verl class we subclass and every verl function we call is listed; so is every
  member of verl's that our subclasses override or use on ``self`` (found by importing our modules).
* The ``hf`` rollout server answers every call verl's replica and agent loop make on a server.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import textwrap
from pathlib import Path

import pytest

from audio_thinker.verl_ext import contract
from audio_thinker.verl_ext.contract import CONTRACT, USES, VERL_VERSION, check_symbol, resolve

REPO = Path(__file__).resolve().parents[1]
OUR_PACKAGES = ("audio_thinker", "reward_workers")
THIRD_PARTY = ("verl", "transfer_queue")
#: dunder members that count as overrides (the rest are Python's or dataclasses' machinery)
OVERRIDABLE_DUNDERS = {"__init__", "__call__", "__getitem__", "__len__", "__iter__"}


def _sources() -> list[Path]:
    return sorted(path for package in OUR_PACKAGES for path in (REPO / package).rglob("*.py"))


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


# ------------------------------------------------------------------------------------- the contract
def test_verl_is_the_pinned_version():
    installed = contract.installed_verl_version()
    assert installed == VERL_VERSION, (
        f"verl {installed} is installed, audio_thinker.verl_ext.contract pins {VERL_VERSION}: run "
        "`python -m audio_thinker.verl_ext.contract`, revisit every symbol it reports, then update the pin"
    )


@pytest.mark.parametrize("symbol", CONTRACT, ids=lambda symbol: symbol.path)
def test_every_symbol_holds_in_the_installed_verl(symbol):
    if symbol.needs is not None and importlib.util.find_spec(symbol.needs) is None:
        pytest.skip(f"{symbol.path} lives in a verl module that imports {symbol.needs}, which is not installed")
    problem = check_symbol(symbol)
    assert problem is None, problem


def test_the_contract_is_well_formed():
    canonical = [resolve(symbol.path)[0] for symbol in CONTRACT]
    duplicates = sorted({path for path in canonical if canonical.count(path) > 1})
    assert not duplicates, f"listed twice: {duplicates}"
    for symbol in CONTRACT:
        assert symbol.use in USES, symbol
        assert symbol.revisit and symbol.where, symbol
        for where in symbol.where:
            file, _, name = where.partition(":")
            text = (REPO / file).read_text() if (REPO / file).is_file() else None
            assert text is not None, f"{symbol.path}: {file} does not exist (stale `where`)"
            assert name.rsplit(".", 1)[-1] in text, f"{symbol.path}: {name} is not in {file} (stale `where`)"


def test_a_changed_signature_is_reported_with_where_and_what_to_revisit():
    listed = next(s for s in CONTRACT if s.path.endswith("._compute_advantage"))
    changed = contract.VerlSymbol(listed.path, listed.use, listed.where, listed.revisit, ("batch",))
    message = check_symbol(changed)
    assert message is not None and "('batch', 'metrics')" in message
    assert "audio_thinker/verl_ext/trainer.py" in message and "revisit" in message
    gone = contract.VerlSymbol("verl.utils.fsdp_utils._no_such_name", "read", ("x.py:f",), "what to do")
    assert "is gone" in check_symbol(gone) and "what to do" in check_symbol(gone)


def _covered() -> set[str]:
    covered = set()
    for symbol in CONTRACT:
        covered.add(resolve(symbol.path)[0])
        covered.update(resolve(f"{symbol.path}.{member}")[0] for member in symbol.members)
    return covered


# ------------------------------------------------------------------------------------ completeness
class _VerlUses(ast.NodeVisitor):
    """Dotted verl paths a module uses: private names, stores, subclassed classes, calls."""

    def __init__(self) -> None:
        self.bound: dict[str, str] = {}  # local name -> dotted verl path
        self.private: set[str] = set()
        self.stored: set[str] = set()
        self.subclassed: set[str] = set()
        self.called: set[str] = set()

    # -- bindings (module and function level alike)
    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.name.split(".")[0] in THIRD_PARTY:
                if alias.asname:
                    self.bound[alias.asname] = alias.name
                else:
                    self.bound[alias.name.split(".")[0]] = alias.name.split(".")[0]

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.module and node.module.split(".")[0] in THIRD_PARTY and node.level == 0:
            for alias in node.names:
                path = f"{node.module}.{alias.name}"
                self.bound[alias.asname or alias.name] = path
                if _private(alias.name):
                    self.private.add(path)

    # -- uses
    def path_of(self, node: ast.AST) -> str | None:
        if isinstance(node, ast.Name):
            return self.bound.get(node.id)
        if isinstance(node, ast.Attribute):
            base = self.path_of(node.value)
            return f"{base}.{node.attr}" if base else None
        return None

    def visit_Attribute(self, node: ast.Attribute) -> None:
        path = self.path_of(node)
        if path:
            parts = path.split(".")
            for i, part in enumerate(parts):
                if _private(part):
                    self.private.add(".".join(parts[: i + 1]))
            if isinstance(node.ctx, (ast.Store, ast.Del)):
                self.stored.add(path)
        self.generic_visit(node)

    def visit_Subscript(self, node: ast.Subscript) -> None:
        path = self.path_of(node.value)
        if path and isinstance(node.ctx, (ast.Store, ast.Del)):
            self.stored.add(path)
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Name) and func.id in ("setattr", "delattr") and len(node.args) >= 2:
            base, name = self.path_of(node.args[0]), node.args[1]
            if base and isinstance(name, ast.Constant):
                self.stored.add(f"{base}.{name.value}")
        path = self.path_of(func)
        if path:
            self.called.add(path)
        self.generic_visit(node)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for base in node.bases:
            path = self.path_of(base)
            if path:
                self.subclassed.add(path)
        self.generic_visit(node)


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _scan(path: Path) -> _VerlUses:
    tree = ast.parse(path.read_text(), filename=str(path))
    uses = _VerlUses()
    for node in ast.walk(tree):  # bindings first: a function-level import may follow a use textually
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            uses.visit(node)
    uses.visit(tree)
    return uses


def _callable_path(path: str) -> str:
    """The verl object a call path reaches (``_ROLLOUT_REGISTRY.get`` -> ``_ROLLOUT_REGISTRY``)."""
    while "." in path:
        parent = path.rsplit(".", 1)[0]
        module = getattr(resolve(path)[1], "__module__", None) or ""
        if module.startswith(THIRD_PARTY) or inspect.ismodule(resolve(parent)[1]):
            return path
        path = parent
    return path


def test_every_private_name_patch_subclass_and_call_of_verl_in_our_source_is_listed():
    covered = _covered()
    missing: list[str] = []
    every: set[tuple[str, str]] = set()
    for source in _sources():
        uses = _scan(source)
        where = source.relative_to(REPO)
        found = [("private name", p) for p in uses.private] + [("patch", p) for p in uses.stored]
        found += [("subclass", p) for p in uses.subclassed] + [("call", p) for p in map(_callable_path, uses.called)]
        every.update(found)
        for kind, path in sorted(found):
            try:
                canonical = resolve(path)[0]
            except (ImportError, LookupError) as error:
                missing.append(f"{where}: {kind} {path} does not resolve in verl {VERL_VERSION} ({error})")
                continue
            if canonical not in covered:
                missing.append(f"{where}: {kind} {path} ({canonical})")
    assert not missing, "add these to audio_thinker/verl_ext/contract.py:\n" + "\n".join(sorted(set(missing)))
    # the scan sees what we know is there (a scan that finds nothing would pass vacuously)
    assert {
        ("private name", "verl.utils.fsdp_utils._select_fsdp2_wrap_targets"),
        ("private name", "verl.workers.engine.base.EngineRegistry._engines"),
        ("private name", "verl.plugin.platform.platform_manager._current_platform"),
        ("patch", "verl.workers.rollout.base._ROLLOUT_REGISTRY"),
        ("patch", "verl.workers.engine.fsdp.transformer_impl.CPUOffloadPolicy"),
        ("subclass", "verl.trainer.ppo.v1.trainer_sync.PPOTrainerSync"),
        ("call", "verl.utils.distributed.initialize_global_process_group_ray"),
    } <= every, sorted(every)


def _self_attributes(cls: type) -> set[str]:
    """Names used as ``self.<name>`` in the body of ``cls``."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    return {
        node.attr for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self"
    }


def _our_verl_subclasses() -> list[type]:
    classes = []
    for source in _sources():
        if not any(f"{name}." in source.read_text() or f"import {name}" in source.read_text() for name in THIRD_PARTY):
            continue
        module = importlib.import_module(_module_name(source))
        for value in vars(module).values():
            if inspect.isclass(value) and value.__module__ == module.__name__ and any(
                klass.__module__.startswith(THIRD_PARTY) for klass in value.__mro__
            ):
                classes.append(value)
    return classes


def test_every_verl_member_our_subclasses_override_or_use_is_listed():
    covered = _covered()
    classes = _our_verl_subclasses()
    assert len(classes) >= 10, [c.__qualname__ for c in classes]  # platform, engines, workers, pools, ...
    missing = set()
    for cls in classes:
        ours = [k for k in cls.__mro__ if k.__module__.startswith(OUR_PACKAGES)]
        theirs = [k for k in cls.__mro__ if k.__module__.startswith(THIRD_PARTY)]
        names = {n for k in ours for n in (*vars(k), *_self_attributes(k))}
        names = {n for n in names if not n.startswith("__") or n in OVERRIDABLE_DUNDERS} - {"_abc_impl"}
        for name in sorted(names):
            definer = next((k for k in theirs if contract._defining_class(k, name) is k), None)
            if definer is None:
                continue
            canonical = resolve(f"{definer.__module__}.{definer.__qualname__}.{name}")[0]
            if canonical not in covered:
                missing.add(f"{cls.__module__}.{cls.__qualname__}: {name} of verl's {definer.__qualname__} ({canonical})")
    assert not missing, "add these to audio_thinker/verl_ext/contract.py:\n" + "\n".join(sorted(missing))


# ------------------------------------------------------------------------- the hf server's interface
def _server_calls(function) -> list[tuple[str, set[str]]]:
    """``(method, keywords)`` of every ``server.<method>.remote(...)`` in ``function``'s source."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    calls = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "remote"
                and isinstance(node.func.value, ast.Attribute) and isinstance(node.func.value.value, ast.Name)
                and node.func.value.value.id == "server"):
            calls.append((node.func.value.attr, {k.arg for k in node.keywords if k.arg}))
    return calls


def test_the_hf_server_answers_every_call_verl_makes_on_a_server():
    from verl.workers.rollout.llm_server import LLMServerClient
    from verl.workers.rollout.replica import RolloutReplica

    from audio_thinker.backends.cpu.server import HFRolloutServerActor

    callers = [getattr(RolloutReplica, name) for name, value in vars(RolloutReplica).items() if inspect.isfunction(value)]
    callers.append(LLMServerClient.generate)
    serve = {resolve(s.path)[0] for s in CONTRACT if s.use == "serve"}
    seen = set()
    for caller in callers:
        for method, keywords in _server_calls(caller):
            seen.add(method)
            assert f"{caller.__module__}.{caller.__qualname__}" in serve, (
                f"verl's {caller.__qualname__} calls server.{method}: list it as 'serve' in the contract")
            ours = getattr(HFRolloutServerActor, method, None)
            assert ours is not None, f"verl's {caller.__qualname__} calls server.{method}; HFRolloutServerActor lacks it"
            parameters = inspect.signature(ours).parameters
            takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
            refused = sorted(k for k in keywords if k not in parameters and not takes_any)
            assert not refused, f"verl passes {refused} to server.{method}; HFRolloutServerActor.{method} refuses them"
    assert {"generate", "abort_all_requests", "resume_generation", "sleep", "wake_up"} <= seen
