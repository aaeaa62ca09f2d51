"""``check``: the mean-field theory against a simulated ensemble, layer by layer.

For each layer l and each statistic s ∈ {q, c, grad} the report holds the theory value
(``MeanField(φ, σw, σb).propagate(depth, q0, c0)``), the simulated mean and its standard
error over nets, a finite-width allowance, and

.. math::

    z_l = \\frac{\\bar s_l - s_l^{MF}}{\\sqrt{se_l^2 + a_l^2}},

passing when every |z_l| ≤ ``tolerance``.  The allowance a_l covers the O(1/N) bias of a
width-N network, which accumulates over the layers it has passed (``notes/simulation.md``):

* q: a_l = κ · l/N · |q_l^{MF}|
* c: a_l = κ · l/N
* grad: a_l = κ · (L − l)/N · grad_l^{MF}  (grad is a product over layers l..L−1)

with κ = ``allowance`` (default 1).  The default ``tolerance`` is the two-sided normal
quantile at family-wise level 1 % over all 3(L + 1) comparisons (Bonferroni), so a correct
theory fails about 1 % of runs or less.
"""
from __future__ import annotations

import html
from dataclasses import dataclass, field

import numpy as np

from ..errors import VanishcalcError
from ..validate import integer, real
from .api import Simulation, simulate

STATS = ("q", "c", "grad")


@dataclass(frozen=True)
class CheckReport:
    """Theory vs simulation per layer.

    Attributes
    ----------
    theory, sim, se, allowance, z : dict of str → ndarray
        Keyed by ``"q"``, ``"c"``, ``"grad"``; arrays of length depth + 1.
    tolerance : float
        The |z| bound.
    passed : bool
        Every finite |z| ≤ tolerance and no layer overflowed.
    worst : dict of str → (layer, z)
    simulation : Simulation
    params : dict
    """

    theory: dict
    sim: dict
    se: dict
    allowance: dict
    z: dict
    tolerance: float
    passed: bool
    worst: dict
    simulation: Simulation = field(repr=False)
    params: dict = field(default_factory=dict)

    def _rows(self, max_rows):
        max_rows = integer("CheckReport.summary", "max_rows", max_rows, 1, "(table rows)")
        depth = len(self.theory["q"]) - 1
        if depth + 1 <= max_rows:
            layers = list(range(depth + 1))
        else:
            layers = sorted(set(np.linspace(0, depth, max_rows).round().astype(int).tolist()))
        return layers

    def summary(self, max_rows: int = 12) -> str:
        """Plain-text table: per layer, theory / simulation ± se and z for q, c, grad."""
        p = self.params
        net = (f"φ = {p['phi']}, σw = {p['sigma_w']:g}, σb = {p['sigma_b']:g}"
               if p.get("sigma_w") is not None else f"network {p['phi']}, batch {p['batch']}")
        head = (f"check {net}, depth {p['depth']}, width {p['width']}, {p['n_nets']} nets, "
                f"{p['weights']} weights, seed {p['seed']}")
        lines = [head,
                 f"{'layer':>5}  " + "  ".join(f"{s + ' theory':>11} {s + ' sim':>11} {'±se':>9} {'z':>6}"
                                              for s in STATS)]
        for l in self._rows(max_rows):
            cells = []
            for s in STATS:
                cells.append(f"{self.theory[s][l]:11.5g} {self.sim[s][l]:11.5g} "
                             f"{self.se[s][l]:9.2g} {self.z[s][l]:6.2f}")
            lines.append(f"{l:5d}  " + "  ".join(cells))
        worst = ", ".join(f"{s}: {z:+.2f} at layer {l}" for s, (l, z) in self.worst.items())
        verdict = "PASSED" if self.passed else "FAILED"
        lines.append(f"{verdict}: worst z {worst}; tolerance |z| ≤ {self.tolerance:.2f} "
                     f"(finite-width allowance κ = {p['allowance']:g})")
        if self.simulation.first_nonfinite_layer is not None:
            lines.append(f"non-finite values from layer {self.simulation.first_nonfinite_layer}")
        return "\n".join(lines)

    def __str__(self):
        return self.summary()

    def _repr_html_(self, max_rows: int = 12) -> str:
        esc = html.escape
        rows = []
        for l in self._rows(max_rows):
            tds = "".join(
                f"<td>{self.theory[s][l]:.5g}</td><td>{self.sim[s][l]:.5g} ± {self.se[s][l]:.2g}</td>"
                f"<td style='color:{'red' if abs(self.z[s][l]) > self.tolerance else 'inherit'}'>"
                f"{self.z[s][l]:.2f}</td>" for s in STATS)
            rows.append(f"<tr><td>{l}</td>{tds}</tr>")
        head = "".join(f"<th>{s} theory</th><th>{s} sim</th><th>z</th>" for s in STATS)
        title = esc(self.summary().splitlines()[0])
        verdict = "passed" if self.passed else "FAILED"
        return (f"<div><b>{title}</b> — <b>{verdict}</b> (|z| ≤ {self.tolerance:.2f})"
                f"<table><tr><th>layer</th>{head}</tr>{''.join(rows)}</table></div>")


