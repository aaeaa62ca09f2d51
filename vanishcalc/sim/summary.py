"""Per-net simulation arrays → per-layer sums over nets: what ``Simulation`` is built from.

Backend-neutral (the base layer: imports no backend), so the front door (``sim/api.py``), the
checker and the CUDA backend's device reduction (``sim/cuda/summary.py``) share one definition:

* which per-net values are left out of a layer's mean — non-finite nets, values float64
  cannot carry (:func:`invalid_masks`, :data:`Q_TINY`, :data:`LOG_RANGE`);
* :class:`LayerSums`, per layer: for each statistic the count ``n`` of nets used, their total
  and the sum of squared deviations from ``total / n``, plus the counts behind the warnings;
* :func:`host_layer_sums` computes them with numpy from per-net arrays (the CPU backend);
  the CUDA backend computes the same fields on the device and copies back only these
  O(depth) numbers (``notes/cuda.md``, "Reducing on the device");
* :func:`mean_of_sums`, :func:`se_of_sums`: the one place where a mean and its standard
  error are formed from those sums, whichever backend summed.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

#: Below this a mean square q is not a float64 value to trust: unit squares h² < 1e-308
#: are subnormal or 0 (precision lost), so q̂ and ĉ (built from them) are garbage.
Q_TINY = 1e-290
#: |log| of a gradient ratio beyond which exp() leaves float64 (0 or inf).
LOG_RANGE = 700.0


def has_flat_piece(act) -> bool:
    """True if φ is constant on some interval (relu, hardtanh): there φ' = 0 exactly, so a
    tangent that becomes exactly 0 (a dead relu net) is a true zero gradient, not underflow."""
    from ..parse import X
    return any(not p.expr.has(X) for p in act.pieces)


def invalid_masks(raw, nonfinite_net, flat_piece=False):
    """Per-net masks (n_nets, depth+1) of values float64 cannot carry, and the reason per quantity.

    * q (and c, built from the same units): q̂ < Q_TINY — underflow — except an exact 0
      reached from a normal q (a relu net whose units all died: a true 0).  Once a net
      underflowed, its later layers are computed from garbage and stay invalid.
    * grad: the per-net ratio ‖t^L‖²/‖t^l‖² outside float64 (|log| > LOG_RANGE, or a tangent
      that became exactly 0 because φ' rounded to 0 on every unit).  When φ is constant on
      an interval (``flat_piece``), a tangent that is exactly 0 is a true zero (a dead relu
      net: 0 before it died, undefined 0/0 after, excluded as before) and not flagged.
    """
    q = np.asarray(raw["q"], dtype=np.float64)
    with np.errstate(invalid="ignore"):
        tiny = q < Q_TINY
        prev_normal = np.concatenate([np.zeros((q.shape[0], 1), bool), q[:, :-1] >= Q_TINY], axis=1)
        true_zero = (q == 0.0) & prev_normal
        q_bad = np.logical_or.accumulate(tiny & ~true_zero, axis=1) & ~nonfinite_net
    log_grad = raw.get("log_grad")
    g = np.asarray(raw["grad"], dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        lg = np.asarray(log_grad, dtype=np.float64) if log_grad is not None else np.log(g)
        out_of_range = np.isfinite(lg) & (np.abs(lg) > LOG_RANGE)
        died = ~np.isfinite(lg) | ~np.isfinite(g) | (g == 0.0)
        g_bad = (out_of_range | (died & (not flat_piece))) & ~nonfinite_net
    return {"q": q_bad, "c": q_bad, "grad": g_bad}


@dataclass(frozen=True)
class LayerSums:
    """Per layer (arrays of length depth + 1), sums over nets of what the nets contribute.

    ``n_x``: nets whose value of x is used (finite, net finite, value valid); ``total_x``:
    their sum; ``dev2_x``: Σ (x − total_x / n_x)² over them (two passes, so no cancellation).
    ``n_nonfinite``: nets non-finite at the layer; ``n_invalid_q`` / ``n_invalid_grad``: finite
    nets whose q (and c) / gradient ratio float64 cannot carry (:func:`invalid_masks`);
    ``n_undefined_c``: finite, valid nets whose c is NaN (an input's units all zero).
    Counts are float64 holding integers (exact below 2⁵³).
    """

    n_q: np.ndarray
    total_q: np.ndarray
    dev2_q: np.ndarray
    n_c: np.ndarray
    total_c: np.ndarray
    dev2_c: np.ndarray
    n_grad: np.ndarray
    total_grad: np.ndarray
    dev2_grad: np.ndarray
    n_sat: np.ndarray
    total_sat: np.ndarray
    n_log_grad: np.ndarray
    total_log_grad: np.ndarray
    n_nonfinite: np.ndarray
    n_invalid_q: np.ndarray
    n_invalid_grad: np.ndarray
    n_undefined_c: np.ndarray

    @classmethod
    def from_array(cls, a) -> "LayerSums":
        """From a (:data:`N_LAYER_SUMS`, depth+1) array, rows in field order (the device's)."""
        a = np.asarray(a, dtype=np.float64)
        return cls(*(a[i] for i in range(len(fields(cls)))))

    def as_array(self) -> np.ndarray:
        return np.stack([getattr(self, f.name) for f in fields(self)])


#: Rows of :class:`LayerSums` (the CUDA reduction kernel writes them in this order).
N_LAYER_SUMS = len(fields(LayerSums))


def mean_of_sums(n, total):
    """Mean ``total / n``; NaN where no net is used."""
    n = np.asarray(n)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        return np.where(n > 0, np.asarray(total) / np.maximum(n, 1), np.nan)


def se_of_sums(n, dev2):
    """Standard error of the mean, ``sqrt(dev2 / (n − 1) / n)``; 0 for one net ("not
    estimated": no spread is measured), NaN for none."""
    n = np.asarray(n)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        var = np.asarray(dev2) / np.maximum(n - 1, 1)
        return np.where(n >= 2, np.sqrt(var / np.maximum(n, 1)),
                        np.where(n == 1, 0.0, np.nan))


def column_sums(x):
    """``(n, total, dev2)`` over axis 0 of the finite entries of ``x`` (NaN = left out)."""
    finite = np.isfinite(x)
    n = finite.sum(axis=0)
    with np.errstate(invalid="ignore", over="ignore"):
        total = np.where(finite, x, 0.0).sum(axis=0)
        dev = np.where(finite, x - mean_of_sums(n, total), 0.0)
        dev2 = (dev ** 2).sum(axis=0)
    return n, total, dev2


def host_layer_sums(raw, flat_piece=False) -> LayerSums:
    """:class:`LayerSums` of per-net arrays ``raw`` (``q, c, grad, sat, nonfinite`` and
    optionally ``log_grad``, each (n_nets, depth+1)), with numpy on the host."""
    nonfinite_net = np.asarray(raw["nonfinite"], dtype=bool)
    bad = invalid_masks(raw, nonfinite_net, flat_piece)
    masked = {}
    for k in ("q", "c", "grad", "sat"):
        a = np.array(raw[k], dtype=np.float64)
        a[nonfinite_net] = np.nan
        if k in bad:
            a[bad[k]] = np.nan
        masked[k] = a
    if raw.get("log_grad") is not None:
        lg = np.array(raw["log_grad"], dtype=np.float64)
    else:
        with np.errstate(divide="ignore"):
            lg = np.log(np.array(raw["grad"], dtype=np.float64))
    lg[nonfinite_net] = np.nan
    lg[~np.isfinite(lg)] = np.nan
    out = {}
    for k in ("q", "c", "grad"):
        out[f"n_{k}"], out[f"total_{k}"], out[f"dev2_{k}"] = column_sums(masked[k])
    for k, a in (("sat", masked["sat"]), ("log_grad", lg)):
        out[f"n_{k}"], out[f"total_{k}"], _ = column_sums(a)
    undefined_c = np.isnan(np.asarray(raw["c"], dtype=np.float64)) & ~nonfinite_net & ~bad["c"]
    out.update(n_nonfinite=nonfinite_net.sum(axis=0), n_invalid_q=bad["q"].sum(axis=0),
               n_invalid_grad=bad["grad"].sum(axis=0), n_undefined_c=undefined_c.sum(axis=0))
    return LayerSums(**{k: np.asarray(v, dtype=np.float64) for k, v in out.items()})


__all__ = ["Q_TINY", "LOG_RANGE", "has_flat_piece", "invalid_masks", "LayerSums",
           "N_LAYER_SUMS", "mean_of_sums", "se_of_sums", "column_sums", "host_layer_sums"]
