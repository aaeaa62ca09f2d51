"""Sizes are checked before anything is allocated: memory and time of a simulation, from its
arguments, against what this machine has.

Every simulation entry point (``simulate`` for plain and composed nets, ``simulate_stack``,
``simulate_rnn``, ``check``, ``check_rnn``; both backends) calls these before its first
allocation, so an impossible request is a :class:`SimulationTooLargeError` naming the limit
and a setting that fits — never a 15 GiB allocation, an out-of-memory kill or a
``SystemError`` from inside a Numba kernel.  A feasible but long run gets a
``VanishcalcWarning`` with the estimated time.

The byte counts per (net, layer) are upper bounds measured on the CPU backend (peak RSS of a
fresh process, ``benchmarks/simulate.py``), rounded up; see ``notes/simulation.md``.

Limits:

* host memory: :func:`vanishcalc.budget.memory_budget` (shared with the solvers):
  ``MEMORY_FRACTION`` of what the OS reports available, or ``VANISHCALC_MAX_MEMORY``;
* GPU memory: the free memory of the current CUDA device when it can be queried, else
  :data:`GPU_MEMORY_CAP` (16 GiB, a documented default for when no device answers).
"""
from __future__ import annotations

import math
import os
import warnings

from ..budget import MEMORY_FRACTION, MemoryBudgetError, budget_source, memory_budget
from ..errors import VanishcalcWarning

#: GPU memory assumed when the device cannot be asked (the CUDA simulator, a failed query).
GPU_MEMORY_CAP = 16 * 2**30
#: Estimated runs longer than this many seconds warn.
WARN_SECONDS = 120.0

#: Bytes per (net, layer) of per-layer statistics, from the arrays the drivers allocate:
#: dense CPU: q, c, sat, two log-norms, the nonfinite flag, grad / log_grad and their
#: temporaries, the summary's masked copies (measured peak ≈ 130 B).
DENSE_BYTES_PER_CELL = 192
#: composed stacks / RNNs: q, c, logF, flags, grad, rate and the summary's copies.
COMPOSED_BYTES_PER_CELL = 160
#: check/check_rnn on top: per-net copies and the log-scale statistics.
CHECK_BYTES_PER_CELL = 96

#: Rough CPU throughputs for time estimates (one thread of a 2020s x86 core).
DENSE_UNIT_LAYERS_PER_S = 1.0e7            # unit-layers (net × width × layer), tanh
NORMALS_PER_S = 1.5e8                      # weight draws of explicit-weight kernels
FLOPS_PER_S = 2.0e9                        # matmul flops of explicit-weight kernels


#: The kernels' scratch, in width × batch float64 arrays, counted here once: the CUDA drivers
#: size their allocations and launches from these functions, the estimates below use them.
#: CUDA stack kernel: (X, V) state slots per block — two, swapped by Dense / RBF, and a third
#: for a residual block's saved input, allocated only when the program has OP_SAVE.
STACK_SLOTS, STACK_SLOTS_RESIDUAL = 2, 3
#: CUDA RNN kernel, per block: H, A, the step's inputs and the tangent (two buffers); the
#: recurrent BN / LN kernel adds Z (= U x, standardized apart under BN) and its zero tangent.
RNN_STATE_ARRAYS, RNN_NORM_STATE_ARRAYS = 5, 7
#: CPU RNN kernels, per running net, at their peak: the plain RNN H, A, inputs, D and the
#: temporaries of W H + U x (3); recurrent BN / LN H, A, inputs, D, the zero tangent and,
#: at the LN first step, W H + U x + b, its tangent, both transposed and the zero one's
#: transpose (5).
CPU_RNN_STATE_ARRAYS, CPU_RNN_NORM_STATE_ARRAYS = 7, 10
#: CPU stack kernel, per running net: X, V, the saved (X, V) of a residual block, and the
#: op's output pair (Dense's W X, W V; RBF's; LayerNorm's transposes) — besides W.
CPU_STACK_STATE_ARRAYS = 6


def stack_slots(residual: bool) -> int:
    """(X, V) slots per CUDA block of the stack kernel (``residual``: the program has OP_SAVE)."""
    return STACK_SLOTS_RESIDUAL if residual else STACK_SLOTS


def stack_block_bytes(width: int, batch: int, residual: bool) -> int:
    """One CUDA block's scratch of the stack kernel: X and V, each ``stack_slots`` × N × B."""
    return 8 * 2 * stack_slots(residual) * width * batch


def rnn_block_bytes(width: int, batch: int, norm: bool = False) -> int:
    """One CUDA block's scratch of the RNN kernel (``norm``: the recurrent BN / LN one):
    W and U (N × N), b (N) and the state arrays (N × B each)."""
    arrays = RNN_NORM_STATE_ARRAYS if norm else RNN_STATE_ARRAYS
    return 8 * (2 * width * width + width + arrays * width * batch)


