import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
import matplotlib  # noqa: E402

# Agg for figures drawn in the test process; kernels started by papermill keep their inline backend.
matplotlib.use("Agg")


@pytest.fixture(autouse=True)
def _global_state_restored():
    """Every test leaves torch's, numpy's and python's global generators and torch's deterministic-algorithms
    switch as it found them (runs.seed_everything turns that switch on), so no test depends on the one before."""
    import random

    import numpy as np
    import torch

    saved = (torch.get_rng_state(), np.random.get_state(), random.getstate(),
             torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    yield
    torch.set_rng_state(saved[0])
    np.random.set_state(saved[1])
    random.setstate(saved[2])
    torch.use_deterministic_algorithms(saved[3], warn_only=saved[4])


@pytest.fixture
def repo() -> Path:
    return REPO


@pytest.fixture
def outputs(tmp_path, monkeypatch) -> Path:
    """A private outputs root for one test."""
    out = tmp_path / "outputs"
    monkeypatch.setenv("ONECLASS_OUTPUTS", str(out))
    return out
