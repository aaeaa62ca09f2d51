"""Numba CPU kernels for deep random networks: a whole ensemble, the whole depth, one call.

Model (``notes/simulation.md``): per net, two inputs h⁰_1, h⁰_2 and forward tangents
t⁰_1, t⁰_2, then for each layer, with fresh weights,

.. math::

    h^{l+1}_a = W_l φ(h^l_a) + b_l, \\qquad t^{l+1}_a = W_l (φ'(h^l_a) ⊙ t^l_a).

**Exact conditional sampling.**  Only the product ``W_l X`` with the ``width × 4`` matrix
``X = [φ(h_1), φ(h_2), φ'(h_1)⊙t_1, φ'(h_2)⊙t_2]`` is ever needed, and ``W_l`` is
independent of ``X``.  For Gaussian ``W`` the rows of ``W X`` are i.i.d.
``N(0, σw²/N · XᵀX)``; for Haar-orthogonal ``W = σw Q``, ``Q X = (Q V) R`` with
``X = V R`` and ``Q V`` a Haar-random orthonormal frame.  So each layer draws ``4·N``
normals and a ``4 × 4`` Cholesky factor instead of ``N²`` weights: the joint law of every
(h^l, t^l) is *exactly* that of the explicit-weight network at any finite width (checked
against the explicit-weight numpy simulator ``tests/reference/naive_sim.py``), the state is
O(width) per net whatever the depth (the per-layer statistics returned are O(depth) per
net), and the cost is O(width) per layer instead of
O(width²), so no BLAS call is needed.  (This relies on fresh weights in every layer;
a recurrent net that reuses ``W`` over time needs explicit weights.)

Kernels are module-level ``@njit(cache=True)`` functions; φ and φ' come in as first-class
functions of type ``float64(float64)`` (``compile.cpu_cfuncs``), so each kernel is compiled
once for all activations and cached on disk; only φ and φ' are compiled per activation.
(Passing njit dispatchers instead would inline φ, but recompiles every kernel for every
activation in every process — about 10 s each — since numba cannot cache that.)
Each net has its own xoroshiro128+ stream seeded from ``(seed, net index)``, so results
do not depend on the number of threads.  Per-layer steps are separate functions
(``_activation_step``, ``_dense_step``, ``_layer_stats``) so that other layer kinds
(BatchNorm, LayerNorm) can be composed from them later.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange


from ..compile import FASTMATH
from .rng import fill_normal, seed_states

# Relative pivot below which a column of X is treated as linearly dependent (e.g. c0 = 1).
_PIVOT_RTOL = 1e-12


@njit(cache=True, fastmath=FASTMATH)
def _init_inputs(st, h, t, q0, c0, work):
    """Two inputs with mean(h_a²) = q0 and correlation c0 exactly; tangents t_a ~ N(0, I/N).

    Random directions: h_1 ∝ e_1, h_2 ∝ c0 e_1 + √(1 − c0²) e_2 with (e_1, e_2) the
    Gram–Schmidt frame of two Gaussian vectors.  ``work`` is float64[2N].
    """
    width = h.shape[1]
    fill_normal(st, work)
    g1 = work[:width]
    g2 = work[width:]
    n1 = 0.0
    for i in range(width):
        n1 += g1[i] * g1[i]
    n1 = math.sqrt(n1)
    for i in range(width):
        g1[i] /= n1
    s2 = math.sqrt(max(0.0, 1.0 - c0 * c0))
    if width > 1:
        d = 0.0
        for i in range(width):
            d += g1[i] * g2[i]
        n2 = 0.0
        for i in range(width):
            g2[i] -= d * g1[i]
            n2 += g2[i] * g2[i]
        n2 = math.sqrt(n2)
        for i in range(width):
            g2[i] /= n2
    else:
        g2[0] = 0.0
    r = math.sqrt(q0 * width)
    for i in range(width):
        h[0, i] = r * g1[i]
        h[1, i] = r * (c0 * g1[i] + s2 * g2[i])
    fill_normal(st, work)
    inv = 1.0 / math.sqrt(width)
    for i in range(width):
        t[0, i] = work[i] * inv
        t[1, i] = work[width + i] * inv


@njit(cache=True, fastmath=FASTMATH)
def _activation_step(phi, dphi, h, t, X, sat_thresh):
    """X[:, a] = φ(h_a), X[:, 2 + a] = φ'(h_a) ⊙ t_a; returns the count of |φ'(h)| < sat_thresh."""
    width = h.shape[1]
    nsat = 0
    for i in range(width):
        for a in range(2):
            x = np.float64(h[a, i])
            d = dphi(x)
            if abs(d) < sat_thresh:
                nsat += 1
            X[i, a] = phi(x)
            X[i, 2 + a] = d * np.float64(t[a, i])
    return nsat


@njit(cache=True, fastmath=FASTMATH)
def _gram_cholesky(X, L):
    """L (k × k lower) with L Lᵀ = XᵀX; columns with a relative pivot < 1e-12 set to zero.

    Returns False if the Gram matrix is not finite.
    """
    width, k = X.shape
    G = np.zeros((k, k))
    for i in range(width):
        for j in range(k):
            xj = X[i, j]
            for m in range(j + 1):
                G[j, m] += xj * X[i, m]
    for j in range(k):
        for m in range(j + 1):
            if not math.isfinite(G[j, m]):
                return False
    for j in range(k):
        for m in range(k):
            L[j, m] = 0.0
    for j in range(k):
        d = G[j, j]
        for m in range(j):
            d -= L[j, m] * L[j, m]
        if d <= _PIVOT_RTOL * G[j, j] or d <= 0.0:
            continue                      # dependent (or zero) column: L[:, j] = 0
        ljj = math.sqrt(d)
        L[j, j] = ljj
        for r in range(j + 1, k):
            s = G[r, j]
            for m in range(j):
                s -= L[r, m] * L[j, m]
            L[r, j] = s / ljj
    return True


@njit(cache=True, fastmath=FASTMATH)
def _haar_frame(Z, L):
    """Orthonormalize (twice-iterated Gram–Schmidt) the columns j of Z with L[j, j] > 0.

    Z has i.i.d. normal entries, so the result is a Haar-random orthonormal frame on those
    columns (others are unused: their rows of Lᵀ are zero).
    """
    width, k = Z.shape
    for j in range(k):
        if L[j, j] == 0.0:
            continue
        for _ in range(2):
            for m in range(j):
                if L[m, m] == 0.0:
                    continue
                d = 0.0
                for i in range(width):
                    d += Z[i, j] * Z[i, m]
                for i in range(width):
                    Z[i, j] -= d * Z[i, m]
        nrm = 0.0
        for i in range(width):
            nrm += Z[i, j] * Z[i, j]
        nrm = 1.0 / math.sqrt(nrm)
        for i in range(width):
            Z[i, j] *= nrm


@njit(cache=True, fastmath=FASTMATH)
def _dense_step(st, X, h, t, L, Z, bias, sigma_w, sigma_b, orthogonal):
    """h_a ← W φ(h_a) + b, t_a ← W (φ'(h_a) ⊙ t_a), sampling W X exactly from its law.

    Gaussian W: rows of W X ~ N(0, σw²/N · XᵀX) = σw/√N · z Lᵀ.  Orthogonal W = σw Q:
    Q X = U Lᵀ with U a Haar frame.  Returns False if XᵀX is not finite.
    """
    width = X.shape[0]
    if not _gram_cholesky(X, L):
        return False
    fill_normal(st, Z.ravel())
    if orthogonal:
        _haar_frame(Z, L)
        scale = sigma_w
    else:
        scale = sigma_w / math.sqrt(width)
    if sigma_b > 0.0:
        fill_normal(st, bias)
        for i in range(width):
            bias[i] *= sigma_b
    else:
        for i in range(width):
            bias[i] = 0.0
    for i in range(width):
        z0 = Z[i, 0]
        z1 = Z[i, 1]
        z2 = Z[i, 2]
        z3 = Z[i, 3]
        y0 = L[0, 0] * z0
        y1 = L[1, 0] * z0 + L[1, 1] * z1
        y2 = L[2, 0] * z0 + L[2, 1] * z1 + L[2, 2] * z2
        y3 = L[3, 0] * z0 + L[3, 1] * z1 + L[3, 2] * z2 + L[3, 3] * z3
        h[0, i] = scale * y0 + bias[i]
        h[1, i] = scale * y1 + bias[i]
        t[0, i] = scale * y2
        t[1, i] = scale * y3
    return True


@njit(cache=True, fastmath=FASTMATH)
def _layer_stats(h, t, l, q, c, F):
    """q[l], c[l], F[a, l] = log ‖t_a‖² accumulated; returns False if any is not finite.

    The tangents enter with ‖t_a‖² = 1 (except at layer 0) and leave rescaled to 1, so that
    F[a, l] = F[a, l−1] + log ‖t_a‖² is the log squared norm of the unscaled tangent: a
    product of thousands of per-layer factors neither overflows nor underflows (the map is
    linear in t, so the scale changes no law).  A tangent that is exactly 0 (φ' = 0 on
    every unit, e.g. tanh at |h| > 19) gives F = −inf: the gradient is below float64.
    c divides by √s11·√s22, not √(s11·s22), which over/underflows for q ≳ 1e154 or ≲ 1e-154.
    """
    width = h.shape[1]
    s11 = 0.0
    s22 = 0.0
    s12 = 0.0
    f1 = 0.0
    f2 = 0.0
    for i in range(width):
        a = np.float64(h[0, i])
        b = np.float64(h[1, i])
        s11 += a * a
        s22 += b * b
        s12 += a * b
        u = np.float64(t[0, i])
        v = np.float64(t[1, i])
        f1 += u * u
        f2 += v * v
    q[l] = (s11 + s22) / (2.0 * width)
    den = math.sqrt(s11) * math.sqrt(s22)
    c[l] = s12 / den if den > 0.0 else np.nan       # undefined when an input is all zero
    prev1 = F[0, l - 1] if l > 0 else 0.0
    prev2 = F[1, l - 1] if l > 0 else 0.0
    F[0, l] = prev1 + (math.log(f1) if f1 > 0.0 else -np.inf)
    F[1, l] = prev2 + (math.log(f2) if f2 > 0.0 else -np.inf)
    if f1 > 0.0 and math.isfinite(f1):
        s = 1.0 / math.sqrt(f1)
        for i in range(width):
            t[0, i] = t[0, i] * s
    if f2 > 0.0 and math.isfinite(f2):
        s = 1.0 / math.sqrt(f2)
        for i in range(width):
            t[1, i] = t[1, i] * s
    return (math.isfinite(s11) and math.isfinite(s22) and math.isfinite(s12)
            and math.isfinite(f1) and math.isfinite(f2))


# ---------------------------------------------------------------- whole-ensemble kernels

@njit(cache=True, parallel=True, fastmath=FASTMATH)
def _init_kernel(rng, H, T, q0, c0, q, c, F, bad):
    """Layer 0 of every net (inputs and tangents) and its statistics."""
    n_nets, _, width = H.shape
    for n in prange(n_nets):
        work = np.empty(2 * width)
        _init_inputs(rng[n], H[n], T[n], q0, c0, work)
        ok = _layer_stats(H[n], T[n], 0, q[n], c[n], F[n])
        bad[n, 0] = not ok


@njit(cache=True, parallel=True, fastmath=FASTMATH)
def _dense_kernel(phi, dphi, rng, H, T, sigma_w, sigma_b, orthogonal, sat_thresh, l0, l1,
                  q, c, F, sat, bad):
    """Layers l0 → l1 of ``h ← W φ(h) + b`` (and tangents) for every net, in parallel.

    On entry H, T hold layer l0; on exit layer l1.  Writes q, c, F for layers l0+1..l1 and
    sat for layers l0..l1−1.  A net whose layer is not finite gets NaN for all later layers
    and ``bad`` set from that layer on.
    """
    n_nets, _, width = H.shape
    depth = q.shape[1] - 1
    for n in prange(n_nets):
        if bad[n, l0]:
            continue
        st = rng[n]
        h = H[n]
        t = T[n]
        X = np.empty((width, 4))
        Z = np.empty((width, 4))
        L = np.zeros((4, 4))
        bias = np.empty(width)
        for l in range(l0, l1):
            nsat = _activation_step(phi, dphi, h, t, X, sat_thresh)
            sat[n, l] = nsat / (2.0 * width)
            ok = _dense_step(st, X, h, t, L, Z, bias, sigma_w, sigma_b, orthogonal)
            if ok:
                ok = _layer_stats(h, t, l + 1, q[n], c[n], F[n])
            if not ok:                    # later layers keep their NaN fill
                for m in range(l + 1, depth + 1):
                    bad[n, m] = True
                break


@njit(cache=True, parallel=True, fastmath=FASTMATH)
def _final_saturation_kernel(dphi, H, T, sat_thresh, l, sat, bad):
    """sat[l] for the last layer (no dense step follows it)."""
    n_nets, _, width = H.shape
    for n in prange(n_nets):
        if bad[n, l]:
            sat[n, l] = np.nan
            continue
        nsat = 0
        for i in range(width):
            for a in range(2):
                if abs(dphi(np.float64(H[n, a, i]))) < sat_thresh:
                    nsat += 1
        sat[n, l] = nsat / (2.0 * width)


# ---------------------------------------------------------------- driver (backend contract)

def run_dense(act, *, sigma_w, sigma_b, depth, width, n_nets, q0, c0, orthogonal, seed, dtype,
              progress=None, chunk=None, sat_reference=None):
    """Simulate ``n_nets`` dense nets of ``depth`` layers on the CPU (validated inputs only).

    Returns
    -------
    dict
        ``q``, ``c``, ``grad``, ``sat``: float64 (n_nets, depth+1); ``nonfinite``: bool
        (n_nets, depth+1).  ``grad[:, l] = ½ Σ_a ‖t^depth_a‖² / ‖t^l_a‖²``;
        ``log_grad[:, l] = ½ Σ_a log(‖t^depth_a‖² / ‖t^l_a‖²)`` (finite where grad is not
        representable).
    """
    from ..compile import cpu_cfuncs, run_guarded
    from ..source import saturation_reference

    def run():
        phi, dphi = cpu_cfuncs(act)
        ref = saturation_reference(act) if sat_reference is None else sat_reference
        sat_thresh = 1e-3 * ref
        np_dtype = np.dtype(dtype)
        rng = seed_states(int(seed), n_nets)
        H = np.empty((n_nets, 2, width), dtype=np_dtype)
        T = np.empty((n_nets, 2, width), dtype=np_dtype)
        q = np.full((n_nets, depth + 1), np.nan)
        c = np.full((n_nets, depth + 1), np.nan)
        sat = np.full((n_nets, depth + 1), np.nan)
        F = np.full((n_nets, 2, depth + 1), np.nan)
        bad = np.zeros((n_nets, depth + 1), dtype=np.bool_)
        _init_kernel(rng, H, T, float(q0), float(c0), q, c, F, bad)
        bad[:, 1:] |= bad[:, :1]
        size = chunk
        if size is None:
            # chunks of ~2e7 unit-layers keep progress reports and Ctrl-C responsive
            size = depth if progress is None else max(1, min(depth, int(2e7 // max(1, n_nets
                                                                                 * width))))
        l0 = 0
        while l0 < depth:
            l1 = min(depth, l0 + size)
            _dense_kernel(phi, dphi, rng, H, T, float(sigma_w), float(sigma_b), bool(orthogonal),
                          float(sat_thresh), l0, l1, q, c, F, sat, bad)
            l0 = l1
            if progress is not None:
                progress(l0, depth)
        _final_saturation_kernel(dphi, H, T, float(sat_thresh), depth, sat, bad)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
            log_ratio = F[:, :, depth:depth + 1] - F          # log ‖t^L‖²/‖t^l‖² per input
            grad = np.mean(np.exp(log_ratio), axis=1)
            log_grad = np.mean(log_ratio, axis=1)
        grad[bad] = np.nan
        log_grad[bad] = np.nan
        return {"q": q, "c": c, "grad": grad, "log_grad": log_grad, "sat": sat,
                "nonfinite": bad}
    return run_guarded(f"{act.name} ({dtype})", run)
