"""vanishcalc: init gains, edge of chaos, gradient growth and normalization settings for any φ.

The facade is lazy: ``import vanishcalc`` loads nothing heavy (no numba, no matplotlib);
each public name is imported from its module on first use.

>>> from vanishcalc import gain
>>> gain("exp(-x**2)")
5**(1/4) ≈ 1.4953487812212205 (exact)
"""
from __future__ import annotations

import importlib

from .errors import (ComplexValuedError, DivergenceError, NonFiniteError, NotConvergedError,
                     ParseError, SimulationOverflowError, SingularityError, VanishcalcError,
                     VanishcalcWarning)
from .value import Value
# These two share their names with their modules: bind the functions now, or the first
# `import vanishcalc.activation` elsewhere would leave the *module* at vanishcalc.activation.
# Both need only SymPy and NumPy, which value.py already imports.
from .activation import Activation, activation
from .parse import parse

__version__ = "0.1.0"

# public name -> module that defines it (one obvious place for each idea)
_LAZY = {
    "expect": "vanishcalc.gaussian.expect",
    "expect2": "vanishcalc.gaussian.bivariate",
    "gain": "vanishcalc.solve.gain",
    "MeanField": "vanishcalc.maps.meanfield",
    "critical_sigma_w": "vanishcalc.solve.criticality",
    "critical_line": "vanishcalc.solve.criticality",
    "phase_diagram": "vanishcalc.solve.criticality",
    "init_table": "vanishcalc.report.table",
    "simulate": "vanishcalc.sim.api",
    "Simulation": "vanishcalc.sim.api",
    "check": "vanishcalc.sim.check",
    "CheckReport": "vanishcalc.sim.check",
    "RNNMeanField": "vanishcalc.maps.rnn",
    "simulate_rnn": "vanishcalc.sim.api",
    "check_rnn": "vanishcalc.sim.check",
    "bn_gradient_rate": "vanishcalc.solve.bn_affine",
    "ln_gradient_rate": "vanishcalc.solve.bn_affine",
    "bn_affine": "vanishcalc.solve.bn_affine",
    "BNAffine": "vanishcalc.solve.bn_affine",
    "jacobian_spectrum": "vanishcalc.solve.spectrum",
    "JacobianSpectrum": "vanishcalc.solve.spectrum",
    "isometry_settings": "vanishcalc.solve.spectrum",
    "simulate_jacobian": "vanishcalc.sim.jacobian",
    "compare_spectrum": "vanishcalc.sim.jacobian",
}

__all__ = sorted([*_LAZY, "activation", "Activation", "parse", "Value", "VanishcalcError", "ParseError", "DivergenceError",
                  "ComplexValuedError", "SingularityError", "NonFiniteError", "NotConvergedError",
                  "SimulationOverflowError", "VanishcalcWarning"])


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'vanishcalc' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
