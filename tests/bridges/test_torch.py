"""vanishcalc.torch: calculate_gain / compute_gamma drop-ins, the init_ walker, param_groups."""
from __future__ import annotations

import math
import subprocess
import sys
import warnings

import mpmath
import pytest

from vanishcalc import VanishcalcError, VanishcalcWarning


def _mp_second_moment(f, centered=False):
    mpmath.mp.dps = 30
    e = lambda g: mpmath.quad(lambda z: g(z) * mpmath.npdf(z), [-mpmath.inf, 0, mpmath.inf])
    m2 = e(lambda z: f(z) ** 2)
    return m2 - e(f) ** 2 if centered else m2


def test_importable_without_torch_and_never_shadows_it():
    code = ("import sys; sys.modules['torch'] = None\n"        # torch 'absent'
            "import vanishcalc.torch as vt\n"
            "print(float(vt.calculate_gain('exp(-x**2)')))\n"
            "try:\n    vt.init_(object())\nexcept ImportError as e:\n    print('MISSING', e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == repr(5 ** 0.25)
    assert "pip install" in out.stdout
    torch = pytest.importorskip("torch", reason="torch is an optional extra (vanishcalc[torch])")
    import vanishcalc.torch as vt
    from vanishcalc.bridges.torch import _torch
    assert _torch() is torch and vt is not torch and hasattr(_torch(), "nn")


def test_calculate_gain_agrees_with_torch_where_torch_is_the_second_moment_gain():
    torch = pytest.importorskip("torch", reason="torch is an optional extra (vanishcalc[torch])")
    from vanishcalc.torch import calculate_gain
    for name, param in [("linear", None), ("conv2d", None), ("conv_transpose3d", None),
                        ("relu", None), ("leaky_relu", None), ("leaky_relu", 0.2), ("leaky_relu", 3)]:
        assert float(calculate_gain(name, param)) == pytest.approx(
            torch.nn.init.calculate_gain(name, param), rel=1e-14), (name, param)


def test_calculate_gain_where_torch_differs():
    from vanishcalc.torch import calculate_gain
    tanh = 1 / math.sqrt(_mp_second_moment(mpmath.tanh))
    assert float(calculate_gain("tanh")) == pytest.approx(float(tanh), rel=1e-12)
    assert abs(float(calculate_gain("tanh")) - 5 / 3) > 0.07          # torch: 5/3
    sig = 1 / math.sqrt(_mp_second_moment(lambda z: 1 / (1 + mpmath.exp(-z))))
    assert float(calculate_gain("sigmoid")) == pytest.approx(float(sig), rel=1e-12)  # torch: 1
    # selu: E[selu(z)²] = 1 (its fixed point), so the gain is 1, not torch's 3/4 (pytorch#54055)
    lam, alpha = mpmath.mpf("1.0507009873554804934193349852946"), mpmath.mpf("1.6732632423543772848170429916717")
    selu = lambda z: lam * (z if z > 0 else alpha * (mpmath.exp(z) - 1))
    assert float(calculate_gain("selu")) == pytest.approx(1 / math.sqrt(_mp_second_moment(selu)), rel=1e-9)
    assert float(calculate_gain("elu", 0.5)) == pytest.approx(float(1 / mpmath.sqrt(_mp_second_moment(
        lambda z: z if z > 0 else 0.5 * (mpmath.exp(z) - 1)))), rel=1e-12)
    with pytest.raises(VanishcalcError, match="number"):
        calculate_gain("leaky_relu", "0.2")


# NFNets (Brock et al. 2021, nfnets/base.py nonlinearities table): Monte Carlo values
NFNETS = {"relu": 1.7139588594436646, "tanh": 1.5939117670059204, "gelu": 1.7015043497085571,
          "silu": 1.7881293296813965, "sigmoid": 4.803835391998291, "softplus": 1.9203323125839233,
          "log_sigmoid": 1.9203323125839233, "elu": 1.2716004848480225, "selu": 1.0008515119552612}


@pytest.mark.parametrize("name", sorted(NFNETS))
def test_compute_gamma_matches_nfnets_table(name):
    from vanishcalc.torch import compute_gamma
    g = compute_gamma(name)
    assert abs(float(g) / NFNETS[name] - 1) < 1e-3      # their Monte Carlo error
    assert g.error < 1e-10


def test_compute_gamma_exact():
    from vanishcalc.torch import compute_gamma
    assert float(compute_gamma("relu")) == pytest.approx(1 / math.sqrt(0.5 - 1 / (2 * math.pi)), rel=1e-15)
    # log_sigmoid(x) = −softplus(−x): same variance, so the same γ (NFNets' MC gave one number
    # for both only by sharing the samples)
    a, b = compute_gamma("softplus"), compute_gamma("log_sigmoid")
    assert abs(float(a) - float(b)) <= a.error + b.error
    ref = 1 / mpmath.sqrt(_mp_second_moment(lambda z: mpmath.log(1 + mpmath.exp(z)), centered=True))
    assert float(a) == pytest.approx(float(ref), rel=1e-12)


def test_compute_gamma_reads_torch_functions_and_modules():
    torch = pytest.importorskip("torch", reason="torch is an optional extra (vanishcalc[torch])")
    from vanishcalc.torch import compute_gamma
    assert float(compute_gamma(torch.tanh)) == float(compute_gamma("tanh"))
    assert float(compute_gamma(torch.nn.functional.gelu)) == float(compute_gamma("gelu"))
    assert float(compute_gamma(torch.nn.LeakyReLU(0.2))) == float(compute_gamma("leaky_relu(x, 0.2)"))
    with pytest.raises(VanishcalcError, match="string"):
        compute_gamma(lambda x: x * 2)


# ---- the walker -------------------------------------------------------------------------------

def _mlp(torch, phi_module, depth, width, d_in=32, d_out=10, norm=False):
    nn = torch.nn
    layers = [nn.Linear(d_in, width)]
    for _ in range(depth - 1):
        if norm:
            layers.append(nn.BatchNorm1d(width))
        layers += [phi_module(), nn.Linear(width, width)]
    layers += [phi_module(), nn.Linear(width, d_out)]
    return nn.Sequential(*layers)


def _hidden_q(torch, model, x):
    """Mean square of each Linear's output on the batch x."""
    qs = []
    with torch.no_grad():
        for m in model:
            x = m(x)
            if isinstance(m, torch.nn.Linear):
                qs.append(float(x.pow(2).mean()))
    return qs


def test_init_gain_keeps_q_and_reports_each_layer():
    torch = pytest.importorskip("torch", reason="torch is an optional extra (vanishcalc[torch])")
    from vanishcalc.torch import init_
    gen = torch.manual_seed(0)
    model = _mlp(torch, torch.nn.Tanh, depth=20, width=512)
    report = init_(model, generator=gen)
    assert len(report.layers) == 21 and report.layers[0].phi == "linear"
    assert {r.phi for r in report.layers[1:]} == {"tanh"}
    for r, m in zip(report.layers, [m for m in model if isinstance(m, torch.nn.Linear)]):
        assert float(m.weight.detach().std()) == pytest.approx(r.std, rel=0.05)
        assert r.std == pytest.approx(r.sigma_w / math.sqrt(m.in_features), rel=1e-15)
        assert float(m.bias.detach().abs().max()) == 0
    x = torch.randn(256, 32, generator=gen)
    qs = _hidden_q(torch, model, x)
    assert qs[-2] == pytest.approx(1.0, rel=0.15)      # q = 1 is the gain's fixed point


def test_init_critical_starts_at_q_star():
    torch = pytest.importorskip("torch", reason="torch is an optional extra (vanishcalc[torch])")
    import vanishcalc
    from vanishcalc.torch import init_
    gen = torch.manual_seed(1)
    model = _mlp(torch, torch.nn.Tanh, depth=10, width=512)
    report = init_(model, method="critical", sigma_b=0.3, generator=gen)
    point = vanishcalc.critical_sigma_w("tanh", 0.3)
    assert report.layers[1].sigma_w == pytest.approx(float(point.sigma_w), rel=1e-12)
    assert report.layers[0].method == "critical-input"
    qs = _hidden_q(torch, model, torch.randn(256, 32, generator=gen))
    for q in qs[:-1]:
        assert q == pytest.approx(float(point.q_star), rel=0.2)


def test_init_conv_fans_and_norm_affine():
    torch = pytest.importorskip("torch", reason="torch is an optional extra (vanishcalc[torch])")
    import vanishcalc
    from vanishcalc.torch import init_
    nn = torch.nn
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Tanh(),
                          nn.Conv2d(8, 8, 5), nn.GELU(), nn.Flatten(), nn.Linear(8 * 16, 4))
    report = init_(model, norm={"rate": 1.05}, generator=torch.manual_seed(0))
    assert [r.fan_in for r in report.layers] == [27, 200, 128]
    a = vanishcalc.bn_affine("tanh", rate=1.05)
    assert float(model[1].weight.detach()[0]) == pytest.approx(a.gamma, rel=1e-6)
    assert report.norms[0].method == "bn_affine"
    # the second conv is fed by tanh(γ x + β): its gain is that φ's
    g = vanishcalc.gain(f"tanh({a.gamma!r}*x + {a.beta!r})")
    assert report.layers[1].sigma_w == pytest.approx(float(g), rel=1e-9)
    assert report.layers[2].phi == "gelu" and "Flatten" in report.passed[0]


