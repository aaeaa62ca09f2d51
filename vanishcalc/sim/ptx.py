"""Every CUDA kernel of vanishcalc as PTX for a chosen GPU, on a machine without one.

:func:`compile_ptx` types and compiles each kernel (the dense-net kernels of ``sim/cuda/dense.py``,
the composed-stack kernel — every op of ``sim/program.py``, the RBF distance units included —
and the RNN kernel of ``sim/cuda/composed.py``, the normalized-RNN kernel of
``sim/cuda/rnn_norm.py``) for one φ, one float type and
one compute capability through NVIDIA's NVVM, which ``pip install "vanishcalc[ptx]"`` brings
(``nvidia-nvvm``); no driver is needed.  :func:`assemble` runs ``ptxas`` (from
``nvidia-cuda-nvcc``) on the result and reports registers, spills and shared memory, so a
test can check that every launch fits the hardware (``tests/sim/test_ptx.py``).
See ``notes/cuda.md`` ("PTX in CI").
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
import types
from dataclasses import dataclass
from pathlib import Path

from ..activation import activation
from ..errors import VanishcalcError
from . import cuda as vcuda
from .cuda import composed as cuda_composed
from .cuda import rnn_norm as cuda_rnn_norm

@contextlib.contextmanager
def _target_compute_capability(cc):
    """Make numba-cuda compile device functions for ``cc`` while no GPU is present.

    Why a patch: ``numba.cuda.compile_ptx`` takes ``cc`` for the kernel, but every device
    function a kernel calls (our φ, φ', the RNG, the reductions — ``cuda.jit(device=True)``,
    ``numba.cuda.random``, ``register_jitable`` and ``@overload`` alike) is typed through
    ``CUDADispatcher.compile_device``, which reads the compute capability from
    ``get_current_device()`` with no way to pass it (numba-cuda 0.30.4, ``dispatcher.py``),
    i.e. from the driver.  Without a GPU that raises ``CudaSupportError``.  The only ways
    around are kernels that call no function at all, or a copy of ``compile_device``; so,
    for the duration of one compilation and under numba's compiler lock (no other thread
    compiles meanwhile), the name ``get_current_device`` in ``numba.cuda.dispatcher`` answers
    a stand-in device of capability ``cc``.  The device functions compiled meanwhile are
    fresh ones (``cuda.device_functions``, ``cuda.rng_device_functions``) that no running
    kernel shares, so nothing compiled for the stand-in is reused for a real GPU.
    """
    from numba.cuda import dispatcher
    from numba.cuda.core.compiler_lock import global_compiler_lock
    stand_in = types.SimpleNamespace(compute_capability=tuple(cc))
    with global_compiler_lock:
        saved = dispatcher.get_current_device
        dispatcher.get_current_device = lambda: stand_in
        try:
            yield
        finally:
            dispatcher.get_current_device = saved


def kernel_functions(act, dtype="float64") -> dict:
    """``{name: (python function, signature, most threads per block at launch)}``, every
    kernel for φ = ``act`` in ``dtype`` (composed-stack and RNN kernels only for float64;
    the per-layer reduction kernels, which read float64 sums for every φ and dtype, with
    each)."""
    funcs = dict(vcuda.kernel_functions(act, dtype))
    funcs.update(vcuda.summary_kernel_functions())
    if dtype == "float64":
        funcs.update(cuda_composed.kernel_functions(act))
        funcs.update(cuda_rnn_norm.kernel_functions(act))
    return funcs


def compile_ptx(act, dtype="float64", cc=(9, 0), names=None) -> dict:
    """PTX of every CUDA kernel for φ = ``act``, float type ``dtype``, compute capability ``cc``.

    Works without a GPU or driver (NVVM comes from the ``nvidia-nvvm`` wheel of the ``ptx``
    extra).  Fails like a real compilation would: on any typing or NVVM error.

    Parameters
    ----------
    act : Activation or str
        φ, anything :func:`vanishcalc.activation.activation` accepts.
    dtype : {"float64", "float32"}
        The dense-net kernels' float type; the composed-stack and RNN kernels (float64 only)
        are included for ``"float64"``.
    cc : tuple of int
        Compute capability, e.g. ``(9, 0)`` (H100/H200) or ``(8, 0)`` (A100).
    names : iterable of str, optional
        Only these kernels (default: all, see :func:`kernel_functions`).

    Returns
    -------
    dict
        ``{kernel name: PTX text}``.

    Raises
    ------
    VanishcalcError
        under ``NUMBA_ENABLE_CUDASIM=1`` (the simulator compiles nothing), a bad dtype or
        kernel name, or numba-cuda unusable (``CudaUnavailableError``).

    Examples
    --------
    >>> ptx = compile_ptx("tanh", "float32", cc=(9, 0))      # doctest: +SKIP
    >>> sorted(ptx)                                          # doctest: +SKIP
    ['dense']
    """
    if vcuda.simulator_enabled():
        raise VanishcalcError("compile_ptx: NUMBA_ENABLE_CUDASIM=1 is set, and the CUDA simulator "
                              "compiles nothing; run without it (no GPU is needed)")
    if dtype not in ("float32", "float64"):
        raise VanishcalcError(f"compile_ptx: dtype must be 'float32' or 'float64', got {dtype!r}")
    cc = tuple(int(x) for x in cc)
    act = activation(act)
    cu = vcuda.import_cuda()
    vcuda.check_numba_cuda()
    with _target_compute_capability(cc):
        funcs = kernel_functions(act, dtype)
        wanted = list(funcs) if names is None else list(names)
        unknown = [n for n in wanted if n not in funcs]
        if unknown:
            raise VanishcalcError(f"compile_ptx: unknown kernel(s) {unknown}; known for {dtype}: "
                                  f"{sorted(funcs)}")
        out = {}
        for name in wanted:
            key = (name, cc)
            if key in _PHI_FREE_PTX:
                out[name] = _PHI_FREE_PTX[key]
                continue
            fn, sig, _ = funcs[name]
            ptx, _ = cu.compile_ptx(fn, sig.args, cc=cc)
            out[name] = ptx
            if name in vcuda.SUMMARY_KERNELS:
                _PHI_FREE_PTX[key] = ptx
    return out


#: PTX of the kernels that close over no φ and no dtype (``cuda.SUMMARY_KERNELS``), per
#: (name, cc): the same text for every φ, so compiled once per process.
_PHI_FREE_PTX: dict = {}


# ---------------------------------------------------------------- ptxas


@dataclass(frozen=True)
class PtxasReport:
    """ptxas's resource report of one kernel (entry function) for one target."""

    registers: int          #: registers per thread
    shared_bytes: int       #: static shared memory per block
    spill_stores: int       #: bytes spilled to local memory (over the entry and its callees)
    spill_loads: int
    stack_bytes: int        #: stack frame of the entry
    log: str                #: ptxas's whole -v output


