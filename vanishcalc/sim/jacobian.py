"""Explicit input–output Jacobians of finite random networks (NumPy), for checking
:func:`vanishcalc.jacobian_spectrum` against finite nets.

h_{l+1} = W_l φ(h_l) + b_l with h_0 ~ N(0, q* I) (the input already at the fixed point, as
the theory assumes), J = ∂h_L/∂h_0 = W_{L−1} D_{L−1} ⋯ W_0 D_0, D_l = diag(φ'(h_l)).
W_l is i.i.d. N(0, σw²/N) or σw·Q with Q Haar-orthogonal (QR of a Gaussian matrix with the
signs of R's diagonal moved into Q; Mezzadri 2007, arXiv:math-ph/0609050, §5).

Dense N × N products: O(L N³) per net; width 256 and depth 64 take ~0.1 s.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import SimulationOverflowError, VanishcalcError
from ..validate import integer, real

__all__ = ["haar_orthogonal", "jacobian_eigenvalues", "JacobianSample", "simulate_jacobian",
           "ks_distance", "rounding_floor", "compare_spectrum", "SpectrumComparison"]

MAX_WIDTH = 4096
#: the input second moment that stands for the limit q* = 0
Q0_LIMIT = 1e-12
MAX_WORK = 2e12          # L·N³·nets multiply-adds: ~10 minutes of BLAS on two cores


def haar_orthogonal(n, rng):
    """An n × n Haar-distributed orthogonal matrix (QR with the sign fix)."""
    a = rng.standard_normal((n, n))
    q, r = np.linalg.qr(a)
    return q * np.sign(np.diag(r))[None, :]


def _weight(n, sigma_w, weights, rng):
    if weights == "orthogonal":
        return sigma_w * haar_orthogonal(n, rng)
    return rng.standard_normal((n, n)) * (sigma_w / math.sqrt(n))


def jacobian_eigenvalues(act, sigma_w, sigma_b, depth, width, weights, q0, rng):
    """Eigenvalues of JJᵀ (squared singular values of J, ascending) of one random net."""
    from ..maps.activation import derivative_of
    phi, dphi = act.numpy, derivative_of(act).numpy
    h = rng.standard_normal(width) * math.sqrt(q0)
    J = np.eye(width)
    with np.errstate(over="ignore", invalid="ignore"):
        for layer in range(depth):
            W = _weight(width, sigma_w, weights, rng)
            J = W @ (dphi(h)[:, None] * J)
            h = W @ phi(h) + sigma_b * rng.standard_normal(width)
            if not (np.all(np.isfinite(J)) and np.all(np.isfinite(h))):
                raise SimulationOverflowError(
                    f"simulate_jacobian: the Jacobian overflowed at layer {layer + 1}; lower "
                    "depth or move σw towards the critical line (χ1 = 1)", layer=layer + 1)
    s = np.linalg.svd(J, compute_uv=False)
    return np.sort(s * s)


@dataclass(frozen=True)
class JacobianSample:
    """Pooled eigenvalues of JJᵀ over ``nets`` nets, and per-net moments m1 = tr(JJᵀ)/N,
    m2 = tr((JJᵀ)²)/N (their spread over nets gives Monte-Carlo errors)."""

    eigenvalues: np.ndarray
    m1: np.ndarray
    m2: np.ndarray
    width: int
    depth: int

    def moment(self, k):
        """(mean over nets of tr((JJᵀ)^k)/N, its standard error)."""
        per = np.mean(self.eigenvalues.reshape(len(self.m1), -1) ** k, axis=1)
        return float(per.mean()), float(per.std(ddof=1) / math.sqrt(len(per))) if len(per) > 1 \
            else math.inf


def simulate_jacobian(spec, sigma_w, sigma_b=0.0, depth=1, width=256, weights="gaussian",
                      nets=1, seed=0, q0=None):
    """Eigenvalues of JJᵀ of ``nets`` random networks (seeded numpy Generator).

    ``q0``: the input pre-activations' second moment (default: the fixed point q*, or
    1e-12 when q* = 0)."""
    from ..activation import activation
    from ..maps.meanfield import MeanField
    where = "simulate_jacobian"
    act = activation(spec)
    sigma_w = real(where, "sigma_w", sigma_w, positive=True)
    sigma_b = real(where, "sigma_b", sigma_b, nonneg=True)
    depth = integer(where, "depth", depth, 1)
    width = integer(where, "width", width, 1)
    nets = integer(where, "nets", nets, 1)
    if weights not in ("gaussian", "orthogonal"):
        raise VanishcalcError(f"{where}: weights = {weights!r} is not 'gaussian' or 'orthogonal'")
    if width > MAX_WIDTH:
        raise VanishcalcError(f"{where}: width = {width} is above {MAX_WIDTH} (dense N×N "
                              "Jacobians); use a smaller width")
    if float(depth) * width ** 3 * nets > MAX_WORK:
        raise VanishcalcError(f"{where}: depth·width³·nets = {depth * width ** 3 * nets:.3g} "
                              f"multiply-adds is above the budget {MAX_WORK:g}; use fewer nets, "
                              "a smaller width or depth")
    if q0 is None:
        q0 = float(MeanField(act, sigma_w, sigma_b).q_star())
        # q* = 0 is a limit: h = 0 exactly would put every unit on one side of a kink at 0
        # (leaky relu: D = 1, not the limit law D ∈ {a, 1}); a tiny q0 samples the limit
        q0 = q0 if q0 > 0 else Q0_LIMIT
    q0 = real(where, "q0", q0, nonneg=True)
    rng = np.random.default_rng(seed)
    eig = [jacobian_eigenvalues(act, sigma_w, sigma_b, depth, width, weights, q0, rng)
           for _ in range(nets)]
    m1 = np.array([e.mean() for e in eig])
    m2 = np.array([(e * e).mean() for e in eig])
    return JacobianSample(np.concatenate(eig), m1, m2, width, depth)


def ks_distance(samples, cdf, floor=0.0, rel=1e-9):
    """Kolmogorov–Smirnov distance sup_x |F_n(x) − F(x)| between samples and a predicted CDF.

    Ties and atoms (relu's eigenvalue 0, an isometric spectrum's 1) are compared on both
    sides of each sample value, F(x⁻) and F(x) taken at x(1 ∓ rel): computed eigenvalues
    carry rounding, so an atom at 1 comes out as 1 ± 1e-15.  ``floor``: values below it are
    rounding noise of a floating-point SVD (an exact 0 comes out as ~(N·eps·σ_max)²); both
    distributions put their mass below ``floor`` at 0."""
    x = np.sort(np.asarray(samples, dtype=float))
    x = np.where(x < floor, 0.0, x)
    u = np.unique(x)
    n = x.size

    def predicted(t):
        return np.where(t < floor, cdf(np.full(t.shape, floor)), cdf(t))
    # values within a relative rel of each other are one tie (rounding of one atom)
    gap = u[1:] > u[:-1] * (1 + rel)
    ends, starts = u[np.append(gap, True)], u[np.insert(gap, 0, True)]
    right = np.searchsorted(x, ends, side="right") / n
    left = np.searchsorted(x, starts, side="left") / n
    f_right = predicted(ends * (1 + rel))
    f_left = np.where(starts > 0, predicted(starts * (1 - rel)), 0.0)
    return float(max(np.max(np.abs(right - f_right)), np.max(np.abs(left - f_left))))


def rounding_floor(eigenvalues, width):
    """Eigenvalues of JJᵀ below this are indistinguishable from 0 in a double SVD:
    (100·N·eps)²·λ_max (singular values carry ~N·eps·σ_max absolute error)."""
    return (100 * width * np.finfo(float).eps) ** 2 * float(np.max(eigenvalues))


@dataclass(frozen=True)
class SpectrumComparison:
    """Predicted (``x``, ``density``, ``atoms``) and simulated (``eigenvalues``) spectra of
    JJᵀ and their Kolmogorov–Smirnov distance ``ks``: what a plot of the two needs."""

    x: np.ndarray
    density: np.ndarray
    atoms: tuple
    eigenvalues: np.ndarray
    ks: float


def compare_spectrum(spectrum, width=256, nets=4, seed=0):
    """Simulate the nets of a :class:`~vanishcalc.solve.spectrum.JacobianSpectrum` and compare."""
    sample = simulate_jacobian(spectrum.act, spectrum.sigma_w, spectrum.sigma_b, spectrum.depth,
                               width, spectrum.weights, nets, seed)
    dens = spectrum.density()
    return SpectrumComparison(dens.x, dens.density, dens.atoms, sample.eigenvalues,
                              ks_distance(sample.eigenvalues, dens.cdf,
                                          rounding_floor(sample.eigenvalues, width)))
