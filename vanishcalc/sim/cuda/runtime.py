"""The CUDA backend's runtime: ``numba.cuda`` on demand, availability, compilation, launches.

The only place vanishcalc imports ``numba.cuda``; it does so lazily, inside functions, so
importing ``vanishcalc.sim.cuda`` never needs numba-cuda or a GPU.  Shared by the dense-net
kernel (``dense.py``) and the op-program / RNN kernels (``composed.py``): one availability
rule, one device-function builder for φ, one compiler with its on-disk cache and notice, one
simulator patch.
"""
from __future__ import annotations

import math
import os
import sys
import threading
import warnings
import contextlib

import numpy as np

from ...errors import VanishcalcError, VanishcalcWarning
from ..limits import simulator_enabled

# ``numba.cuda``, bound by :func:`import_cuda` on first use.  A module global on purpose: the
# CUDA simulator swaps module globals that are ``numba.cuda`` for its fake per-launch module,
# so kernels must reach ``cuda.threadIdx`` etc. through a global, never through a closure.
cuda = None


class CudaUnavailableError(VanishcalcError):
    """``backend="cuda"`` was asked for, but neither a GPU nor the CUDA simulator is usable."""


# ---------------------------------------------------------------- availability


def import_cuda():
    """``numba.cuda``, or raise :class:`CudaUnavailableError` saying how to get it."""
    global cuda
    if cuda is not None:
        return cuda
    try:
        from numba import cuda as numba_cuda
    except ImportError as exc:   # numba-cuda not installed (numba ≥ 0.61 ships no CUDA target)
        raise CudaUnavailableError(
            "backend='cuda' needs numba-cuda: pip install 'vanishcalc[cuda]' (or numba-cuda); "
            "without a GPU, also set NUMBA_ENABLE_CUDASIM=1 before Python starts to run the "
            f"kernels in the (slow) CUDA simulator ({exc})") from exc
    cuda = numba_cuda
    return cuda


def _load_cuda_typing():
    """Import numba-cuda's array typing, which its first kernel compilation imports anyway.

    numba-cuda 0.30.4 registers ``np.row_stack`` there; numpy 2.5 removed it, so with that pair
    the import raises ``AttributeError`` — at the first compilation, after
    ``cuda.is_available()`` said yes.  Importing it here turns that into a clear error early.
    """
    import importlib
    importlib.import_module("numba.cuda.np.arrayobj")


def check_numba_cuda():
    """Raise :class:`CudaUnavailableError` if numba-cuda cannot compile with this numpy.

    Needed only for real compilation (a GPU or :func:`vanishcalc.sim.ptx.compile_ptx`): the
    simulator does not type kernels.  The message names both versions and the two fixes.
    """
    import_cuda()
    try:
        _load_cuda_typing()
    except AttributeError as exc:
        if "numpy" not in str(exc):
            raise
        try:
            from importlib.metadata import version
            ncuda = version("numba-cuda")
        except Exception:   # pragma: no cover - metadata missing
            ncuda = "(unknown version)"
        raise CudaUnavailableError(
            f"numba-cuda {ncuda} does not work with numpy {np.__version__}: compiling a CUDA "
            f"kernel fails with {exc!s} (numpy 2.5 removed it). Install numpy<2.5 "
            "(pip install 'numpy<2.5') or a newer numba-cuda that supports numpy "
            f"{np.__version__}; or use backend='cpu'.") from exc


def cuda_available() -> bool:
    """True when a real CUDA GPU is usable through numba-cuda.

    The simulator does not count: ``backend="auto"`` must not pick a backend that is
    thousands of times slower than the CPU one.  :func:`run_dense` accepts the simulator too.
    A GPU with a numba-cuda that cannot compile under this numpy (:func:`check_numba_cuda`)
    does not count either: ``backend="auto"`` then warns, naming the fix, and uses the CPU.
    """
    if simulator_enabled():
        return False
    try:
        if not import_cuda().is_available():
            return False
    except Exception:   # a broken driver install must not break backend="auto"
        return False
    try:
        check_numba_cuda()
    except CudaUnavailableError as exc:
        warnings.warn(f"{exc} backend='auto' uses the CPU.", VanishcalcWarning, stacklevel=2)
        return False
    return True