def _check_iv(n_nets, tolerance, allowance, depth):
    integer("check", "n_nets", n_nets, 2,
            "(check needs n_nets ≥ 2 to estimate standard errors; pass n_nets=32 or more)")
    depth = integer("check", "depth", depth, 0)
    if tolerance is None:
        from scipy.stats import norm
        tolerance = float(norm.isf(0.01 / (2 * 3 * (depth + 1))))
    tolerance = real("check", "tolerance", tolerance, positive=True, why="(a |z| bound, e.g. 4)")
    allowance = real("check", "allowance", allowance, nonneg=True,
                     why="(0 = no finite-width allowance)")
    return tolerance, allowance


def _theory(spec, sigma_w, sigma_b, depth, q0, c0, theory):
    if theory is None:
        from ..maps.meanfield import MeanField
        theory = MeanField(spec, sigma_w, sigma_b).propagate(depth, q0=q0, c0=c0)
    get = (lambda k: theory[k]) if isinstance(theory, dict) else (lambda k: getattr(theory, k))
    out = {}
    for k in STATS:
        try:
            a = np.asarray(get(k), dtype=float)
        except (KeyError, AttributeError, TypeError, ValueError) as exc:
            raise VanishcalcError(f"theory must give float arrays q, c, grad of length "
                                  f"{depth + 1} (a dict or an object with those attributes); "
                                  f"theory.{k}: {type(exc).__name__}: {exc}") from None
        if a.shape != (depth + 1,):
            raise VanishcalcError(f"theory.{k} has shape {a.shape}, expected ({depth + 1},)")
        out[k] = a
    return out


def _with_batch(spec, batch):
    """The same layers, with every batch-less BatchNorm given ``batch``."""
    from ..maps.combinators import serial
    from ..maps.norm import BatchNorm
    layers = list(spec) if isinstance(spec, (list, tuple)) else list(spec.layers)
    return [BatchNorm(l.gamma, l.beta, batch=batch) if isinstance(l, BatchNorm) and l.batch is None
            else l for l in layers] if any(isinstance(l, BatchNorm) for l in layers) else \
        (serial(*layers) if not isinstance(spec, (list, tuple)) else layers)


def check(spec, sigma_w=None, sigma_b=0.0, *, depth, width, n_nets, q0=1.0, c0=0.5,
          weights="gaussian", seed=0, backend="cpu", tolerance=None, allowance=1.0,
          theory=None, progress=None, batch=None):
    """Compare mean-field q, c, grad with a simulated ensemble, layer by layer.

    Parameters
    ----------
    spec, sigma_w, sigma_b, depth, width, n_nets, q0, c0, weights, seed, backend
        As for :func:`vanishcalc.simulate` (``n_nets ≥ 2``).
    tolerance : float, optional
        Bound on |z|; default: Bonferroni at family-wise level 1 % over 3(depth+1) tests.
    allowance : float
        κ of the finite-width allowance (0 disables it); see the module docstring.
    theory : object or dict, optional
        Arrays ``q, c, grad`` of length depth+1 to use instead of
        ``MeanField(spec, sigma_w, sigma_b).propagate(depth, q0=q0, c0=c0)``.

    Returns
    -------
    CheckReport

    Notes
    -----
    ``notes/simulation.md`` derives the estimators, their standard errors and the
    finite-width allowance.  c is not compared where the theory has c = ±1 exactly and
    the simulated standard error is 0 (a fixed point that both sides sit on).
    """
    tolerance, allowance = _check_iv(n_nets, tolerance, allowance, depth)
    from .api import is_network, network_batch
    if is_network(spec):
        # The theory must see the batch the kernels run at (BatchNorm's finite-batch map).
        batch = network_batch(spec, batch)
        spec = _with_batch(spec, batch)
        sim = simulate(spec, sigma_w, sigma_b, depth=depth, width=width, n_nets=n_nets, q0=q0,
                       c0=c0, weights=weights, seed=seed, backend=backend, batch=batch)
    else:
        sim = simulate(spec, sigma_w, sigma_b, depth=depth, width=width, n_nets=n_nets, q0=q0,
                       c0=c0, weights=weights, seed=seed, backend=backend, progress=progress)
    p = sim.params
    th = _theory(spec, p["sigma_w"], p["sigma_b"], p["depth"], p["q0"], p["c0"], theory)
    return _compare(th, sim, sim.first_nonfinite_layer is None, p["width"], allowance, tolerance,
                    dict(p, allowance=allowance, tolerance=tolerance))


