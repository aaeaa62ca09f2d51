"""``check``: the mean-field theory against a simulated ensemble, layer by layer.

For each layer l and each statistic s ∈ {q, c, grad} the report holds the theory value
(``MeanField(φ, σw, σb).propagate(depth, q0, c0)``), the simulated mean and its standard
error over nets, a finite-width allowance, and

.. math::

    z_l = \\frac{\\bar s_l - s_l^{MF}}{\\sqrt{se_l^2 + a_l^2}}.

The allowance a_l covers the O(1/N) bias of a width-N network, which accumulates over the
layers it has passed (``notes/simulation.md``):

* q: a_l = κ · l/N · |q_l^{MF}|
* c: a_l = κ · l/N
* grad: a_l = κ · (L − l)/N · grad_l^{MF}  (grad is a product over layers l..L−1)

with κ = ``allowance`` (default 1).  The default ``tolerance`` is the two-sided normal
quantile at family-wise level 1 % over all 3(L + 1) comparisons (Bonferroni).

**Three verdicts.**  A layer is *resolved* when the comparison could have failed there: its
acceptance band ``tolerance·√(se² + a²)`` is narrower than the value itself (|θ| for q and
grad, 1 for c), and the ensemble mean is not ruled by a heavy tail.  q and grad of deep nets
are products of per-layer factors: across nets their logarithm has variance s² = O(l/N), and
the ensemble mean of a log-normal with s² large is ruled by rare nets (the mean of 64 draws is
far below the true mean with near certainty).  The mean is used only when the log-normal
skewness of the ensemble mean, (e^{s²} + 2)√(e^{s²} − 1)/√n, is ≤ 1; otherwise q and grad are
compared on the log scale that behaves: log E x is estimated as mean(log x) + s²/2 (the
log-normal mean, standard error √(s²/n + s⁴/(2(n−1)))), with allowance κ·l/N + |k3|/6 (k3 the
third cumulant of log x: the log-normal model's first neglected term), resolved when its band
is below log 2.  grad_l = Π_{k≥l} χ(q_k) counts only where q is resolved at every layer
k ≥ l (else the nets' χ are not the theory's).  ``FAILED``: some resolved comparison has
|z| > tolerance.  ``PASSED``: none
does and every layer is resolved.  ``INCONCLUSIVE`` otherwise, with the reason and the nets /
width that would decide it.
"""
from __future__ import annotations

import html
import math
from dataclasses import dataclass, field

import numpy as np

from ..errors import VanishcalcError
from ..validate import integer, real
from .api import simulate

STATS = ("q", "c", "grad")


PASSED, FAILED, INCONCLUSIVE = "PASSED", "FAILED", "INCONCLUSIVE"
#: Exit status of ``vanishcalc check`` per verdict (2 is bad input, as for every command).
EXIT_CODES = {PASSED: 0, FAILED: 1, INCONCLUSIVE: 3}
#: The ensemble mean is trusted when the log-normal skewness of the mean is at most this.
MAX_MEAN_SKEW = 1.0
#: On the log scale a comparison is resolved when its band is below log 2 (tells θ from 2θ).
LOG_BAND = math.log(2.0)
#: Relative float64 rounding allowed at every layer (negligible next to any sampling error).
ROUNDING = 1e-12


