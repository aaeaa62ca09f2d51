"""vanishcalc.plot: the plotted data (line x/y arrays, bands, contour levels), not pixels.

Rendered with the Agg backend.  Where a figure shows a mean-field quantity the test checks it
against naive Gauss–Hermite quadrature written out here, not against vanishcalc's solvers."""
from __future__ import annotations

import math
import sys
from types import SimpleNamespace

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

from vanishcalc import plot  # noqa: E402
from vanishcalc.errors import MissingDependencyError, VanishcalcError  # noqa: E402

Z, W = np.polynomial.hermite_e.hermegauss(200)
W = W / math.sqrt(2 * math.pi)


def gauss_mean(f, q):
    """E[f(√q z)], z ~ N(0, 1), by 200-node Gauss–Hermite (naive reference)."""
    return float(np.sum(W * f(math.sqrt(q) * Z)))


def tanh_d(x):
    return 1.0 / np.cosh(x) ** 2


@pytest.fixture(autouse=True)
def close_figures():
    import matplotlib.pyplot as plt
    yield
    plt.close("all")


def lines_by_label(ax):
    return {l.get_label(): l for l in ax.get_lines()}


def test_plot_depth_lines_are_the_trajectory():
    q = np.array([1.0, 0.8, 0.7, 0.65])
    c = np.array([0.5, 0.6, 0.7, 0.75])
    grad = np.array([3.0, 2.0, 1.4, 1.0])
    fig, axes = plot.plot_depth(SimpleNamespace(q=q, c=c, grad=grad))
    assert len(axes) == 3
    for ax, y in zip(axes, (q, c, grad)):
        (line,) = ax.get_lines()
        np.testing.assert_array_equal(line.get_xdata(), np.arange(4))
        np.testing.assert_array_equal(line.get_ydata(), y)


def test_plot_depth_meanfield_tanh_q_map_vs_quadrature():
    from vanishcalc import MeanField
    sw, sb = 1.5, 0.3
    fig, axes = plot.plot_depth(MeanField("tanh", sw, sb).propagate(6, q0=1.0, c0=0.5))
    q_plotted = axes[0].get_lines()[0].get_ydata()
    q = 1.0
    for l in range(1, 7):          # q_{l} = σw² E[tanh(√q_{l-1} z)²] + σb²
        q = sw ** 2 * gauss_mean(lambda x: np.tanh(x) ** 2, q) + sb ** 2
        assert q_plotted[l] == pytest.approx(q, rel=1e-10)


def fake_report(depth=5):
    layers = np.arange(depth + 1, dtype=float)
    theory = {"q": 1 + 0.1 * layers, "c": 0.5 + 0.05 * layers, "grad": 2.0 ** -layers}
    sim = {k: v * 1.01 for k, v in theory.items()}
    se = {k: 0.02 * np.ones(depth + 1) for k in theory}
    allow = {k: 0.01 * layers for k in theory}
    scale = {k: np.array(["exact"] + ["mean"] * (depth - 1) + ["log"]) for k in theory}
    from vanishcalc.sim.check import CheckReport
    return CheckReport(theory=theory, sim=sim, se=se, allowance=allow, z={}, tolerance=3.0,
                       passed=True, worst={}, simulation=None,
                       params=dict(phi="tanh", depth=depth, width=64, n_nets=8),
                       scale=scale)


