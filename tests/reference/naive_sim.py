"""Plain-numpy reference simulator of deep dense networks with explicit weights.

Imports nothing from vanishcalc: explicit weight matrices (Gaussian, or Haar-orthogonal
from the QR of a Gaussian matrix with the sign fix of Mezzadri 2007), φ and φ' passed in
as numpy callables written in the test, and the gradient by true back-propagation of a
random linear readout (weights are stored: small depths only).
"""
from __future__ import annotations

import numpy as np

# φ and φ' written from their definitions, for the tests.
PHI = {
    "relu": (lambda x: np.maximum(x, 0.0), lambda x: (x > 0).astype(float)),
    "tanh": (np.tanh, lambda x: 1.0 - np.tanh(x) ** 2),
    "exp(-x**2)": (lambda x: np.exp(-x * x), lambda x: -2.0 * x * np.exp(-x * x)),
}


def _haar(rng, n_nets, n):
    a = rng.standard_normal((n_nets, n, n))
    q, r = np.linalg.qr(a)
    d = np.sign(np.diagonal(r, axis1=1, axis2=2))
    return q * d[:, None, :]


def naive_simulate(phi, dphi, sigma_w, sigma_b, *, depth, width, n_nets, q0=1.0, c0=0.5,
                   orthogonal=False, rng):
    """Per-net arrays ``q, c, grad`` of shape (n_nets, depth + 1), by explicit weights.

    ``grad[:, l]`` = ½ Σ_a ‖∂(v·h^L_a)/∂h^l_a‖² / ‖v‖² with a random readout v, i.e. the
    back-propagated squared gradient relative to the last layer; ``grad_fwd`` is the
    forward-mode statistic ½ Σ_a ‖t^L_a‖²/‖t^l_a‖² with t^{l+1} = W (φ'(h^l) ⊙ t^l).
    """
    n = width
    # inputs: exact second moment and correlation, random directions
    g = rng.standard_normal((n_nets, 2, n))
    e1 = g[:, 0] / np.linalg.norm(g[:, 0], axis=1, keepdims=True)
    g2 = g[:, 1] - np.sum(g[:, 1] * e1, axis=1, keepdims=True) * e1
    e2 = g2 / np.linalg.norm(g2, axis=1, keepdims=True)
    r = np.sqrt(q0 * n)
    h = np.stack([r * e1, r * (c0 * e1 + np.sqrt(1 - c0 * c0) * e2)], axis=1)  # (nets, 2, n)
    t = rng.standard_normal((n_nets, 2, n)) / np.sqrt(n)      # forward-mode tangents
    hs, ws, ts = [h], [], [t]
    for _ in range(depth):
        if orthogonal:
            w = sigma_w * _haar(rng, n_nets, n)
        else:
            w = rng.standard_normal((n_nets, n, n)) * (sigma_w / np.sqrt(n))
        b = rng.standard_normal((n_nets, 1, n)) * sigma_b
        t = np.einsum("kij,kaj->kai", w, dphi(h) * t)
        h = np.einsum("kij,kaj->kai", w, phi(h)) + b
        hs.append(h)
        ts.append(t)
        ws.append(w)
    H = np.stack(hs, axis=1)                                   # (nets, L+1, 2, n)
    q = np.mean(H ** 2, axis=(2, 3))
    with np.errstate(invalid="ignore", divide="ignore"):    # dead relu nets: 0/0 → NaN
        c = np.sum(H[:, :, 0] * H[:, :, 1], axis=2) / np.sqrt(
            np.sum(H[:, :, 0] ** 2, axis=2) * np.sum(H[:, :, 1] ** 2, axis=2))
    # back-propagation of a random readout v (same v for both inputs)
    v = rng.standard_normal((n_nets, 1, n)) / np.sqrt(n)
    g = np.broadcast_to(v, (n_nets, 2, n)).copy()              # ∂/∂h^L
    norms = [np.sum(g ** 2, axis=2)]
    for layer in range(depth - 1, -1, -1):
        g = np.einsum("kij,kai->kaj", ws[layer], g) * dphi(hs[layer])
        norms.append(np.sum(g ** 2, axis=2))
    norms = np.stack(norms[::-1], axis=1)                      # (nets, L+1, 2)
    f = np.sum(np.stack(ts, axis=1) ** 2, axis=3)               # (nets, L+1, 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        grad = np.mean(norms / norms[:, -1:, :], axis=2)
        grad_fwd = np.mean(f[:, -1:, :] / f, axis=2)
    return {"q": q, "c": c, "grad": grad, "grad_fwd": grad_fwd}