class SimulationTooLargeError(MemoryBudgetError):
    """A simulation would need more memory than this machine has; the message says what fits."""


def gib(n: float) -> str:
    return f"{n / 2**30:.3g} GiB" if n >= 2**28 else f"{n / 2**20:.3g} MiB"


def require_memory(where: str, need: float, what: str, fits) -> None:
    """Raise :class:`SimulationTooLargeError` if ``need`` bytes exceed the host budget.

    ``what`` says what the bytes are for; ``fits(budget)`` returns a sentence naming a
    setting that fits in ``budget`` bytes.
    """
    budget = memory_budget()
    if budget is None or need <= budget:
        return
    src = budget_source()
    raise SimulationTooLargeError(
        f"{where}: this run needs about {gib(need)} ({what}), more than the limit of "
        f"{gib(budget)} ({src}); {fits(budget)}")


def simulator_enabled() -> bool:
    """True when numba runs CUDA kernels in its Python simulator (``NUMBA_ENABLE_CUDASIM=1``)."""
    try:
        from numba import config
    except ImportError:   # pragma: no cover - numba is a dependency
        return False
    return bool(getattr(config, "ENABLE_CUDASIM", 0))


def gpu_budget() -> int:
    """Free memory of the current CUDA device, or :data:`GPU_MEMORY_CAP` if it cannot be asked."""
    try:
        if simulator_enabled():
            return GPU_MEMORY_CAP
        from numba import cuda
        free, _total = cuda.current_context().get_memory_info()
        return int(free)
    except Exception:          # no driver, no device, simulator: the documented cap
        return GPU_MEMORY_CAP


def require_gpu_memory(where: str, need: float, what: str, fits) -> None:
    budget = int(MEMORY_FRACTION * gpu_budget())
    if need > budget:
        raise SimulationTooLargeError(
            f"{where}: this run needs about {gib(need)} of GPU memory ({what}), more than "
            f"{gib(budget)} ({MEMORY_FRACTION:.0%} of the device's free memory, or of "
            f"{gib(GPU_MEMORY_CAP)} when it cannot be asked); {fits(budget)}")


def warn_if_long(where: str, seconds: float, what: str) -> None:
    if seconds > WARN_SECONDS:
        warnings.warn(f"{where}: this run will take about {_duration(seconds)} on the CPU "
                      f"(estimated from {what}); Ctrl-C stops it", VanishcalcWarning,
                      stacklevel=4)


def _duration(s: float) -> str:
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    if s < 2 * 86400:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.3g} days"


def threads() -> int:
    """Threads the CPU kernels may run on.

    Numba's configured maximum (``numba.config.NUMBA_NUM_THREADS``) when numba is loaded —
    not ``numba.get_num_threads()``, which would start the thread pool and fix the
    threading layer before ``compile.configure_threading`` chose a fork-safe one.
    """
    import sys
    numba = sys.modules.get("numba")
    if numba is not None:
        try:
            return max(1, int(numba.config.NUMBA_NUM_THREADS))
        except (AttributeError, TypeError, ValueError):
            pass
    return max(1, os.cpu_count() or 1)


# ---------------------------------------------------------------- per entry point

def require_dense(where, *, depth, width, n_nets, itemsize=8, extra_per_cell=0, backend="cpu",
                  warn_time=True):
    """``simulate`` of a plain dense net (both backends' host side; time for the CPU)."""
    cells = n_nets * (depth + 1)
    per_cell = DENSE_BYTES_PER_CELL + extra_per_cell
    state = n_nets * width * 4 * itemsize + threads() * width * 12 * 8
    need = cells * per_cell + state

    def fits(budget):
        room = max(0, budget - state)
        max_depth = room // max(1, n_nets * per_cell) - 1
        max_nets = budget // max(1, (depth + 1) * per_cell + width * 4 * itemsize)
        parts = []
        if max_depth >= 1:
            parts.append(f"depth ≤ {max_depth} at n_nets = {n_nets}")
        if max_nets >= 1:
            parts.append(f"n_nets ≤ {max_nets} at depth = {depth}")
        return ("use " + " or ".join(parts) if parts else
                "no setting of depth or n_nets fits: reduce width") + \
            " (or split the nets over several calls)"
    require_memory(where, need, f"{per_cell} bytes per net and layer of per-layer statistics "
                   f"for {n_nets} nets × {depth + 1} layers, plus the width-{width} state", fits)
    if backend == "cpu" and warn_time:
        warn_if_long(where, n_nets * width * max(depth, 1) / (DENSE_UNIT_LAYERS_PER_S * threads()),
                     f"{n_nets} nets × width {width} × depth {depth}")


