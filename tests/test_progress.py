"""vanishcalc.progress: when a bar shows (TTY, True, False, no tqdm), and the long runs that
report through it (simulate, phase_diagram, init_table, sweep)."""
from __future__ import annotations

import io
import sys

import numpy as np
import pytest

from vanishcalc import progress
from vanishcalc.sweep import sweep


class FakeTTY(io.StringIO):
    def isatty(self):
        return True


def test_progress_off_by_default_when_stderr_is_not_a_tty(monkeypatch):
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert not progress.wanted(None)
    assert isinstance(progress.bar(10, "x"), progress._NoBar)


def test_progress_on_for_a_tty_off_with_false(monkeypatch):
    tqdm = pytest.importorskip("tqdm")
    monkeypatch.setattr(sys, "stderr", FakeTTY())
    assert isinstance(progress.bar(10, "x"), tqdm.tqdm)
    assert isinstance(progress.bar(10, "x", progress=False), progress._NoBar)


def test_progress_true_forces_a_bar_on_stderr(monkeypatch):
    pytest.importorskip("tqdm")
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    monkeypatch.setattr(progress, "DELAY_S", 0.0)
    out = sweep(lambda a: a * 2, {"a": list(range(5))}, progress=True)
    assert [r["value"] for r in out] == [0, 2, 4, 6, 8]
    assert "sweep" in err.getvalue() and "/5" in err.getvalue()


def test_progress_without_tqdm_is_a_no_op(monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setattr(sys, "stderr", FakeTTY())
    assert not progress.wanted(None) and not progress.wanted(True)
    with progress.bar(3, "x", progress=True) as b:
        b.update(3)
    assert sweep(lambda a: a, {"a": [1, 2]}, progress=True) == [{"a": 1, "value": 1},
                                                                 {"a": 2, "value": 2}]


def test_progress_callable_counts_sweep_points():
    seen = []
    sweep(lambda a: a, {"a": list(range(7))}, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(k, 7) for k in range(1, 8)]


def test_progress_phase_diagram_counts_grid_points():
    from vanishcalc import phase_diagram
    seen = []
    phase_diagram("relu", [0.5, 1.0, 1.2], [0.0, 0.1], progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (6, 6)


def test_progress_init_table_counts_rows():
    from vanishcalc import init_table
    seen = []
    init_table(["relu", "x"], progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (2, 2)


def test_progress_simulate_bar_does_not_change_results(monkeypatch):
    pytest.importorskip("tqdm")
    from vanishcalc import simulate
    kw = dict(depth=6, width=16, n_nets=3, seed=5)
    quiet = simulate("relu", 1.2, **kw, progress=False)
    monkeypatch.setattr(sys, "stderr", FakeTTY())         # the default (None) shows a bar
    shown = simulate("relu", 1.2, **kw)
    layers = []
    called = simulate("relu", 1.2, **kw, progress=lambda d, t: layers.append((d, t)))
    for other in (shown, called):
        for k in ("q", "c", "grad"):
            np.testing.assert_array_equal(getattr(other, k), getattr(quiet, k))
    assert layers[-1] == (6, 6)


def test_progress_bad_value_named():
    from vanishcalc import VanishcalcError, simulate
    with pytest.raises(VanishcalcError, match="progress"):
        simulate("relu", 1.0, depth=1, width=2, progress="yes")


def test_progress_points_of_a_sweep_show_no_bars_of_their_own(monkeypatch):
    pytest.importorskip("tqdm")
    monkeypatch.setattr(sys, "stderr", FakeTTY())
    inner = sweep(lambda a: progress.wanted(None), {"a": [1, 2]})
    assert [r["value"] for r in inner] == [False, False]
    assert progress.wanted(None)                 # back to normal after the sweep
    forced = sweep(lambda a: progress.wanted(True), {"a": [1]})
    assert forced[0]["value"] is True


def test_composed_and_rnn_cpu_report_nets_done_with_identical_results():
    """Composed stacks and the plain RNN run their CPU kernel in chunks of nets when progress
    is asked for; each net has its own stream and rows, so the results are bit-identical."""
    import numpy as np
    from vanishcalc import simulate, simulate_rnn
    from vanishcalc.maps import Activation, Dense, LayerNorm
    net = [Dense(1.2, 0.1), LayerNorm(1.0, 0.0), Activation("tanh")]
    calls = []
    kw = dict(depth=4, width=16, n_nets=40, batch=4, seed=3)
    plain = simulate(net, progress=False, **kw)
    chunked = simulate(net, progress=lambda done, total: calls.append((done, total)), **kw)
    assert calls and calls[-1] == (40, 40) and len(calls) > 1
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    for a, b in ((plain.q, chunked.q), (plain.c, chunked.c), (plain.grad, chunked.grad)):
        np.testing.assert_array_equal(a, b)
    calls.clear()
    rkw = dict(steps=5, width=16, n_nets=30, seed=1)
    r0 = simulate_rnn("tanh", 1.1, 0.5, progress=False, **rkw)
    r1 = simulate_rnn("tanh", 1.1, 0.5, progress=lambda d, t: calls.append((d, t)), **rkw)
    assert calls[-1] == (30, 30)
    np.testing.assert_array_equal(r0.q, r1.q)
    np.testing.assert_array_equal(r0.grad, r1.grad)
    from vanishcalc import VanishcalcError
    with pytest.raises(VanishcalcError, match="plain RNN's CPU kernel only"):
        simulate_rnn("tanh", 1.1, 0.5, norm="ln", progress=True, **rkw)


@pytest.mark.parametrize("call", ["simulate_rnn", "init_table", "sweep", "simulate"])
def test_progress_that_is_not_none_bool_or_callable_is_refused(call):
    """progress="yes" used to mean True in simulate_rnn, init_table and sweep (only simulate
    refused it): one check in vanishcalc.progress now serves every API."""
    import vanishcalc
    from vanishcalc import VanishcalcError
    run = {"simulate_rnn": lambda: vanishcalc.simulate_rnn("tanh", 1.1, 0.5, steps=3, width=8,
                                                           n_nets=2, progress="yes"),
           "init_table": lambda: vanishcalc.init_table(["relu"], progress="yes"),
           "sweep": lambda: vanishcalc.sweep(abs, {"x": [1, -2]}, progress="yes"),
           "simulate": lambda: vanishcalc.simulate("tanh", 1.0, depth=2, width=8,
                                                   progress="yes")}[call]
    with pytest.raises(VanishcalcError, match="progress must be None"):
        run()
