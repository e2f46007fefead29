"""Fixtures shared by the package tests (umamba/tests) and the Slicer-side tests (Testing/)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent
SHARED_DATA = Path(os.environ.get("UMAMBA_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data when present (a developer checkout and CI), else the test is skipped."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} is not present (real datasets are only beside the project checkout)")
    return SHARED_DATA
