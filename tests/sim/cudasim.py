"""Running CUDA kernels in a child process, shared by the CUDA test files.

``NUMBA_ENABLE_CUDASIM=1`` only takes effect if it is set before numba is imported, so the
kernels run in children whose environment has it (or, with VANISHCALC_TEST_REAL_GPU=1, does
not, and the children use the real GPU).
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys

REAL_GPU = os.environ.get("VANISHCALC_TEST_REAL_GPU") == "1"


def child_env(simulate: bool) -> dict:
    """This process's environment with the CUDA simulator switched on or off."""
    env = dict(os.environ)
    env.pop("NUMBA_ENABLE_CUDASIM", None)
    if simulate:
        env["NUMBA_ENABLE_CUDASIM"] = "1"
    return env


def start(script: str, group: str, cases: dict, simulate: bool = not REAL_GPU):
    """Start ``python -c script group json(cases)``; its last stdout line is JSON."""
    return subprocess.Popen([sys.executable, "-c", script, group, json.dumps(cases)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=child_env(simulate))


# ---------------------------------------------------------------- the kernels' streams in Python

_M64 = (1 << 64) - 1


def _rotl(x, k):
    return ((x << k) | (x >> (64 - k))) & _M64


class Stream:
    """xoroshiro128+ (Blackman & Vigna) and Box–Muller on float64 uniforms, in plain Python."""

    def __init__(self, s0, s1):
        self.s0, self.s1 = int(s0), int(s1)

    def normal_pair(self):
        """Both Box–Muller normals of one uniform pair (``sim/cuda/dense.py``'s kernel)."""
        u1, u2 = self.uniform(), self.uniform()
        r = math.sqrt(-2.0 * math.log(1.0 - u1))
        return r * math.cos(2.0 * math.pi * u2), r * math.sin(2.0 * math.pi * u2)

    def normal(self):
        u1, u2 = self.uniform(), self.uniform()
        return math.sqrt(-2.0 * math.log(1.0 - u1)) * math.cos(2.0 * math.pi * u2)

    def uniform(self):
        s0, s1 = self.s0, self.s1
        r = (s0 + s1) & _M64
        s1 ^= s0
        self.s0 = _rotl(s0, 55) ^ s1 ^ ((s1 << 14) & _M64)
        self.s1 = _rotl(s1, 36)
        return (r >> 11) * 2.0 ** -53
