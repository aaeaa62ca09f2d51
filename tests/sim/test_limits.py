"""Sizes are checked before anything is allocated (issue 11.1).

Each request below is far beyond any machine (or beyond a limit set through
VANISHCALC_MAX_MEMORY); the entry point must refuse it at once, with a
SimulationTooLargeError (a VanishcalcError) naming the limit and a setting that fits — and
that setting must pass the same check.  Before, depth = 10**9 allocated 15 GiB, and an RNN
of width 10**5 died inside a Numba kernel with SystemError.
"""
from __future__ import annotations

import re
import time

import pytest

from vanishcalc import check, check_rnn, simulate
from vanishcalc.errors import VanishcalcError
from vanishcalc.maps import Activation, BatchNorm, Dense
from vanishcalc import budget
from vanishcalc.sim import limits
from vanishcalc.sim.composed import simulate_rnn, simulate_stack
from vanishcalc.sim.limits import SimulationTooLargeError
from tests.sim.cudasim import child_script, finish, start


def _refused(call):
    t = time.perf_counter()
    with pytest.raises(SimulationTooLargeError) as info:
        call()
    assert time.perf_counter() - t < 5.0          # refused before any work
    assert isinstance(info.value, VanishcalcError)
    msg = str(info.value)
    assert "needs about" in msg and ("limit" in msg or "GPU memory" in msg), msg
    return msg


@pytest.mark.parametrize("backend", ["cpu", "cuda"])
def test_simulate_depth_1e9_refused_with_a_depth_that_fits(backend):
    msg = _refused(lambda: simulate("tanh", 1.0, depth=10**9, width=64, n_nets=4,
                                    backend=backend))
    depth = int(re.search(r"depth ≤ (\d+)", msg).group(1))
    limits.require_dense("simulate", depth=depth, width=64, n_nets=4, warn_time=False)


def test_check_depth_1e9_refused():
    _refused(lambda: check("tanh", 1.0, depth=10**9, width=64, n_nets=4))


def test_composed_stack_depth_1e9_refused():
    net = [Dense(1.0), BatchNorm(1.0, 0.0), Activation("relu")]
    _refused(lambda: simulate_stack(net, depth=10**9, width=64, batch=8, n_nets=4))
    _refused(lambda: simulate(net, depth=10**9, width=64, n_nets=4, batch=8))
    _refused(lambda: check(net, depth=10**9, width=64, n_nets=4, batch=8))


def test_rnn_width_1e5_refused_not_systemerror():
    msg = _refused(lambda: simulate_rnn("tanh", 1.0, 0.5, steps=3, width=10**5, n_nets=2))
    assert "width ≤" in msg
    _refused(lambda: check_rnn("tanh", 1.0, 0.5, steps=3, width=10**5, n_nets=2))


def test_stack_width_1e6_refused():
    msg = _refused(lambda: simulate_stack([Dense(1.0), Activation("tanh")], depth=2,
                                          width=10**6, batch=4, n_nets=2))
    assert "width ≤" in msg


def test_max_memory_env_sets_the_limit(monkeypatch):
    monkeypatch.setenv("VANISHCALC_MAX_MEMORY", "1M")
    msg = _refused(lambda: simulate("tanh", 1.0, depth=10000, width=8, n_nets=4))
    assert "VANISHCALC_MAX_MEMORY" in msg
    monkeypatch.setenv("VANISHCALC_MAX_MEMORY", "lots")
    with pytest.raises(VanishcalcError, match="VANISHCALC_MAX_MEMORY"):
        simulate("tanh", 1.0, depth=2, width=8, n_nets=2)


def test_long_run_warns_with_an_estimate(monkeypatch):
    # 64 nets × width 4096 × depth 10^6: ~ hours on a CPU; warn (do not run: refuse by memory
    # afterwards is not wanted either, so only the estimator is called)
    with pytest.warns(Warning, match="will take about"):
        limits.require_dense("simulate", depth=10**6, width=4096, n_nets=64)


