"""``sweep(fn, grid)``: one computation over the product of parameter lists, serially, on a
local pool or on a Dask cluster, with the same records in the same order every way.

The unit of work sent to an executor is a *chunk* of grid points (a few dozen), not one point:
a task costs milliseconds of scheduling and pickling, a ``gain`` or ``chi1`` about as much.
Each point runs inside :func:`_run_point`, which turns any exception into the point's
``error`` record, so one bad point never stops a sweep.
"""
from __future__ import annotations

import concurrent.futures as cf
import itertools
import math
import pickle
import signal
import threading

from .errors import MissingDependencyError, VanishcalcError

__all__ = ["sweep", "SweepResult", "grid_points"]

#: Default number of chunks per worker: enough to even out uneven points, few enough that
#: scheduling stays negligible.
CHUNKS_PER_WORKER = 4
#: Chunks when the executor does not say how many workers it has.
DEFAULT_CHUNKS = 32
#: Reserved record keys: a grid may not use them as parameter names.
RESERVED = ("value", "error")


class SweepResult(list):
    """The records of a sweep, in grid order: a list of dicts, each the point's parameters
    plus ``"value"`` (what ``fn`` returned) or ``"error"`` (``"TypeName: message"``)."""

    @property
    def failed(self) -> list:
        """The records of the points that raised."""
        return [r for r in self if "error" in r]

    def to_dataframe(self):
        """The records as a pandas DataFrame: one row per point, columns = the grid's keys,
        ``value`` and ``error`` (NaN / None where absent).  Needs pandas."""
        try:
            import pandas as pd
        except ImportError:
            raise MissingDependencyError(
                "SweepResult.to_dataframe needs pandas: pip install pandas (the records "
                "themselves are a list of dicts)") from None
        frame = pd.DataFrame.from_records(list(self))
        for col in RESERVED:
            if col not in frame.columns:
                frame[col] = None
        return frame


def grid_points(grid) -> list:
    """The points of ``grid`` (a dict of lists) in product order, the last key varying
    fastest — the order of nested ``for`` loops over the keys as written.

    >>> grid_points({"a": [1, 2], "b": ["x", "y"]})
    [{'a': 1, 'b': 'x'}, {'a': 1, 'b': 'y'}, {'a': 2, 'b': 'x'}, {'a': 2, 'b': 'y'}]
    """
    keys, lists = _grid_iv(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*lists)]


def _grid_iv(grid):
    if not isinstance(grid, dict):
        raise VanishcalcError(f"sweep: grid must be a dict of lists such as "
                              f"{{'spec': ['tanh', 'relu'], 'q': [0.5, 1.0]}}, got "
                              f"{type(grid).__name__}")
    keys, lists = [], []
    for key, values in grid.items():
        if not isinstance(key, str) or not key.isidentifier():
            raise VanishcalcError(f"sweep: grid key {key!r} is not a keyword argument name")
        if key in RESERVED:
            raise VanishcalcError(f"sweep: grid key {key!r} is reserved for the records' "
                                  f"result; rename the parameter (reserved: {RESERVED})")
        if isinstance(values, (str, bytes, dict)) or not hasattr(values, "__iter__"):
            raise VanishcalcError(f"sweep: grid[{key!r}] must be a list of values, got "
                                  f"{values!r}; for one value write [{values!r}]")
        keys.append(key)
        lists.append(list(values))
    return keys, lists


# ---------------------------------------------------------------- one point, one chunk


class _PointTimeout(BaseException):
    """A point ran past its timeout.  A BaseException, like KeyboardInterrupt, so that code
    catching ``Exception`` inside the point (fallback paths do) cannot swallow it."""


#: The per-point timeout: a timer thread sends this signal to the main thread, whose handler
#: raises (a real signal, so a blocking sleep or wait is interrupted too).  Not SIGALRM and
#: its ITIMER_REAL: in a daemonic process the symbolic rules of vanishcalc.gaussian.symbolic
#: time ``sympy.integrate`` with them and skip the closed form when SIGALRM is taken, so a
#: sweep with a timeout would lose closed forms that the same sweep without one finds.
TIMEOUT_SIGNAL = getattr(signal, "SIGUSR2", None)


