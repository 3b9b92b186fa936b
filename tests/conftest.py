"""Shared test fixtures (no __init__.py here: pytest runs with --import-mode=importlib)."""

from pathlib import Path

import pytest

from audio_thinker.data.benchmarks import load_benchmark, shared_benchmarks_dir


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module: tiny models gain nothing from threads, and on a busy 2-core
    machine they cost a lot (use with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def real_benchmark():
    """Load a real benchmark metadata file from shared/benchmarks in place, or skip when absent.

    Returns ``load(name, filename) -> (items, report)``; the files are never copied.
    """

    def load(name, filename):
        folder = shared_benchmarks_dir()
        if folder is None or not (folder / filename).is_file():
            pytest.skip(f"real benchmark metadata {filename} not found (shared/benchmarks beside the "
                        "checkout, or $AUDIO_THINKER_BENCHMARKS_DIR)")
        return load_benchmark(name, folder / filename)

    return load


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """``tiny_model_dir(arch)``: one tiny model per architecture for the whole session.

    Read-only: a test that changes model files must copy the folder first.
    """
    from audio_thinker.toy.tiny import ensure_tiny_model

    root = tmp_path_factory.mktemp("tiny_models")
    built: dict[str, Path] = {}

    def get(arch: str = "qwen2_audio") -> Path:
        if arch not in built:
            built[arch] = Path(ensure_tiny_model(arch, root / arch / "model"))
        return built[arch]

    return get


@pytest.fixture(scope="session")
def tiny_judge_dir(tmp_path_factory) -> Path:
    """The tiny judge (verdict-format primed), built once for the whole session; read-only."""
    from audio_thinker.toy.tiny_judge import ensure_tiny_judge

    return Path(ensure_tiny_judge(tmp_path_factory.mktemp("tiny_judge") / "judge"))


# -- exit -----------------------------------------------------------------------------------------
# Once every result is reported, a session that started Ray clusters and torch threads in-process
# may crash in native destructors at interpreter shutdown (seen once: a segfault after the summary
# line of a full run on 2 busy cores), turning a passing run into exit 139. When Ray was imported,
# leave with pytest's own exit status right after its last hook instead of running those
# destructors. Nothing is skipped: the summary, the status and every report are already written.
_EXIT_STATUS: list[int] = []


def pytest_sessionfinish(session, exitstatus):
    _EXIT_STATUS.append(int(exitstatus))


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    import os
    import sys

    if _EXIT_STATUS and "ray" in sys.modules and not os.environ.get("AUDIO_THINKER_TEST_NORMAL_EXIT"):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_EXIT_STATUS[-1])