def test_parse_bytes():
    assert budget._parse_bytes("8G") == 8 * 2**30
    assert budget._parse_bytes("512MiB") == 512 * 2**20
    assert budget._parse_bytes("1000") == 1000
    assert budget._parse_bytes("x") is None


# ---------------------------------------------------------------- CUDA scratch: estimate = allocation

_ALLOC_CHILD = child_script("""
import numpy as np
from vanishcalc.maps import Activation, Dense, LayerNorm, Residual
from vanishcalc.sim.cuda.composed import simulate_rnn_cuda, simulate_stack_cuda
from vanishcalc.sim.cuda.rnn_norm import simulate_rnn_norm_cuda
allocated = []
device_array = cuda.device_array


def counting(shape, dtype=np.float64, *a, **k):     # the kernels' scratch (outputs: to_device)
    allocated.append(int(np.prod(shape)) * np.dtype(dtype).itemsize)
    return device_array(shape, dtype, *a, **k)


cuda.device_array = counting
plain = [Dense(1.0), LayerNorm(1.0, 0.0), Activation("tanh")]
residual = [Residual([Dense(1.0), Activation("tanh")], 0.5)]
runs = {
    "stack": lambda w, b: simulate_stack_cuda(plain, depth=1, width=w, batch=b, n_nets=1),
    "stack_residual": lambda w, b: simulate_stack_cuda(residual, depth=1, width=w, batch=b,
                                                       n_nets=1),
    "rnn": lambda w, b: simulate_rnn_cuda("tanh", 1.0, 0.5, steps=1, width=w, batch=b, n_nets=1),
    "rnn_bn": lambda w, b: simulate_rnn_norm_cuda("tanh", norm="bn", steps=1, width=w, batch=b,
                                                  n_nets=1),
    "rnn_ln": lambda w, b: simulate_rnn_norm_cuda("tanh", norm="ln", steps=1, width=w, batch=b,
                                                  n_nets=1),
}
out = {}
for name, (w, b) in cases.items():
    allocated.clear()
    runs[name](w, b)
    out[name] = sum(allocated)                        # one net: one block
print(json.dumps(out))
""")

_ALLOC_CASES = {"stack": (6, 4), "stack_residual": (5, 4), "rnn": (5, 3), "rnn_bn": (4, 5),
                "rnn_ln": (6, 3)}


@pytest.mark.cuda
def test_gpu_scratch_estimates_equal_what_the_kernels_allocate(monkeypatch):
    """require_stack_gpu / require_rnn_gpu count exactly the device scratch of one block, as
    allocated by the drivers (counted in a simulator child).  Before, the recurrent BN / LN
    kernel's 7 width × batch arrays were estimated as 5, and a residual program's 6 as 4."""
    got = finish(start(_ALLOC_CHILD, "alloc", _ALLOC_CASES))
    checks = {
        "stack": lambda w, b: limits.require_stack_gpu("t", width=w, batch=b),
        "stack_residual": lambda w, b: limits.require_stack_gpu("t", width=w, batch=b,
                                                                residual=True),
        "rnn": lambda w, b: limits.require_rnn_gpu("t", width=w, batch=b),
        "rnn_bn": lambda w, b: limits.require_rnn_gpu("t", width=w, batch=b, norm=True),
        "rnn_ln": lambda w, b: limits.require_rnn_gpu("t", width=w, batch=b, norm=True),
    }
    monkeypatch.setattr(limits, "MEMORY_FRACTION", 1.0)
    for name, (w, b) in _ALLOC_CASES.items():
        allocated = got[name]
        monkeypatch.setattr(limits, "gpu_budget", lambda: allocated - 1)
        with pytest.raises(SimulationTooLargeError):          # estimate ≥ the allocation
            checks[name](w, b)
        monkeypatch.setattr(limits, "gpu_budget", lambda: allocated)
        checks[name](w, b)                                     # and not more
