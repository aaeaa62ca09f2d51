"""One layer's initializer numbers in the conventions torch, Keras 3 and JAX use.

A weight matrix W (fan_out × fan_in) drawn with entry std ``s`` maps inputs of second moment q
to pre-activations of second moment s²·fan_in·q.  torch.nn.init, keras.initializers.VarianceScaling
and jax.nn.initializers.variance_scaling all write ``s = gain / √fan`` (Keras/JAX: ``scale = gain²``)
with fan ∈ {fan_in, fan_out, (fan_in + fan_out)/2} and then draw from

* a normal with std ``s``;
* a uniform on [−limit, limit], limit = √3·s (its std is s);
* a normal truncated at ±2 of its own scale, with the scale s / 0.87962566103423978 so that the
  truncated draw has std s (the constant is the std of N(0, 1) cut to [−2, 2]; Keras#8048 —
  before it Keras used s itself and the weights came out 12 % too small);
* an orthogonal matrix times a gain (torch.nn.init.orthogonal_, keras Orthogonal, jax orthogonal).

Derivations and references: notes/bridges.md.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import VanishcalcError
from ..validate import real
from ..value import Value

MODES = ("fan_in", "fan_out", "fan_avg")
DISTRIBUTIONS = ("normal", "truncated_normal", "uniform", "orthogonal")
METHODS = ("gain", "critical")


def _truncated_normal_std(a: float = 2.0) -> float:
    """Std of N(0, 1) conditioned on |z| < a: √(1 − 2a·pdf(a)/(Φ(a) − Φ(−a)))."""
    pdf = math.exp(-a * a / 2) / math.sqrt(2 * math.pi)
    return math.sqrt(1 - 2 * a * pdf / math.erf(a / math.sqrt(2)))


# 0.87962566103423978 in Keras and JAX (Keras#8048); the formula gives it to the last bit.
TRUNCATED_NORMAL_STD = _truncated_normal_std(2.0)


@dataclass(frozen=True)
class InitSpec:
    """The numbers one layer's initializer needs.

    Attributes
    ----------
    spec : str
        φ, the nonlinearity that *feeds* this layer (its input is φ(previous pre-activation)).
    sigma_w : Value
        The weight scale: the gain (method "gain") or the edge-of-chaos σw (method "critical");
        Var(W_ij) = sigma_w² / fan for the normal/uniform/truncated draws.
    sigma_b : float or None
        Bias std (method "critical"); None for method "gain" (bias zero).
    fan_in, fan_out : int
    fan : float
        The fan the variance is divided by (mode).
    mode, distribution, convention, method : str
    std : float
        The weights' standard deviation (every distribution, orthogonal included).
    limit : float
        √3·std: the bound of the uniform draw with this std.
    trunc_std : float
        std / 0.87962566103423978: the scale of a normal cut at ±2 scales whose std is std.
    orthogonal_gain : float
        The gain for orthogonal_(W, gain): sigma_w · √max(1, fan_out/fan_in) (a tall W's orthonormal
        columns spread ‖x‖ over fan_out > fan_in units).
    q_star : Value or None
        The fixed point of the q-map (method "critical").
    """

    spec: str
    sigma_w: Value
    sigma_b: float | None
    fan_in: int
    fan_out: int
    fan: float
    mode: str
    distribution: str
    convention: str
    method: str
    std: float
    limit: float
    trunc_std: float
    orthogonal_gain: float
    q_star: Value | None = None

    @property
    def scale(self) -> float:
        """Keras/JAX VarianceScaling's ``scale`` (= sigma_w²)."""
        return float(self.sigma_w) ** 2

    def code(self, framework: str) -> str:
        """One line of code that draws this layer's weights in ``framework`` (torch|keras|jax)."""
        return _code(self, framework)

    def __repr__(self):
        sb = "" if self.sigma_b is None else f", sigma_b={self.sigma_b:.6g}"
        return (f"InitSpec({self.spec!r}, {self.method}: sigma_w={float(self.sigma_w):.10g}{sb}, "
                f"fan={self.fan:g} ({self.mode}), {self.distribution}: std={self.std:.6g}, "
                f"limit={self.limit:.6g}, trunc_std={self.trunc_std:.6g})")


def _fan(where, name, value):
    if isinstance(value, bool) or not isinstance(value, int) and not (
            isinstance(value, float) and value.is_integer()):
        raise VanishcalcError(f"{where}: {name} = {value!r} must be a positive integer "
                              "(the number of inputs/outputs of one unit, times the kernel size)")
    if value < 1:
        raise VanishcalcError(f"{where}: {name} = {value!r} must be ≥ 1")
    return int(value)


