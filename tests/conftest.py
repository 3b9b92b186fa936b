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
