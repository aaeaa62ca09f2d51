"""The network program, backend-neutral: the op list, validation and the trace.

Both backends run this program: ``sim/cpu/composed.py`` (Numba CPU kernels) and
``sim/cuda/composed.py`` (CUDA kernels).  It imports neither (arrows point down only:
api → cpu | cuda → program), so the two backends never import each other.

* :func:`program`: a block of layers → (φ, op codes, parameters), the program the kernels run;
  each op code (OP_DENSE, OP_BN, OP_LN, OP_ACT) has one body per backend;
* :func:`stack_iv`, :func:`rnn_iv`: argument validation, identical for both backends;
* :func:`trace`: per-net arrays (q, c, log F, non-finite flags) → :class:`ComposedTrace`.

The ``backend=`` rule is the front door's (``sim/api.py``: :func:`~vanishcalc.sim.api.use_cuda_backend`).

Model and estimators: ``sim/cpu/composed.py``'s docstring, ``notes/normalization.md``,
``notes/recurrent.md``, ``notes/cuda-composed.md``.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from ..activation import activation
from ..errors import VanishcalcError, VanishcalcWarning
from ..validate import integer, real
from .seeds import seed_iv

#: Op codes of the program (the CPU and CUDA kernels dispatch on them).
OP_DENSE, OP_BN, OP_LN, OP_ACT = 0, 1, 2, 3
#: RBF distance units (maps/rbf.py): pars (σc, μc, offset, scale, matched 0/1).
OP_RBF = 4
#: Columns of the parameter table (the widest op's row; shorter rows are padded with 0).
N_PARS = 5
#: Residual blocks and dropout (issue 17; notes/residual.md, notes/dropout.md).  OP_SAVE copies
#: the state (X, V) into the one saved slot per net; OP_ADD_SAVED sets X ← saved + α·X,
#: V ← saved_V + α·V (pars[k, 0] = α); OP_DROPOUT multiplies each entry by m/keep,
#: m ~ Bernoulli(keep) drawn per unit and input (pars[k, 0] = keep).  One slot: nested
#: residuals are refused by ``program``.  Codes 10–12 leave room for other new ops.
OP_SAVE, OP_ADD_SAVED, OP_DROPOUT = 10, 11, 12


@dataclass(frozen=True)
class ComposedTrace:
    """Per-layer means over nets and their standard errors (index 0 = input / first step).

    ``rate`` (length depth): mean over nets of F_{l+1}/F_l, the per-layer squared-norm
    growth, with ``rate_se``; ``grad[l]`` = mean over nets of F_last/F_l."""

    q: np.ndarray
    c: np.ndarray
    grad: np.ndarray
    q_se: np.ndarray
    c_se: np.ndarray
    grad_se: np.ndarray
    rate: np.ndarray
    rate_se: np.ndarray
    n_nets: int
    per_net: dict | None = None     # per-net q, c, grad, log_grad (n_nets, depth+1), NaN where excluded

    def mean_rate(self, skip=2):
        """Per-layer rate averaged over layers ≥ ``skip`` and nets, with its standard error
        (from the spread of the per-net averages)."""
        return self._mean_rate if skip == 2 else _pooled(self._per_net[:, skip:])


def _mean_se(a):
    """Mean and standard error over nets (axis 0), NaN entries left out; a column with no
    finite entry gives NaN (the caller has already warned about it)."""
    k = np.sum(np.isfinite(a), axis=0)
    with warnings.catch_warnings():
        # all-NaN columns (every net excluded) are expected here: numpy's "Mean of empty
        # slice" / "Degrees of freedom <= 0" would leak to the user as raw RuntimeWarnings
        warnings.simplefilter("ignore", RuntimeWarning)
        m = np.nanmean(a, axis=0)
        se = np.nanstd(a, axis=0, ddof=1) / np.sqrt(k) if a.shape[0] > 1 else np.full_like(m, np.inf)
    return m, se


def _pooled(per_layer_rates):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)     # all-NaN nets: see _mean_se
        per_net = np.nanmean(per_layer_rates, axis=1)
    n = np.sum(np.isfinite(per_net))
    if n == 0:
        return math.nan, math.inf
    if n < 2:     # one net: no spread to measure (and no numpy ddof warning)
        return float(np.nanmean(per_net)), math.inf
    return float(np.nanmean(per_net)), float(np.nanstd(per_net, ddof=1) / math.sqrt(n))


def _user_stacklevel() -> int:
    """The ``stacklevel`` of the first caller outside ``vanishcalc/sim`` (for the caller of
    the caller of this function): a warning names the user's line whichever front door
    (``simulate``, ``simulate_rnn``, ``check_rnn``) and backend it came through."""
    import os
    import sys
    here = os.path.dirname(os.path.abspath(__file__))
    frame, level = sys._getframe(2), 2
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(here):
        frame, level = frame.f_back, level + 1
    return level


def trace_buffers(n_nets, n, bad_dtype=np.bool_):
    """The per-net arrays a composed/RNN kernel fills and :func:`trace` reads: q, c, logF
    (n_nets, n) NaN until written, and the non-finite flags ``bad`` (bool on the CPU; int8 for
    the CUDA kernels, whose signature takes a byte array)."""
    q, c, logF = (np.full((n_nets, n), np.nan) for _ in range(3))
    return q, c, logF, np.zeros((n_nets, n), dtype=bad_dtype)


def trace(q, c, logF, bad):
    import warnings
    if bad.any():
        warnings.warn(f"{int(bad[:, -1].sum())} of {bad.shape[0]} simulated nets became "
                      "non-finite; their later layers are NaN", VanishcalcWarning,
                      stacklevel=_user_stacklevel())
    q = np.where(bad, np.nan, q)
    c = np.where(bad, np.nan, c)
    logF = np.where(bad, np.nan, logF)
    grad = np.exp(logF[:, -1:] - logF)
    rate = np.exp(np.diff(logF, axis=1))
    qm, qs = _mean_se(q)
    cm, cs = _mean_se(c)
    gm, gs = _mean_se(grad)
    rm, rs = _mean_se(rate)
    tr = ComposedTrace(qm, cm, gm, qs, cs, gs, rm, rs, q.shape[0],
                       per_net={"q": q, "c": c, "grad": grad,
                                # log grad, finite where grad leaves float64 (T = 1000 steps
                                # at rate 1/2 is 2⁻⁹⁹⁹ per net)
                                "log_grad": logF[:, -1:] - logF})
    object.__setattr__(tr, "_per_net", rate)
    object.__setattr__(tr, "_mean_rate", _pooled(rate[:, 2:]) if rate.shape[1] > 2 else
                       _pooled(rate))
    return tr


def _sizes_iv(where, **kw):
    """Each size an integer ≥ 1 (``validate.integer``); returned as ints in order."""
    return [integer(where, name, v, 1) for name, v in kw.items()]


def program(block, batch, width=None):
    """(phi Activation, ops, pars, batch) from a list/serial of Dense/BatchNorm/LayerNorm/
    Activation/RBF; ``width`` (when given) must match every RBF layer's own."""
    from ..maps.activation import Nonlinearity
    from ..maps.rbf import RBF
    from ..maps.combinators import serial
    from ..maps.dense import Dense
    from ..maps.layer import Layer
    from ..maps.norm import BatchNorm, LayerNorm
    layers = block.layers if isinstance(block, Layer) else serial(*block).layers
    layers = _expand_residuals(layers)
    ops, pars, act = [], [], None
    for layer in layers:
        if isinstance(layer, _Save):
            ops.append(OP_SAVE)
            pars.append((0.0, 0.0))
        elif isinstance(layer, _AddSaved):
            ops.append(OP_ADD_SAVED)
            pars.append((layer.alpha, 0.0))
        elif _is_dropout(layer):
            ops.append(OP_DROPOUT)
            pars.append((layer.keep, 0.0))
        elif isinstance(layer, Dense):
            ops.append(OP_DENSE)
            pars.append((layer.sigma_w, layer.sigma_b))
        elif isinstance(layer, BatchNorm):
            if layer.batch is not None and layer.batch != batch:
                raise VanishcalcError(f"simulate_stack: {layer!r} has batch {layer.batch} but the "
                                      f"simulation batch is {batch}; make them equal")
            ops.append(OP_BN)
            pars.append((layer.gamma, layer.beta))
        elif isinstance(layer, LayerNorm):
            ops.append(OP_LN)
            pars.append((layer.gamma, layer.beta))
        elif isinstance(layer, Nonlinearity):
            if act is not None and layer.act != act:
                raise VanishcalcError("simulate_stack: all Activation layers of a block must share "
                                      f"one φ (got {act.name} and {layer.act.name})")
            act = layer.act
            ops.append(OP_ACT)
            pars.append((0.0, 0.0))
        elif isinstance(layer, RBF):
            if act is not None and layer.act != act:
                raise VanishcalcError("simulate_stack: the RBF and Activation layers of a block "
                                      f"must share one φ (got {act.name} and {layer.act.name})")
            if width is not None and layer.width != width:
                raise VanishcalcError(f"simulate_stack: {layer!r} is built for width "
                                      f"{layer.width} but the simulation width is {width}; make "
                                      "them equal (the distances scale with the width)")
            act = layer.act
            ops.append(OP_RBF)
            pars.append((layer.sigma_c, layer.center_mean, layer.offset, layer.scale,
                         1.0 if layer.centers == "matched" else 0.0))
        else:
            raise VanishcalcError(f"simulate_stack: cannot simulate {layer!r}; supported layers "
                                  "are Dense, BatchNorm, LayerNorm, Activation, RBF, Dropout "
                                  "and Residual")
    if act is None:
        act = activation("x")
    pars = [tuple(p) + (0.0,) * (N_PARS - len(p)) for p in pars]
    return act, np.asarray(ops, dtype=np.int64), np.asarray(pars, dtype=np.float64).reshape(-1, N_PARS)


