"""The ``@njit`` steps shared by the CPU stack / RNN kernels (``composed.py``) and the
recurrent BN / LN kernel (``rnn_norm.py``).

* :func:`standardize_row`: ``source.standardize_row`` (one row over its columns, exact
  Jacobian-vector product), inlined at Numba-IR level on purpose: as a separate LLVM function
  its fastmath sums were vectorized differently and seeded results changed in the last bits;
  inlined, the code is the loop it replaced;
* :func:`standardize_rows`: every row of X (BatchNorm on the state; LayerNorm on its
  transpose);
* :func:`stats`: q and the batch-mean pairwise correlation of X into ``out_q[l]``,
  ``out_c[l]``, and ‖V‖².
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from .. import source
from ..compile import FASTMATH

standardize_row = njit(cache=True, fastmath=FASTMATH, inline="always")(source.standardize_row)


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
    q = tot / (N * B)
    out_q[l] = q
    out_c[l] = (sum_sq - tot) / (B * (B - 1.0)) / (N * q) if q > 0.0 else np.nan
    if not (math.isfinite(tot) and math.isfinite(sum_sq) and math.isfinite(f)):
        return np.nan
    return f


__all__ = ["standardize_row", "standardize_rows", "stats"]