def test_init_refuses_what_it_cannot_place():
    torch = pytest.importorskip("torch", reason="torch is an optional extra (vanishcalc[torch])")
    from vanishcalc.torch import init_
    nn = torch.nn

    class Weird(nn.Module):          # an activation the walker cannot read
        def forward(self, x):
            return x.abs()

    model = nn.Sequential(nn.Linear(4, 4), Weird(), nn.Linear(4, 4), nn.LSTM(4, 4), nn.MaxPool1d(2))
    with pytest.raises(VanishcalcError, match=r"1 \(Weird\).*3 \(LSTM\).*4 \(MaxPool1d\)"):
        init_(model)
    with pytest.warns(VanishcalcWarning, match="cannot place 3"):
        report = init_(model, on_unknown="warn")
    assert len(report.skipped) == 3
    # a spec for the unknown module by name places it
    model = nn.Sequential(nn.Linear(4, 4), Weird(), nn.Linear(4, 4))
    report = init_(model, spec={"1": "abs(x)"})
    assert report.layers[1].phi == "Abs(x)" or "abs" in report.layers[1].phi.lower()
    assert report.layers[1].sigma_w == pytest.approx(1.0, rel=1e-12)     # E|z|² = 1


def test_custom_containers_warn():
    torch = pytest.importorskip("torch", reason="torch is an optional extra (vanishcalc[torch])")
    from vanishcalc.torch import init_
    nn = torch.nn

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.act = nn.Linear(4, 4), nn.Tanh()

        def forward(self, x):
            return self.act(self.fc(x))

    model = nn.Sequential(Block(), Block(), nn.Linear(4, 2))
    with pytest.warns(VanishcalcWarning, match="registration order"):
        report = init_(model)
    assert [r.name for r in report.layers] == ["0.fc", "1.fc", "2"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        init_(model, assume_sequential=True)


def test_param_groups():
    torch = pytest.importorskip("torch", reason="torch is an optional extra (vanishcalc[torch])")
    import vanishcalc
    from vanishcalc.maps import Dense, Nonlinearity
    from vanishcalc.torch import init_, param_groups
    model = _mlp(torch, torch.nn.Tanh, depth=5, width=16, norm=True)
    report = init_(model, method="critical", sigma_b=0.1, norm={"rate": 1.05})
    groups = param_groups(model, 0.1, report)
    assert len(groups) == len(report.layers) + 1        # + the BN γ/β group
    ids = [id(p) for g in groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in model.parameters())
    ref = vanishcalc.lr_multipliers(report.maps_layers(), depth=1)
    assert [g["lr"] for g in groups[:-1]] == pytest.approx(0.1 * ref.multipliers, rel=1e-12)
    torch.optim.SGD(groups, lr=0.1)
    # plain chain: maps_layers is [Dense, φ, Dense, ...] with the walker's σw, σb
    plain = _mlp(torch, torch.nn.Tanh, depth=3, width=16)
    rep = init_(plain)
    chain = rep.maps_layers()
    assert [type(l).__name__ for l in chain] == ["Dense", "Nonlinearity"] * 3 + ["Dense"]
    with pytest.raises(VanishcalcError, match="2 multipliers for 4"):
        param_groups(plain, 0.1, rep, multipliers=[1, 2])


def test_init_rnn_at_the_recurrent_edge_of_chaos():
    torch = pytest.importorskip("torch", reason="torch is an optional extra (vanishcalc[torch])")
    import vanishcalc
    from vanishcalc.torch import init_
    nn = torch.nn
    model = nn.Sequential(nn.RNN(64, 512, batch_first=True))
    with pytest.raises(VanishcalcError, match="method='critical'"):
        init_(model)
    gen = torch.manual_seed(0)
    report = init_(model, method="critical", sigma_b=0.1, generator=gen)
    # independent reference: the feed-forward edge of chaos at the effective bias √(σb² + σu² x2)
    sw = float(vanishcalc.critical_sigma_w("tanh", math.sqrt(0.1 ** 2 + 1.0)).sigma_w)
    hh = report.layers[1]
    assert hh.sigma_w == pytest.approx(sw, rel=1e-12) and hh.method == "rnn-critical"
    rnn = model[0]
    assert float(rnn.weight_hh_l0.detach().std()) == pytest.approx(sw / math.sqrt(512), rel=0.01)
    assert float(rnn.bias_hh_l0.detach().abs().max()) == 0
    # the pre-activations settle at the fixed point q* of that feed-forward map
    q_star = float(vanishcalc.critical_sigma_w("tanh", math.sqrt(1.01)).q_star)
    x = torch.randn(64, 60, 64, generator=gen)
    with torch.no_grad():
        h, _ = model(x)
        a = torch.atanh(h[:, -1].clamp(-1 + 1e-6, 1 - 1e-6))
    assert float(a.pow(2).mean()) == pytest.approx(q_star, rel=0.1)
    with pytest.raises(VanishcalcError, match="num_layers > 1"):
        init_(nn.Sequential(nn.RNN(4, 4, num_layers=2)), method="critical")
    with pytest.raises(VanishcalcError, match="RNNMeanField"):
        report.maps_layers()
