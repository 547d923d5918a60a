import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
import matplotlib  # noqa: E402

# Agg for figures drawn in the test process; kernels started by papermill keep their inline backend.
matplotlib.use("Agg")


@pytest.fixture
def repo() -> Path:
    return REPO


@pytest.fixture
def outputs(tmp_path, monkeypatch) -> Path:
    """A private outputs root for one test."""
    out = tmp_path / "outputs"
    monkeypatch.setenv("ONECLASS_OUTPUTS", str(out))
    return out
