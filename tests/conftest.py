"""Shared test fixtures: where the shared reference data and the embedded sample live."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("GSV_SHARED_DIR", REPO.parent / "shared"))
SAMPLE = REPO / "gptsovits_train" / "sample_data"

os.environ.setdefault("MPLBACKEND", "Agg")


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
