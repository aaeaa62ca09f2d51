"""``simulate``: deep random networks, simulated; the sole entry point of ``vanishcalc.sim``.

This module imports no numba at import time; the backend package (``sim/cpu/`` or
``sim/cuda/``) is imported on the first call.  See ``notes/simulation.md``.
"""
from __future__ import annotations

import importlib
import warnings
from dataclasses import dataclass, field

import numpy as np

from ..errors import SimulationOverflowError, VanishcalcError, VanishcalcWarning
from ..validate import integer, real
from .seeds import seed_iv  # noqa: F401 - re-exported: sim.api.seed_iv is public
from .summary import (Q_TINY, column_sums, has_flat_piece, host_layer_sums, mean_of_sums,
                      se_of_sums)

WEIGHTS = ("gaussian", "orthogonal")
BACKENDS = ("cpu", "cuda", "auto")
DTYPES = ("float64", "float32")


@dataclass(frozen=True)
class Simulation:
    """Per-layer statistics of an ensemble of simulated deep networks.

    Arrays of length ``depth + 1`` (index 0 = the input pre-activations) hold means over
    nets; ``*_se`` are their standard errors over nets,
    ``se = std(x, ddof=1) / sqrt(n)`` for ``n ≥ 2`` nets and ``0`` for one net — with a
    single net no spread can be measured, so 0 means "not estimated", never "exact"
    (:func:`vanishcalc.check` refuses ``n_nets < 2``).  Nets with a non-finite layer are
    excluded from the means from that layer on; ``n_finite`` counts the nets used.

    Attributes
    ----------
    q, c, grad : ndarray
        Mean squared pre-activation q_l, correlation c_l of the two inputs, and squared
        gradient norm relative to the last layer (``grad[depth] = 1``).
    q_se, c_se, grad_se : ndarray
        Standard errors of those means over nets.
    saturation : ndarray
        Fraction of units (both inputs, all nets) with |φ'(h)| < 1e-3 · max|φ'|.
    nonfinite : ndarray of bool
        Per layer: some net overflowed or became NaN at or before this layer.
    first_nonfinite_layer : int or None
    log_grad : ndarray
        Mean over nets of log grad (per net ½ Σ_a log ‖t^L_a‖²/‖t^l_a‖²): finite where grad
        itself is outside float64 (a vanishing net's grad below 1e-308).
    invalid : dict of str → ndarray of bool
        Per quantity ``"q"``, ``"c"``, ``"grad"``: layers where some net's value could not
        be represented (q underflowed below 1e-290, a gradient ratio outside float64) and
        was left out of the mean; ``first_invalid_layer[k]`` is the first such layer (None
        if none), and a warning says why.  Values are never silently garbage: a layer where
        every net is invalid is NaN.
    raw : mapping
        Per-net arrays ``q, c, grad, sat`` (n_nets, depth+1) and ``nonfinite``.  On
        ``backend="cuda"`` the means above are summed on the GPU and these arrays stay there
        until ``raw`` is first read (then copied back once, and the GPU copy freed).
    params : dict
        The arguments of :func:`simulate` (φ as its canonical name).
    """

    q: np.ndarray
    c: np.ndarray
    grad: np.ndarray
    q_se: np.ndarray
    c_se: np.ndarray
    grad_se: np.ndarray
    saturation: np.ndarray
    nonfinite: np.ndarray
    n_finite: np.ndarray
    first_nonfinite_layer: int | None
    raw: dict = field(repr=False)      # a Mapping; dict on the CPU backend
    params: dict
    log_grad: np.ndarray | None = field(default=None, repr=False)
    invalid: dict = field(default_factory=dict, repr=False)
    first_invalid_layer: dict = field(default_factory=dict)

    @property
    def depth(self) -> int:
        return len(self.q) - 1

    def to_dict(self) -> dict:
        """Plain lists and numbers (JSON-ready; NaN stays float('nan'))."""
        out = {k: getattr(self, k).tolist() for k in
               ("q", "c", "grad", "q_se", "c_se", "grad_se", "saturation", "nonfinite", "n_finite")}
        out["first_nonfinite_layer"] = self.first_nonfinite_layer
        if self.log_grad is not None:
            out["log_grad"] = self.log_grad.tolist()
        out["first_invalid_layer"] = dict(self.first_invalid_layer)
        out["params"] = dict(self.params)
        return out

    def __repr__(self):
        p = self.params
        return (f"Simulation({p['phi']!r}, sigma_w={p['sigma_w']}, sigma_b={p['sigma_b']}, "
                f"depth={p['depth']}, width={p['width']}, n_nets={p['n_nets']}, "
                f"weights={p['weights']!r}: q[-1]={self.q[-1]:.4g}, c[-1]={self.c[-1]:.4g}, "
                f"grad[0]={self.grad[0]:.4g})")


