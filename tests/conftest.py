"""Shared fixtures.  Seeds come from here; nothing seeds a global generator."""
from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def rng():
    """A fresh, explicitly seeded generator for each test."""
    return np.random.default_rng(1234)
