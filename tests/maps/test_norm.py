"""BatchNorm / LayerNorm mean-field layers composed with Dense and Activation."""
import math

import numpy as np
import pytest

from vanishcalc.errors import VanishcalcError

from vanishcalc.maps import Activation, Dense, MomentState, serial
from vanishcalc.maps.meanfield import MeanField
from vanishcalc.maps.norm import BatchNorm, LayerNorm


def test_bn_block_relu_grad_factor_pi_over_pi_minus_1_yang2019():
    mf = MeanField([Activation("relu"), Dense(1.3, 0.2), BatchNorm(1.0, 0.0)])
    p = mf.propagate(6, q0=1.0, c0=0.5)
    for chi in p.chi[1:]:
        assert abs(chi - math.pi / (math.pi - 1)) < 1e-12


def test_bn_output_state_independent_of_input():
    bn = BatchNorm(0.5, 0.3)
    for st in (MomentState(2.0, 2.0, 0.1), MomentState(0.3, 0.3, 0.9)):
        out = bn.moment_map(st)
        assert out.q1 == pytest.approx(0.25 + 0.09) and out.mean == 0.3
        assert out.c == pytest.approx(0.09 / 0.34)           # ĉ = 0 at infinite batch
    out = BatchNorm(1.0, 0.0, batch=8).moment_map(MomentState(1.0, 1.0, 0.5))
    assert out.c == pytest.approx(-1 / 7)                    # BSB1: −1/(B − 1)


def test_bn_block_c_star_is_bsb1_closed_form_with_shift():
    """After BN (infinite batch) cov' = β², q' = γ² + β² whatever the input (Yang et al. 2019,
    §3), so a block ending in BN has c* = β²/(γ² + β²) — here above c0, where c* used to recurse
    through χ1 (which itself needs c*)."""
    mf = MeanField([Activation("relu"), Dense(1.0), BatchNorm(1.0, 2.0)])
    assert float(mf.c_star()) == pytest.approx(4 / 5, abs=1e-15)
    assert float(mf.chi1()) > 0


def test_bn_grad_factor_is_gamma2_over_batch_variance():
    st = MomentState(2.0, 2.0, 0.25)
    assert BatchNorm(0.7).grad_factor(st) == pytest.approx(0.49 / (2.0 * 0.75))


def test_bn_linear_finite_batch_block_rate():
    mf = MeanField([Activation("x"), Dense(1.0), BatchNorm(1.0, 0.0, batch=8)])
    assert mf.propagate(4).chi[1:] == pytest.approx([1.2] * 3, rel=1e-12)


def test_ln_block_relu_rate_one_and_correlation_kept():
    mf = MeanField([Activation("relu"), Dense(1.0), LayerNorm(1.0, 0.0)])
    p = mf.propagate(4, c0=0.3)
    assert p.chi == pytest.approx([1.0] * 4, rel=1e-12)
    assert p.c[1] > 0.3                                     # LN keeps (relu raises) c, BN resets it


def test_bn_layers_compose_in_serial():
    s = serial(Dense(1.0), BatchNorm(1.0), Activation("tanh"))
    assert "BatchNorm" in repr(s)


@pytest.mark.parametrize("kw", [dict(gamma=0), dict(gamma=-1), dict(gamma=math.inf),
                                dict(beta=math.nan), dict(batch=3), dict(batch=0)])
def test_bn_bad_input_raises(kw):
    with pytest.raises(VanishcalcError):
        BatchNorm(**kw)


def test_bn_batch_accepts_numpy_integer_and_infinity():
    assert BatchNorm(batch=np.int64(8)).batch == 8
    assert BatchNorm(batch=math.inf).batch is None


def test_ln_bad_input_raises():
    with pytest.raises(ValueError):
        LayerNorm(gamma=0.0)


def test_bn_zero_batch_variance_raises():
    with pytest.raises(ValueError, match="batch variance"):
        BatchNorm().grad_factor(MomentState.single(1.0))