def init_spec(spec, fan_in, fan_out=None, *, mode="fan_in", distribution="normal",
              convention="second_moment", method=None, sigma_b=None, q=1.0) -> InitSpec:
    """Initializer numbers for a layer fed by φ = ``spec``, in torch/Keras/JAX conventions.

    Parameters
    ----------
    spec : str, sympy.Expr or Activation
        The nonlinearity applied to this layer's input (use "linear" for the first layer of
        a net fed by standardized data).
    fan_in, fan_out : int
        Inputs and outputs per unit (× kernel size for a convolution); fan_out defaults to fan_in.
    mode : {"fan_in", "fan_out", "fan_avg"}
        The fan the variance is divided by, as in torch's kaiming_* (fan_in/fan_out), xavier_*
        (fan_avg) and Keras/JAX VarianceScaling.
    distribution : {"normal", "truncated_normal", "uniform", "orthogonal"}
        Only changes which of std/limit/trunc_std/orthogonal_gain you use; all have std ``std``.
    convention : {"second_moment", "std", "backward"}
        The gain convention of :func:`vanishcalc.gain` (method "gain" only).
    method : {"gain", "critical"}, optional
        "gain": σw = gain(φ) at input second moment ``q``, no bias.  "critical": the edge of
        chaos, σw = critical_sigma_w(φ, σb) (χ1 = 1) with bias std σb.  Default: "critical"
        when sigma_b is given, else "gain".
    sigma_b : float, optional
        Bias std for method "critical" (default 0 there).
    q : float
        Input second moment for method "gain" (default 1).

    Returns
    -------
    InitSpec

    Examples
    --------
    >>> s = init_spec("exp(-x**2)", 128)
    >>> round(s.std, 6), round(s.limit, 6), round(s.trunc_std, 6)
    (0.132171, 0.228928, 0.150259)
    """
    w = "init_spec"
    fan_in = _fan(w, "fan_in", fan_in)
    fan_out = fan_in if fan_out is None else _fan(w, "fan_out", fan_out)
    if mode not in MODES:
        raise VanishcalcError(f"{w}: mode = {mode!r} is unknown; use one of {', '.join(MODES)}")
    if distribution not in DISTRIBUTIONS:
        hint = (" (Keras's 'untruncated_normal' is 'normal' here; Keras's 'normal' is truncated)"
                if distribution == "untruncated_normal" else "")
        raise VanishcalcError(f"{w}: distribution = {distribution!r} is unknown; use one of "
                              f"{', '.join(DISTRIBUTIONS)}{hint}")
    if method is None:
        method = "gain" if sigma_b is None else "critical"
    if method not in METHODS:
        raise VanishcalcError(f"{w}: method = {method!r} is unknown; use 'gain' (variance "
                              "preserving) or 'critical' (edge of chaos, with sigma_b)")
    if distribution == "orthogonal" and mode != "fan_in":
        raise VanishcalcError(f"{w}: an orthogonal W preserves the forward pass only; mode must "
                              f"be 'fan_in' (got {mode!r})")
    q_star = None
    if method == "gain":
        if sigma_b is not None:
            raise VanishcalcError(f"{w}: sigma_b = {sigma_b!r} with method='gain': the gain keeps "
                                  "q fixed only without a bias; use method='critical' for σb > 0")
        from ..solve.gain import gain
        sigma_w = gain(spec, convention=convention, q=q)
    else:
        if convention != "second_moment":
            raise VanishcalcError(f"{w}: convention = {convention!r} applies to method='gain'; "
                                  "the edge of chaos has no gain convention")
        sb = real(w, "sigma_b", 0.0 if sigma_b is None else sigma_b, nonneg=True,
                  why="(the bias std)")
        from ..solve.criticality import critical_sigma_w
        point = critical_sigma_w(spec, sb)
        sigma_w, q_star, sigma_b = point.sigma_w, point.q_star, sb
    fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]
    sw = float(sigma_w)
    ortho = sw * math.sqrt(max(1.0, fan_out / fan_in))
    # orthogonal: Σ W_ij² = ortho²·min(in, out), so the entries' std is sw/√fan_in either way
    std = sw / math.sqrt(fan_in if distribution == "orthogonal" else fan)
    return InitSpec(spec=_name(spec), sigma_w=sigma_w, sigma_b=sigma_b, fan_in=fan_in,
                    fan_out=fan_out, fan=float(fan), mode=mode, distribution=distribution,
                    convention=convention, method=method, std=std, limit=math.sqrt(3) * std,
                    trunc_std=std / TRUNCATED_NORMAL_STD, orthogonal_gain=ortho, q_star=q_star)


def _name(spec):
    from ..activation import activation
    return activation(spec).name


def _code(s: InitSpec, framework: str) -> str:
    d = s.distribution
    if framework == "torch":
        if d == "orthogonal":
            w = f"torch.nn.init.orthogonal_(layer.weight, gain={s.orthogonal_gain!r})"
        elif d == "normal":
            w = f"torch.nn.init.normal_(layer.weight, std={s.std!r})"
        elif d == "uniform":
            w = f"torch.nn.init.uniform_(layer.weight, -{s.limit!r}, {s.limit!r})"
        else:
            w = (f"torch.nn.init.trunc_normal_(layer.weight, std={s.trunc_std!r}, "
                 f"a=-{2 * s.trunc_std!r}, b={2 * s.trunc_std!r})")
        b = ("torch.nn.init.zeros_(layer.bias)" if not s.sigma_b else
             f"torch.nn.init.normal_(layer.bias, std={s.sigma_b!r})")
        return f"{w}; {b}"
    if framework == "keras":
        if d == "orthogonal":
            k = f"keras.initializers.Orthogonal(gain={s.orthogonal_gain!r})"
        else:
            kd = {"normal": "untruncated_normal", "truncated_normal": "truncated_normal",
                  "uniform": "uniform"}[d]
            k = (f"keras.initializers.VarianceScaling(scale={s.scale!r}, mode={s.mode!r}, "
                 f"distribution={kd!r})")
        b = ("'zeros'" if not s.sigma_b else
             f"keras.initializers.RandomNormal(stddev={s.sigma_b!r})")
        return f"kernel_initializer={k}, bias_initializer={b}"
    if framework == "jax":
        if d == "orthogonal":
            k = f"jax.nn.initializers.orthogonal(scale={s.orthogonal_gain!r})"
        else:
            k = (f"jax.nn.initializers.variance_scaling({s.scale!r}, {s.mode!r}, {d!r})")
        b = ("jax.nn.initializers.zeros" if not s.sigma_b else
             f"jax.nn.initializers.normal(stddev={s.sigma_b!r})")
        return f"kernel_init={k}, bias_init={b}"
    raise VanishcalcError(f"code: framework = {framework!r} is unknown; use torch, keras or jax")