def require_dense_gpu(where, *, depth, width, n_nets):
    """The CUDA dense kernels' device arrays: per-layer sums (nets, depth+1, 7) float64."""
    need = n_nets * (depth + 1) * 7 * 8 + n_nets * width * 4 * 8

    def fits(budget):
        return f"use n_nets ≤ {max(1, budget // ((depth + 1) * 56 + width * 32))} per call"
    require_gpu_memory(where, need, f"per-layer sums of {n_nets} nets × {depth + 1} layers", fits)


def _concurrent(n_nets):
    return min(n_nets, threads())


def require_stack(where, *, depth, width, batch, n_nets, extra_per_cell=0, cpu=True):
    """A composed stack: per-layer outputs, and (CPU) explicit W per concurrently run net."""
    per_cell = COMPOSED_BYTES_PER_CELL + extra_per_cell
    per_net_scratch = 8 * (width * width + CPU_STACK_STATE_ARRAYS * width * batch) if cpu else 0
    scratch = _concurrent(n_nets) * per_net_scratch
    need = n_nets * (depth + 1) * per_cell + scratch

    def fits(budget):
        if per_net_scratch > budget:
            w = int(math.isqrt(max(1, budget // 8)) * 0.9)
            return f"width {width} alone needs {gib(per_net_scratch)} per net: use width ≤ {w}"
        max_depth = (budget - scratch) // max(1, n_nets * per_cell) - 1
        return (f"use depth ≤ {max_depth} at n_nets = {n_nets}" if max_depth >= 1 else
                "use fewer nets per call")
    require_memory(where, need, f"{'an explicit width×width weight matrix per running net and ' if cpu else ''}"
                   f"{per_cell} bytes per net and layer for {n_nets} nets × {depth + 1} layers",
                   fits)
    if cpu:
        per_layer = width * width / NORMALS_PER_S + 4 * width * width * batch / FLOPS_PER_S
        warn_if_long(where, n_nets * depth * per_layer / threads(),
                     f"{n_nets} nets × depth {depth} of width {width}, batch {batch}")


def require_stack_gpu(where, *, width, batch, residual=False):
    """One CUDA block's scratch (:func:`stack_block_bytes`) must fit the device."""
    need = stack_block_bytes(width, batch, residual)
    per_entry = need // (width * batch)
    require_gpu_memory(where, need, f"one net's width-{width} × batch-{batch} buffers",
                       lambda b: f"use width × batch ≤ {b // per_entry}")


def require_rnn(where, *, steps, width, batch, n_nets, extra_per_cell=0, cpu=True, norm=False):
    """An RNN (``norm``: recurrent BN / LN): W and U (2·N² floats) and the state per running
    net, per-step outputs."""
    per_cell = COMPOSED_BYTES_PER_CELL + extra_per_cell
    arrays = CPU_RNN_NORM_STATE_ARRAYS if norm else CPU_RNN_STATE_ARRAYS
    per_net_scratch = 8 * (2 * width * width + arrays * width * batch + width) if cpu else 0
    scratch = _concurrent(n_nets) * per_net_scratch
    need = n_nets * steps * per_cell + scratch

    def fits(budget):
        if per_net_scratch * _concurrent(n_nets) > budget:
            w = int(math.isqrt(max(1, budget // (16 * _concurrent(n_nets)))) * 0.9)
            return (f"W and U of width {width} need {gib(16 * width * width)} per net "
                    f"({_concurrent(n_nets)} run at once): use width ≤ {w}")
        max_steps = (budget - scratch) // max(1, n_nets * per_cell)
        return (f"use steps ≤ {max_steps} at n_nets = {n_nets}" if max_steps >= 1 else
                "use fewer nets per call")
    require_memory(where, need, f"{'W and U (2·width² floats) per running net and ' if cpu else ''}"
                   f"{per_cell} bytes per net and step for {n_nets} nets × {steps} steps", fits)
    if cpu:
        per_net = (2 * width * width / NORMALS_PER_S
                   + steps * 6 * width * width * batch / FLOPS_PER_S)
        warn_if_long(where, n_nets * per_net / threads(),
                     f"{n_nets} nets × {steps} steps of width {width}, batch {batch}")


def require_rnn_gpu(where, *, width, batch, norm=False):
    """One CUDA block's W, U, b and state (:func:`rnn_block_bytes`) must fit the device."""
    need = rnn_block_bytes(width, batch, norm)
    require_gpu_memory(where, need, f"one net's W and U at width {width}",
                       lambda b: f"use width ≤ {int(math.isqrt(max(1, b // 16)) * 0.9)}")
