"""Simulated deep random networks: one front door, one network program, two backends.

Layout (``notes/sim-layout.md``)::

    api.py       front door: simulate, simulate_rnn, Simulation; chooses the backend
    check.py     theory vs simulation per layer      composed.py  stable import path
    ptx.py       every CUDA kernel to PTX (CI)
    cpu/         Numba CPU backend: rng, dense (plain dense net), ops (njit steps shared by
                 the kernels: standardization, statistics), composed (op bodies, stack and
                 RNN loops), rnn_norm (RNN with recurrent BatchNorm / LayerNorm)
    cuda/        CUDA backend: runtime, rng, dense, summary (device-side reduction over nets),
                 blocks (device functions shared by the kernels), composed, rnn_norm;
                 numba.cuda imported lazily
    program.py   the backend-neutral program: ops OP_DENSE, OP_BN, OP_LN, OP_ACT, OP_RBF (RBF
                 distance units), OP_SAVE / OP_ADD_SAVED (residual save and add), OP_DROPOUT
                 + parameters, validation, the trace
    source.py    what both backends compute identically, as plain Python compiled by each:
                 φ and φ' printed as source, the saturation scale, standardize_row (BN)
    compile.py   CPU compilation of φ (on-disk cache), threading, cache repair, notice
    seeds.py     seed validation
    limits.py    memory and time before allocating (and the kernels' scratch sizes)
    summary.py   per-net arrays → per-layer sums, means and SEs (both backends)

Arrows point down only: api/check/composed/ptx → cpu | cuda → program, source, compile, seeds,
limits, summary (``tests/sim/test_layout.py``).

Adding a layer kind = its mean-field map (``vanishcalc/maps``) + one op in ``program.py`` +
its ``@njit`` body in ``cpu/composed.py`` + its ``cuda.jit(device=True)`` body in
``cuda/composed.py`` (arithmetic shared by both written once in ``source.py``).

This package imports nothing at import time: ``import vanishcalc`` never imports numba.
"""