def _simulate_iv(spec, sigma_w, sigma_b, depth, width, n_nets, q0, c0, weights, seed, backend,
                 dtype, progress):
    """Validate every argument of :func:`simulate`; return them normalized."""
    from ..activation import activation
    act = activation(spec)
    std = "(a standard deviation; its sign does not change the law)"
    sigma_w = real("simulate", "sigma_w", sigma_w, nonneg=True, why=std)
    sigma_b = real("simulate", "sigma_b", sigma_b, nonneg=True, why=std)
    depth = integer("simulate", "depth", depth, 0, "(the number of dense layers)")
    width = integer("simulate", "width", width, 1, "(units per layer)")
    n_nets = integer("simulate", "n_nets", n_nets, 1, "(independent networks)")
    q0 = real("simulate", "q0", q0, positive=True, why="(the input second moment)")
    c0 = real("simulate", "c0", c0, lo=-1.0, hi=1.0, why="(a correlation)")
    if width == 1 and abs(c0) != 1.0:
        raise VanishcalcError(f"with width = 1 two inputs can only have correlation ±1, not "
                              f"c0 = {c0}; pass width ≥ 2 or c0 = 1")
    if weights not in WEIGHTS:
        raise VanishcalcError(f"weights = {weights!r} is unknown; use one of {WEIGHTS}")
    seed = seed_iv("simulate", seed)
    if backend not in BACKENDS:
        raise VanishcalcError(f"backend = {backend!r} is unknown; use one of {BACKENDS}")
    if not isinstance(dtype, str):
        try:
            dtype = np.dtype(dtype).name
        except TypeError:
            pass
    if dtype not in DTYPES:
        raise VanishcalcError(f"dtype = {dtype!r} is not supported; use one of {DTYPES}")
    from ..progress import progress_iv
    progress_iv(progress, "simulate")
    from . import limits        # sizes before any allocation (host memory, CPU time)
    limits.require_dense("simulate", depth=depth, width=width, n_nets=n_nets,
                         itemsize=np.dtype(dtype).itemsize, backend=backend)
    return act, sigma_w, sigma_b, depth, width, n_nets, q0, c0, weights, seed, backend, \
        dtype, progress


def _backend_module(backend):
    if backend == "cpu":
        return importlib.import_module("vanishcalc.sim.cpu")
    try:
        module = importlib.import_module("vanishcalc.sim.cuda")
    except ModuleNotFoundError as exc:
        if exc.name in ("vanishcalc.sim.cuda", "numba.cuda"):
            if backend == "auto":
                return importlib.import_module("vanishcalc.sim.cpu")
            raise VanishcalcError(f"backend = {backend!r} is not available ({exc}); install the "
                                  "'cuda' extra or use backend='cpu'") from None
        raise
    if backend == "auto":
        available = getattr(module, "is_available", None)
        if available is None or not available():
            return importlib.import_module("vanishcalc.sim.cpu")
    return module


