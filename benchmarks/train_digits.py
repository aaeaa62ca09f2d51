"""Deep saturating MLPs on scikit-learn's digits: torch's default init vs Xavier vs vanishcalc.

    python benchmarks/train_digits.py                  # the full run (≈ the budget in RESULTS.md)
    python benchmarks/train_digits.py --depths 100 --repeats 1 --epochs 2   # a smoke run

MLPs of width 128 and depth L (L hidden layers: Linear(64,128), then (φ, Linear(128,128)) ×
(L − 1), φ, Linear(128, 10)) with φ ∈ {tanh, sigmoid, exp(−x²), x/√(1+x²) (a user expression)},
trained with SGD (momentum 0.9, lr 0.01, batch 64, cross-entropy) for a fixed number of epochs on
load_digits (1797 8×8 images; 1347 train / 450 test, features standardized on the train split;
no download).  Inits:

  default       torch's own (kaiming_uniform_(a=√5): σw² = 1/3, bias U(±1/√fan_in))
  xavier        xavier_normal_ (gain 1), bias 0
  vc-gain       vanishcalc.torch.init_(model): σw = gain(φ) (second moment), bias 0
  vc-critical   init_(model, method="critical", sigma_b=0.05): edge of chaos, χ1 = 1
  vc-bn         BatchNorm1d before every φ, γ, β = bn_affine(φ, rate=1.05) (exp(−x²): β = 1)
  vc-crit+lr    vc-critical + param_groups(): per-layer LR multipliers (rule "relative")
  vc-dks        φ replaced by its DKS transform for this depth, vanishcalc.transform(φ, "dks",
                depth=L): φ̂(x) = s·(φ(a·x + b) + c); hidden 128×128 weights orthogonal (σw = 1),
                the first layer N(0, 1/fan_in), biases 0 (Martens et al. 2021)

Also: per-example squared gradient norms of every hidden 128×128 weight at init (mean over 16
examples), against the mean-field prediction g_l · q^x_{l−1} (vanishcalc.lr_multipliers on the
model's chain), both relative to the last hidden layer.
Writes benchmarks/train_digits.json and benchmarks/train_digits.png; prints markdown tables.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from torch import nn  # noqa: E402

import vanishcalc  # noqa: E402
from vanishcalc.maps import Dense, Nonlinearity  # noqa: E402
from vanishcalc.torch import init_, param_groups  # noqa: E402

WIDTH, D_IN, D_OUT = 128, 64, 10
SIGMA_B = 0.05     # edge of chaos at small σb: q* small, c → 1 slowest (Schoenholz et al. 2017)
BN = {"tanh": {"rate": 1.05}, "sigmoid": {"rate": 1.05}, "exp(-x**2)": {"rate": 1.05, "beta": 1.0},
      "x/sqrt(1+x**2)": {"rate": 1.05}}


class Expr(nn.Module):
    """An activation given by a formula; ``vanishcalc_spec`` tells the walker which one."""

    def __init__(self, spec):
        super().__init__()
        self.vanishcalc_spec = spec

    def forward(self, x):
        if self.vanishcalc_spec == "exp(-x**2)":
            return torch.exp(-x * x)
        if self.vanishcalc_spec == "x/sqrt(1+x**2)":
            return x * torch.rsqrt(1 + x * x)
        raise ValueError(self.vanishcalc_spec)


def phi_module(spec):
    return {"tanh": nn.Tanh, "sigmoid": nn.Sigmoid}.get(spec, lambda: Expr(spec))()


class Transformed(nn.Module):
    """φ̂(x) = s·(φ(a·x + b) + c), the DKS-transformed unit."""

    def __init__(self, spec, t):
        super().__init__()
        self.phi = phi_module(spec)
        self.a, self.b = float(t.input_scale), float(t.input_shift)
        self.c, self.s = float(t.output_shift), float(t.output_scale)

    def forward(self, x):
        return self.s * (self.phi(self.a * x + self.b) + self.c)


def mlp(spec, depth, bn=False, unit=None):
    unit = unit or (lambda: phi_module(spec))
    layers = [nn.Linear(D_IN, WIDTH)]
    for _ in range(depth - 1):
        layers += ([nn.BatchNorm1d(WIDTH)] if bn else []) + [unit(), nn.Linear(WIDTH, WIDTH)]
    layers += ([nn.BatchNorm1d(WIDTH)] if bn else []) + [unit(), nn.Linear(WIDTH, D_OUT)]
    return nn.Sequential(*layers)


def dks(spec, depth):
    return vanishcalc.transform(spec, "dks", depth=depth)


def data():
    from sklearn.datasets import load_digits
    x, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(x))
    tr, te = idx[:1347], idx[1347:]
    mu, sd = x[tr].mean(0), x[tr].std(0)
    sd[sd == 0] = 1.0                  # constant pixels stay 0
    x = (x - mu) / sd
    t = lambda a: torch.tensor(a, dtype=torch.float32)
    return t(x[tr]), torch.tensor(y[tr]), t(x[te]), torch.tensor(y[te]), float((x[tr] ** 2).mean())


def build(spec, depth, init, seed):
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    t = dks(spec, depth) if init == "vc-dks" else None
    model = mlp(spec, depth, bn=(init == "vc-bn"), unit=(lambda: Transformed(spec, t)) if t else None)
    report = None
    if init == "vc-dks":
        with torch.no_grad():
            for m in model:
                if isinstance(m, nn.Linear):
                    if m.weight.shape[0] == m.weight.shape[1]:
                        nn.init.orthogonal_(m.weight, generator=gen)
                    else:
                        nn.init.normal_(m.weight, std=1 / math.sqrt(m.weight.shape[1]),
                                        generator=gen)
                    m.bias.zero_()
    elif init == "xavier":
        with torch.no_grad():
            for m in model:
                if isinstance(m, nn.Linear):
                    nn.init.xavier_normal_(m.weight, generator=gen)
                    m.bias.zero_()
    elif init == "vc-gain":
        report = init_(model, generator=gen)
    elif init in ("vc-critical", "vc-crit+lr"):
        report = init_(model, method="critical", sigma_b=SIGMA_B, generator=gen)
    elif init == "vc-bn":
        report = init_(model, norm=BN[spec], generator=gen)
    return model, report


def chain_for(spec, depth, init, report):
    """The mean-field chain of the initialized model (for the gradient prediction)."""
    if report is not None:
        return report.maps_layers()
    if init == "vc-dks":
        chain = [Dense(1.0, 0.0)]
        for _ in range(depth):
            chain += [Nonlinearity(dks(spec, depth)), Dense(1.0, 0.0)]
        return chain
    fans = [D_IN] + [WIDTH] * depth
    outs = [WIDTH] * depth + [D_OUT]
    chain = []
    for i, (fi, fo) in enumerate(zip(fans, outs)):
        if init == "default":       # U(±1/√fan_in) weights (kaiming a=√5) and biases
            sw, sb = math.sqrt(1 / 3), math.sqrt(1 / (3 * fi))
        else:                       # xavier_normal_: var 2/(fi+fo)
            sw, sb = math.sqrt(2 * fi / (fi + fo)), 0.0
        if i:
            chain.append(Nonlinearity(spec))
        chain.append(Dense(sw, sb))
    return chain


def grad_profile(model, x, y, n=16):
    """Mean over n examples of ‖∇W_l‖_F² (per-example loss) for every Linear."""
    lin = [m for m in model if isinstance(m, nn.Linear)]
    acc = np.zeros(len(lin))
    model.train()
    for i in range(n):
        model.zero_grad()
        loss = nn.functional.cross_entropy(model(x[i:i + 1]), y[i:i + 1])
        loss.backward()
        acc += [float(m.weight.grad.pow(2).sum()) for m in lin]
    model.zero_grad()
    return acc / n


def train(model, groups, xtr, ytr, xte, yte, epochs, seed, lr, optimizer="sgd"):
    params = groups if groups is not None else model.parameters()
    opt = (torch.optim.SGD(params, lr=lr, momentum=0.9) if optimizer == "sgd"
           else torch.optim.Adam(params, lr=lr))
    gen = torch.Generator().manual_seed(seed)
    n = len(xtr)
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(n, generator=gen)
        for s in range(0, n, 64):
            b = perm[s:s + 64]
            if len(b) < 2:
                continue
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(xtr[b]), ytr[b])
            if not torch.isfinite(loss):
                return float("nan"), float("nan")
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        acc = float((model(xte).argmax(1) == yte).float().mean())
        tr_loss = float(nn.functional.cross_entropy(model(xtr), ytr))
    return acc, tr_loss


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--depths", type=int, nargs="+", default=[50, 100])
    ap.add_argument("--phis", nargs="+", default=["tanh", "sigmoid", "exp(-x**2)", "x/sqrt(1+x**2)"])
    ap.add_argument("--inits", nargs="+",
                    default=["default", "xavier", "vc-gain", "vc-critical", "vc-bn", "vc-crit+lr"])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd")
    ap.add_argument("--out", default=str(Path(__file__).with_name("train_digits")))
    ap.add_argument("--from-json", action="store_true",
                    help="only print the tables and draw the plot of OUT.json (no training)")
    args = ap.parse_args()
    if args.from_json:
        saved = json.loads(Path(args.out + ".json").read_text())
        saved_args = argparse.Namespace(**{**saved["args"], "out": args.out})
        print_tables(saved["results"], saved["grads"], saved_args)
        plot(saved["results"], saved["grads"], saved_args)
        return
    torch.set_num_threads(1)
    xtr, ytr, xte, yte, q0 = data()
    t0 = time.perf_counter()
    results, grads = [], []
    for depth in args.depths:
        for spec in args.phis:
            for init in args.inits:
                accs = []
                for rep in range(args.repeats):
                    model, report = build(spec, depth, init, seed=1000 * rep + depth)
                    if rep == 0 and depth == max(args.depths) and init != "vc-bn":
                        measured = grad_profile(model, xtr, ytr)
                        pred = vanishcalc.lr_multipliers(chain_for(spec, depth, init, report),
                                                         depth=1, q0=q0)
                        p = np.asarray(pred.grad) * np.asarray(pred.input_q)
                        hid = slice(1, depth)            # the 128×128 layers
                        m_rel = measured[hid] / measured[depth - 1]
                        p_rel = p[hid] / p[depth - 1]
                        grads.append(dict(depth=depth, phi=spec, init=init,
                                          measured=m_rel.tolist(), predicted=p_rel.tolist()))
                    groups = param_groups(model, args.lr, report) if init == "vc-crit+lr" else None
                    acc, loss = train(model, groups, xtr, ytr, xte, yte, args.epochs,
                                      seed=rep, lr=args.lr, optimizer=args.optimizer)
                    accs.append(acc)
                results.append(dict(depth=depth, phi=spec, init=init, acc=accs))
                print(f"[{time.perf_counter() - t0:7.1f}s] depth {depth:3d} {spec:15s} {init:12s} "
                      f"test acc {' '.join(f'{a:.3f}' for a in accs)}", flush=True)
    Path(args.out + ".json").write_text(json.dumps(dict(args=vars(args), results=results,
                                                        grads=grads), indent=1))
    print_tables(results, grads, args)
    plot(results, grads, args)
    print(f"total {time.perf_counter() - t0:.0f} s")


def _fmt(accs):
    ok = [a for a in accs if a == a]
    if not ok:
        return "diverged"
    mean = statistics.mean(ok)
    return f"{mean:.3f}" + (f" ± {statistics.stdev(ok):.3f}" if len(ok) > 1 else "") + (
        "" if len(ok) == len(accs) else f" ({len(accs) - len(ok)} NaN)")


def print_tables(results, grads, args):
    print(f"\ntest accuracy after {args.epochs} epochs (mean ± sd over {args.repeats} seeds; "
          "chance 0.1)\n")
    print("| depth | φ | " + " | ".join(args.inits) + " |")
    print("|---|---|" + "---|" * len(args.inits))
    for depth in args.depths:
        for spec in args.phis:
            row = {r["init"]: r["acc"] for r in results if r["depth"] == depth and r["phi"] == spec}
            print(f"| {depth} | `{spec}` | " + " | ".join(_fmt(row[i]) for i in args.inits) + " |")
    print("\nper-example ‖∇W_l‖² at init, first hidden layer relative to the last (log10): "
          "measured / mean-field prediction; worst |log10(measured/predicted)| over layers\n")
    print("| depth | φ | init | measured | predicted | worst layer |")
    print("|---|---|---|---|---|---|")
    for g in grads:
        m, p = np.asarray(g["measured"]), np.asarray(g["predicted"])
        ok = m > 0                     # float32 gradients below ~1e-45 are 0
        worst = f"{np.max(np.abs(np.log10(m[ok] / p[ok]))):.2f}" if ok.any() else "—"
        if not ok.all():
            worst += f" ({int((~ok).sum())} layers underflow float32)"
        first = f"{np.log10(m[0]):.2f}" if m[0] > 0 else "0 (underflow)"
        print(f"| {g['depth']} | `{g['phi']}` | {g['init']} | {first} | "
              f"{np.log10(p[0]):.2f} | {worst} |")


def plot(results, grads, args):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib absent: no plot")
        return
    depth = max(args.depths)
    have = [p for p in args.phis if any(g["phi"] == p for g in grads)]
    gphis = ([p for p in ("tanh", "exp(-x**2)") if p in have] or have)[:2]
    fig, axes = plt.subplots(1, 1 + len(gphis), figsize=(5 + 4.5 * len(gphis), 4.2))
    axes = np.atleast_1d(axes)
    ax = axes[0]
    w = 0.8 / len(args.inits)
    for k, init in enumerate(args.inits):
        means = []
        for spec in args.phis:
            accs = [a for r in results if r["depth"] == depth and r["phi"] == spec
                    and r["init"] == init for a in r["acc"] if a == a]
            means.append(statistics.mean(accs) if accs else 0.0)
        ax.bar(np.arange(len(args.phis)) + k * w, means, w, label=init)
    ax.set_xticks(np.arange(len(args.phis)) + 0.4 - w / 2, args.phis, fontsize=8)
    ax.axhline(0.1, color="k", lw=0.5, ls=":")
    ax.set_ylabel(f"test accuracy, depth {depth}, {args.epochs} epochs")
    ax.legend(fontsize=7)
    for ax, spec in zip(axes[1:], gphis):
        for g in grads:
            if g["phi"] != spec or g["depth"] != depth:
                continue
            l, = ax.semilogy(range(1, depth), g["measured"], ".", ms=3, label=f"{g['init']} measured")
            ax.semilogy(range(1, depth), g["predicted"], "-", color=l.get_color(), lw=1)
        ax.set_title(f"{spec}, depth {depth}: ‖∇W_l‖² / last (lines: mean field)", fontsize=9)
        ax.set_xlabel("layer l")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.out + ".png", dpi=110)


if __name__ == "__main__":
    main()