def _patch_simulator_shared_arrays():
    """Make the CUDA simulator's ``cuda.shared.array`` allocation thread-safe (idempotent).

    numba-cuda's simulator (``simulator/kernelapi.py``, ``FakeCUDAShared.array``, checked in
    numba-cuda 0.30) finds a block's shared array by call site with an unlocked
    check-then-insert: a simulated thread preempted between the two gets a private array,
    and the block silently computes with torn shared memory (we saw irreproducible results
    for a fixed seed).  Same lookup, under a lock.  Only ever applied in simulator mode.
    """
    import sys
    import traceback

    from numba.cuda.simulator import kernelapi
    cls = kernelapi.FakeCUDAShared
    if getattr(cls, "_vanishcalc_locked", False):
        return
    original = cls.array
    lock = threading.Lock()

    def array(self, shape, dtype, alignment=None):
        if alignment is not None or shape == 0:      # errors and dynamic memory: unchanged
            return original(self, shape, dtype, alignment)
        from numba.core import types
        from numba.np import numpy_support
        if isinstance(dtype, types.Type):
            dtype = numpy_support.as_dtype(dtype)
        caller = tuple(traceback.extract_stack(sys._getframe(1), limit=1)[-1][0:2])
        with lock:
            res = self._allocations.get(caller)
            if res is None:
                res = np.empty(shape, dtype)
                self._allocations[caller] = res
        return res

    cls.array = array
    cls._vanishcalc_locked = True


#: The name ``sim/api.py`` asks for when ``backend="auto"``.
is_available = cuda_available


def require_device():
    """``numba.cuda`` ready to launch (a GPU, or the simulator), else a clear error."""
    import_cuda()
    if simulator_enabled():
        _patch_simulator_shared_arrays()
        return cuda
    check_numba_cuda()
    try:
        ok = cuda.is_available()
    except Exception:   # pragma: no cover - driver errors
        ok = False
    if not ok:
        raise CudaUnavailableError(
            "backend='cuda' found no usable CUDA GPU. Install the 'cuda' extra "
            "(pip install 'vanishcalc[cuda]') on a machine with an NVIDIA GPU and driver, or set "
            "NUMBA_ENABLE_CUDASIM=1 in the environment before Python starts to run the kernels "
            "in numba's CUDA simulator (slow: tiny sizes only), or use backend='cpu'.")
    return cuda


# ---------------------------------------------------------------- compilation


def device_functions(act):
    """φ and φ' as ``cuda.jit(device=True)`` functions, built from ``source.python_source``.

    Fresh dispatchers on every call: a device function caches its compiled code per argument
    types only (not per compute capability), so :func:`vanishcalc.sim.ptx.compile_ptx` builds
    its own for each target instead of reusing the ones the running kernels use.
    """
    from ..source import python_source
    ns = {"math": math}
    exec(compile(python_source(act), f"<vanishcalc cuda {act.name}>", "exec"), ns)
    phi = cuda.jit(device=True)(ns["phi"])
    dphi = cuda.jit(device=True)(ns["dphi"])
    return phi, dphi