def test_plot_check_band_is_acceptance_band():
    report = fake_report()
    fig, axes = plot.plot_check(report)
    for ax, s in zip(axes, ("q", "c", "grad")):
        lines = lines_by_label(ax)
        np.testing.assert_array_equal(lines["mean field"].get_ydata(), report.theory[s])
        np.testing.assert_array_equal(lines["simulation mean"].get_ydata(), report.sim[s])
        (band,) = [c for c in ax.collections if c.get_label().startswith("sim ±")]
        verts = band.get_paths()[0].vertices
        half = 3.0 * np.hypot(report.se[s], report.allowance[s])
        ys_at_0 = sorted(y for x, y in verts if abs(x) < 1e-12)
        assert min(ys_at_0) == pytest.approx(report.sim[s][0] - half[0])
        assert max(ys_at_0) == pytest.approx(report.sim[s][0] + half[0])
        ys_at_3 = sorted(y for x, y in verts if abs(x - 3) < 1e-12)
        assert min(ys_at_3) == pytest.approx(report.sim[s][3] - half[3])
        assert max(ys_at_3) == pytest.approx(report.sim[s][3] + half[3])
        # the last layer was compared on the log scale: marked
        marked = lines["log-scale or unresolved"]
        np.testing.assert_array_equal(marked.get_xdata(), [5])
    assert axes[2].get_yscale() == "linear"     # 2^-5 .. 1 spans < 100: linear


def test_plot_check_k_se_band_and_bad_inputs():
    report = fake_report()
    fig, axes = plot.plot_check(report, band=2)
    (band,) = [c for c in axes[1].collections if c.get_label() == "sim ± 2 se"]
    ys = sorted(y for x, y in band.get_paths()[0].vertices if abs(x - 2) < 1e-12)
    assert ys[0] == pytest.approx(report.sim["c"][2] - 0.04)
    assert ys[-1] == pytest.approx(report.sim["c"][2] + 0.04)
    with pytest.raises(VanishcalcError, match="band"):
        plot.plot_check(report, band=-1)
    with pytest.raises(VanishcalcError, match="CheckReport"):
        plot.plot_check(object())


def test_plot_phase_tanh_contours_and_critical_line_vs_quadrature():
    from vanishcalc import phase_diagram
    sw = np.linspace(0.6, 3.0, 25)
    sb = np.linspace(0.0, 0.6, 13)
    d = phase_diagram("tanh", sw, sb, progress=False)
    fig, ax = plot.plot_phase(d, spec="tanh", xi_levels=(20, 5, 10))
    (mesh,) = [c for c in ax.collections if hasattr(c, "get_array") and
               type(c).__name__ == "QuadMesh"]
    np.testing.assert_array_equal(np.asarray(mesh.get_array()).reshape(13, 25),
                                  np.where(np.isnan(d.chi1.T), np.nan, d.chi1.T))
    (contours,) = [c for c in ax.collections if type(c).__name__ == "QuadContourSet"]
    assert list(contours.levels) == [5.0, 10.0, 20.0]
    line = lines_by_label(ax)["critical line χ1 = 1"]
    w, b = np.asarray(line.get_xdata()), np.asarray(line.get_ydata())
    inside = np.isfinite(b) & (b > 0.05) & (b < 0.6)
    assert inside.sum() >= 5
    for sigma_w, sigma_b in zip(w[inside][::3], b[inside][::3]):
        q = 1.0
        for _ in range(3000):           # iterate the q-map to its (stable) fixed point
            q = sigma_w ** 2 * gauss_mean(lambda x: np.tanh(x) ** 2, q) + sigma_b ** 2
        chi1 = sigma_w ** 2 * gauss_mean(lambda x: tanh_d(x) ** 2, q)
        assert chi1 == pytest.approx(1.0, abs=1e-6)
    # tanh's critical fixed points are all stable: no dashed stretch
    assert "χ1 = 1 fixed point unstable" not in lines_by_label(ax)


