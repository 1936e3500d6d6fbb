"""Shared test set-up: offline model loading and the location of ../shared."""

import os
from pathlib import Path

import pytest

# Nothing may be downloaded at test time: the text encoder ships inside its package.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Idle OpenMP threads sleep instead of spinning: on two shared cores spinning threads of the
# test process and of the daemons it starts fight each other (tests ran ten times slower).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """../shared beside the checkout (present on developers' machines and in CI)."""
    if not SHARED.is_dir():
        pytest.fail(f"{SHARED} is missing: tests need the shared reference files beside the repo")
    return SHARED
