"""The advice of MeanField's DivergenceError fits the net (issue: sim clean-up, texts).

A residual net without a normalization after the sum has no q fixed point at any σw (q grows
geometrically without a norm, linearly with pre-norm: Yang & Schoenholz 2017; closed forms in
vanishcalc.solve.residual), so "lower sigma_w" is the wrong advice there; for a plain φ net
(relu with σw² > 2: q-map slope σw²/2 > 1) it is the right one.
"""
from __future__ import annotations

import pytest

from vanishcalc.errors import DivergenceError
from vanishcalc.maps import Activation, Dense, Residual, pre_norm_block
from vanishcalc.maps.meanfield import MeanField


@pytest.mark.parametrize("block", [
    [Residual([Dense(1.0), Activation("relu")], 0.5)],            # q_{l+1} = q_l(1 + α²/2)
    [pre_norm_block("relu", 0.5)],                                 # q grows linearly
], ids=["no-norm", "pre-norm"])
def test_residual_divergence_advises_normalization_not_sigma_w(block):
    with pytest.raises(DivergenceError) as info:
        MeanField(block).q_star()
    msg = str(info.value)
    assert "residual" in msg and "no fixed point" in msg and "post_norm_block" in msg, msg
    assert "residual_growth" in msg and "lower sigma_w" not in msg, msg


def test_plain_net_divergence_advises_lower_sigma_w():
    with pytest.raises(DivergenceError, match="lower sigma_w"):
        MeanField("relu", sigma_w=2.0).q_star()


def test_plain_block_divergence_names_its_dense_layers():
    with pytest.raises(DivergenceError, match="σw of the block's Dense layers"):
        MeanField([Dense(2.0), Activation("relu")]).q_star()
