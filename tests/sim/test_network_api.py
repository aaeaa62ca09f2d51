"""simulate()/check()/MeanField/init_table accept composed networks (issue 7 wiring).

References: Yang et al. 2019 (arXiv:1902.08129) π/(π−1) for relu BatchNorm nets, and
mpmath for tanh's infinite-batch rate E[tanh'(z)²]/Var[tanh(z)].
"""
import math

import mpmath
import numpy as np
import pytest

from vanishcalc import MeanField, VanishcalcError, check, init_table, simulate
from vanishcalc.maps import Activation, BatchNorm, Dense


def relu_bn_net(batch=None):
    return [Dense(1.0, 0.0), BatchNorm(1.0, 0.0, batch=batch), Activation("relu")]


def test_meanfield_chi1_relu_bn_block_vs_yang_pi_over_pi_minus_1():
    chi1 = MeanField(relu_bn_net()).chi1()
    assert abs(float(chi1) - math.pi / (math.pi - 1)) < 1e-10


def test_check_relu_bn_network_passes_vs_meanfield():
    report = check(relu_bn_net(), depth=4, width=128, n_nets=8, batch=32, seed=3)
    assert report.passed, report.summary()
    assert "batch 32" in report.summary()


def test_simulate_network_grad_rate_vs_yang_finite_batch():
    # Per-layer growth at batch B: π/(π−1) times the finite-batch factor (B−2)/(B−3).
    B = 64
    sim = simulate(relu_bn_net(), depth=6, width=256, n_nets=8, batch=B, seed=4)
    rate = sim.grad[1:-1] / sim.grad[2:]
    want = math.pi / (math.pi - 1) * (B - 2) / (B - 3)
    assert np.all(np.abs(rate - want) < 0.04 * want)


@pytest.mark.parametrize("kwargs, message", [
    (dict(backend="tpu"), "unknown"),
    (dict(sigma_w=1.0), "left unset"),
    (dict(weights="orthogonal"), "Gaussian weights"),
])
def test_simulate_network_bad_arguments_are_named(kwargs, message):
    with pytest.raises(VanishcalcError, match=message):
        simulate(relu_bn_net(), depth=2, width=8, n_nets=2, **kwargs)


def test_simulate_network_batch_mismatch_is_an_error():
    with pytest.raises(VanishcalcError, match="batch"):
        simulate(relu_bn_net(batch=16), depth=2, width=8, n_nets=2, batch=32)


def test_simulate_plain_phi_needs_sigma_w():
    with pytest.raises(VanishcalcError, match="sigma_w is required"):
        simulate("tanh", depth=2, width=8)


def test_init_table_bn_rate_tanh_vs_mpmath():
    row = init_table(["tanh"]).rows[0]
    with mpmath.workdps(30):
        d2 = mpmath.quad(lambda z: mpmath.sech(z) ** 4 * mpmath.npdf(z), [-mpmath.inf, 0, mpmath.inf])
        m2 = mpmath.quad(lambda z: mpmath.tanh(z) ** 2 * mpmath.npdf(z), [-mpmath.inf, 0, mpmath.inf])
    assert abs(row["bn_rate"] - float(d2 / m2)) < 1e-10
    assert row["bn_gamma_105"] is not None and 0 < row["bn_gamma_105"] < 1


def test_simulate_network_single_net_se_is_zero_like_plain_nets():
    sim = simulate(relu_bn_net(), depth=2, width=16, n_nets=1, batch=8)
    assert np.all(sim.q_se == 0) and np.all(sim.grad_se == 0)


def test_simulate_network_progress_is_reported_not_ignored():
    # composed networks on the CPU now report nets done (they were refused before, never
    # silently ignored); tests/test_progress.py checks the chunked results are identical
    calls = []
    simulate(relu_bn_net(), depth=2, width=8, n_nets=2, progress=lambda d, t: calls.append((d, t)))
    assert calls and calls[-1] == (2, 2)


def test_simulate_network_cuda_without_gpu_or_simulator_says_how():
    # This process has no GPU and did not enable the simulator before importing numba:
    # backend="cuda" must say how to get one (the kernels themselves are tested under the
    # simulator in tests/sim/test_cuda_composed.py).
    import os
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        pytest.skip("the CUDA simulator is enabled in this process")
    with pytest.raises(VanishcalcError, match="NUMBA_ENABLE_CUDASIM"):
        simulate(relu_bn_net(), depth=2, width=8, n_nets=2, backend="cuda")


