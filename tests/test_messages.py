"""Error messages write formulas a user reads: φ is named and spelled out, never glued to its
argument (``E[exp(x**2)(√q·z)]`` was the message before)."""
from __future__ import annotations

import pytest

from vanishcalc import DivergenceError, expect, gain
from vanishcalc.errors import expectation_label


@pytest.mark.parametrize("name, text", [
    ("tanh", "E[tanh(√q·z)]"), ("gelu'", "E[gelu'(√q·z)]"),
    ("exp(x**2)", "E[φ(√q·z)] with φ(x) = exp(x**2)"), ("x**3", "E[φ(√q·z)] with φ(x) = x**3"),
])
def test_expectation_label(name, text):
    assert expectation_label(name) == text


@pytest.mark.parametrize("call", [lambda: expect("exp(x**2)"), lambda: gain("exp(x**2)")])
def test_divergence_message_spells_phi(call):
    with pytest.raises(DivergenceError) as info:
        call()
    message = str(info.value)
    assert "φ(x) = exp(x**2)" in message and "exp(x**2)(" not in message, message
