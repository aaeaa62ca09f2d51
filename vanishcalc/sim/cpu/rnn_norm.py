"""Numba CPU kernel of an RNN with normalization in the recurrence (recurrent BN / LN).

Model (notes/recurrent.md, ``maps/rnn.py`` :class:`~vanishcalc.maps.rnn.RecurrentNormRNN`):
W, U (σw²/N, σu²/N) and b (σb²) drawn once per net and reused over time, h_0 = 0, inputs
fresh per step (exchangeable over the batch, second moment x2, correlation x_corr), and

* ``MODE_BN`` (Cooijmans et al. 2017, eq. 6): a_t = γ_h BN(W h_{t−1}) + γ_x BN(U x_t) + β,
  each BN over the batch, per unit and per time step (statistics of this step's batch);
  BN(W h_0) = BN(0) is taken as 0 (the ε of a real BN), so a_1 = γ_x BN(U x_1) + β;
* ``MODE_LN`` (Ba et al. 2016, §3.1): a_t = γ LN(W h_{t−1} + U x_t + b) + β, over the units of
  each input;

h_t = φ(a_t).  The tangent δa_1 is i.i.d. N(0, 1); δa_{t+1} = γ_h J_BN W (φ'(a_t) ⊙ δa_t) (bn,
the input branch carries none) or γ J_LN W (φ'(a_t) ⊙ δa_t) (ln), with the exact Jacobian of
standardization (``source.standardize_row``).  Recorded per step: q, c of a_t and
F_t = ‖δa_t‖² (renormalized each step, log F accumulated), as ``composed._rnn_kernel``.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..compile import FASTMATH
from .ops import draw_inputs, draw_rnn, rnn_step_out, standardize_rows, stats

#: Modes of the normalized RNN kernel (both backends).
MODE_BN, MODE_LN = 1, 2

@njit(cache=True, parallel=True, fastmath=FASTMATH)
def rnn_norm_kernel(phi, dphi, rng, mode, steps, width, batch, sigma_w, sigma_u, sigma_b, x2,
                    x_corr, gamma_h, gamma_x, beta, q, c, logF, bad):
    """T steps of the normalized RNN for every net (``prange``); see the module docstring."""
    n_nets = rng.shape[0]
    for n in prange(n_nets):
        st = rng[n]
        W, U, b, D = draw_rnn(st, width, batch, sigma_w, sigma_u, sigma_b)
        H = np.zeros((width, batch))
        A = np.empty((width, batch))
        xs = np.empty((width, batch))
        Z0 = np.zeros((width, batch))
        for t in range(steps):
            draw_inputs(st, xs, x2, x_corr)
            ok = True
            if mode == MODE_BN:
                Z = U @ xs
                Z0[:, :] = 0.0
                ok = standardize_rows(Z, Z0, gamma_x, beta)
                if t > 0 and ok:
                    Y = W @ H
                    DY = W @ D
                    ok = standardize_rows(Y, DY, gamma_h, 0.0)
                    A[:, :] = Y + Z
                    D[:, :] = DY
                else:
                    A[:, :] = Z
            else:
                Y = W @ H + U @ xs
                for i in range(width):
                    for a in range(batch):
                        Y[i, a] += b[i]
                if t > 0:
                    DY = W @ D
                else:
                    DY = D.copy()
                Yt = np.ascontiguousarray(Y.T)
                Vt = np.ascontiguousarray(DY.T)
                if t > 0:
                    ok = standardize_rows(Yt, Vt, gamma_h, beta)
                else:    # δa_1 is the initial tangent itself: standardize the values only
                    Z0[:, :] = 0.0
                    Z0t = np.ascontiguousarray(Z0.T)
                    ok = standardize_rows(Yt, Z0t, gamma_h, beta)
                    Vt[:, :] = D.T
                A[:, :] = Yt.T
                D[:, :] = Vt.T
            f = stats(A, D, q[n], c[n], t) if ok else np.nan
            if not rnn_step_out(phi, dphi, A, D, H, f, logF[n], bad[n], t):
                break


def simulate_rnn_norm(spec, sigma_w=1.0, sigma_u=1.0, sigma_b=0.0, *, norm, steps, width,
                      gamma=None, gamma_x=None, beta=0.0, x2=1.0, x_corr=0.0, batch=32,
                      n_nets=8, seed=0):
    """Simulate the normalized RNN on the CPU; index t holds a_{t+1}; a ``ComposedTrace``.

    Compare with ``RecurrentNormRNN(spec, norm, gamma, gamma_x, beta, …, batch=batch)``
    (``width=width`` for ``norm="ln"``) ``.propagate(steps)``, or use
    :func:`vanishcalc.sim.check.check_rnn` with ``norm=``.  The front door
    :func:`vanishcalc.sim.api.simulate_rnn` chooses between this and the CUDA kernel.
    """
    from .. import limits
    from ..compile import cpu_cfuncs, run_guarded
    from ..program import rnn_norm_iv, trace, trace_buffers
    from .rng import seed_states
    model, steps, width, batch, n_nets, seed = rnn_norm_iv(
        spec, norm, gamma, gamma_x, beta, sigma_w, sigma_u, sigma_b, steps, width, x2, x_corr,
        batch, n_nets, seed)
    limits.require_rnn("simulate_rnn", steps=steps, width=width, batch=batch, n_nets=n_nets,
                       norm=True)
    phi, dphi = cpu_cfuncs(model.act)
    s = model.step
    gx = model.gamma_x if norm == "bn" else 0.0

    def run():
        rng = seed_states(int(seed), int(n_nets))
        q, c, logF, bad = trace_buffers(n_nets, steps)
        rnn_norm_kernel(phi, dphi, rng, MODE_BN if norm == "bn" else MODE_LN, int(steps),
                        int(width), int(batch), s.sigma_w, s.sigma_u, s.sigma_b, s.x2, s.x_corr,
                        model.gamma, gx, model.beta, q, c, logF, bad)
        return q, c, logF, bad
    return trace(*run_guarded(f"normalized RNNs ({norm}, {model.act.name})", run))


__all__ = ["MODE_BN", "MODE_LN", "rnn_norm_kernel", "simulate_rnn_norm"]