class _Save:
    """Marker of the lowering: the residual block's input is saved here."""


@dataclass(frozen=True)
class _AddSaved:
    """Marker of the lowering: the branch output is scaled by α and the saved input added."""

    alpha: float


def _is_dropout(layer) -> bool:
    from ..maps.dropout import Dropout
    return isinstance(layer, Dropout)


def _expand_residuals(layers):
    """Residual(branch, α) → [_Save, *branch layers, _AddSaved(α)]; nested residuals refused
    (one saved slot per net; the kernels keep one copy of the state, not a stack)."""
    from ..maps.residual import Residual
    out = []
    for layer in layers:
        if not isinstance(layer, Residual):
            out.append(layer)
            continue
        inner = layer.branch.layers
        if any(isinstance(l, Residual) for l in inner):
            raise VanishcalcError(f"simulate_stack: cannot simulate the nested residual in "
                                  f"{layer!r}: the simulator keeps one saved block input per net; "
                                  "flatten the branch (a residual inside a residual branch is "
                                  "supported by the mean-field maps only)")
        from ..maps.norm import BatchNorm
        if any(isinstance(l, BatchNorm) and l.batch is None for l in inner):
            # check/simulate give a top-level BatchNorm the simulation's batch; one inside a
            # branch would keep the infinite-batch map while the kernels run a finite batch
            raise VanishcalcError(f"simulate_stack: the BatchNorm inside {layer!r} has no batch; "
                                  "give it the simulation's batch, BatchNorm(γ, β, batch=B)")
        out.append(_Save())
        out.extend(inner)
        out.append(_AddSaved(layer.alpha))
    return out


