"""CPU compilation of φ and running the CPU kernels safely.

* :func:`cpu_cfuncs` / :func:`cpu_functions`: φ, φ' (printed once by
  :func:`vanishcalc.sim.source.python_source`) compiled by ``numba`` from a generated module
  file under :func:`cache_dir`, so numba's on-disk cache keeps them across processes;
* :data:`FASTMATH`: the CPU kernels' fastmath flags (no nnan/ninf);
* the threading layer (fork-safe), the kernel lock, the first-compilation notice and the
  repair of a corrupted Numba cache (:func:`run_guarded`).

``python_source``, ``dphi_max`` and ``saturation_reference`` are re-exported from
``sim/source.py`` (their import path before the split).  See ``notes/simulation.md``.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import sys
from pathlib import Path

from ..activation import Activation, activation
from .source import dphi_max, python_source, saturation_reference  # noqa: F401 - re-exported


# ---------------------------------------------------------------- compiled CPU functions

def cache_dir() -> Path:
    """Directory of generated sources (and numba's on-disk cache next to them).

    ``$VANISHCALC_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/vanishcalc`` or
    ``~/.cache/vanishcalc``.
    """
    env = os.environ.get("VANISHCALC_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "vanishcalc"


def source_module(act):
    """Import the generated source of ``act`` as a module from a file keyed by its hash.

    A real file lets numba's ``cache=True`` persist compiled code across processes.  If the
    cache directory is not writable the module is built in memory (no disk cache).
    """
    act = activation(act)
    src = python_source(act)
    digest = hashlib.sha256(src.encode()).hexdigest()[:20]
    modname = f"_vanishcalc_act_{digest}"
    if modname in sys.modules:
        return sys.modules[modname]
    path = None
    try:
        d = cache_dir() / "activations"
        d.mkdir(parents=True, exist_ok=True)
        path = d / f"{modname}.py"
        if not path.exists() or path.read_text() != src:
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(src)
            os.replace(tmp, path)
    except OSError:
        path = None
    if path is not None:
        spec = importlib.util.spec_from_file_location(modname, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    else:
        import types
        module = types.ModuleType(modname)
        exec(compile(src, f"<vanishcalc {act.name}>", "exec"), module.__dict__)
    sys.modules[modname] = module
    return module


# Fastmath without nnan/ninf: NaN and overflow must stay visible.
FASTMATH = {"nsz", "arcp", "contract", "reassoc"}


@functools.lru_cache(maxsize=256)
def _cpu_functions_for_key(key: str, act: Activation):
    import numba
    module = source_module(act)
    path_backed = getattr(module, "__file__", None) is not None
    phi = numba.njit(cache=path_backed, fastmath=FASTMATH)(module.phi)
    dphi = numba.njit(cache=path_backed, fastmath=FASTMATH)(module.dphi)
    return phi, dphi


@functools.lru_cache(maxsize=256)
def _cpu_cfuncs_for_key(key: str, act: Activation):
    import numba
    from numba.core.caching import FunctionCache
    module = source_module(act)
    path_backed = getattr(module, "__file__", None) is not None
    sig = "float64(float64)"

    def build():
        phi = numba.cfunc(sig, cache=path_backed, fastmath=FASTMATH)(module.phi)
        dphi = numba.cfunc(sig, cache=path_backed, fastmath=FASTMATH)(module.dphi)
        return phi, dphi
    with KERNEL_LOCK, compile_notice(act.name):
        try:
            return build()
        except Exception:
            if not path_backed:
                raise
            removed = purge_corrupted_caches([FunctionCache(module.phi),
                                              FunctionCache(module.dphi)])
            if not removed:
                raise
            _repaired(removed)
            return build()


def cpu_cfuncs(act):
    """``(phi, dphi)`` as ``numba.cfunc`` objects of type ``float64(float64)``.

    The CPU kernels take φ, φ' as first-class functions of this one type, so each kernel
    is compiled (and cached on disk) once for every activation; only these two small
    functions are compiled per activation.
    """
    act = activation(act)
    python_source(act)
    return _cpu_cfuncs_for_key(act.key, act)


def cpu_functions(act):
    """``(phi, dphi)`` as ``numba.njit`` dispatchers, cached per ``act.key`` (and on disk).

    Examples
    --------
    >>> phi, dphi = cpu_functions("tanh")
    >>> round(dphi(0.0), 12)
    1.0
    """
    act = activation(act)
    python_source(act)   # raises on Dirac masses
    return _cpu_functions_for_key(act.key, act)


# ---------------------------------------------------------------- running CPU kernels safely
#
# Three process-level hazards of Numba's CPU target, handled here once for every kernel:
#
# * fork: with GNU OpenMP as the threading layer, a child forked after a parallel kernel ran
#   dies ("fork() called from a process already using GNU OpenMP").  configure_threading()
#   asks for Numba's 'forksafe' layers (tbb, Intel OpenMP or workqueue — never GNU OpenMP)
#   unless the user chose one (NUMBA_THREADING_LAYER).  workqueue is not thread-safe, so
#   every kernel launch holds KERNEL_LOCK (re-created in a forked child).
# * a corrupted on-disk cache (random bytes in a .nbi, a truncated .nbc) made every later
#   call fail with UnpicklingError/EOFError until deleted by hand: run_guarded() checks our
#   functions' cache files when a launch fails, deletes the corrupted ones, says so, and
#   compiles again.
# * compilation takes 10–30 s on first use: run_guarded() prints one line on stderr when
#   Numba actually compiles (never when it loads from the cache).

import contextlib  # noqa: E402
import threading  # noqa: E402
import warnings  # noqa: E402

KERNEL_LOCK = threading.RLock()


def _new_lock_in_child():
    global KERNEL_LOCK
    KERNEL_LOCK = threading.RLock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_lock_in_child)


def configure_threading() -> str:
    """Choose a fork-safe Numba threading layer before the first parallel launch.

    Returns the configured layer name (``"forksafe"``, or the user's choice).  Has no effect
    once a parallel kernel has run in this process (Numba fixes its layer then).
    """
    import numba
    if os.environ.get("NUMBA_THREADING_LAYER") or numba.config.THREADING_LAYER != "default":
        return numba.config.THREADING_LAYER
    numba.config.THREADING_LAYER = "forksafe"
    return "forksafe"


COMPILE_SECONDS = "10–30 s"


@functools.lru_cache(maxsize=1)
def _notice_class():
    from numba.core import event as ev

    class CompileNotice(ev.Listener):
        """Prints one stderr line when Numba starts compiling (not when loading a cache)."""

        def __init__(self, label):
            self.label = label
            self.said = False

        def on_start(self, event):
            if not self.said:
                self.said = True
                print(f"vanishcalc: compiling simulation kernels for {self.label}, first use, "
                      f"~{COMPILE_SECONDS} (cached on disk afterwards)", file=sys.stderr,
                      flush=True)

        def on_end(self, event):
            pass
    return CompileNotice


@contextlib.contextmanager
def compile_notice(label):
    """Within the block, the first real Numba compilation prints a line on stderr.

    Loading from the on-disk cache runs no compiler pass, so it stays silent.
    """
    from numba.core import event as ev
    if getattr(_NOTICE, "active", False):      # an outer block announces (one line per call)
        yield None
        return
    notice = _notice_class()(label)
    _NOTICE.active = True
    try:
        with contextlib.ExitStack() as stack:
            for kind in ("numba:compile", "numba:run_pass"):
                stack.enter_context(ev.install_listener(kind, notice))
            yield notice
    finally:
        _NOTICE.active = False


_NOTICE = threading.local()


def _cache_files(cache):
    """(index path, data paths, corrupted?) of one Numba function cache."""
    import glob
    cf = getattr(cache, "_cache_file", None)
    if cf is None:
        return None
    index = cf._index_path
    data = glob.glob(os.path.join(glob.escape(cf._cache_path),
                                  glob.escape(cf._data_name_pattern.split("{")[0]) + "*.nbc"))
    try:
        overloads = cf._load_index()
    except FileNotFoundError:
        return index, data, False
    except Exception:                  # noqa: BLE001 - any unpickling failure is corruption
        return index, data, True
    for name in overloads.values():
        try:
            cf._load_data(name)
        except FileNotFoundError:
            continue
        except Exception:              # noqa: BLE001
            return index, data, True
    return index, data, False


def purge_corrupted_caches(caches) -> list:
    """Delete the files of every corrupted cache among ``caches``; return the paths removed."""
    removed = []
    for cache in caches:
        found = _cache_files(cache)
        if found is None or not found[2]:
            continue
        for path in [found[0], *found[1]]:
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
                removed.append(path)
    return removed


def _module_caches(module_names):
    """The on-disk caches of the Numba functions defined in the named modules."""
    out = []
    for name in module_names:
        module = sys.modules.get(name)
        for obj in vars(module).values() if module is not None else ():
            cache = getattr(obj, "_cache", None)
            if getattr(cache, "_cache_file", None) is not None:
                out.append(cache)
    return out


def _repaired(removed):
    warnings.warn(f"vanishcalc: discarded {len(removed)} corrupted Numba cache file(s) "
                  f"(e.g. {removed[0]}) and compiled again", VanishcalcWarning, stacklevel=4)


def run_guarded(label, call, modules=("vanishcalc.sim.cpu.rng", "vanishcalc.sim.cpu.dense",
                                      "vanishcalc.sim.cpu.composed")):
    """``call()`` holding KERNEL_LOCK, announcing compilation, repairing a corrupted cache.

    ``call`` must allocate its own arrays (it is run again after a repair).
    """
    with KERNEL_LOCK, compile_notice(label):
        try:
            return call()
        except Exception:
            removed = purge_corrupted_caches(_module_caches(modules))
            if not removed:
                raise
            _repaired(removed)
            return call()


from ..errors import VanishcalcWarning  # noqa: E402
