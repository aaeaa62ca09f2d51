"""vanishcalc.sweep: grid order, error records, executors (threads, processes, Dask), timeouts.

The reference for every executor is the plain nested loop written out in the test."""
from __future__ import annotations

import concurrent.futures as cf
import math
import time

import pytest

from vanishcalc import SweepResult, VanishcalcError, sweep
from vanishcalc.sweep import grid_points



def process_pool(workers):
    """A process pool whose workers do not inherit another library's threads: once JAX is
    loaded in this pytest process (tests/bridges), fork can deadlock (JAX warns so), so the
    workers come from a fresh forkserver instead."""
    import multiprocessing
    import sys
    if "jax" in sys.modules:
        return cf.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("forkserver"))
    return cf.ProcessPoolExecutor(workers)

def ratio(a, b):
    """a / b, failing at b = 0 (a point that raises)."""
    return a / b


def nap(seconds):
    time.sleep(seconds)
    return seconds


GRID = {"a": [1.0, -2.0, 3.5], "b": [2.0, 0.0, 4.0]}


def serial_loop(fn, grid):
    """The reference: nested for loops, the last key innermost."""
    out = []
    for a in grid["a"]:
        for b in grid["b"]:
            try:
                out.append({"a": a, "b": b, "value": fn(a=a, b=b)})
            except Exception as exc:
                out.append({"a": a, "b": b, "error": f"{type(exc).__name__}: {exc}"})
    return out


def test_sweep_serial_records_match_nested_loop():
    result = sweep(ratio, GRID)
    assert isinstance(result, SweepResult)
    assert result == serial_loop(ratio, GRID)
    assert [r["b"] for r in result.failed] == [0.0, 0.0, 0.0]
    assert result.failed[0]["error"] == "ZeroDivisionError: float division by zero"


def test_sweep_grid_order_is_product_order_last_key_fastest():
    pts = grid_points({"x": [1, 2], "y": ["a", "b"], "z": [True]})
    assert pts == [{"x": 1, "y": "a", "z": True}, {"x": 1, "y": "b", "z": True},
                   {"x": 2, "y": "a", "z": True}, {"x": 2, "y": "b", "z": True}]
    assert sweep(ratio, {"a": [1.0], "b": []}) == []


@pytest.mark.parametrize("chunk_size", [None, 1, 2, 100])
def test_sweep_threads_same_records_as_serial_any_chunking(chunk_size):
    with cf.ThreadPoolExecutor(2) as ex:
        assert sweep(ratio, GRID, ex, chunk_size=chunk_size) == serial_loop(ratio, GRID)


def test_sweep_processes_same_records_as_serial_and_chunks_points():
    grid = {"a": [float(i) for i in range(40)], "b": [1.0, 0.0, 3.0]}
    with process_pool(2) as ex:
        submitted = []
        original = ex.submit

        def counting_submit(fn, *args, **kwargs):
            submitted.append(len(args[1]))          # points in this task
            return original(fn, *args, **kwargs)
        ex.submit = counting_submit
        result = sweep(ratio, grid, ex)
    expected = [{"a": a, "b": b, **({"value": a / b} if b else
                                     {"error": "ZeroDivisionError: float division by zero"})}
                for a in grid["a"] for b in grid["b"]]
    assert result == expected
    # 120 points on 2 workers: 4 chunks per worker, not one task per point
    assert sum(submitted) == 120 and len(submitted) == 8


def test_sweep_process_pool_unpicklable_fn_says_so():
    with process_pool(1) as ex:
        with pytest.raises(VanishcalcError, match="pickled.*module level"):
            sweep(lambda a, b: a, GRID, ex)


def test_sweep_timeout_records_slow_point_and_goes_on():
    t0 = time.perf_counter()
    result = sweep(nap, {"seconds": [0.0, 5.0, 0.01]}, timeout=0.3)
    assert time.perf_counter() - t0 < 3.0
    assert result[0] == {"seconds": 0.0, "value": 0.0}
    assert result[1]["error"].startswith("TimeoutError") and "0.3 s" in result[1]["error"]
    assert result[2] == {"seconds": 0.01, "value": 0.01}


def nap_in_broad_except(seconds):
    """Sleeps inside ``except Exception`` (as fallback paths in the library do)."""
    try:
        time.sleep(seconds)
    except Exception:
        return "swallowed"
    return seconds