def stack_iv(block, depth, width, batch, n_nets, q0, c0, seed):
    """Validate a composed-stack simulation (both backends); returns the program and sizes."""
    depth, width, batch, n_nets = _sizes_iv("simulate_stack", depth=depth, width=width,
                                            batch=batch, n_nets=n_nets)
    if batch < 2:
        raise VanishcalcError("simulate_stack: batch must be ≥ 2 (correlations need two inputs)")
    q0 = real("simulate_stack", "q0", q0, positive=True, why="(the input second moment)")
    c0 = real("simulate_stack", "c0", c0, lo=0.0, hi=1.0, why="(exchangeable batch)")
    if c0 == 1.0:
        raise VanishcalcError(f"simulate_stack: c0 = {c0!r} must lie in [0, 1) (exchangeable "
                              "batch; c0 = 1 makes every input identical)")
    seed = seed_iv("simulate_stack", seed)
    act, ops, pars = program(block, batch, width)
    if OP_BN in ops and batch < 4:
        from ..maps.norm import batch_iv
        batch_iv("simulate_stack", batch)
    from . import limits           # the host-side outputs, for both backends
    limits.require_stack("simulate_stack", depth=depth, width=width, batch=batch, n_nets=n_nets,
                         cpu=False)
    return act, ops, pars, depth, width, batch, n_nets, q0, c0, seed