def test_plot_phase_swish_marks_unstable_critical_points():
    # swish (x·sigmoid x) has χ1 = 1 fixed points whose q-map slope exceeds 1 (Hayou et al.
    # 2019); on the dashed stretch the fixed point with χ1 = 1 must repel
    from vanishcalc import phase_diagram
    d = phase_diagram("swish", np.linspace(1.0, 2.5, 6), np.linspace(0.0, 1.0, 5), progress=False)
    fig, ax = plot.plot_phase(d, spec="swish", xi_levels=())
    dashed = lines_by_label(ax)["χ1 = 1 fixed point unstable"]
    assert dashed.get_linestyle() == "--"
    w, b = np.asarray(dashed.get_xdata()), np.asarray(dashed.get_ydata())
    ok = np.isfinite(b)
    assert ok.sum() >= 3

    def sig(x):
        return 0.5 * (1 + np.tanh(0.5 * x))

    def swish(x):
        return x * sig(x)

    def dswish(x):
        return sig(x) * (1 + x * (1 - sig(x)))
    qs = np.logspace(-4, 4, 4001)
    for sigma_w, sigma_b in zip(w[ok][::4], b[ok][::4]):
        # the q with χ1(q) = 1 and q = σw² E[φ²] + σb² (both hold on the critical line)
        chi = np.array([sigma_w ** 2 * gauss_mean(lambda x: dswish(x) ** 2, q) for q in qs])
        roots = np.nonzero(np.diff(np.sign(chi - 1)))[0]
        fixed = [qs[i] for i in roots
                 if abs(sigma_w ** 2 * gauss_mean(lambda x: swish(x) ** 2, qs[i]) + sigma_b ** 2
                        - qs[i]) < 0.01 * qs[i]]
        assert fixed, (sigma_w, sigma_b)
        q = fixed[0]
        h = 1e-4 * q
        slope = sigma_w ** 2 * (gauss_mean(lambda x: swish(x) ** 2, q + h)
                                - gauss_mean(lambda x: swish(x) ** 2, q - h)) / (2 * h)
        assert abs(slope) > 1.0 - 1e-3


def test_plot_phase_hatches_unstable_grid_points():
    sw, sb = np.array([1.0, 2.0, 3.0]), np.array([0.0, 0.5])
    status = np.array([[0, 0], [4, 4], [2, 0]])
    nan = np.full((3, 2), np.nan)
    chi1 = np.where(status == 0, 1.2, np.nan)
    d = SimpleNamespace(sigma_w=sw, sigma_b=sb, chi1=chi1, xi_c=nan, status=status)
    fig, ax = plot.plot_phase(d)
    sets = [c for c in ax.collections if type(c).__name__ == "QuadContourSet"]
    assert any(getattr(c, "hatches", None) == ["//"] for c in sets)
    assert len(sets) == 2          # the hatched unstable region and the grey diverged one


def test_plot_norm_rate_tanh_vs_quadrature():
    gammas = [0.5, 1.0, 2.0]
    beta = 0.3
    fig, ax = plot.plot_norm_rate("tanh", gammas, beta=beta, progress=False)
    lines = lines_by_label(ax)
    bn, ln = lines["BN rate (β = 0.3)"], lines["LN rate (β = 0.3)"]
    np.testing.assert_array_equal(bn.get_xdata(), gammas)
    mp = pytest.importorskip("mpmath")
    mp.mp.dps = 25

    def mean(f):         # E[f(z)] by mpmath quadrature (tanh's poles slow Gauss–Hermite down)
        return mp.quad(lambda z: f(z) * mp.npdf(z), [-mp.inf, 0, mp.inf])
    for g, y_bn, y_ln in zip(gammas, bn.get_ydata(), ln.get_ydata()):
        m1 = mean(lambda z: mp.tanh(g * z + beta))
        m2 = mean(lambda z: mp.tanh(g * z + beta) ** 2)
        d2 = mean(lambda z: mp.sech(g * z + beta) ** 4)
        assert y_bn == pytest.approx(float(g * g * d2 / (m2 - m1 * m1)), rel=1e-12)  # Yang 2019
        assert y_ln == pytest.approx(float(g * g * d2 / m2), rel=1e-12)
    assert lines["rate 1"].get_ydata()[0] == 1.0
    with pytest.raises(VanishcalcError, match="norms"):
        plot.plot_norm_rate("tanh", gammas, norms=("gn",))
    with pytest.raises(VanishcalcError, match="gammas"):
        plot.plot_norm_rate("tanh", [0.0, 1.0])