def test_sweep_timeout_not_swallowed_by_except_exception():
    result = sweep(nap_in_broad_except, {"seconds": [5.0]}, timeout=0.2)
    assert result[0]["error"].startswith("TimeoutError"), result


def test_sweep_timeout_in_process_pool():
    with process_pool(2) as ex:
        result = sweep(nap, {"seconds": [5.0, 0.0]}, ex, timeout=0.3, chunk_size=1)
    assert result[0]["error"].startswith("TimeoutError")
    assert result[1] == {"seconds": 0.0, "value": 0.0}


def test_sweep_timeout_refused_for_threads():
    with cf.ThreadPoolExecutor(1) as ex:
        with pytest.raises(VanishcalcError, match="ProcessPoolExecutor"):
            sweep(ratio, GRID, ex, timeout=1.0)


@pytest.mark.parametrize("grid, piece", [
    ([1, 2], "dict of lists"),
    ({"a": 1.0}, r"\[1.0\]"),
    ({"a": "tanh"}, r"\['tanh'\]"),
    ({"value": [1]}, "reserved"),
    ({"not a name": [1]}, "keyword argument"),
])
def test_sweep_bad_grid_named(grid, piece):
    with pytest.raises(VanishcalcError, match=piece):
        sweep(ratio, grid)


@pytest.mark.parametrize("kwargs, piece", [
    (dict(executor=object()), "executor"),
    (dict(chunk_size=0), "chunk_size"),
    (dict(timeout=-1), "timeout"),
    (dict(timeout=math.inf), "timeout"),
])
def test_sweep_bad_options_named(kwargs, piece):
    with pytest.raises(VanishcalcError, match=piece):
        sweep(ratio, GRID, **kwargs)


def test_sweep_to_dataframe():
    pd = pytest.importorskip("pandas")
    frame = sweep(ratio, GRID).to_dataframe()
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.columns) == ["a", "b", "value", "error"]
    assert len(frame) == 9
    assert frame["error"].notna().sum() == 3
    assert frame.loc[0, "value"] == 0.5


def test_sweep_real_computation_gain():
    from vanishcalc import gain
    result = sweep(lambda spec: gain(spec), {"spec": ["relu", "exp(-x**2)", "exp(x**2)"]})
    assert result[0]["value"] == pytest.approx(math.sqrt(2), rel=1e-15)
    assert result[1]["value"] == pytest.approx(5 ** 0.25, rel=1e-15)
    assert result[2]["error"].startswith("DivergenceError")


def test_sweep_dask_local_cluster_two_processes():
    distributed = pytest.importorskip("distributed")
    grid = {"real": [1.0, "a", 2.5], "imag": [0.0, 3.0]}
    # complex: a builtin taking keywords, picklable by reference in any worker process
    expected = sweep(complex, grid)
    assert expected[2]["error"].startswith("TypeError")
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                  dashboard_address=None) as cluster:
        with distributed.Client(cluster) as client:
            assert sweep(complex, grid, client) == expected
            assert sweep(complex, grid, client, chunk_size=1) == expected
            with pytest.raises(VanishcalcError, match="timeout"):
                sweep(complex, grid, client, timeout=1.0)


def gaussian_mass_by_alarm(k):
    """∫ z^k φ(z) dz by sympy.integrate under the symbolic rules' SIGALRM budget."""
    import sympy

    from vanishcalc.gaussian.symbolic import _integrate_with_alarm
    from vanishcalc.parse import X as z
    return _integrate_with_alarm(z ** k * sympy.exp(-z ** 2 / 2) / sympy.sqrt(2 * sympy.pi),
                                 -sympy.oo, sympy.oo, 60.0)


def test_sweep_timeout_leaves_sigalrm_to_the_symbolic_rules():
    # In a daemonic process (a multiprocessing.Pool or Dask worker) the symbolic rules time
    # sympy.integrate with SIGALRM and skip the closed form when SIGALRM is taken: the
    # sweep's own timeout must leave it free, or a timeout changes the answers.
    result = sweep(gaussian_mass_by_alarm, {"k": [0, 2]}, timeout=60.0)
    assert [r.get("value") for r in result] == [1, 1]       # E[1] = E[z²] = 1
