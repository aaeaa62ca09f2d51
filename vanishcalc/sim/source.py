"""Arithmetic that is the same on both backends, written once as plain Python.

Each function here uses only float arithmetic, ``math.<fn>`` calls, loops and indexing, so the
same function object compiles with ``numba.njit`` (``sim/cpu/``) and with
``numba.cuda.jit(device=True)`` (``sim/cuda/``) — as φ and φ' do, printed as plain-math
source by :func:`vanishcalc.sim.compile.python_source`.  Nothing here imports numba: a
backend compiles what it needs, with its own options.

* :func:`standardize_row`: the BatchNorm op (one unit over the batch) with the exact
  Jacobian-vector product on the tangent; the CPU LayerNorm runs it on the transposed state.

How a backend uses a function of this module: ``njit(cache=True, fastmath=FASTMATH)(f)``
(CPU), ``cuda.jit(device=True)(f)`` inside the kernel builder (CUDA).  See
``notes/sim-layout.md``.
"""
from __future__ import annotations

import math


def standardize_row(X, V, i, n, gamma, beta):
    """Standardize row ``i`` of X over its ``n`` columns (population std), in place:
    ``X ← γu + β`` with ``u = (x − mean)/std``, and the tangent row of V by the exact Jacobian
    ``V ← γ (P v − u·⟨u, P v⟩/n)/std`` (P removes the mean).  False, with the row untouched,
    if the std is not > 0 (0 or NaN): the caller marks the net non-finite.

    notes/normalization.md ("Simulation").
    """
    m = 0.0
    mv = 0.0
    for b in range(n):
        m += X[i, b]
        mv += V[i, b]
    m /= n
    mv /= n
    s2 = 0.0
    for b in range(n):
        d = X[i, b] - m
        s2 += d * d
    s = math.sqrt(s2 / n)
    if not s > 0.0:
        return False
    uv = 0.0
    for b in range(n):
        uv += (X[i, b] - m) / s * (V[i, b] - mv)
    uv /= n
    for b in range(n):
        u = (X[i, b] - m) / s
        V[i, b] = gamma * ((V[i, b] - mv) - u * uv) / s
        X[i, b] = gamma * u + beta
    return True


__all__ = ["standardize_row"]
