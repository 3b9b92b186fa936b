"""Shared test fixtures (no __init__.py here: pytest runs with --import-mode=importlib)."""

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
