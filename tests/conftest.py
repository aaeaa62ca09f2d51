"""Shared fixtures.  Seeds come from here; nothing seeds a global generator."""
from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def rng():
    """A fresh, explicitly seeded generator for each test."""
    return np.random.default_rng(1234)


@pytest.fixture(autouse=True)
def _restore_mpmath_precision():
    """A test that sets mpmath.mp.dps must not change the references of the tests after it."""
    import mpmath
    dps = mpmath.mp.dps
    yield
    mpmath.mp.dps = dps
