"""Figures of signal propagation: q, c and gradient against depth (theory and simulation), the
σw × σb phase diagram, BatchNorm/LayerNorm gradient rates against γ, and spectra.

matplotlib is optional (``pip install 'vanishcalc[plot]'``) and imported on first use.  Every
function returns ``(fig, ax)`` (``ax`` an array of axes for a multi-panel figure), draws into
``ax=`` when given one, and saves the figure to ``path=`` when given (format from the
suffix: .png, .pdf, .svg).  The numbers come from the solvers and reports; nothing here
computes a mean-field quantity of its own.
"""
from __future__ import annotations

import math

import numpy as np

from .errors import MissingDependencyError, VanishcalcError

__all__ = ["plot_depth", "plot_check", "plot_phase", "plot_norm_rate", "plot_spectrum",
           "plot_table"]

STATS = ("q", "c", "grad")
LABELS = {"q": "q_l (second moment)", "c": "c_l (correlation)",
          "grad": "gradient norm² ratio"}
#: ξc levels drawn on the phase diagram by default (layers).
XI_LEVELS = (2.0, 5.0, 10.0, 20.0, 50.0)


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingDependencyError("vanishcalc.plot needs matplotlib: pip install "
                                     "'vanishcalc[plot]' (or pip install matplotlib)") from None
    return plt


def _axes(ax, ncols=1, width=4.2, height=3.4):
    """(fig, ax): a new figure with ``ncols`` panels, or ``ax``'s figure."""
    if ax is not None:
        if ncols > 1 and np.size(ax) != ncols:
            raise VanishcalcError(f"ax: this figure needs {ncols} axes, got {np.size(ax)}")
        first = np.ravel(ax)[0] if ncols > 1 else ax
        return first.figure, ax
    plt = _pyplot()
    fig, ax = plt.subplots(1, ncols, figsize=(width * ncols, height), squeeze=True)
    return fig, ax


def _finish(fig, path):
    if path is not None:
        fig.savefig(path, bbox_inches="tight")
    return fig


def _arrays(obj, names, where):
    try:
        return [np.asarray(getattr(obj, n), dtype=float) for n in names]
    except AttributeError:
        raise VanishcalcError(f"{where}: needs an object with arrays {', '.join(names)}, got "
                              f"{type(obj).__name__}") from None


def _log_if_wide(ax, y):
    y = np.asarray(y, dtype=float)
    pos = y[np.isfinite(y) & (y > 0)]
    if pos.size and (pos.size == np.isfinite(y).sum()) and pos.max() / pos.min() > 100:
        ax.set_yscale("log")


def plot_depth(propagation, *, ax=None, path=None, label="mean field"):
    """q_l, c_l and the gradient norm² ratio against the layer l, one panel each.

    ``propagation``: :meth:`vanishcalc.MeanField.propagate`'s result, a
    :class:`vanishcalc.Simulation`, or any object with arrays ``q``, ``c``, ``grad`` of
    length depth + 1 (index 0 = the input).

    >>> from vanishcalc import MeanField
    >>> fig, axes = plot_depth(MeanField("tanh", 1.5, 0.3).propagate(10))   # doctest: +SKIP
    """
    q, c, grad = _arrays(propagation, STATS, "plot_depth")
    fig, axes = _axes(ax, 3)
    layers = np.arange(q.size)
    for a, s, y in zip(np.ravel(axes), STATS, (q, c, grad)):
        a.plot(layers, y, "-", color="k", label=label)
        a.set_xlabel("layer l")
        a.set_ylabel(LABELS[s])
        if s != "c":
            _log_if_wide(a, y)
        a.legend(fontsize="small")
    fig.tight_layout()
    return _finish(fig, path), axes