def _error_text(exc) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _run_point(fn, point, timeout):
    """The record of one point; with a timeout (main thread) the point is interrupted once
    ``timeout`` seconds have passed (at its next Python bytecode, or in a blocking call)."""
    if timeout is None:
        try:
            return dict(point, value=fn(**point))
        except Exception as exc:      # noqa: BLE001 — recorded, by contract; the sweep goes on
            return dict(point, error=_error_text(exc))
    running = [True]

    def on_timeout(signum, frame):
        if running[0]:
            raise _PointTimeout
    old = signal.signal(TIMEOUT_SIGNAL, on_timeout)
    timer = threading.Timer(timeout, signal.pthread_kill,
                            args=(threading.main_thread().ident, TIMEOUT_SIGNAL))
    timer.daemon = True
    timer.start()
    try:
        try:
            value = fn(**point)
        except _PointTimeout:
            return dict(point, error=f"TimeoutError: the point took longer than the timeout "
                                     f"of {timeout:g} s")
        except Exception as exc:      # noqa: BLE001
            return dict(point, error=_error_text(exc))
        finally:
            running[0] = False        # a signal already on its way now does nothing
            timer.cancel()
    finally:
        signal.signal(TIMEOUT_SIGNAL, old)
    return dict(point, value=value)


def _run_chunk(fn, points, timeout):
    """Records of a chunk of points (the task sent to a worker); the points' own long runs
    show no progress bar of their own (the sweep's bar counts them)."""
    from .progress import quiet
    with quiet():
        return [_run_point(fn, p, timeout) for p in points]


# ---------------------------------------------------------------- executors


def _is_dask_client(executor) -> bool:
    return (type(executor).__module__.split(".")[0] == "distributed"
            and hasattr(executor, "submit") and hasattr(executor, "gather"))


def _timeout_supported_here() -> bool:
    return TIMEOUT_SIGNAL is not None and threading.current_thread() is threading.main_thread()


def _worker_count(executor):
    if _is_dask_client(executor):
        try:
            return max(1, sum(w.get("nthreads", 1)
                              for w in executor.scheduler_info()["workers"].values()))
        except Exception:        # noqa: BLE001 — a hint only; fall back to DEFAULT_CHUNKS
            return None
    n = getattr(executor, "_max_workers", None)       # ThreadPool/ProcessPoolExecutor
    return n if isinstance(n, int) and n > 0 else None


def _sweep_iv(fn, grid, executor, chunk_size, timeout):
    if not callable(fn):
        raise VanishcalcError(f"sweep: fn must be callable (called as fn(**point)), got {fn!r}")
    points = grid_points(grid)
    if executor is not None and not (_is_dask_client(executor)
                                     or isinstance(executor, cf.Executor)):
        raise VanishcalcError(
            f"sweep: executor must be None (serial), a concurrent.futures Executor "
            f"(ProcessPoolExecutor, ThreadPoolExecutor) or a dask.distributed Client, got "
            f"{type(executor).__name__}")
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int)
                                   or chunk_size < 1):
        raise VanishcalcError(f"sweep: chunk_size must be a positive integer, got {chunk_size!r}")
    if timeout is not None:
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or \
                not (0 < timeout < math.inf):
            raise VanishcalcError(f"sweep: timeout must be a positive number of seconds, got "
                                  f"{timeout!r}")
        if TIMEOUT_SIGNAL is None:
            raise VanishcalcError("sweep: timeout needs POSIX signals (SIGUSR2), which this "
                                  "platform lacks; run without timeout")
        if executor is None and not _timeout_supported_here():
            raise VanishcalcError("sweep: timeout works only from the main thread when "
                                  "executor=None (it interrupts the main thread); call sweep "
                                  "from the main thread or pass a ProcessPoolExecutor")
        if executor is not None and not isinstance(executor, cf.ProcessPoolExecutor):
            raise VanishcalcError(
                f"sweep: timeout is supported serially (executor=None) and with a "
                f"ProcessPoolExecutor, whose workers run points in their main thread; "
                f"{type(executor).__name__} runs them in threads, which cannot be "
                f"interrupted — drop timeout or use a ProcessPoolExecutor")
    if isinstance(executor, cf.ProcessPoolExecutor):
        _require_picklable(fn, points)
    return fn, points, None if timeout is None else float(timeout)


def _require_picklable(fn, points):
    try:
        pickle.dumps(fn)
    except Exception as exc:       # noqa: BLE001 — PicklingError, AttributeError, TypeError
        raise VanishcalcError(
            f"sweep: fn = {fn!r} cannot be sent to a ProcessPoolExecutor's workers because it "
            f"cannot be pickled ({_error_text(exc)}); define it at module level (not a lambda "
            f"or a function inside a function), or use functools.partial of such a function"
        ) from None
    for p in points:
        try:
            pickle.dumps(p)
        except Exception as exc:    # noqa: BLE001
            raise VanishcalcError(f"sweep: grid point {p!r} cannot be pickled for a "
                                  f"ProcessPoolExecutor ({_error_text(exc)})") from None