def _mean_se(x):
    """Mean and standard error over axis 0, ignoring NaN (non-finite nets); se = 0 for n < 2."""
    n, total, dev2 = column_sums(x)
    return mean_of_sums(n, total), se_of_sums(n, dev2), n


def simulate(spec, sigma_w=None, sigma_b=0.0, *, depth, width, n_nets=1, q0=1.0, c0=0.5,
             weights="gaussian", seed=0, backend="cpu", dtype="float64", progress=None,
             batch=None):
    """Simulate ``n_nets`` random dense networks ``h_{l+1} = W_l φ(h_l) + b_l``.

    ``spec`` may also be a composed block of layers from :mod:`vanishcalc.maps`
    (``[Dense(σw, σb), BatchNorm(γ, β), Activation("tanh")]``, repeated ``depth`` times);
    then ``sigma_w``/``sigma_b`` stay unset (the layers carry them), ``batch`` is the
    BatchNorm batch (default 64) and the kernels of :mod:`vanishcalc.sim.cpu.composed` run it
    (:mod:`vanishcalc.sim.cuda.composed` for ``backend="cuda"``; ``saturation`` is not
    measured for composed networks and is NaN).

    .. math::

        W_{ij} \\sim N(0, σ_w^2/N) \\text{ (or } σ_w Q,\\ Q \\text{ Haar)},\\quad
        b_i \\sim N(0, σ_b^2),\\quad
        q_l = \\frac{1}{2N}\\sum_{a,i} (h^l_{a,i})^2,\\quad
        c_l = \\frac{h^l_1\\cdot h^l_2}{\\|h^l_1\\|\\|h^l_2\\|}

    Parameters
    ----------
    spec : str or sympy.Expr or Activation
        φ (zoo name or expression in ``x``).
    sigma_w, sigma_b : float
        σw, σb ≥ 0.
    depth : int
        Number of dense layers L ≥ 0; arrays have length L + 1.
    width : int
        Units per layer N ≥ 1.
    n_nets : int
        Independent networks (standard errors need ≥ 2).
    q0, c0 : float
        Input second moment (> 0) and correlation (in [−1, 1]), both exact.
    weights : {"gaussian", "orthogonal"}
    seed : int
        Same seed → identical arrays (independent of the thread count).
    backend : {"cpu", "cuda", "auto"}
    dtype : {"float64", "float32"}
        Storage precision of the pre-activations between layers.
    progress : None, bool or callable(done_layers, depth)
        None (default): a bar on stderr when it is a terminal (tqdm, :mod:`vanishcalc.progress`);
        False: none; True: a bar even without a terminal; a callable is called after each
        chunk of layers (CPU backend).

    Returns
    -------
    Simulation

    Raises
    ------
    VanishcalcError
        (a ``ValueError``) for any invalid argument, naming it.
    SimulationTooLargeError
        (a ``VanishcalcError``) before anything is allocated, when the run needs more memory
        than this machine has (``sim/limits.py``); the message names a size that fits.

    Warns
    -----
    VanishcalcWarning
        if a layer of some net overflowed or became NaN (first such layer named); per
        quantity, if q (and c) underflowed or grad left float64 (``first_invalid_layer``,
        ``log_grad``); if the run is estimated to take more than 2 minutes.

    Notes
    -----
    ``grad`` is estimated in forward mode (a random tangent pushed through the Jacobians),
    which has the back-propagation statistic's expectation; see ``notes/simulation.md``.

    References
    ----------
    Poole et al. 2016, arXiv:1606.05340; Schoenholz et al. 2017, arXiv:1611.01232.

    Examples
    --------
    >>> sim = simulate("tanh", 1.0, depth=3, width=32, n_nets=4, seed=1)
    >>> sim.q.shape, float(sim.grad[-1])
    ((4,), 1.0)
    """
    if is_network(spec):
        return _simulate_network(spec, sigma_w, sigma_b, depth=depth, width=width, n_nets=n_nets,
                                 q0=q0, c0=c0, weights=weights, seed=seed, backend=backend,
                                 dtype=dtype, batch=batch, progress=progress)
    if sigma_w is None:
        raise VanishcalcError("sigma_w is required when spec is a nonlinearity (σw of the dense "
                              "layers); pass e.g. sigma_w=1.0")
    if batch is not None:
        raise VanishcalcError("batch applies to composed networks with BatchNorm; a plain dense "
                              "net simulates two inputs per net")
    (act, sigma_w, sigma_b, depth, width, n_nets, q0, c0, weights, seed, backend, dtype,
     progress) = _simulate_iv(spec, sigma_w, sigma_b, depth, width, n_nets, q0, c0, weights,
                              seed, backend, dtype, progress)
    module = _backend_module(backend)
    if not module.__name__.endswith(".cpu"):
        from . import limits
        limits.require_dense_gpu("simulate", depth=depth, width=width, n_nets=n_nets)
    kwargs = dict(sigma_w=sigma_w, sigma_b=sigma_b, depth=depth, width=width, n_nets=n_nets,
                  q0=q0, c0=c0, orthogonal=weights == "orthogonal", seed=seed, dtype=dtype)
    from ..progress import layer_callback
    callback, close_bar = layer_callback(progress, f"simulate {act.name}")
    if callback is not None and module.__name__.endswith(".cpu"):
        kwargs["progress"] = callback
    try:
        raw = module.run_dense(act, **kwargs)
    finally:
        close_bar()
    params = dict(phi=act.name, sigma_w=sigma_w, sigma_b=sigma_b, depth=depth, width=width,
                  n_nets=n_nets, q0=q0, c0=c0, weights=weights, seed=seed,
                  backend=module.__name__.rsplit(".", 1)[-1], dtype=dtype)
    return _summarize(raw, params, has_flat_piece(act))