def plot_check(report, *, ax=None, path=None, band="acceptance"):
    """Theory (line) against the simulated ensemble mean with its band, per layer, for q, c and
    the gradient: a :func:`vanishcalc.check` report drawn.

    ``band="acceptance"`` (default) shades sim ± tolerance·√(se² + a²), the band the check's
    mean-scale z-test accepts (theory inside ⇔ |z| ≤ tolerance); a number k shades sim ± k·se.
    Layers the check compared on the log scale or left unresolved are marked with open
    circles (see :class:`vanishcalc.CheckReport`).
    """
    for name in ("theory", "sim", "se", "allowance"):
        if not isinstance(getattr(report, name, None), dict):
            raise VanishcalcError(f"plot_check: needs a CheckReport (vanishcalc.check), got "
                                  f"{type(report).__name__}")
    if band != "acceptance" and not (isinstance(band, (int, float)) and band > 0):
        raise VanishcalcError(f"plot_check: band must be 'acceptance' or a positive number of "
                              f"standard errors, got {band!r}")
    fig, axes = _axes(ax, 3)
    for a, s in zip(np.ravel(axes), STATS):
        theory = np.asarray(report.theory[s], dtype=float)
        sim = np.asarray(report.sim[s], dtype=float)
        se = np.asarray(report.se[s], dtype=float)
        layers = np.arange(theory.size)
        if band == "acceptance":
            half = report.tolerance * np.hypot(se, np.asarray(report.allowance[s], dtype=float))
            text = f"sim ± {report.tolerance:.2f}·√(se² + a²)"
        else:
            half = band * se
            text = f"sim ± {band:g} se"
        a.fill_between(layers, sim - half, sim + half, color="tab:blue", alpha=0.25, lw=0,
                       label=text)
        a.plot(layers, sim, "o-", color="tab:blue", ms=3, lw=1, label="simulation mean")
        a.plot(layers, theory, "-", color="k", lw=1.5, label="mean field")
        scale = np.asarray(report.scale.get(s, ["mean"] * theory.size))
        other = np.nonzero(scale != "mean")[0]
        other = other[(scale[other] != "exact")]
        if other.size:
            a.plot(layers[other], sim[other], "o", mfc="none", mec="tab:red", ms=6,
                   label="log-scale or unresolved")
        a.set_xlabel("layer l")
        a.set_ylabel(LABELS[s])
        if s != "c":
            _log_if_wide(a, np.concatenate([theory, sim]))
    np.ravel(axes)[0].legend(fontsize="x-small")
    p = getattr(report, "params", {}) or {}
    if p:
        fig.suptitle(f"{report.verdict}: φ = {p.get('phi')}, depth {p.get('depth')}, width "
                     f"{p.get('width')}, {p.get('n_nets')} nets", fontsize="medium")
    fig.tight_layout()
    return _finish(fig, path), axes


def _critical_curve(act, sigma_b_max, n=120):
    """(σw, σb, q-map slope) along the critical line χ1 = 1, parametrized by q* on a log grid
    (the rows of the criticality scan); NaN where σb² < 0 or a moment did not converge."""
    from .solve.criticality import _row
    out = []
    for q in np.logspace(-4, 4, n):
        try:
            r = _row(act, float(q))
        except VanishcalcError:
            r = None
        if r is None or r[2] < 0:
            out.append((np.nan, np.nan, np.nan))
            continue
        out.append((math.sqrt(r[1]), math.sqrt(r[2]), r[4]))
        if math.sqrt(r[2]) > 1.5 * sigma_b_max:
            break
    return tuple(np.array(v) for v in zip(*out))