def test_plot_spectrum_any_object_with_x_density(tmp_path):
    spec = SimpleNamespace(x=np.linspace(0, 2, 5), density=np.array([0, 1, 2, 1, 0.0]),
                           label="Jacobian singular values")
    path = tmp_path / "s.png"
    fig, ax = plot.plot_spectrum(spec, path=path)
    (line,) = ax.get_lines()
    np.testing.assert_array_equal(line.get_xdata(), spec.x)
    np.testing.assert_array_equal(line.get_ydata(), spec.density)
    assert line.get_label() == "Jacobian singular values"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(VanishcalcError, match="density"):
        plot.plot_spectrum(SimpleNamespace(x=[1, 2]))
    with pytest.raises(VanishcalcError, match="one length"):
        plot.plot_spectrum(SimpleNamespace(x=[1, 2], density=[1.0]))


def test_plot_into_given_axes_and_save_pdf(tmp_path):
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots()
    out_fig, out_ax = plot.plot_spectrum(SimpleNamespace(x=[0, 1], density=[1, 1]), ax=ax,
                                         path=tmp_path / "s.pdf")
    assert out_fig is fig and out_ax is ax
    assert (tmp_path / "s.pdf").read_bytes()[:4] == b"%PDF"


def test_plot_without_matplotlib_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(MissingDependencyError, match=r"vanishcalc\[plot\]"):
        plot.plot_spectrum(SimpleNamespace(x=[0, 1], density=[1, 1]))


def test_plot_table_chi1_crosses_one_at_critical_sigma_w():
    from vanishcalc import init_table
    t = init_table(["relu", "erf"])
    fig, ax = plot.plot_table(t, sigma_w=np.linspace(0.5, 2.5, 81), progress=False)
    lines = lines_by_label(ax)
    relu = lines["relu"]
    # relu, σb = 0: χ1 = σw²/2 at any q* (Schoenholz et al. 2017)
    w, chi = np.asarray(relu.get_xdata()), np.asarray(relu.get_ydata())
    ok = np.isfinite(chi)
    np.testing.assert_allclose(chi[ok], w[ok] ** 2 / 2, rtol=1e-9)
    verticals = [l for l in ax.get_lines() if l.get_linestyle() == ":"]
    assert sorted(round(l.get_xdata()[0], 12) for l in verticals) == sorted(
        round(r["critical_sigma_w"], 12) for r in t.rows)


def test_plot_spectrum_predicted_vs_simulated_eigenvalues():
    """compare_spectrum's result: the predicted density as a line and the finite nets'
    eigenvalues as a normalized histogram (area 1) on the same axes."""
    from vanishcalc import compare_spectrum, jacobian_spectrum
    from vanishcalc.plot import plot_spectrum
    cmp = compare_spectrum(jacobian_spectrum("tanh", 1.05, 0.05, depth=4, weights="orthogonal"),
                           width=64, nets=2, seed=0)
    fig, ax = plot_spectrum(cmp)
    line = ax.get_lines()[0]
    np.testing.assert_array_equal(line.get_xdata(), cmp.x)
    np.testing.assert_array_equal(line.get_ydata(), cmp.density)
    bars = ax.patches
    assert len(bars) >= 10
    area = sum(b.get_width() * b.get_height() for b in bars)
    assert area == pytest.approx(1.0, rel=1e-9)
    lo = min(b.get_x() for b in bars)
    hi = max(b.get_x() + b.get_width() for b in bars)
    assert lo == pytest.approx(cmp.eigenvalues.min()) and hi == pytest.approx(cmp.eigenvalues.max())


def test_cli_spectrum_plot_with_simulation(tmp_path, capsys):
    from vanishcalc.cli import main
    path = tmp_path / "s.png"
    assert main(["spectrum", "tanh", "--sigma-w", "1.05", "--sigma-b", "0.05", "--depth", "4",
                 "--weights", "orthogonal", "--plot", str(path), "--simulate-width", "64"]) == 0
    assert path.stat().st_size > 0
    assert "Kolmogorov–Smirnov distance" in capsys.readouterr().out
    assert main(["spectrum", "tanh", "--sigma-w", "1.05", "--depth", "4",
                 "--simulate-width", "64"]) == 2
    assert "give --plot FILE too" in capsys.readouterr().err