def _compare(th, sim, finite, width, allowance, tolerance, params):
    """z-scores per layer of sim (q, c, grad and their *_se) against theory ``th``."""
    depth = len(th["q"]) - 1
    layers = np.arange(depth + 1)
    allow = {"q": allowance * layers / width * np.abs(th["q"]),
             "c": allowance * layers / width * np.ones(depth + 1),
             "grad": allowance * (depth - layers) / width * np.abs(th["grad"])}
    sims = {"q": sim.q, "c": sim.c, "grad": sim.grad}
    ses = {"q": sim.q_se, "c": sim.c_se, "grad": sim.grad_se}
    z = {}
    worst = {}
    ok = finite
    for s in STATS:
        den = np.sqrt(ses[s] ** 2 + allow[s] ** 2)
        diff = sims[s] - th[s]
        with np.errstate(divide="ignore", invalid="ignore"):
            zs = np.where(den > 0, diff / den, np.where(np.abs(diff) <= 1e-12 * np.maximum(
                1.0, np.abs(th[s])), 0.0, np.copysign(np.inf, diff)))
        zs = np.where(np.isfinite(th[s]) & np.isfinite(sims[s]), zs, np.nan)
        z[s] = zs
        if np.all(np.isnan(zs)):
            worst[s] = (0, float("nan"))
            ok = False
        else:
            i = int(np.nanargmax(np.abs(zs)))
            worst[s] = (i, float(zs[i]))
            if abs(zs[i]) > tolerance:
                ok = False
        if np.any(np.isnan(zs)):
            ok = False
    return CheckReport(theory=th, sim=sims, se=ses, allowance=allow, z=z, tolerance=tolerance,
                       passed=bool(ok), worst=worst, simulation=sim, params=params)


def check_rnn(spec, sigma_w, sigma_u=0.0, sigma_b=0.0, *, steps, width, n_nets, x2=1.0,
              x_corr=0.0, batch=2, seed=0, backend="cpu", tolerance=None, allowance=1.0):
    """Compare the RNN mean field over time with a simulated ensemble, step by step.

    h_t = φ(W h_{t−1} + U x_t + b), h_0 = 0, W reused over time; index t holds the
    pre-activation a_{t+1}.  Theory: ``RNNMeanField(spec, sigma_w, sigma_u, sigma_b, x2,
    x_corr).propagate(steps)``; simulation: :func:`vanishcalc.sim.composed.simulate_rnn`
    (``backend="cuda"`` runs :mod:`vanishcalc.sim.cuda_composed`).  The finite-width
    allowance and the z-scores are those of :func:`check` (notes/simulation.md,
    notes/recurrent.md).

    Returns
    -------
    CheckReport
    """
    from ..maps.rnn import RNNMeanField
    from .composed import simulate_rnn
    steps = integer("check_rnn", "steps", steps, 1, "(time steps)")
    tolerance, allowance = _check_iv(n_nets, tolerance, allowance, steps - 1)
    tr = simulate_rnn(spec, sigma_w, sigma_u, sigma_b, steps=steps, width=width, x2=x2,
                      x_corr=x_corr, batch=batch, n_nets=n_nets, seed=seed, backend=backend)
    prop = RNNMeanField(spec, sigma_w, sigma_u, sigma_b, x2, x_corr).propagate(steps)
    th = {k: np.asarray(getattr(prop, k), dtype=float) for k in STATS}
    params = dict(phi=str(spec), sigma_w=sigma_w, sigma_b=sigma_b, sigma_u=sigma_u, depth=steps - 1,
                  width=width, n_nets=n_nets, weights="gaussian (recurrent)", seed=seed,
                  batch=batch, backend=backend, allowance=allowance, tolerance=tolerance)
    return _compare(th, tr, bool(np.all(np.isfinite(tr.q))), width, allowance, tolerance, params)