def plot_phase(diagram, *, spec=None, critical=None, xi_levels=XI_LEVELS, ax=None, path=None):
    """The σw × σb phase diagram: χ1 as a heat map (diverging at χ1 = 1), ξc contours, the
    critical line χ1 = 1 and where its fixed point is unstable.

    Parameters
    ----------
    diagram : PhaseDiagram
        From :func:`vanishcalc.phase_diagram`.
    spec : str or Activation, optional
        φ of the diagram: draws the critical line from the criticality scan (σw(q*), σb(q*)
        for q* on a log grid), solid where its fixed point is stable (|q-map slope| < 1),
        dashed red where it is unstable — there :func:`vanishcalc.critical_sigma_w` raises
        ``UnstableCriticalPointError``.
    critical : CriticalLine, optional
        Certified points of :func:`vanishcalc.critical_line`, drawn as markers.
    xi_levels : sequence of float
        ξc contour levels (layers); empty for none.

    Grid points whose iteration sits on an unstable fixed point (``status`` 4) are hatched;
    points where q diverges (status 2) are grey.
    """
    from matplotlib.colors import TwoSlopeNorm
    names = ("sigma_w", "sigma_b", "chi1", "xi_c", "status")
    sw, sb, chi1, xi_c = _arrays(diagram, names[:4], "plot_phase")
    status = np.asarray(diagram.status)
    fig, ax = _axes(ax, 1, width=5.6, height=4.4)
    finite = chi1[np.isfinite(chi1)]
    lo = min(0.5, float(finite.min())) if finite.size else 0.5
    hi = max(1.5, float(finite.max())) if finite.size else 1.5
    mesh = ax.pcolormesh(sw, sb, chi1.T, shading="nearest", cmap="RdBu_r",
                         norm=TwoSlopeNorm(vcenter=1.0, vmin=lo, vmax=hi))
    fig.colorbar(mesh, ax=ax, label="χ1")
    from matplotlib.patches import Patch
    regions = []        # legend entries of the marked regions (contourf has no label)
    if 2 in status:
        ax.contourf(sw, sb, (status == 2).T.astype(float), levels=[0.5, 1.5],
                    colors=["0.6"], alpha=0.8)
        regions.append(Patch(facecolor="0.6", label="q diverges"))
    if 4 in status:
        ax.contourf(sw, sb, (status == 4).T.astype(float), levels=[0.5, 1.5], colors="none",
                    hatches=["//"])
        regions.append(Patch(facecolor="none", hatch="//", label="unstable fixed point"))
    if 3 in status:
        regions.append(Patch(facecolor="white", edgecolor="0.5",
                             label="not converged (q-map slope ≈ 1)"))
    xi = np.where(np.isfinite(xi_c), xi_c, np.nan).T
    levels = sorted(float(v) for v in xi_levels)
    if levels and sw.size > 1 and sb.size > 1 and np.isfinite(xi).any():
        cs = ax.contour(sw, sb, xi, levels=levels, colors="k", linewidths=0.7)
        ax.clabel(cs, fmt=lambda v: f"ξc={v:g}", fontsize="x-small")
    if spec is not None:
        from .activation import activation
        w, b, slope = _critical_curve(activation(spec), float(sb.max()))
        stable = np.where(np.abs(slope) < 1.0, b, np.nan)
        unstable = np.where(np.abs(slope) >= 1.0, b, np.nan)
        ax.plot(w, stable, "-", color="k", lw=2, label="critical line χ1 = 1")
        if np.isfinite(unstable).any():
            ax.plot(w, unstable, "--", color="tab:red", lw=2,
                    label="χ1 = 1 fixed point unstable")
    if critical is not None:
        cw, cb = _arrays(critical, ("sigma_w", "sigma_b"), "plot_phase(critical=)")
        ax.plot(cw, cb, "o", color="k", ms=4, label="critical_line points")
    ax.set_xlim(sw.min(), sw.max()) if sw.size > 1 else None
    ax.set_ylim(sb.min(), sb.max()) if sb.size > 1 else None
    ax.set_xlabel("σw")
    ax.set_ylabel("σb")
    handles = ax.get_legend_handles_labels()[0] + regions
    if handles:
        ax.legend(handles=handles, fontsize="x-small", loc="upper left")
    return _finish(fig, path), ax


def plot_norm_rate(spec, gammas, *, beta=0.0, norms=("bn", "ln"), ax=None, path=None,
                   progress=None):
    """The per-layer squared-gradient growth of a deep BatchNorm (``"bn"``, infinite batch)
    and/or LayerNorm (``"ln"``) network against the affine scale γ at shift β, with the
    rate-1 line (no gradient growth).

    The rates are :func:`vanishcalc.bn_gradient_rate` and :func:`vanishcalc.ln_gradient_rate`
    at each γ; a γ where one fails is left out of its line (NaN).
    """
    from .progress import bar
    from .solve.bn_affine import bn_gradient_rate, ln_gradient_rate
    rate_of = {"bn": bn_gradient_rate, "ln": ln_gradient_rate}
    norms = (norms,) if isinstance(norms, str) else tuple(norms)
    bad = [n for n in norms if n not in rate_of]
    if bad or not norms:
        raise VanishcalcError(f"plot_norm_rate: norms must be 'bn', 'ln' or both, got {norms!r}")
    g = np.asarray(gammas, dtype=float).ravel()
    if g.size == 0 or not np.all(np.isfinite(g) & (g > 0)):
        raise VanishcalcError("plot_norm_rate: gammas must be positive finite numbers, e.g. "
                              "numpy.linspace(0.2, 3, 30)")
    fig, ax = _axes(ax)
    with bar(g.size * len(norms), "norm rates", progress) as meter:
        for n in norms:
            ys = []
            for gv in g:
                try:
                    ys.append(float(rate_of[n](spec, float(gv), beta)))
                except VanishcalcError:
                    ys.append(np.nan)
                meter.update(1)
            ax.plot(g, ys, "-", label=f"{n.upper()} rate (β = {beta:g})")
    ax.axhline(1.0, color="0.5", ls=":", lw=1, label="rate 1")
    ax.set_xlabel("γ")
    ax.set_ylabel("per-layer gradient growth")
    ax.set_title(f"φ = {spec if isinstance(spec, str) else getattr(spec, 'name', spec)}",
                 fontsize="medium")
    ax.legend(fontsize="small")
    return _finish(fig, path), ax