def compile_kernels(funcs: dict, act, dtype: str, seconds: int) -> dict:
    """``{name: kernel}``: each ``(function, signature, _)`` of ``funcs`` compiled for this GPU.

    ``act`` is the φ the kernels close over, or None for kernels without one (the reduction
    kernels of ``summary.py``).

    Compiled once per machine: numba-cuda's on-disk cache (``cache=True``) keys each kernel by
    its bytecode and its closure (φ, φ' and the helper device functions, pickled by value:
    a different φ or dtype is a different entry), the signature, the compute capability and
    the numba-cuda version; a second process loads the machine code instead of compiling.
    If the cache cannot be used (unwritable, unpicklable), the kernel is compiled in memory
    with a warning.  One line on stderr announces a compilation the first time this
    (φ, dtype, GPU, versions) is met on this machine (a marker file under
    ``compile.cache_dir()``: numba does not say beforehand whether its cache will hit).
    Under the simulator nothing is compiled or cached.
    """
    if simulator_enabled():
        return {name: cuda.jit(sig)(fn) for name, (fn, sig, _) in funcs.items()}
    marker = _compile_marker(act, dtype, sorted(funcs))
    if marker is None or not marker.exists():
        what = (f"{act.name} ({dtype})" if act is not None else
                f"the per-layer reduction ({', '.join(sorted(funcs))})")
        print(f"vanishcalc: compiling CUDA kernels for {what}: first use, "
              f"~{seconds} s", file=sys.stderr, flush=True)
    out = {}
    for name, (fn, sig, _) in funcs.items():
        try:
            out[name] = cuda.jit(sig, cache=True)(fn)
        except Exception as exc:   # cache I/O or pickling; a compile error re-raises below
            out[name] = cuda.jit(sig)(fn)
            warnings.warn(f"the on-disk cache of the CUDA kernel {name!r} is unusable "
                          f"({type(exc).__name__}: {exc}); compiled it in memory",
                          VanishcalcWarning, stacklevel=3)
    if marker is not None:
        try:
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()
        except OSError:
            pass
    return out


class KernelCache:
    """Compiled kernels by key (φ, dtype, simulator or not), each built once per process:
    the first caller builds under the lock, later ones get the same dict."""

    def __init__(self):
        self._lock = threading.Lock()
        self._built: dict = {}

    def get(self, key, build):
        """The kernels stored under ``key``, built by ``build()`` on first use."""
        with self._lock:
            k = self._built.get(key)
            if k is None:
                k = self._built[key] = build()
        return k

    def clear(self):
        with self._lock:
            self._built.clear()

    def __len__(self):
        return len(self._built)


def _compile_marker(act, dtype, names):
    """The marker file for (φ, dtype, kernels, GPU, versions, kernel sources), or None."""
    import hashlib
    from importlib.metadata import version

    from ..compile import cache_dir
    from ..source import python_source
    try:
        cc = cuda.get_current_device().compute_capability
        parts = [python_source(act) if act is not None else "", dtype, ",".join(names),
                 repr(tuple(cc)),
                 version("numba-cuda")]
        here = os.path.dirname(__file__)
        for mod in sorted(f for f in os.listdir(here) if f.endswith(".py")):
            with open(os.path.join(here, mod), "rb") as fh:
                parts.append(hashlib.sha256(fh.read()).hexdigest())
    except Exception:   # no device answer or no metadata: always announce
        return None
    digest = hashlib.sha256("\0".join(parts).encode()).hexdigest()[:24]
    return cache_dir() / "cuda-compiled" / digest


def next_pow2(n: int) -> int:
    return 1 << (max(int(n), 1) - 1).bit_length()


@contextlib.contextmanager
def quiet_simulator():
    """In the simulator, numba's RNG is plain Python on uint64 scalars, and kernel arithmetic
    is numpy scalar arithmetic: silence its wraparound, overflow and NaN RuntimeWarnings (a
    GPU computes the same IEEE values silently) and object-mode NumbaWarnings (on a GPU
    nothing is filtered)."""
    with warnings.catch_warnings():
        if simulator_enabled():
            for message in ("overflow encountered", "invalid value encountered",
                            "divide by zero encountered"):
                warnings.filterwarnings("ignore", category=RuntimeWarning, message=message)
            from numba.core.errors import NumbaWarning
            warnings.filterwarnings("ignore", category=NumbaWarning)
        yield


__all__ = ["CudaUnavailableError", "import_cuda", "check_numba_cuda", "cuda_available",
           "is_available", "simulator_enabled", "require_device", "device_functions",
           "compile_kernels", "next_pow2", "quiet_simulator"]