def use_cuda_backend(where, backend) -> bool:
    """True for backend "cuda", or "auto" with a GPU present; "cpu" → False; else an error."""
    if backend == "cpu":
        return False
    if backend == "cuda":
        return True
    if backend == "auto":
        from .cuda import cuda_available     # importing sim/cuda never imports numba.cuda
        return cuda_available()
    raise VanishcalcError(f"{where}: backend = {backend!r} is unknown; use 'cpu', 'cuda' or 'auto'")


def simulate_rnn(spec, sigma_w, sigma_u=0.0, sigma_b=0.0, *, steps, width, x2=1.0, x_corr=0.0,
                 batch=None, n_nets=8, seed=0, backend="cpu", norm=None, gamma=None,
                 gamma_x=None, beta=0.0, progress=None):
    """Simulate an RNN for ``steps`` steps; index t is the pre-activation a_{t+1}.

    ``norm=None``: the vanilla RNN h_t = φ(W h_{t−1} + U x_t + b); compare with
    ``RNNMeanField(spec, sigma_w, sigma_u, sigma_b, x2, x_corr).propagate(steps)``.
    ``norm="bn"``: recurrent BN, a_t = γ_h BN(W h_{t−1}) + γ_x BN(U x_t) + β with batch
    statistics per time step (Cooijmans et al. 2017; ``gamma`` = γ_h, default 0.1,
    ``gamma_x`` default γ_h); ``norm="ln"``: a_t = γ LN(W h_{t−1} + U x_t + b) + β (Ba et al.
    2016; ``gamma`` default 1); h_t = φ(a_t), and ``spec="x"`` drops the nonlinearity (BN in
    place of tanh).  Compare those with :class:`vanishcalc.maps.rnn.RecurrentNormRNN`, or use
    :func:`vanishcalc.sim.check.check_rnn`.  ``batch`` defaults to 32 under BN, else 2.
    ``progress``: nets done as a bar on stderr (None: when it is a terminal) or a
    callable(done, total) — reported by the plain RNN's CPU kernel only; elsewhere leave it
    None or False.
    ``backend="cuda"`` runs the CUDA kernels (:mod:`vanishcalc.sim.cuda.composed`,
    :mod:`vanishcalc.sim.cuda.rnn_norm`); ``"auto"`` picks them when a GPU is present.
    Returns a :class:`~vanishcalc.sim.program.ComposedTrace`.

    Raises
    ------
    VanishcalcError
        bad numbers or sizes, naming the fix: under BN a batch below 4, σu = 0 or x_corr = 1
        (BN(U x) divides by 0); under LN a width below 4.
    """
    from . import limits
    if batch is None:
        batch = 32 if norm == "bn" else 2
    from ..progress import progress_iv
    progress_iv(progress, "simulate_rnn")
    plain_cpu = norm is None and not use_cuda_backend("simulate_rnn", backend)
    if not plain_cpu and progress is not None and progress is not False:
        raise VanishcalcError("simulate_rnn: progress is reported by the plain RNN's CPU kernel "
                              "only (a normalized or CUDA RNN runs every net in one call); "
                              "leave progress=None or False")
    if norm is not None:
        if use_cuda_backend("simulate_rnn", backend):
            from .cuda.rnn_norm import simulate_rnn_norm_cuda as run_norm
            from .program import rnn_norm_iv
            _, _, w, b, _, _ = rnn_norm_iv(spec, norm, gamma, gamma_x, beta, sigma_w, sigma_u,
                                           sigma_b, steps, width, x2, x_corr, batch, n_nets, seed)
            limits.require_rnn_gpu("simulate_rnn", width=w, batch=b, norm=True)
        else:
            from .cpu.rnn_norm import simulate_rnn_norm as run_norm
        return run_norm(spec, sigma_w, sigma_u, sigma_b, norm=norm, steps=steps, width=width,
                        gamma=gamma, gamma_x=gamma_x, beta=beta, x2=x2, x_corr=x_corr,
                        batch=batch, n_nets=n_nets, seed=seed)
    if gamma is not None or gamma_x is not None or beta != 0.0:
        raise VanishcalcError("simulate_rnn: gamma, gamma_x and beta are the affine of a "
                              "normalized recurrence; pass norm='bn' or norm='ln' with them")
    if use_cuda_backend("simulate_rnn", backend):
        from .cuda.composed import simulate_rnn_cuda
        from .program import rnn_iv
        _, _, _, w, b, _, _ = rnn_iv(spec, sigma_w, sigma_u, sigma_b, steps, width, x2, x_corr,
                                     batch, n_nets, seed)
        limits.require_rnn_gpu("simulate_rnn", width=w, batch=b)
        return simulate_rnn_cuda(spec, sigma_w, sigma_u, sigma_b, steps=steps, width=width, x2=x2,
                                 x_corr=x_corr, batch=batch, n_nets=n_nets, seed=seed)
    from .cpu.composed import simulate_rnn as run_rnn
    from ..progress import layer_callback
    callback, close_bar = layer_callback(progress, "simulate_rnn", unit="net")
    try:
        return run_rnn(spec, sigma_w, sigma_u, sigma_b, steps=steps, width=width, x2=x2,
                       x_corr=x_corr, batch=batch, n_nets=n_nets, seed=seed, progress=callback)
    finally:
        close_bar()


