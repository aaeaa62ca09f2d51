"""``MomentState``: what the mean-field theory tracks between layers.

One frozen dataclass, updated with :func:`dataclasses.replace` (like Neural Tangents'
``Kernel``).  It describes two inputs' signals at one point of the network:

``q1, q2``
    second moments E[h²] of the two inputs' units (q in Poole et al. 2016, eq. 3);
``c``
    their correlation E[h¹h²]/√(q1·q2) (c in Poole et al. 2016, eq. 5);
``mean``
    the common mean E[h] of every unit (0 after a Dense layer; β after BatchNorm);
``is_gaussian``
    True when the units are (jointly) Gaussian — after a random affine (Dense) or a
    normalization of a Gaussian.  The nonlinearity needs it: mean-field maps integrate
    φ against a Gaussian, so ``Activation`` refuses a non-Gaussian input, as Neural
    Tangents' ``_elementwise`` does ("a random affine transform is required before the
    activation function").

Gradients are not state: each layer reports its own backward factor (``grad_factor``).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from ..errors import VanishcalcError


def geometric_mean(a: float, b: float) -> float:
    """√(a·b) for a, b ≥ 0 without forming a·b (it under- or overflows for values below 1e-154
    or above 1e154, each representable), and exactly a when a == b (so c = cov/√(q1q2) of two
    identical inputs is exactly 1)."""
    return a if a == b else math.sqrt(a) * math.sqrt(b)


@dataclass(frozen=True)
class MomentState:
    """Second moments, correlation and mean of two inputs' units at one layer."""

    q1: float
    q2: float
    c: float
    mean: float = 0.0
    is_gaussian: bool = True

    @classmethod
    def single(cls, q: float, **kw) -> "MomentState":
        """One input (or two identical ones): q1 = q2 = q, c = 1."""
        return cls(q, q, 1.0, **kw)

    @property
    def q(self) -> float:
        """The second moment when both inputs share it (the q-map variable)."""
        return self.q1

    @property
    def var1(self) -> float:
        return self.q1 - self.mean ** 2

    @property
    def var2(self) -> float:
        return self.q2 - self.mean ** 2

    @property
    def cov(self) -> float:
        """E[h¹h²] = c·√(q1·q2)."""
        return self.c * geometric_mean(self.q1, self.q2)

    def replace(self, **changes) -> "MomentState":
        return dataclasses.replace(self, **changes)

    def check_finite(self, where: str) -> "MomentState":
        for name in ("q1", "q2", "c", "mean"):
            v = getattr(self, name)
            if v is None:   # mean is None after a nonlinearity (not tracked there)
                continue
            if not math.isfinite(v):
                raise VanishcalcError(f"{where}: {name} became {v!r}; the signal overflowed "
                                      "(lower σw or the depth)")
        return self