def rnn_iv(spec, sigma_w, sigma_u, sigma_b, steps, width, x2, x_corr, batch, n_nets, seed):
    """Validate an RNN simulation (both backends); returns φ, the step layer and sizes."""
    from ..maps.rnn import RecurrentDense
    steps, width, batch, n_nets = _sizes_iv("simulate_rnn", steps=steps, width=width, batch=batch,
                                            n_nets=n_nets)
    seed = seed_iv("simulate_rnn", seed)
    if batch < 2:
        raise VanishcalcError("simulate_rnn: batch must be ≥ 2 (correlations need two inputs)")
    step = RecurrentDense(sigma_w, sigma_u, sigma_b, x2, x_corr)      # validates the numbers
    if not 0.0 <= step.x_corr <= 1.0:
        raise VanishcalcError("simulate_rnn: x_corr must lie in [0, 1] (exchangeable inputs)")
    if step.drive <= 0:
        raise VanishcalcError("simulate_rnn: with σu = σb = 0 and h_0 = 0 the state stays 0")
    from . import limits           # the host-side outputs, for both backends
    limits.require_rnn("simulate_rnn", steps=steps, width=width, batch=batch, n_nets=n_nets,
                       cpu=False)
    return activation(spec), step, steps, width, batch, n_nets, seed


def rnn_norm_iv(spec, norm, gamma, gamma_x, beta, sigma_w, sigma_u, sigma_b, steps, width, x2,
                x_corr, batch, n_nets, seed):
    """Validate a normalized-RNN simulation (recurrent BN / LN, both backends); returns the
    theory model (:class:`~vanishcalc.maps.rnn.RecurrentNormRNN` at this batch / width, which
    validates the numbers) and the sizes."""
    from ..maps.rnn import RecurrentNormRNN
    steps, width, batch, n_nets = _sizes_iv("simulate_rnn", steps=steps, width=width, batch=batch,
                                            n_nets=n_nets)
    seed = seed_iv("simulate_rnn", seed)
    if batch < 2:
        raise VanishcalcError("simulate_rnn: batch must be ≥ 2 (correlations need two inputs)")
    if not 0.0 <= real("simulate_rnn", "x_corr", x_corr, lo=-1.0, hi=1.0) <= 1.0:
        raise VanishcalcError("simulate_rnn: x_corr must lie in [0, 1] (exchangeable inputs)")
    if norm == "bn":
        from ..maps.norm import batch_iv
        batch_iv("simulate_rnn", batch)
        model = RecurrentNormRNN(spec, "bn", gamma, gamma_x, beta, sigma_w, sigma_u, sigma_b, x2,
                                 x_corr, batch=batch)
    elif norm == "ln":
        from ..maps.rnn import width_iv
        width_iv("simulate_rnn", width)
        model = RecurrentNormRNN(spec, "ln", gamma, gamma_x, beta, sigma_w, sigma_u, sigma_b, x2,
                                 x_corr, width=width)
    else:
        raise VanishcalcError(f"simulate_rnn: norm = {norm!r} is unknown; use None (plain RNN), "
                              "'bn' (recurrent BN) or 'ln' (recurrent LN)")
    from . import limits
    limits.require_rnn("simulate_rnn", steps=steps, width=width, batch=batch, n_nets=n_nets,
                       cpu=False)
    return model, steps, width, batch, n_nets, seed


__all__ = ["ComposedTrace", "N_PARS", "OP_ACT", "OP_ADD_SAVED", "OP_BN", "OP_DENSE", "OP_DROPOUT",
           "OP_LN", "OP_RBF", "OP_SAVE", "program", "rnn_iv", "rnn_norm_iv", "stack_iv", "trace"]