def is_network(spec) -> bool:
    """True for a composed block of mean-field layers (a list of layers or a Layer)."""
    from ..maps.layer import Layer
    return isinstance(spec, Layer) or (isinstance(spec, (list, tuple)) and len(spec) > 0
                                       and all(isinstance(l, Layer) for l in spec))


def network_batch(spec, batch):
    """The batch a composed net runs at: its BatchNorm's own, else ``batch``, else 64."""
    from ..maps.combinators import serial
    block = serial(*spec) if isinstance(spec, (list, tuple)) else spec
    own = {l.batch for l in block.layers if getattr(l, "batch", None) is not None}
    if len(own) > 1:
        raise VanishcalcError(f"the BatchNorm layers disagree on the batch size: {sorted(own)}")
    if own:
        (b,) = own
        if batch is not None and batch != b:
            raise VanishcalcError(f"batch = {batch} but the BatchNorm layer says batch = {b}")
        return b
    return 64 if batch is None else batch


def _simulate_network(spec, sigma_w, sigma_b, *, depth, width, n_nets, q0, c0, weights, seed,
                      backend, dtype, batch, progress):
    if sigma_w is not None or sigma_b not in (0, 0.0, None):
        raise VanishcalcError("sigma_w/sigma_b must be left unset for a composed network: its "
                              "Dense layers carry σw and σb")
    if weights != "gaussian" or dtype != "float64":
        raise VanishcalcError("composed networks are simulated with Gaussian weights in float64 "
                              f"only (got weights={weights!r}, dtype={dtype!r})")
    use_cuda = use_cuda_backend("simulate", backend)
    if use_cuda and progress is not None and progress is not False:
        raise VanishcalcError("progress is not reported for composed networks on the CUDA "
                              "backend (one kernel call runs every net); leave progress=None "
                              "or False")
    if use_cuda:
        from . import limits
        from .program import OP_SAVE, stack_iv
        from .cuda.composed import simulate_stack_cuda as run_stack
        _, ops, _, _, w, b, _, _, _, _ = stack_iv(spec, depth, width, network_batch(spec, batch),
                                                  n_nets, q0, c0, seed)
        limits.require_stack_gpu("simulate", width=w, batch=b, residual=OP_SAVE in ops)
    else:
        from .cpu.composed import simulate_stack as run_stack
    batch = network_batch(spec, batch)
    extra = {}
    if not use_cuda:                # the CPU kernel reports nets done (progress.layer_callback)
        from ..progress import layer_callback
        extra["progress"], close_bar = layer_callback(progress, "simulate network", unit="net")
    try:
        tr = run_stack(spec, depth=depth, width=width, batch=batch, n_nets=n_nets, q0=q0, c0=c0,
                       seed=seed, **extra)
    finally:
        if not use_cuda:
            close_bar()
    nonfinite = ~np.isfinite(tr.q)
    first = int(np.argmax(nonfinite)) if nonfinite.any() else None
    params = dict(phi=repr(spec), sigma_w=None, sigma_b=None, depth=depth, width=width,
                  n_nets=n_nets, q0=q0, c0=c0, weights=weights, seed=seed,
                  backend="cuda" if use_cuda else "cpu", dtype=dtype, batch=batch)
    # One net measures no spread: Simulation's convention is se = 0 ("not estimated").
    q_se, c_se, grad_se = ((np.zeros_like(tr.q),) * 3 if n_nets == 1 else
                           (tr.q_se, tr.c_se, tr.grad_se))
    return Simulation(q=tr.q, c=tr.c, grad=tr.grad, q_se=q_se, c_se=c_se,
                      grad_se=grad_se, saturation=np.full_like(tr.q, np.nan),
                      nonfinite=nonfinite, n_finite=np.full(tr.q.shape, tr.n_nets),
                      first_nonfinite_layer=first,
                      raw={"rate": tr.rate, "rate_se": tr.rate_se, "per_net": tr.per_net},
                      params=params)


