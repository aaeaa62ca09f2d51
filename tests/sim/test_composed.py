"""Composed-stack and RNN simulation vs mean-field theory.

Allowance: the simulations are at finite width N; the per-layer rate carries an O(1/N) bias
(measured: ≈ +0.5 % for tanh, −0.3 % for relu at N = 256), so comparisons allow
4 standard errors plus 2 % of the theory value."""
import math

import numpy as np
import pytest

from vanishcalc.errors import VanishcalcError
from vanishcalc.maps import Activation, Dense
from vanishcalc.maps.norm import BatchNorm, LayerNorm
from vanishcalc.maps.rnn import RNNMeanField
from vanishcalc.sim.composed import simulate_rnn, simulate_stack
from vanishcalc.solve.bn_affine import bn_affine


def _close(sim, se, theory, frac=0.02):
    assert abs(sim - theory) <= 4 * se + frac * abs(theory), (sim, se, theory)


def test_sim_relu_bn_rate_pi_over_pi_minus_1():
    B = 128
    tr = simulate_stack([Activation("relu"), Dense(1.0), BatchNorm(1.0, 0.0)], depth=8,
                        width=256, batch=B, n_nets=6, seed=1)
    rate, se = tr.mean_rate()
    _close(rate, se, math.pi / (math.pi - 1) * (B - 2) / (B - 3))
    assert np.allclose(tr.c[1:], -1 / (B - 1), atol=1e-10)        # BSB1 after every BN


def test_sim_tanh_bn_at_bn_affine_gamma_rate_105():
    a = bn_affine("tanh", rate=1.05)
    B = 128
    tr = simulate_stack([Activation("tanh"), Dense(1.0), BatchNorm(a.gamma, 0.0)], depth=8,
                        width=256, batch=B, n_nets=6, seed=2)
    rate, se = tr.mean_rate()
    _close(rate, se, 1.05 * (B - 2) / (B - 3), frac=0.01)


@pytest.mark.parametrize("B", [6, 8])
def test_sim_linear_bn_finite_batch_rate(B):
    tr = simulate_stack([Activation("x"), Dense(1.0), BatchNorm(1.0, 0.0)], depth=20,
                        width=128, batch=B, n_nets=16, seed=3)
    rate, se = tr.mean_rate()
    _close(rate, se, (B - 2) / (B - 3))


def test_sim_relu_ln_rate_one():
    tr = simulate_stack([Activation("relu"), Dense(1.0), LayerNorm(1.0, 0.0)], depth=10,
                        width=256, batch=4, n_nets=8, seed=4)
    rate, se = tr.mean_rate()
    _close(rate, se, 1.0)


def test_sim_rnn_q_c_match_maps():
    T = 12
    sim = simulate_rnn("tanh", 1.2, 0.5, steps=T, width=256, x_corr=0.5, batch=4, n_nets=8,
                       seed=5)
    th = RNNMeanField("tanh", 1.2, 0.5, x_corr=0.5).propagate(T)
    for t in range(T):
        _close(sim.q[t], sim.q_se[t], th.q[t], frac=0.03)
        _close(sim.c[t], sim.c_se[t], th.c[t], frac=0.05)
    _close(sim.grad[0], sim.grad_se[0], th.grad[0], frac=0.1)


def test_sim_seed_reproducible():
    blk = [Activation("tanh"), Dense(1.0), BatchNorm(0.5, 0.1)]
    a = simulate_stack(blk, depth=3, width=32, batch=8, n_nets=3, seed=7)
    b = simulate_stack(blk, depth=3, width=32, batch=8, n_nets=3, seed=7)
    assert np.array_equal(a.q, b.q) and np.array_equal(a.grad, b.grad)


def test_sim_bad_input():
    blk = [Activation("tanh"), Dense(1.0), BatchNorm(1.0)]
    with pytest.raises(VanishcalcError, match="depth"):
        simulate_stack(blk, depth=0, width=8)
    with pytest.raises(VanishcalcError, match="batch"):
        simulate_stack(blk, depth=2, width=8, batch=3)
    with pytest.raises(VanishcalcError, match="c0"):
        simulate_stack(blk, depth=2, width=8, c0=1.0)
    with pytest.raises(VanishcalcError, match="batch"):
        simulate_stack([Dense(1.0), BatchNorm(1.0, batch=8)], depth=2, width=8, batch=16)


@pytest.mark.parametrize("kwargs, word", [
    (dict(q0="a"), "q0"), (dict(c0=None), "c0"), (dict(c0=float("nan")), "c0"),
    (dict(seed="a"), "seed"), (dict(seed=-1), "seed"), (dict(seed=1.5), "seed"),
    (dict(width=2.5), "width"),
])
def test_simulate_stack_junk_input_named_vanishcalc_error(kwargs, word):
    # junk used to escape as TypeError/ValueError from math.isfinite or int(seed), or (seed −1,
    # 1.5) to run silently with a seed nobody asked for
    with pytest.raises(VanishcalcError, match=word):
        simulate_stack([Activation("tanh"), Dense(1.0)], **{**dict(depth=2, width=8), **kwargs})


@pytest.mark.parametrize("kwargs, word", [
    (dict(seed="x"), "seed"), (dict(seed=-1), "seed"), (dict(seed=1.5), "seed"),
    (dict(steps=0), "steps"), (dict(width=True), "width"),
])
def test_simulate_rnn_junk_input_named_vanishcalc_error(kwargs, word):
    with pytest.raises(VanishcalcError, match=word):
        simulate_rnn("tanh", 1.0, 0.5, **{**dict(steps=3, width=8), **kwargs})


def test_all_nets_nonfinite_gives_one_warning_and_no_numpy_noise():
    """An RBF stack at scale 1, offset 0 outputs exact zeros, LayerNorm then has std 0 and
    every net becomes NaN: the user gets vanishcalc's warning, not numpy's 'Mean of empty
    slice' RuntimeWarnings from the summary."""
    import warnings
    from vanishcalc import VanishcalcWarning, simulate
    from vanishcalc.maps import RBF, LayerNorm, repeat, serial
    naive = repeat(serial(LayerNorm(1.0, 0.0), RBF("exp(-x**2)", width=16, scale=1.0,
                                                   offset=0.0)), 3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sim = simulate(naive, depth=1, width=16, n_nets=4, batch=4, seed=0)
    kinds = {w.category for w in caught}
    assert RuntimeWarning not in kinds, [str(w.message) for w in caught]
    assert VanishcalcWarning in kinds
    assert np.isnan(sim.grad).all() or np.isnan(sim.q[1:]).all()