def _chunks(points, chunk_size, executor):
    if chunk_size is None:
        workers = _worker_count(executor)
        n_chunks = DEFAULT_CHUNKS if workers is None else CHUNKS_PER_WORKER * workers
        chunk_size = max(1, math.ceil(len(points) / n_chunks))
    return [points[i:i + chunk_size] for i in range(0, len(points), chunk_size)]


def sweep(fn, grid, executor=None, *, chunk_size=None, timeout=None, progress=None) -> SweepResult:
    """Call ``fn(**point)`` for every point of ``grid`` and record each result or error.

    Parameters
    ----------
    fn : callable
        Any computation taking the grid's keys as keyword arguments, e.g.
        ``lambda spec, q: vanishcalc.gain(spec, q=q)``.  For a ``ProcessPoolExecutor`` it must
        be picklable (a module-level function or a ``functools.partial`` of one).
    grid : dict of str → list
        The sweep covers the product of the lists, in the order of nested loops over the keys
        as written (the last key varies fastest): :func:`grid_points`.
    executor : None, concurrent.futures.Executor or dask.distributed.Client
        None runs the points in this process, one after the other.  An executor receives
        chunks of points (``chunk_size`` each) and the records come back in grid order.
    chunk_size : int, optional
        Points per task; default: the grid split into 4 chunks per worker (32 chunks when the
        executor does not tell its worker count).
    timeout : float, optional
        Seconds each point may take; a point over it gets the record
        ``error = "TimeoutError: ..."`` and the sweep goes on.  Supported serially (main thread)
        and with a ``ProcessPoolExecutor`` (POSIX: a timer thread interrupts the main thread of
        the process running the point); other executors raise.  It interrupts Python code:
        one long compiled call (a Numba kernel) finishes before the timeout is noticed.
    progress : None, bool or callable(done, total)
        A bar over points on stderr (None: when stderr is a terminal; :mod:`vanishcalc.progress`).

    Returns
    -------
    SweepResult
        A list of dicts in grid order: the point's keys plus ``"value"`` (``fn``'s return) or
        ``"error"`` (``"TypeName: message"`` of the exception it raised).  Equal to what a
        serial loop gives; ``.failed`` lists the errors, ``.to_dataframe()`` gives a pandas
        DataFrame.  Values from another process come back through pickle, which rebuilds a
        SymPy closed form in SymPy's canonical form: the same number and the same expression
        mathematically, possibly printed differently (``3*(5*a)/125`` → ``3*a/25``).

    Raises
    ------
    VanishcalcError
        for a grid that is not a dict of lists, an unknown executor, an unpicklable ``fn`` with
        a ``ProcessPoolExecutor``, or a timeout the executor cannot enforce.

    Examples
    --------
    >>> from vanishcalc import gain, sweep
    >>> rows = sweep(lambda spec, convention: float(gain(spec, convention)),
    ...              {"spec": ["relu", "exp(-x**2)"], "convention": ["second_moment"]})
    >>> [(r["spec"], round(r["value"], 6)) for r in rows]
    [('relu', 1.414214), ('exp(-x**2)', 1.495349)]
    >>> sweep(lambda x: 1 / x, {"x": [0, 2]})
    [{'x': 0, 'error': 'ZeroDivisionError: division by zero'}, {'x': 2, 'value': 0.5}]
    """
    from .progress import bar
    fn, points, timeout = _sweep_iv(fn, grid, executor, chunk_size, timeout)
    records = [None] * len(points)
    with bar(len(points), "sweep", progress, unit="point") as meter:
        if executor is None:
            for i, p in enumerate(points):
                records[i] = _run_chunk(fn, [p], timeout)[0]
                meter.update(1)
            return SweepResult(records)
        chunks = _chunks(points, chunk_size, executor)
        starts = list(itertools.accumulate([0] + [len(c) for c in chunks]))
        if _is_dask_client(executor):
            from distributed import as_completed
            futures = [executor.submit(_run_chunk, fn, c, timeout, pure=False) for c in chunks]
        else:
            as_completed = cf.as_completed
            futures = [executor.submit(_run_chunk, fn, c, timeout) for c in chunks]
        index = {f: k for k, f in enumerate(futures)}
        for fut in as_completed(futures):
            k = index[fut]
            chunk = chunks[k]
            try:
                out = fut.result()
            except Exception as exc:   # noqa: BLE001 — the task itself failed (a dead worker)
                out = [dict(p, error=_error_text(exc)) for p in chunk]
            records[starts[k]:starts[k] + len(chunk)] = out
            meter.update(len(chunk))
    return SweepResult(records)
