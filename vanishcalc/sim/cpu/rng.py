"""The CPU backend's random numbers: xoroshiro128+ streams (one per net) and ziggurat normals.

Each net has its own stream seeded from ``(seed, net index)`` by splitmix64
(:func:`seed_states`), so results do not depend on the number of threads.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from ..compile import FASTMATH

_U11 = np.uint64(11)
_U16 = np.uint64(16)
_U24 = np.uint64(24)
_U37 = np.uint64(37)
_U64_24 = np.uint64(64 - 24)
_U64_37 = np.uint64(64 - 37)
_TWO_M53 = 1.0 / 9007199254740992.0

# ---------------------------------------------------------------- random numbers

@njit(cache=True, inline="always")
def next_u64(st):
    """xoroshiro128+ (Blackman & Vigna 2018): next 64-bit output; ``st`` is a uint64[2] view."""
    s0 = st[0]
    s1 = st[1]
    result = s0 + s1
    s1 ^= s0
    st[0] = ((s0 << _U24) | (s0 >> _U64_24)) ^ s1 ^ (s1 << _U16)
    st[1] = (s1 << _U37) | (s1 >> _U64_37)
    return result


@njit(cache=True, inline="always")
def uniform(st):
    """Uniform on [0, 1) from the top 53 bits."""
    return np.float64(next_u64(st) >> _U11) * _TWO_M53


def _ziggurat_tables(c=128, r=3.442619855899, v=9.91256303526217e-3):
    """Tables of Doornik's ZIGNOR ziggurat (2005), 128 layers: (x, ratio)."""
    x = np.zeros(c + 1)
    f = math.exp(-0.5 * r * r)
    x[0] = v / f
    x[1] = r
    x[c] = 0.0
    for i in range(2, c):
        x[i] = math.sqrt(-2.0 * math.log(v / x[i - 1] + f))
        f = math.exp(-0.5 * x[i] * x[i])
    ratio = np.zeros(c)
    for i in range(c):
        ratio[i] = x[i + 1] / x[i]
    return x, ratio


_ZIG_X, _ZIG_R = _ziggurat_tables()
_ZIG_TAIL = 3.442619855899
_U4 = np.uint64(4)
_U127 = np.uint64(127)


@njit(cache=True, fastmath=FASTMATH)
def normal(st):
    """One standard normal: ZIGNOR ziggurat (Doornik 2005) on xoroshiro128+."""
    while True:
        r = next_u64(st)
        u = 2.0 * (np.float64(r >> _U11) * _TWO_M53) - 1.0
        i = np.int64((r >> _U4) & _U127)
        if abs(u) < _ZIG_R[i]:
            return u * _ZIG_X[i]
        if i == 0:                                   # the tail beyond R (Marsaglia 1964)
            while True:
                x = math.log(1.0 - uniform(st)) / _ZIG_TAIL
                y = math.log(1.0 - uniform(st))
                if -2.0 * y >= x * x:
                    return x - _ZIG_TAIL if u < 0.0 else _ZIG_TAIL - x
        x = u * _ZIG_X[i]
        f0 = math.exp(-0.5 * (_ZIG_X[i] * _ZIG_X[i] - x * x))
        f1 = math.exp(-0.5 * (_ZIG_X[i + 1] * _ZIG_X[i + 1] - x * x))
        if f1 + uniform(st) * (f0 - f1) < 1.0:
            return x


@njit(cache=True, fastmath=FASTMATH)
def fill_normal(st, out):
    """Fill the 1-D float64 array ``out`` with standard normals."""
    for i in range(out.shape[0]):
        out[i] = normal(st)


def seed_states(seed: int, n_nets: int) -> np.ndarray:
    """xoroshiro128+ states, one per net, from splitmix64 of ``(seed, net)``: shape (n_nets, 2)."""
    mask = (1 << 64) - 1
    out = np.empty((n_nets, 2), dtype=np.uint64)
    for n in range(n_nets):
        z = (seed * 0x9E3779B97F4A7C15 + (n + 1) * 0xD1B54A32D192ED03) & mask
        words = []
        for _ in range(2):
            z = (z + 0x9E3779B97F4A7C15) & mask
            y = z
            y = ((y ^ (y >> 30)) * 0xBF58476D1CE4E5B9) & mask
            y = ((y ^ (y >> 27)) * 0x94D049BB133111EB) & mask
            words.append(y ^ (y >> 31))
        if words == [0, 0]:
            words[0] = 1
        out[n] = words
    return out


# ---------------------------------------------------------------- per-layer steps

