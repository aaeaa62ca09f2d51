"""The CUDA backend's random numbers: xoroshiro128+ streams, seeded on the host.

The generator and the [0, 1) conversion of ``numba.cuda.random``, built fresh with each set of
kernels (:func:`rng_device_functions`); the streams' states are seeded on the host from a
``SeedSequence`` (:func:`rng_states`), so they are the same on every GPU and in the simulator.
"""
from __future__ import annotations

import numpy as np

from .runtime import import_cuda

_U11 = np.uint64(11)
_U14 = np.uint64(14)
_U36 = np.uint64(36)
_U55 = np.uint64(55)
_U28 = np.uint64(64 - 36)
_U9 = np.uint64(64 - 55)
_TWO_M53 = 1.0 / 9007199254740992.0


def rng_device_functions():
    """``(next_u64, uniform, load_state, store_state)`` device functions: xoroshiro128+ on a thread's local state.

    A kernel copies its stream ``states[sid]`` (``xoroshiro128p_dtype``) into a local
    ``uint64[2]`` with :func:`load_state` once, draws from that, and stores it back with
    :func:`store_state` at the end.

    The generator and the [0, 1) conversion of ``numba.cuda.random`` (xoroshiro128+ with the
    original 2016 rotations 55, 14, 36 that numba uses — the CPU backend's ``cpu/rng.py`` has
    Blackman & Vigna's 2018 ones, 24, 16, 37; the top 53 bits), so the streams are numba's, but
    built fresh with
    the kernels: numba's are module-level device functions whose compiled code is shared by
    every target a process compiles for (see :func:`device_functions`).  ``uniform`` is
    float64 in both precisions: a float32 rounding of u < 1 can be 1.0, which Box–Muller's
    log(1 − u) turns into an infinite normal.
    """
    cuda = import_cuda()

    @cuda.jit(device=True)
    def next_u64(st):
        # ``st`` is a thread's local uint64[2] copy of its stream (``load_state``): kept in
        # registers, not re-read from and written back to global memory on every draw,
        # which made each draw a dependent global round trip.
        s0 = st[0]
        s1 = st[1]
        result = s0 + s1
        s1 ^= s0
        st[0] = ((s0 << _U55) | (s0 >> _U9)) ^ s1 ^ (s1 << _U14)
        st[1] = (s1 << _U36) | (s1 >> _U28)
        return result

    @cuda.jit(device=True)
    def uniform(st):
        return float(next_u64(st) >> _U11) * _TWO_M53

    return next_u64, uniform, cuda.jit(device=True)(load_state), cuda.jit(device=True)(store_state)


def load_state(states, sid, st):
    """Copy stream ``sid`` of ``states`` into the thread-local ``st`` (uint64[2])."""
    st[0] = states[sid]["s0"]
    st[1] = states[sid]["s1"]


def store_state(states, sid, st):
    """Write the thread-local ``st`` back to stream ``sid`` (a later launch continues it)."""
    states[sid]["s0"] = st[0]
    states[sid]["s1"] = st[1]


def rng_states(seed_seq, n):
    """``n`` xoroshiro128+ states (``numba.cuda.random.xoroshiro128p_dtype``) on the host.

    Each stream's 128-bit state is two raw words of ``PCG64(seed_seq)``: streams are
    independently seeded instead of 2⁶⁴-jumped (numba's ``create_xoroshiro128p_states``),
    which is vectorized, needs no numba compilation (seconds under the simulator) and gives
    the same streams on every GPU.  Overlap of two of ≤ 10⁹ streams of period 2¹²⁸ − 1 drawing
    ≤ 10¹² numbers each has probability < 10⁻¹⁶.
    """
    from numba.cuda.random import xoroshiro128p_dtype
    # PCG64's raw output: 2·10⁵ words in under a millisecond, ~30× faster than
    # SeedSequence.generate_state (which seeded them until 2026-11-30).
    words = np.random.PCG64(seed_seq).random_raw(2 * n).reshape(n, 2)
    zero = (words[:, 0] == 0) & (words[:, 1] == 0)
    words[zero, 0] = 1                                  # the all-zero state is a fixed point
    states = np.empty(n, dtype=xoroshiro128p_dtype)
    states["s0"] = words[:, 0]
    states["s1"] = words[:, 1]
    return states


__all__ = ["rng_device_functions", "rng_states", "load_state", "store_state"]
