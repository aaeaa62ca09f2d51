"""Finite-net Jacobians (numpy) against the free-probability spectrum (issue 16)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from vanishcalc import jacobian_spectrum
from vanishcalc.errors import VanishcalcError
from vanishcalc.sim.jacobian import (compare_spectrum, haar_orthogonal, ks_distance,
                                     simulate_jacobian)


@pytest.fixture(autouse=True)
def one_blas_thread():
    """Small dense products on shared cores: threads cost more than they give (10x here).
    threadpoolctl is in the dev extra; without it the tests still run, only slower."""
    try:
        import threadpoolctl
    except ImportError:
        yield
        return
    with threadpoolctl.threadpool_limits(1):
        yield


def test_haar_orthogonal_is_orthogonal_with_symmetric_signs(rng):
    q = haar_orthogonal(64, rng)
    assert np.allclose(q @ q.T, np.eye(64), atol=1e-12)
    # the sign fix makes the law invariant: the diagonal has mean 0 (without it, QR's
    # convention R_ii > 0 biases the diagonal positive)
    diag = np.concatenate([np.diag(haar_orthogonal(64, rng)) for _ in range(20)])
    assert abs(diag.mean()) < 4 * diag.std() / math.sqrt(diag.size)


def test_linear_orthogonal_jacobian_is_exactly_isometric():
    sample = simulate_jacobian("linear", 1.1, 0.0, depth=10, width=64, weights="orthogonal",
                               seed=3, q0=1.0)
    assert np.allclose(sample.eigenvalues, 1.1 ** 20, rtol=1e-11)


def test_ks_distance_handles_atoms_and_rounding():
    cdf = lambda x: np.where(np.asarray(x) >= 1.0, 1.0, 0.0)
    assert ks_distance(1 + 1e-15 * np.arange(-3, 4), cdf) == 0.0
    cdf_half = lambda x: np.where(np.asarray(x) >= 0, 0.5, 0.0) + np.where(np.asarray(x) >= 2, 0.5, 0.0)
    assert ks_distance([1e-32, 3e-31, 2.0, 2.0], cdf_half, floor=1e-20) == 0.0


@pytest.mark.parametrize("spec, sw, sb, L, weights, ks_max", [
    ("relu", math.sqrt(2), 0.0, 8, "orthogonal", 0.08),
    ("relu", math.sqrt(2), 0.0, 8, "gaussian", 0.08),
    ("tanh", 1.05, 0.05, 16, "orthogonal", 0.12),
    ("tanh", 1.3, 0.2, 8, "gaussian", 0.08),
    ("hardtanh", 1.3, 0.1, 3, "orthogonal", 0.08),       # atom at σw^{2L}
])
def test_spectrum_vs_simulation_ks_and_moments(spec, sw, sb, L, weights, ks_max):
    s = jacobian_spectrum(spec, sw, sb, depth=L, weights=weights)
    cmp = compare_spectrum(s, width=256, nets=3, seed=11)
    assert cmp.ks < ks_max
    assert cmp.x.shape == cmp.density.shape and cmp.eigenvalues.size == 3 * 256
    sample = simulate_jacobian(spec, sw, sb, L, width=256, weights=weights, nets=6, seed=5)
    for k in (1, 2):
        mean, se = sample.moment(k)
        pred = float(s.moments(k))
        # Monte-Carlo error, plus finite-width bias O(kL/N) of the free-probability limit
        assert abs(mean - pred) <= 4 * se + 2 * k * L / 256 * pred, (k, mean, se, pred)


def test_bad_input_is_named():
    with pytest.raises(VanishcalcError, match="weights"):
        simulate_jacobian("tanh", 1.0, depth=2, width=8, weights="unitary")
    with pytest.raises(VanishcalcError, match="width"):
        simulate_jacobian("tanh", 1.0, depth=2, width=100000)
    with pytest.raises(VanishcalcError, match="budget"):
        simulate_jacobian("tanh", 1.0, depth=400, width=4096, nets=100)


@pytest.mark.slow
def test_wide_deep_tanh_orthogonal_matches_density():
    s = jacobian_spectrum("tanh", 1.05, 0.05, depth=64, weights="orthogonal")
    cmp = compare_spectrum(s, width=1024, nets=1, seed=2)
    assert cmp.ks < 0.06
