"""The ``@njit`` steps shared by the CPU stack / RNN kernels (``composed.py``) and the
recurrent BN / LN kernel (``rnn_norm.py``).

* :func:`standardize_row`: ``source.standardize_row`` (one row over its columns, exact
  Jacobian-vector product), inlined at Numba-IR level on purpose: as a separate LLVM function
  its fastmath sums were vectorized differently and seeded results changed in the last bits;
  inlined, the code is the loop it replaced;
* :func:`standardize_rows`: every row of X (BatchNorm on the state; LayerNorm on its
  transpose);
* :func:`draw_rnn`, :func:`draw_inputs`: an RNN's weights and initial tangent, one step's
  inputs, from the net's stream;
* :func:`stats`: q and the batch-mean pairwise correlation of X (``source.q_and_c``) into
  ``out_q[l]``, ``out_c[l]``, and ‖V‖².
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from .. import source
from ..compile import FASTMATH
from .rng import normal

standardize_row = njit(cache=True, fastmath=FASTMATH, inline="always")(source.standardize_row)
q_and_c = njit(cache=True, fastmath=FASTMATH, inline="always")(source.q_and_c)


@njit(cache=True, fastmath=FASTMATH)
def standardize_rows(X, V, gamma, beta):
    """Standardize each row of X over its columns (exact JVP on V); False if a std is 0."""
    R, C = X.shape
    for i in range(R):
        if not standardize_row(X, V, i, C, gamma, beta):
            return False
    return True


@njit(cache=True, fastmath=FASTMATH)
def stats(X, V, out_q, out_c, l):
    """q, batch-mean pairwise correlation; returns ‖V‖² (NaN if anything is not finite)."""
    N, B = X.shape
    tot = 0.0
    sum_sq = 0.0
    f = 0.0
    for i in range(N):
        r = 0.0
        for b in range(B):
            x = X[i, b]
            r += x
            tot += x * x
            f += V[i, b] * V[i, b]
        sum_sq += r * r
    out_q[l], out_c[l] = q_and_c(tot, sum_sq, N, B)
    if not (math.isfinite(tot) and math.isfinite(sum_sq) and math.isfinite(f)):
        return np.nan
    return f


@njit(cache=True, fastmath=FASTMATH)
def draw_rnn(st, width, batch, sigma_w, sigma_u, sigma_b):
    """An RNN's W, U (σ²/N, interleaved per entry), b (σb²), then δa_1 ~ N(0, 1), row by row
    from the net's stream."""
    W = np.empty((width, width))
    U = np.empty((width, width))
    b = np.empty(width)
    sw = sigma_w / math.sqrt(width)
    su = sigma_u / math.sqrt(width)
    for i in range(width):
        for j in range(width):
            W[i, j] = sw * normal(st)
            U[i, j] = su * normal(st)
        b[i] = sigma_b * normal(st)
    D = np.empty((width, batch))
    for i in range(width):
        for a in range(batch):
            D[i, a] = normal(st)
    return W, U, b, D


@njit(cache=True, fastmath=FASTMATH)
def draw_inputs(st, xs, x2, x_corr):
    """One step's inputs x_b = √x2(√ρ g + √(1−ρ) e_b), row by row, into ``xs``."""
    ax = math.sqrt(x2 * x_corr)
    ex = math.sqrt(x2 * (1.0 - x_corr))
    for i in range(xs.shape[0]):
        g = normal(st)
        for a in range(xs.shape[1]):
            xs[i, a] = ax * g + ex * normal(st)


__all__ = ["standardize_row", "standardize_rows", "stats", "draw_rnn", "draw_inputs"]


@njit(cache=True, fastmath=FASTMATH)
def rnn_step_out(phi, dphi, A, D, H, f, logF_row, bad_row, t):
    """The end of one RNN step, after ``f = stats(A, D, …)`` (plain and normalized RNN
    kernels alike): accumulate log‖δa‖² into ``logF_row``, renormalize the tangent through
    φ' and set h_t = φ(a_t).  A non-finite or zero ``f`` marks steps t.. bad; returns False
    then (the caller stops that net)."""
    width, batch = A.shape
    if not (f > 0.0 and math.isfinite(f)):
        for m in range(t, bad_row.shape[0]):
            bad_row[m] = True
        return False
    logF_row[t] = (logF_row[t - 1] if t > 0 else 0.0) + math.log(f / (width * batch))
    scale = math.sqrt(width * batch / f)
    for i in range(width):
        for a in range(batch):
            x = A[i, a]
            D[i, a] = dphi(x) * D[i, a] * scale
            H[i, a] = phi(x)
    return True

