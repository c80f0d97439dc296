"""Shared test fixtures: where the shared reference data and the embedded sample live."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("GSV_SHARED_DIR", REPO.parent / "shared"))
SAMPLE = REPO / "gptsovits_train" / "sample_data"

os.environ.setdefault("MPLBACKEND", "Agg")


def pytest_configure(config: pytest.Config) -> None:
    """One torch thread for the whole suite.

    The tests run tiny models whose ops are far too small to gain from intra-op parallelism, and
    OpenMP's spinning threads turn a 25 ms forward into seconds whenever another process (a DataLoader
    worker, a prepare pool, a DDP peer, another job) competes for the two cores.
    """
    del config
    import torch

    torch.set_num_threads(1)


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread() -> Iterator[None]:
    """Every test module starts on one torch thread, also after a test that changed it (`fit` sets its own
    CPU thread budget)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """`../shared` beside the repository (reference fixtures and LJSpeech mini)."""
    if not (SHARED / "reference").is_dir():
        raise FileNotFoundError(f"shared reference data not found at {SHARED} (set GSV_SHARED_DIR)")
    return SHARED


@pytest.fixture(scope="session")
def reference_dir(shared_dir: Path) -> Path:
    return shared_dir / "reference"


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    """The embedded demo sample: 12 LJSpeech FLAC clips + metadata.csv."""
    return SAMPLE


@pytest.fixture(scope="session")
def lj_mini_dir(shared_dir: Path) -> Path:
    """../shared/data/ljspeech-mini: 32 LJSpeech FLAC clips (22.05 kHz) + metadata.csv."""
    return shared_dir / "data" / "ljspeech-mini"