def find_ptxas() -> str | None:
    """Path of ``ptxas``: ``$PTXAS``, else the ``nvidia-cuda-nvcc`` wheel's copy, else the PATH.

    The wheel's first: it is the toolkit release of the ``nvidia-nvvm`` wheel that wrote the
    PTX, and an older ptxas rejects a newer PTX ``.version``.
    """
    env = os.environ.get("PTXAS")
    if env:
        return env
    try:
        import nvidia
        roots = list(getattr(nvidia, "__path__", []))
    except ImportError:
        roots = []
    for root in roots:
        for cand in sorted(Path(root).glob("*/bin/ptxas")) + sorted(Path(root).glob("bin/ptxas")):
            if os.access(cand, os.X_OK):
                return str(cand)
    return shutil.which("ptxas")


_USED = re.compile(r"Used (\d+) registers(?:.*?(\d+) bytes smem)?")
_SPILL = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")


def assemble(ptx: str, cc=(9, 0), ptxas: str | None = None) -> PtxasReport:
    """Assemble ``ptx`` (one kernel) with ``ptxas -arch=sm_XY -v``; its resource report.

    Raises
    ------
    VanishcalcError
        no ptxas (install the ``ptx`` extra), or ptxas rejected the PTX.
    """
    exe = ptxas or find_ptxas()
    if exe is None:
        raise VanishcalcError("assemble: ptxas not found; pip install 'vanishcalc[ptx]' (it brings "
                              "nvidia-cuda-nvcc) or put CUDA's ptxas on PATH")
    arch = f"sm_{int(cc[0])}{int(cc[1])}"
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "k.ptx"
        src.write_text(ptx)
        proc = subprocess.run([exe, f"-arch={arch}", "-v", str(src), "-o", str(Path(tmp) / "k.o")],
                              capture_output=True, text=True, timeout=300)
    log = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise VanishcalcError(f"ptxas -arch={arch} rejected the PTX:\n{log[-4000:]}")
    entry = log.split("Compiling entry function", 1)[-1]
    used = _USED.search(entry)
    if used is None:
        raise VanishcalcError(f"cannot read ptxas's report:\n{log[-2000:]}")
    spills = [tuple(int(x) for x in m) for m in _SPILL.findall(log)]
    stack = _SPILL.search(entry)
    return PtxasReport(registers=int(used.group(1)), shared_bytes=int(used.group(2) or 0),
                       spill_stores=sum(s[1] for s in spills), spill_loads=sum(s[2] for s in spills),
                       stack_bytes=int(stack.group(1)) if stack else 0, log=log)


__all__ = ["compile_ptx", "assemble", "find_ptxas", "kernel_functions",
           "PtxasReport"]
