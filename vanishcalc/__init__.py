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
# sweep shares its name with its module too (the same trap as above); the module needs only
# the standard library.
from .sweep import SweepResult, sweep

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
    "RecurrentNormRNN": "vanishcalc.maps.rnn",
    "simulate_rnn": "vanishcalc.sim.api",
    "check_rnn": "vanishcalc.sim.check",
    "bn_gradient_rate": "vanishcalc.solve.bn_affine",
    "ln_gradient_rate": "vanishcalc.solve.bn_affine",
    "bn_affine": "vanishcalc.solve.bn_affine",
    "BNAffine": "vanishcalc.solve.bn_affine",
    # issue 13: DKS/TAT transforms
    "transform": "vanishcalc.solve.transform",
    "Transform": "vanishcalc.solve.transform",
    # issue 13: self-normalizing constants, random/learned slopes, LeCun and Xavier for any φ
    "self_normalizing": "vanishcalc.solve.self_normalizing",
    "SelfNormalizing": "vanishcalc.solve.self_normalizing",
    "RReLU": "vanishcalc.maps.random_slope",
    "prelu": "vanishcalc.maps.random_slope",
    "xavier": "vanishcalc.solve.xavier",
    "XavierInit": "vanishcalc.solve.xavier",
    "lecun_targets": "vanishcalc.solve.lecun",
    "LeCunTargets": "vanishcalc.solve.lecun",
    "lecun_input_scale": "vanishcalc.solve.lecun",
    "LeCunInputScale": "vanishcalc.solve.lecun",
    "lr_multipliers": "vanishcalc.solve.lr_multipliers",
    "LRMultipliers": "vanishcalc.solve.lr_multipliers",
    "MissingDependencyError": "vanishcalc.errors",
    "rbf_scale": "vanishcalc.solve.rbf_scale",
    "RBFScale": "vanishcalc.solve.rbf_scale",
    # issue 17: residual blocks and dropout
    "Residual": "vanishcalc.maps.residual",
    "Dropout": "vanishcalc.maps.dropout",
    "residual_alpha": "vanishcalc.solve.residual",
    "residual_growth": "vanishcalc.solve.residual",
    "dropout_xi_c": "vanishcalc.solve.residual",
    "jacobian_spectrum": "vanishcalc.solve.spectrum",
    "JacobianSpectrum": "vanishcalc.solve.spectrum",
    "isometry_settings": "vanishcalc.solve.spectrum",
    "simulate_jacobian": "vanishcalc.sim.jacobian",
    "compare_spectrum": "vanishcalc.sim.jacobian",
    # issue 15: framework bridges (vanishcalc.torch / .keras / .jax are submodules, see __getattr__)
    "init_spec": "vanishcalc.bridges.init_spec",
    "InitSpec": "vanishcalc.bridges.init_spec",
}

# framework facades: submodules loaded on first attribute access (vanishcalc.torch.init_(...))
# without importing the framework itself; each imports torch/keras/jax only inside its functions.
_SUBMODULES = ("torch", "keras", "jax")

__all__ = sorted([*_LAZY, "activation", "Activation", "parse", "sweep", "SweepResult", "Value", "VanishcalcError", "ParseError", "DivergenceError",
                  "ComplexValuedError", "SingularityError", "NonFiniteError", "NotConvergedError",
                  "SimulationOverflowError", "VanishcalcWarning"])


def __getattr__(name):
    if name in _SUBMODULES:
        value = importlib.import_module(f"vanishcalc.{name}")
        globals()[name] = value
        return value
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'vanishcalc' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