@pytest.mark.parametrize("spec, sigma_w", [("tanh", 1.2), ("relu", 0.9)])
def test_check_rnn_passes_vs_rnn_meanfield(spec, sigma_w):
    from vanishcalc import check_rnn
    report = check_rnn(spec, sigma_w, sigma_u=0.8, sigma_b=0.2, steps=8, width=128, n_nets=16,
                       batch=4, x_corr=0.3, seed=5)
    assert report.passed, report.summary()
    assert len(report.theory["q"]) == 8


def test_check_rnn_detects_a_wrong_recurrent_scale():
    # Simulated σw = 1.2 against a theory that thinks the net is the same: pass; the same
    # simulation judged by the theory at σw = 1.5 must fail (the check has teeth).
    from vanishcalc.maps.rnn import RNNMeanField
    from vanishcalc.sim.check import _compare
    from vanishcalc.sim.composed import simulate_rnn
    tr = simulate_rnn("tanh", 1.2, 0.8, 0.2, steps=8, width=128, x_corr=0.3, batch=4, n_nets=16,
                      seed=5)
    wrong = RNNMeanField("tanh", 1.5, 0.8, 0.2, 1.0, 0.3).propagate(8)
    th = {k: np.asarray(getattr(wrong, k), dtype=float) for k in ("q", "c", "grad")}
    assert not _compare(th, tr, True, 128, 1.0, 4.0, {}).passed


def test_check_rnn_bad_steps_is_named():
    from vanishcalc import check_rnn
    with pytest.raises(VanishcalcError, match="steps"):
        check_rnn("tanh", 1.0, steps=0, width=8, n_nets=2)


@pytest.mark.parametrize("bad", [dict(q0="a"), dict(c0=None), dict(seed=-1), dict(batch=1)])
def test_cuda_and_cpu_stacks_share_validation(bad):
    # The CUDA driver validates with the CPU function's checks (before looking for a GPU),
    # so a bad argument gets the same named error on both backends.
    from vanishcalc.sim.composed import simulate_stack
    from vanishcalc.sim.cuda.composed import simulate_stack_cuda
    kw = dict(depth=2, width=8, batch=4, n_nets=2)
    kw.update(bad)
    messages = []
    for run in (simulate_stack, simulate_stack_cuda):
        with pytest.raises(VanishcalcError) as info:
            run(relu_bn_net(), **kw)
        messages.append(str(info.value))
    assert messages[0] == messages[1]


def test_check_rnn_verdicts_failed_and_inconclusive():
    from vanishcalc import check_rnn
    from vanishcalc.maps.rnn import RNNMeanField
    from vanishcalc.sim.check import _compare
    from vanishcalc.sim.composed import simulate_rnn
    tr = simulate_rnn("tanh", 1.2, 0.8, 0.2, steps=8, width=128, x_corr=0.3, batch=4, n_nets=16,
                      seed=5)
    wrong = RNNMeanField("tanh", 1.2 * 1.05, 0.8, 0.2, 1.0, 0.3).propagate(8)
    th = {k: np.asarray(getattr(wrong, k), dtype=float) for k in ("q", "c", "grad")}
    assert _compare(th, tr, True, 128, 1.0, 4.0, {"n_nets": 16}).verdict == "FAILED"
    # a narrow, long, exploding relu RNN: products over 60 steps at width 8 cannot be resolved
    rep = check_rnn("relu", 1.6, sigma_u=0.5, steps=60, width=8, n_nets=16, seed=1)
    assert rep.verdict == "INCONCLUSIVE" and not rep.passed, rep.summary()


def test_check_composed_network_inconclusive_when_too_deep_for_its_width():
    # allowance 60/8 of the value: it could not have failed, so it must not say PASSED
    report = check(relu_bn_net(), depth=60, width=8, n_nets=8, batch=8, seed=3)
    assert report.verdict == "INCONCLUSIVE" and not report.passed
    assert any("width ≥" in r for r in report.reasons)


def test_nonfinite_warning_names_the_callers_line_through_every_front_door():
    # Through simulate(block), simulate_rnn and simulate_stack alike, the warning points at
    # the user's call, not at a module of vanishcalc/sim (simulate(block) named api.py before).
    import warnings

    import vanishcalc
    from vanishcalc.maps import Activation, Dense
    from vanishcalc.sim.composed import simulate_rnn, simulate_stack
    block = [Dense(30.0), Activation("exp(x)")]
    calls = [lambda: vanishcalc.simulate(block, depth=4, width=4, batch=2, n_nets=2, seed=1),
             lambda: simulate_stack(block, depth=4, width=4, batch=2, n_nets=2, seed=1),
             lambda: simulate_rnn("exp(x)", 30.0, 1.0, 1.0, steps=4, width=4, n_nets=2, seed=1)]
    for call in calls:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            call()
        mine = [w for w in caught if "non-finite" in str(w.message)]
        assert mine and all(w.filename == __file__ for w in mine), [w.filename for w in mine]