def plot_spectrum(spectrum, *, ax=None, path=None, label=None):
    """A spectral density: ``spectrum.density`` against ``spectrum.x``.

    Any object with equal-length arrays ``x`` and ``density`` works (``jacobian_spectrum(...)
    .density()``, an eigenvalue histogram); ``label`` defaults to ``spectrum.label`` or
    ``spectrum.name`` when it has one.  An object that also has ``eigenvalues``
    (``vanishcalc.compare_spectrum``) gets their normalized histogram drawn over the
    predicted density: predicted against simulated.
    """
    x, density = _arrays(spectrum, ("x", "density"), "plot_spectrum")
    if x.shape != density.shape or x.ndim != 1:
        raise VanishcalcError(f"plot_spectrum: x and density must be 1-D arrays of one length, "
                              f"got shapes {x.shape} and {density.shape}")
    label = label or getattr(spectrum, "label", None) or getattr(spectrum, "name", None)
    fig, ax = _axes(ax)
    ax.plot(x, density, "-", label=label or ("predicted" if hasattr(spectrum, "eigenvalues")
                                             else None))
    simulated = getattr(spectrum, "eigenvalues", None)
    if simulated is not None:
        # a comparison (vanishcalc.compare_spectrum): the finite nets' eigenvalues of JJᵀ as a
        # normalized histogram over the predicted density, on the same axis
        eig = np.asarray(simulated, dtype=float)
        eig = eig[np.isfinite(eig)]
        ax.hist(eig, bins=max(10, min(80, int(np.sqrt(eig.size)))), density=True, alpha=0.35,
                label=f"simulated ({eig.size} eigenvalues)")
        label = True
    ax.set_xlabel(getattr(spectrum, "x_label", None)
                  or ("λ (eigenvalue of JJᵀ)" if simulated is not None else "x"))
    ax.set_ylabel("density")
    if label:
        ax.legend(fontsize="small")
    return _finish(fig, path), ax


def plot_table(table, *, sigma_w=None, ax=None, path=None, progress=None):
    """χ1 against σw at the table's σb for each φ of an :func:`vanishcalc.init_table`, the
    critical σw of each row marked (χ1 = 1 there), from :func:`vanishcalc.phase_diagram`.

    ``sigma_w``: the σw grid (default 0.25 to 1.5 × the largest critical σw, 120 points).
    """
    from .solve.criticality import phase_diagram
    rows = getattr(table, "rows", None)
    if not isinstance(rows, list):
        raise VanishcalcError(f"plot_table: needs an InitTable (vanishcalc.init_table), got "
                              f"{type(table).__name__}")
    crit = [r["critical_sigma_w"] for r in rows if r.get("critical_sigma_w") is not None]
    if sigma_w is None:
        sigma_w = np.linspace(0.25, 1.5 * max(crit + [2.0]), 120)
    fig, ax = _axes(ax, width=5.2, height=3.8)
    from .progress import bar
    with bar(len(rows), "table plot", progress) as meter:
        for r in rows:
            d = phase_diagram(r["name"], sigma_w, [table.sigma_b], progress=False)
            line, = ax.plot(d.sigma_w, d.chi1[:, 0], "-", label=r["name"])
            if r.get("critical_sigma_w") is not None:
                ax.axvline(r["critical_sigma_w"], color=line.get_color(), ls=":", lw=1)
            meter.update(1)
    ax.axhline(1.0, color="0.5", lw=1)
    ax.set_xlabel("σw")
    ax.set_ylabel(f"χ1 at q* (σb = {table.sigma_b:g})")
    ax.legend(fontsize="small")
    return _finish(fig, path), ax


# ---------------------------------------------------------------- the CLI's --plot FILE


def check_plot_path(path, option="--plot") -> str:
    """``path`` if a figure can be saved there (matplotlib present, a format it writes, an
    existing folder); checked before any computation so a long run does not end in an error."""
    import os
    plt = _pyplot()
    import matplotlib
    matplotlib.use("Agg")           # the CLI only writes files: no window, no display needed
    ext = os.path.splitext(path)[1].lstrip(".").lower()
    formats = plt.figure().canvas.get_supported_filetypes()
    plt.close("all")
    if ext not in formats:
        raise VanishcalcError(f"{option} {path}: give a file name ending in one of "
                              f"{', '.join('.' + f for f in sorted(formats))}")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise VanishcalcError(f"{option} {path}: the folder {folder} does not exist")
    return path


def save_cli_figure(draw, path, *args, **kwargs):
    """Draw with ``draw(*args, path=path, **kwargs)`` and release the figure."""
    plt = _pyplot()
    try:
        fig, _ = draw(*args, path=path, **kwargs)
    except OSError as exc:
        raise VanishcalcError(f"--plot {path}: cannot write the figure ({exc})") from None
    plt.close(fig)