@dataclass(frozen=True)
class CheckReport:
    """Theory vs simulation per layer.

    Attributes
    ----------
    theory, sim, se, allowance, z : dict of str → ndarray
        Keyed by ``"q"``, ``"c"``, ``"grad"``; arrays of length depth + 1.  ``allowance``
        is a_l of the mean-scale comparison; ``z`` is the z-score of the scale used at that
        layer (see ``scale``), NaN where the layer is unresolved.
    scale : dict of str → ndarray of str
        Per layer: ``"mean"`` (z of the ensemble mean), ``"log"`` (z of the log-normal
        estimate of log E x against log θ), ``"exact"`` (layer 0 / grad at L) or ``"-"``
        (unresolved).
    log : dict
        The log-scale comparison of q and grad: ``est``, ``se``, ``allowance``, ``s2`` (the
        variance of log x over nets), arrays of length depth + 1 (NaN where not computable).
    tolerance : float
        The |z| bound.
    verdict : {"PASSED", "FAILED", "INCONCLUSIVE"}
    passed : bool
        ``verdict == "PASSED"``.
    reasons : list of str
        Why the verdict is not PASSED, and what would decide an INCONCLUSIVE check.
    worst : dict of str → (layer, z)
        Largest |z| over resolved layers.
    simulation : Simulation or ComposedTrace
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
    simulation: object = field(repr=False)
    params: dict = field(default_factory=dict)
    verdict: str = PASSED
    reasons: list = field(default_factory=list)
    scale: dict = field(default_factory=dict, repr=False)
    log: dict = field(default_factory=dict, repr=False)

    @property
    def exit_code(self) -> int:
        """0 PASSED, 1 FAILED, 3 INCONCLUSIVE (``vanishcalc check``'s exit status)."""
        return EXIT_CODES[self.verdict]

    def _rows(self, max_rows):
        max_rows = integer("CheckReport.summary", "max_rows", max_rows, 1, "(table rows)")
        depth = len(self.theory["q"]) - 1
        if depth + 1 <= max_rows:
            layers = list(range(depth + 1))
        else:
            layers = sorted(set(np.linspace(0, depth, max_rows).round().astype(int).tolist()))
        return layers

    def summary(self, max_rows: int = 12) -> str:
        """Plain-text table: per layer, theory / simulation ± se, the allowance a and z (with
        the scale it was computed on: m = mean, l = log, e = exact, - = unresolved)."""
        p = self.params
        net = (f"φ = {p['phi']}, σw = {p['sigma_w']:g}, σb = {p['sigma_b']:g}"
               if p.get("sigma_w") is not None else f"network {p['phi']}, batch {p['batch']}")
        head = (f"check {net}, depth {p['depth']}, width {p['width']}, {p['n_nets']} nets, "
                f"{p['weights']} weights, seed {p['seed']}")
        lines = [head,
                 f"{'layer':>5}  " + "  ".join(
                     f"{s + ' theory':>11} {s + ' sim':>11} {'±se':>8} {'±allow':>8} {'z':>7}"
                     for s in STATS)]
        mark = {"mean": "m", "log": "l", "exact": "e", "-": "-"}
        for l in self._rows(max_rows):
            cells = []
            for s in STATS:
                sc = self.scale[s][l] if s in self.scale else "mean"
                zt = "      -" if not np.isfinite(self.z[s][l]) and sc == "-" else \
                    f"{self.z[s][l]:6.2f}{mark[sc]}"
                cells.append(f"{self.theory[s][l]:11.5g} {self.sim[s][l]:11.5g} "
                             f"{self.se[s][l]:8.2g} {self.allowance[s][l]:8.2g} {zt:>7}")
            lines.append(f"{l:5d}  " + "  ".join(cells))
        worst = ", ".join(f"{s}: {z:+.2f} at layer {l}" for s, (l, z) in self.worst.items())
        lines.append(f"{self.verdict}: worst z {worst}; tolerance |z| ≤ {self.tolerance:.2f} "
                     f"(finite-width allowance κ = {p['allowance']:g}; z on scale m = mean, "
                     f"l = log)")
        lines.extend(f"  {r}" for r in self.reasons)
        first = getattr(self.simulation, "first_nonfinite_layer", None)
        if first is not None:
            lines.append(f"non-finite values from layer {first}")
        return "\n".join(lines)

    def __str__(self):
        return self.summary()

    def _repr_html_(self, max_rows: int = 12) -> str:
        esc = html.escape
        rows = []
        for l in self._rows(max_rows):
            tds = "".join(
                f"<td>{self.theory[s][l]:.5g}</td><td>{self.sim[s][l]:.5g} ± {self.se[s][l]:.2g}"
                f" (a {self.allowance[s][l]:.2g})</td>"
                f"<td style='color:{'red' if abs(self.z[s][l]) > self.tolerance else 'inherit'}'>"
                f"{self.z[s][l]:.2f}</td>" for s in STATS)
            rows.append(f"<tr><td>{l}</td>{tds}</tr>")
        head = "".join(f"<th>{s} theory</th><th>{s} sim</th><th>z</th>" for s in STATS)
        title = esc(self.summary().splitlines()[0])
        reasons = "".join(f"<br>{esc(r)}" for r in self.reasons)
        return (f"<div><b>{title}</b> — <b>{self.verdict}</b> (|z| ≤ {self.tolerance:.2f})"
                f"{reasons}<table><tr><th>layer</th>{head}</tr>{''.join(rows)}</table></div>")


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
        try:
            theory = MeanField(spec, sigma_w, sigma_b).propagate(depth, q0=q0, c0=c0)
        except ArithmeticError as exc:     # OverflowError, ZeroDivisionError, FloatingPointError
            raise VanishcalcError(
                f"check: the mean-field theory for this network could not be computed "
                f"({type(exc).__name__}: {exc}); q or its expectations leave float64 within "
                f"{depth} layers — try a smaller sigma_w, q0 or depth") from None
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
        ``verdict`` is ``"PASSED"`` (every layer compared and within tolerance),
        ``"FAILED"`` (some compared layer is not) or ``"INCONCLUSIVE"`` (no failure, but
        some layer could not be resolved: the reasons name the nets / width that would
        decide it).  ``passed`` is True only for PASSED.

    Notes
    -----
    ``notes/simulation.md`` derives the estimators, their standard errors and the
    finite-width allowance.  c is not compared where the theory has c = ±1 exactly and
    the simulated standard error is 0 (a fixed point that both sides sit on).
    """
    tolerance, allowance = _check_iv(n_nets, tolerance, allowance, depth)
    from . import limits
    from .api import is_network, network_batch
    width_ok = integer("check", "width", width, 1, "(units per layer)")
    if is_network(spec):
        # The theory must see the batch the kernels run at (BatchNorm's finite-batch map).
        batch = network_batch(spec, batch)
        spec = _with_batch(spec, batch)
        limits.require_stack("check", depth=depth, width=width_ok, batch=integer(
            "check", "batch", batch, 1), n_nets=n_nets, extra_per_cell=limits.CHECK_BYTES_PER_CELL,
                             cpu=False)
    else:
        # check keeps per-net copies on top of what simulate allocates
        limits.require_dense("check", depth=depth, width=width_ok, n_nets=n_nets,
                             extra_per_cell=limits.CHECK_BYTES_PER_CELL, warn_time=False)
    if is_network(spec):
        sim = simulate(spec, sigma_w, sigma_b, depth=depth, width=width, n_nets=n_nets, q0=q0,
                       c0=c0, weights=weights, seed=seed, backend=backend, batch=batch)
    else:
        sim = simulate(spec, sigma_w, sigma_b, depth=depth, width=width, n_nets=n_nets, q0=q0,
                       c0=c0, weights=weights, seed=seed, backend=backend, progress=progress)
    p = sim.params
    th = _theory(spec, p["sigma_w"], p["sigma_b"], p["depth"], p["q0"], p["c0"], theory)
    return _compare(th, sim, sim.first_nonfinite_layer is None, p["width"], allowance, tolerance,
                    dict(p, allowance=allowance, tolerance=tolerance))


def _per_net(sim):
    """Per-net arrays q, c, grad (n_nets, depth+1), NaN where a net is excluded; or None."""
    per = getattr(sim, "per_net", None)
    if per is not None:
        return per
    raw = getattr(sim, "raw", None) or {}
    if "per_net" in raw:
        return raw["per_net"]
    if not all(k in raw for k in ("q", "c", "grad", "nonfinite")):
        return None
    from ..activation import activation
    from .summary import has_flat_piece, invalid_masks
    nonfinite = np.asarray(raw["nonfinite"], dtype=bool)
    try:
        flat = has_flat_piece(activation(sim.params["phi"]))
    except (VanishcalcError, KeyError, TypeError):
        flat = False
    bad = invalid_masks(raw, nonfinite, flat)
    out = {}
    for k in STATS:
        a = np.array(raw[k], dtype=np.float64)
        a[nonfinite | bad[k]] = np.nan
        out[k] = a
    return out


def _lognormal_skew(s2, n):
    """Skewness of the mean of n log-normal draws whose log has variance s2."""
    with np.errstate(over="ignore", invalid="ignore"):
        e = np.exp(np.minimum(s2, 700.0))
        return (e + 2.0) * np.sqrt(e - 1.0) / np.sqrt(n)


def _log_stats(x):
    """Per layer over nets: n, variance s² and third cumulant k3 of log x, mean of log x.

    Layers where some net is ≤ 0 or NaN (a dead relu net, an excluded net) get NaN.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        lx = np.log(x)
    ok = np.all(np.isfinite(lx), axis=0)
    n = x.shape[0]
    lx = np.where(ok, lx, 0.0)
    m = lx.mean(axis=0)
    d = lx - m
    s2 = (d ** 2).sum(axis=0) / max(n - 1, 1)
    k3 = (d ** 3).mean(axis=0)
    nan = np.full(x.shape[1], np.nan)
    return (np.where(ok, m, nan), np.where(ok, s2, nan), np.where(ok, k3, nan), n)


def _compare(th, sim, finite, width, allowance, tolerance, params):
    """Per layer and statistic: the resolved comparison (mean or log scale) and the verdict."""
    depth = len(th["q"]) - 1
    layers = np.arange(depth + 1)
    spent = {"q": layers, "c": layers, "grad": depth - layers}   # layers a bias accumulates over
    allow = {"q": allowance * layers / width * np.abs(th["q"]),
             "c": allowance * layers / width * np.ones(depth + 1),
             "grad": allowance * (depth - layers) / width * np.abs(th["grad"])}
    sims = {"q": np.asarray(sim.q, float), "c": np.asarray(sim.c, float),
            "grad": np.asarray(sim.grad, float)}
    ses = {"q": np.asarray(sim.q_se, float), "c": np.asarray(sim.c_se, float),
           "grad": np.asarray(sim.grad_se, float)}
    per = _per_net(sim)
    z, scale, worst, logs = {}, {}, {}, {}
    failed, unresolved = [], {}
    for s in STATS:
        theta = np.asarray(th[s], float)
        ref = np.ones(depth + 1) if s == "c" else np.abs(theta)
        # float64 rounding of exact layers (the inputs, grad_L): se there is ~1e-17 of
        # rounding noise, and z = 1e-16 / 3e-17 would fail a correct check
        rounding = ROUNDING * ref
        den = np.sqrt(ses[s] ** 2 + allow[s] ** 2 + rounding ** 2)
        diff = sims[s] - theta
        with np.errstate(divide="ignore", invalid="ignore"):
            z_mean = np.where(den > 0, diff / den, np.where(diff == 0, 0.0,
                                                            np.copysign(np.inf, diff)))
        finite_here = np.isfinite(theta) & np.isfinite(sims[s])
        power = tolerance * den < ref
        exact = (allow[s] == 0) & (ses[s] <= 1e3 * rounding) & finite_here
        tails_ok = np.ones(depth + 1, bool)
        zl = np.full(depth + 1, np.nan)
        est = se_l = a_l = s2 = np.full(depth + 1, np.nan)
        log_power = np.zeros(depth + 1, bool)
        if s != "c" and per is not None:
            x = np.asarray(per[s], float)
            m, s2, k3, n = _log_stats(x)
            skew = _lognormal_skew(s2, n)
            tails_ok = ~(skew > MAX_MEAN_SKEW)          # NaN s² (not computable): keep the mean
            est = m + s2 / 2
            se_l = np.sqrt(s2 / n + s2 ** 2 / (2 * max(n - 1, 1)))
            a_l = allowance * spent[s] / width + np.abs(k3) / 6
            with np.errstate(divide="ignore", invalid="ignore"):
                band = np.sqrt(se_l ** 2 + a_l ** 2)
                zl = (est - np.log(theta)) / band
            log_power = np.isfinite(zl) & (tolerance * band < LOG_BAND)
        if s == "grad" and "q" in z:
            # grad_l = Π_{k=l}^{L-1} χ(q̂_k): where the simulated q has drifted beyond what
            # can be resolved at some k ≥ l, the χ the nets saw are not the theory's, and a
            # difference in grad says nothing about the gradient map itself
            q_unres = np.isnan(z["q"][:depth])
            after = np.zeros(depth + 1, bool)
            after[:depth] = np.logical_or.accumulate(q_unres[::-1])[::-1]
            q_dep = after & ~exact
        else:
            q_dep = np.zeros(depth + 1, bool)
        use_mean = finite_here & (exact | (power & tails_ok)) & ~q_dep
        use_log = ~use_mean & log_power & finite_here & ~q_dep
        zs = np.where(use_mean, z_mean, np.where(use_log, zl, np.nan))
        sc = np.where(exact & use_mean, "exact", np.where(use_mean, "mean",
                                                          np.where(use_log, "log", "-")))
        z[s], scale[s] = zs, sc
        logs[s] = {"est": est, "se": se_l, "allowance": a_l, "s2": s2}
        if np.all(np.isnan(zs)):
            worst[s] = (0, float("nan"))
        else:
            i = int(np.nanargmax(np.abs(zs)))
            worst[s] = (i, float(zs[i]))
        bad = np.flatnonzero(np.abs(np.nan_to_num(zs)) > tolerance)
        if bad.size:
            failed.append(f"{s} differs at layer {bad[0]} (z = {zs[bad[0]]:+.2f} on the "
                          f"{'log' if sc[bad[0]] == 'log' else 'mean'} scale"
                          + (f"; {bad.size} layers beyond |z| ≤ {tolerance:.2f})" if bad.size > 1
                             else ")"))
        un = np.flatnonzero(np.isnan(zs))
        if un.size:
            k3term = (a_l - allowance * spent[s] / width) if s != "c" else None
            unresolved[s] = (un, finite_here, power, tails_ok, s2, ses[s], allow[s], q_dep,
                             k3term)
    reasons = []
    if failed:
        verdict = FAILED
        reasons.extend(failed)
    elif unresolved or not finite:
        verdict = INCONCLUSIVE
    else:
        verdict = PASSED
    if not finite:
        reasons.append("some simulated nets overflowed or became NaN (see "
                       "simulation.first_nonfinite_layer); those layers are not compared")
    n_nets = int(params.get("n_nets") or (next(iter(per.values())).shape[0] if per else 0))
    for s, (un, finite_here, power, tails_ok, s2, se, a, q_dep, k3) in unresolved.items():
        reasons.append(_unresolved_reason(s, un, finite_here, power, tails_ok, s2, se, a, width,
                                          n_nets, allowance, tolerance, spent[s], th[s], q_dep,
                                          k3))
    return CheckReport(theory=th, sim=sims, se=ses, allowance=allow, z=z, tolerance=tolerance,
                       passed=verdict == PASSED, worst=worst, simulation=sim, params=params,
                       verdict=verdict, reasons=reasons, scale=scale, log=logs)


def _resolves(s, n, N, *, n0, N0, rel_se, spent, s2, k3term, tolerance, allowance):
    """Would layer ``spent`` of s be resolved with n nets of width N?  Model: per-layer noise
    and bias are O(1/N), so the log-variance s² and the allowance scale as N0/N, the third
    cumulant as (N0/N)²; the ensemble's relative variance is e^{s²} − 1 (log-normal), else
    the measured one scaled by (n0/n)(N0/N)."""
    a = allowance * spent / N
    if np.isfinite(s2):
        s2n = s2 * N0 / N
        var = math.expm1(min(s2n, 700.0)) / n
        mean_ok = (tolerance * math.sqrt(var + a * a) < 1.0
                   and float(_lognormal_skew(s2n, n)) <= MAX_MEAN_SKEW)
        k3n = (k3term if np.isfinite(k3term) else 0.0) * (N0 / N) ** 2
        log_band = math.sqrt(s2n / n + s2n ** 2 / (2 * max(n - 1, 1)) + (a + k3n) ** 2)
        return mean_ok or (s != "c" and tolerance * log_band < LOG_BAND)
    var = rel_se ** 2 * (n0 / n) * (N0 / N)
    return tolerance * math.sqrt(var + a * a) < 1.0


def _smallest(ok, start, cap):
    """Smallest integer x in (start, cap] with ok(x), by doubling then bisection (None if none)."""
    hi = start * 2
    while hi <= cap and not ok(hi):
        hi *= 2
    if hi > cap:
        return None
    lo = hi // 2
    while hi - lo > max(1, lo // 50):
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if ok(mid) else (mid, hi)
    return hi


def _unresolved_reason(s, un, finite_here, power, tails_ok, s2, se, allow, width, n_nets,
                       allowance, tolerance, spent, theta, q_dep, k3term):
    """One sentence: which layers of s were not compared, why, and what would decide them."""
    from .api import layer_ranges
    where = layer_ranges(un)
    if not np.all(finite_here[un]):
        return (f"{s}: not compared at layers {where}: the theory or the simulation is not "
                "finite there")
    deep = int(un[np.argmax(spent[un])])                  # the hardest layer to resolve
    ref = 1.0 if s == "c" else abs(float(theta[deep]))
    why = []
    if tolerance * allow[deep] >= ref:
        why.append(f"the finite-width allowance κ·{spent[deep]}/N = "
                   f"{allowance * spent[deep] / width:.3g}{'' if s == 'c' else ' (relative)'} "
                   f"makes the band tolerance·√(se² + a²) wider than the value itself")
    elif not power[deep]:
        why.append(f"the standard error {se[deep]:.3g} over {n_nets} nets makes the band "
                   "tolerance·√(se² + a²) wider than the value itself")
    s2d = float(s2[deep]) if s2 is not None and s != "c" else math.nan
    if np.isfinite(s2d) and not tails_ok[deep]:
        why.append(f"the nets' log {s} has variance s² = {s2d:.3g}, so the mean of "
                   f"{n_nets} nets is ruled by a heavy tail (log-normal skewness of the mean "
                   f"{float(_lognormal_skew(s2d, n_nets)):.3g} > {MAX_MEAN_SKEW:g}) and the log "
                   "scale's band is not below log 2")
    if q_dep[deep]:
        why.append("it is a product of χ(q_k) over layers k ≥ l, and q is unresolved at "
                   "some of them (the χ the nets saw are not the theory's)")
    if not why:
        why.append("the log-scale band is not below log 2 either")
    kw = dict(n0=n_nets, N0=width, rel_se=float(se[deep]) / ref if ref > 0 else math.inf,
              spent=int(spent[deep]), s2=s2d, k3term=float(k3term[deep]) if k3term is not None
              else math.nan, tolerance=tolerance, allowance=allowance)
    if not np.isfinite(kw["rel_se"]):
        return (f"{s}: unresolved at layers {where} (at layer {deep}: " + "; ".join(why) + ").")
    fix = []
    nets = _smallest(lambda n: _resolves(s, n, width, **kw), n_nets, 10**7)
    wide = _smallest(lambda N: _resolves(s, n_nets, N, **kw), width, 2**24)
    if wide is not None:
        fix.append(f"width ≥ {wide} (with {n_nets} nets)")
    if nets is not None:
        fix.append(f"n_nets ≥ {nets} (at width {width})")
    if not fix:
        both = _smallest(lambda k: _resolves(s, n_nets * k, width * k, **kw), 1, 2**20)
        if both is not None:
            fix.append(f"width ≥ {width * both} and n_nets ≥ {n_nets * both}")
    if q_dep[deep]:
        fix.append("resolving q at the later layers")
    decide = (" or ".join(fix) if fix else "a far larger ensemble than a model of its "
              "finite-width scaling can name")
    return (f"{s}: unresolved at layers {where} (at layer {deep}: " + "; ".join(why)
            + f"). Would decide it (estimated): {decide}.")


def check_rnn(spec, sigma_w, sigma_u=0.0, sigma_b=0.0, *, steps, width, n_nets, x2=1.0,
              x_corr=0.0, batch=None, seed=0, backend="cpu", tolerance=None, allowance=1.0,
              norm=None, gamma=None, gamma_x=None, beta=0.0, theory=None):
    """Compare the RNN mean field over time with a simulated ensemble, step by step.

    ``norm=None``: h_t = φ(W h_{t−1} + U x_t + b), h_0 = 0, W reused over time; theory
    ``RNNMeanField(spec, sigma_w, sigma_u, sigma_b, x2, x_corr).propagate(steps)``.
    ``norm="bn"`` / ``"ln"``: the normalized recurrence of :func:`vanishcalc.sim.api.simulate_rnn`
    (recurrent BN with batch statistics per step / LN of the summed input); theory
    ``RecurrentNormRNN(spec, norm, gamma, gamma_x, beta, …, batch=batch)`` (``width=width`` for
    LN: the finite-batch / finite-width factors of the gradient are part of the theory).
    Index t holds the pre-activation a_{t+1}.  Simulation: :func:`vanishcalc.sim.api.simulate_rnn`
    (``backend="cuda"`` runs the CUDA kernels).  The finite-width allowance and the z-scores
    are those of :func:`check` (notes/simulation.md, notes/recurrent.md), with the same three
    verdicts (PASSED / FAILED / INCONCLUSIVE).

    ``theory``: arrays ``q, c, grad`` (length ``steps``) to test instead of the mean field
    (a deliberately wrong theory must FAIL).

    Returns
    -------
    CheckReport
    """
    from . import limits
    from .api import simulate_rnn
    from .program import rnn_iv, rnn_norm_iv
    steps = integer("check_rnn", "steps", steps, 1, "(time steps)")
    tolerance, allowance = _check_iv(n_nets, tolerance, allowance, steps - 1)
    if batch is None:
        batch = 32 if norm == "bn" else 2
    if norm is None:
        if gamma is not None or gamma_x is not None or beta != 0.0:
            raise VanishcalcError("check_rnn: gamma, gamma_x and beta are the affine of a "
                                  "normalized recurrence; pass norm='bn' or norm='ln' with them")
        _, _, steps_ok, width_ok, batch_ok, nets_ok, _ = rnn_iv(
            spec, sigma_w, sigma_u, sigma_b, steps, width, x2, x_corr, batch, n_nets, seed)
    else:
        model, steps_ok, width_ok, batch_ok, nets_ok, _ = rnn_norm_iv(
            spec, norm, gamma, gamma_x, beta, sigma_w, sigma_u, sigma_b, steps, width, x2,
            x_corr, batch, n_nets, seed)
    limits.require_rnn("check_rnn", steps=steps_ok, width=width_ok, batch=batch_ok, n_nets=nets_ok,
                       extra_per_cell=limits.CHECK_BYTES_PER_CELL, cpu=False)
    norm_kw = {} if norm is None else dict(norm=norm, gamma=gamma, gamma_x=gamma_x, beta=beta)
    tr = simulate_rnn(spec, sigma_w, sigma_u, sigma_b, steps=steps, width=width, x2=x2,
                      x_corr=x_corr, batch=batch, n_nets=n_nets, seed=seed, backend=backend,
                      **norm_kw)
    if theory is not None:
        th = _theory(spec, sigma_w, sigma_b, steps - 1, None, None, theory)
    else:
        if norm is None:
            from ..maps.rnn import RNNMeanField
            prop = RNNMeanField(spec, sigma_w, sigma_u, sigma_b, x2, x_corr).propagate(steps)
        else:
            prop = model.propagate(steps)
        th = {k: np.asarray(getattr(prop, k), dtype=float) for k in STATS}
    params = dict(phi=str(spec), sigma_w=sigma_w, sigma_b=sigma_b, sigma_u=sigma_u, depth=steps - 1,
                  width=width, n_nets=n_nets, weights="gaussian (recurrent)", seed=seed,
                  batch=batch, backend=backend, allowance=allowance, tolerance=tolerance,
                  norm=norm, gamma=gamma, gamma_x=gamma_x, beta=beta)
    return _compare(th, tr, bool(np.all(np.isfinite(tr.q))), width, allowance, tolerance, params)