_WHY = {
    "q": "q underflowed below {tiny:g} (float64 cannot hold the net's true, smaller q)",
    "c": "c is computed from units that underflowed (q < {tiny:g})",
    "grad": "the gradient ratio left float64 (below 1e-304 or above 1e304, or φ' = 0 on every "
            "unit so the tangent is exactly 0); log_grad still holds its logarithm where finite",
}


def _summarize(raw, params, flat_piece=False):
    """The :class:`Simulation` of a backend's per-net results ``raw``, with its warnings.

    ``raw`` is a dict of per-net arrays (CPU), summed over nets here
    (``summary.host_layer_sums``), or a mapping that carries its per-layer sums already
    (``raw.layer_sums``: the CUDA backend sums on the device and copies the per-net arrays
    back only when ``Simulation.raw`` is read).  Means and standard errors are formed from
    the sums by ``summary.mean_of_sums`` / ``se_of_sums`` in both cases.
    """
    sums = getattr(raw, "layer_sums", None)
    if sums is None:
        sums = host_layer_sums(raw, flat_piece)
    q, q_se = mean_of_sums(sums.n_q, sums.total_q), se_of_sums(sums.n_q, sums.dev2_q)
    c, c_se = mean_of_sums(sums.n_c, sums.total_c), se_of_sums(sums.n_c, sums.dev2_c)
    grad = mean_of_sums(sums.n_grad, sums.total_grad)
    grad_se = se_of_sums(sums.n_grad, sums.dev2_grad)
    sat = mean_of_sums(sums.n_sat, sums.total_sat)
    log_grad = mean_of_sums(sums.n_log_grad, sums.total_log_grad)
    nonfinite = sums.n_nonfinite > 0
    first = int(np.argmax(nonfinite)) if nonfinite.any() else None
    if first is not None:
        n_bad = int(sums.n_nonfinite[first])
        warnings.warn(f"{n_bad} of {params['n_nets']} simulated nets overflowed or became NaN at "
                      f"layer {first} (φ = {params['phi']}, σw = {params['sigma_w']}); those nets "
                      "are excluded from the means from that layer on (see Simulation.nonfinite)",
                      VanishcalcWarning, stacklevel=3)
    n_invalid = {"q": sums.n_invalid_q, "c": sums.n_invalid_q, "grad": sums.n_invalid_grad}
    invalid, first_invalid = {}, {}
    for k in ("q", "c", "grad"):
        invalid[k] = n_invalid[k] > 0
        first_invalid[k] = int(np.argmax(invalid[k])) if invalid[k].any() else None
    for k in ("q", "grad"):
        if first_invalid[k] is not None:
            l = first_invalid[k]
            layers = (f"from layer {l}" if k == "q" else
                      f"at layers {layer_ranges(np.flatnonzero(invalid[k]))}")
            also = " (and c with it)" if k == "q" else ""
            warnings.warn(f"{k}{also}: {int(n_invalid[k][l])} of {params['n_nets']} nets "
                          f"excluded {layers}: {_WHY[k].format(tiny=Q_TINY)}; see "
                          f"Simulation.first_invalid_layer", VanishcalcWarning, stacklevel=3)
    undefined_c = sums.n_undefined_c > 0
    if undefined_c.any():
        layer = int(np.argmax(undefined_c))
        warnings.warn(f"the correlation c is undefined (an input's pre-activations are all zero) "
                      f"from layer {layer} in some nets; they are left out of c there",
                      VanishcalcWarning, stacklevel=3)
    if isinstance(raw, dict):
        raw = {k: np.asarray(v) for k, v in raw.items()}
    # else: the CUDA backend's lazy mapping, kept as it is (copied from the device when read)
    return Simulation(q=q, c=c, grad=grad, q_se=q_se, c_se=c_se, grad_se=grad_se, saturation=sat,
                      nonfinite=nonfinite, n_finite=sums.n_q.astype(np.int64),
                      first_nonfinite_layer=first, raw=raw, params=params, log_grad=log_grad,
                      invalid=invalid, first_invalid_layer=first_invalid)


def layer_ranges(idx) -> str:
    """'0–53, 60' from sorted layer indices."""
    out, start, prev = [], None, None
    for i in list(idx) + [None]:
        if start is None:
            start = prev = i
        elif i is not None and i == prev + 1:
            prev = i
        else:
            out.append(f"{start}" if start == prev else f"{start}–{prev}")
            start = prev = i
    return ", ".join(out)


__all__ = ["simulate", "simulate_rnn", "Simulation", "SimulationOverflowError", "use_cuda_backend"]
