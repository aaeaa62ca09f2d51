"""Every CUDA kernel compiles to PTX for the real GPUs and assembles within hardware limits.

No GPU is needed: ``vanishcalc.sim.ptx.compile_ptx`` types and compiles each kernel through
NVIDIA's NVVM (``nvidia-nvvm`` wheel) for sm_90 (H100/H200) and sm_80 (A100), and ``ptxas``
(``nvidia-cuda-nvcc`` wheel) assembles the PTX.  A typing error (a φ the CUDA target cannot
type, a float64 constant in a float32 kernel that no longer unifies), an NVVM error, a
register spill, or a launch that cannot start (registers × threads per block > 65,536, static
shared memory > 48 KiB at the threads per block the host driver uses) fails here, in CI,
instead of on the first GPU a user has.

Skipped, with the reason, only where the ``ptx`` extra is absent (``pip install -e ".[ptx]"``).
The fast subset covers both dtypes, both targets, a smooth, a kinked and a user φ; the sweep
over the zoo and user expressions is marked slow.  Compiled PTX is cached per process.
"""
from __future__ import annotations

import functools
import os

import pytest

from vanishcalc.sim import cuda as vcuda

pytestmark = pytest.mark.cuda

#: Per-SM register file (sm_80, sm_90): registers × threads of one block must fit.
REGISTERS_PER_BLOCK = 65536
#: Static shared memory a kernel may declare without an opt-in launch attribute.
SHARED_BYTES = 48 * 1024
TARGETS = ((9, 0), (8, 0))


def _missing_extra() -> str | None:
    """Why the PTX tests cannot run here, or None."""
    if os.environ.get("NUMBA_ENABLE_CUDASIM"):
        return "NUMBA_ENABLE_CUDASIM is set: the simulator compiles nothing"
    try:
        vcuda.import_cuda()
        vcuda.check_numba_cuda()
    except Exception as exc:                    # numba-cuda absent or unusable
        return f"the 'ptx' extra is needed (numba-cuda unusable: {exc})"
    try:
        from numba.cuda.cudadrv.nvvm import NVVM
        NVVM()
    except Exception as exc:
        return (f"the 'ptx' extra is needed: NVVM not found ({type(exc).__name__}); "
                "pip install -e '.[ptx]'")
    from vanishcalc.sim.ptx import find_ptxas
    if find_ptxas() is None:
        return ("the 'ptx' extra is needed: ptxas not found; pip install -e '.[ptx]' "
                "(nvidia-cuda-nvcc)")
    return None


@pytest.fixture(scope="module", autouse=True)
def _require_extra():
    why = _missing_extra()
    if why:
        pytest.skip(why)


@functools.lru_cache(maxsize=None)
def _ptx(spec, dtype, cc):
    from vanishcalc.sim.ptx import compile_ptx
    return compile_ptx(spec, dtype, cc=cc)


@functools.lru_cache(maxsize=None)
def _assembled(spec, dtype, cc):
    from vanishcalc.sim.ptx import assemble
    return {name: assemble(text, cc) for name, text in _ptx(spec, dtype, cc).items()}


def _check(spec, dtype, cc):
    from vanishcalc.sim.ptx import kernel_functions
    expected = set(kernel_functions(spec, dtype))
    ptx = _ptx(spec, dtype, cc)
    assert set(ptx) == expected
    arch = f".target sm_{cc[0]}{cc[1]}"
    for name, text in ptx.items():
        assert arch in text, f"{name}: PTX not for {arch}"
        assert ".entry" in text, f"{name}: no kernel entry in the PTX"
    threads = {name: t for name, (_, _, t) in kernel_functions(spec, dtype).items()}
    for name, rep in _assembled(spec, dtype, cc).items():
        where = f"{name} ({spec}, {dtype}, sm_{cc[0]}{cc[1]})"
        assert rep.spill_stores == 0 and rep.spill_loads == 0, (
            f"{where}: {rep.spill_stores} bytes spill stores, {rep.spill_loads} loads\n{rep.log}")
        assert rep.registers * threads[name] <= REGISTERS_PER_BLOCK, (
            f"{where}: {rep.registers} registers × {threads[name]} threads per block > "
            f"{REGISTERS_PER_BLOCK}: the launch would fail")
        assert rep.shared_bytes <= SHARED_BYTES, (
            f"{where}: {rep.shared_bytes} bytes static shared memory > {SHARED_BYTES}")


# Fast: both dtypes and both targets, a smooth (tanh), a kinked (relu) and a user expression
# with erf and a fractional power of |x|.
@pytest.mark.parametrize("spec, dtype, cc", [
    ("tanh", "float32", (9, 0)),
    ("relu", "float64", (9, 0)),
    ("x*erf(x) + abs(x)**0.5", "float32", (8, 0)),
])
def test_every_kernel_compiles_and_fits(spec, dtype, cc):
    _check(spec, dtype, cc)


# More of the zoo and user expressions, each compiled once (targets and dtypes rotate), so the
# sweep stays within a CI budget (≈ 3 s per float32 compile, ≈ 6 s per float64 one with the
# composed kernels, on 2 cores).
_SWEEP = [
    ("gelu", "float64", (8, 0)),
    ("exp(-x**2)", "float32", (9, 0)),
    ("sigmoid", "float32", (8, 0)),
    ("selu", "float64", (9, 0)),
    ("leaky_relu", "float32", (9, 0)),
    ("mish", "float32", (8, 0)),
    ("log_sigmoid", "float32", (9, 0)),
    ("exp(-abs(x)) * sin(3*x)", "float32", (8, 0)),
]


@pytest.mark.slow
@pytest.mark.parametrize("spec, dtype, cc", _SWEEP)
def test_every_kernel_compiles_and_fits_sweep(spec, dtype, cc):
    _check(spec, dtype, cc)


def test_compile_ptx_refuses_bad_dtype_and_names():
    from vanishcalc.errors import VanishcalcError
    from vanishcalc.sim.ptx import compile_ptx
    with pytest.raises(VanishcalcError, match="dtype"):
        compile_ptx("tanh", "float16")
    with pytest.raises(VanishcalcError, match="unknown kernel"):
        compile_ptx("tanh", "float32", names=["no_such_kernel"])


def test_compile_ptx_leaves_numba_device_lookup_alone():
    # The stand-in compute capability is confined to one compilation: afterwards numba asks
    # the driver again (here: no GPU, so it raises) instead of silently answering sm_90.
    from numba.cuda import dispatcher
    before = dispatcher.get_current_device
    _ptx("tanh", "float32", (9, 0))
    from vanishcalc.sim.ptx import compile_ptx
    compile_ptx("tanh", "float32", cc=(8, 0), names=["dense"])
    assert dispatcher.get_current_device is before


@pytest.mark.parametrize("cc", TARGETS)
def test_rnn_norm_kernel_compiles_and_fits_both_targets(cc):
    # the recurrent BN/LN kernel (sim/cuda/rnn_norm.py), tanh and the identity (BN in place of
    # tanh) — sm_90 and sm_80, no spills, within the register file at 256 threads
    from vanishcalc.sim.ptx import assemble, compile_ptx
    for spec in ("tanh", "x"):
        ptx = compile_ptx(spec, "float64", cc=cc, names=["rnn_norm"])["rnn_norm"]
        assert f".target sm_{cc[0]}{cc[1]}" in ptx
        rep = assemble(ptx, cc)
        assert rep.spill_stores == 0 and rep.spill_loads == 0, rep.log
        assert rep.registers * 256 <= REGISTERS_PER_BLOCK, rep.registers
        assert rep.shared_bytes <= SHARED_BYTES
