"""Progress bars for long runs (simulations, phase diagrams, tables, sweeps), on stderr.

One place decides whether a bar is shown: :func:`bar` returns a tqdm bar or a no-op with the
same three methods (``update``, ``close``, context manager), so callers never test for tqdm.

``progress`` arguments across vanishcalc mean:

* ``None`` (default): a bar when stderr is a terminal and tqdm is installed;
* ``False``: never a bar;
* ``True``: a bar whenever tqdm is installed (a notebook, a log file);
* a callable ``progress(done, total)`` (where an API documents it): called instead of a bar.

The bar waits :data:`DELAY_S` seconds before it appears, so short runs print nothing.  tqdm is
optional (``pip install vanishcalc[progress]``); without it every bar is a no-op.  The notice
that the first kernel compilation is under way comes from ``vanishcalc.sim.compile`` and does
not depend on this module.
"""
from __future__ import annotations

import contextlib
import sys
import threading

#: Seconds a run must last before its bar appears (tqdm's ``delay``).
DELAY_S = 1.0


class _NoBar:
    """Stands in for a tqdm bar: accepts the same calls and prints nothing."""

    def update(self, n=1):
        pass

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def _tqdm():
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm


_quiet_depth = 0
_quiet_lock = threading.Lock()


@contextlib.contextmanager
def quiet():
    """Within the block ``progress=None`` shows no bar: a run inside another run's bar (each
    point of a sweep) stays silent instead of stacking bars.  ``True`` still shows one."""
    global _quiet_depth
    with _quiet_lock:
        _quiet_depth += 1
    try:
        yield
    finally:
        with _quiet_lock:
            _quiet_depth -= 1


def progress_iv(progress, where="progress"):
    """``progress`` itself if it is None, a bool or a callable(done, total); else a clear
    error (a string such as "yes" must not silently mean True)."""
    if progress is not None and not isinstance(progress, bool) and not callable(progress):
        from .errors import VanishcalcError
        raise VanishcalcError(f"{where}: progress must be None (a bar on a terminal), True, "
                              f"False or a callable progress(done, total), got {progress!r}")
    return progress


def wanted(progress) -> bool:
    """Whether ``progress`` (None, True or False) asks for a bar here and now."""
    if progress is None:
        if _quiet_depth:
            return False
        stream = sys.stderr
        try:
            tty = stream is not None and stream.isatty()
        except (AttributeError, ValueError):      # a closed or replaced stderr
            tty = False
        return tty and _tqdm() is not None
    return bool(progress) and _tqdm() is not None


def bar(total, desc, progress=None, unit="it"):
    """A progress bar over ``total`` steps labelled ``desc``, or a no-op (see the module doc).

    >>> with bar(3, "demo", progress=False) as b:
    ...     b.update(3)
    """
    if callable(progress_iv(progress, desc)) and not isinstance(progress, bool):
        return _CallbackBar(progress, total)
    if not wanted(progress):
        return _NoBar()
    return _tqdm()(total=total, desc=desc, unit=unit, file=sys.stderr, delay=DELAY_S,
                   leave=False, dynamic_ncols=True)


class _CallbackBar(_NoBar):
    """A bar that reports ``callback(done, total)`` after each update."""

    def __init__(self, callback, total):
        self.callback, self.total, self.done = callback, total, 0

    def update(self, n=1):
        self.done += n
        self.callback(self.done, self.total)


def layer_callback(progress, desc, unit="layer"):
    """(callback, close) for APIs that report ``callback(done, total)`` themselves (the CPU
    simulation reports layers done): the user's callable, a bar's updater, or (None, no-op)
    when no bar is wanted — then the API runs exactly as without progress."""
    if callable(progress_iv(progress, desc)) and not isinstance(progress, bool):
        return progress, lambda: None
    if not wanted(progress):
        return None, lambda: None
    state = {"bar": None, "done": 0}

    def callback(done, total):
        if state["bar"] is None:
            state["bar"] = bar(total, desc, True, unit=unit)
        state["bar"].update(done - state["done"])
        state["done"] = done

    def close():
        if state["bar"] is not None:
            state["bar"].close()
    return callback, close
