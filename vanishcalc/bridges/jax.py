"""JAX/Flax bridge: initializer functions with jax.nn.initializers' signature
``init(key, shape, dtype)``, for ``flax.linen.Dense(kernel_init=..., bias_init=...)`` and
``flax.nnx.Linear``.  jax is imported inside the functions.  Conventions: notes/bridges.md.
"""
from __future__ import annotations

from ..errors import MissingDependencyError, VanishcalcError
from .init_spec import init_spec


def _jax():
    try:
        import jax
    except ImportError as exc:
        raise MissingDependencyError("this needs jax: pip install 'vanishcalc[jax]'") from exc
    return jax


def initializer(spec, *, mode="fan_in", distribution="normal", convention="second_moment",
                method=None, sigma_b=None, in_axis=-2, out_axis=-1, dtype=None):
    """A kernel initializer for a layer fed by φ: ``jax.nn.initializers.variance_scaling`` with
    scale = σw² (method "gain": gain(φ); "critical": critical_sigma_w(φ, σb)), or
    ``orthogonal(scale=σw)`` for distribution="orthogonal" (square or wide kernels; for a tall
    one use init_spec(...).orthogonal_gain).

    Examples
    --------
    >>> init = initializer("exp(-x**2)")                  # doctest: +SKIP
    >>> flax.linen.Dense(128, kernel_init=init)          # doctest: +SKIP
    """
    jax = _jax()
    s = init_spec(spec, 1, distribution=distribution, convention=convention, method=method,
                  sigma_b=sigma_b, mode="fan_in" if distribution == "orthogonal" else mode)
    kw = {} if dtype is None else {"dtype": dtype}
    if distribution == "orthogonal":
        return jax.nn.initializers.orthogonal(scale=float(s.sigma_w), column_axis=out_axis, **kw)
    return jax.nn.initializers.variance_scaling(s.scale, mode, distribution, in_axis=in_axis,
                                                out_axis=out_axis, **kw)


def bias_initializer(spec=None, *, sigma_b=None):
    """The bias initializer that goes with :func:`initializer`: N(0, σb²) at the edge of
    chaos, zeros otherwise (``spec`` is accepted for symmetry; the bias std does not depend on φ)."""
    jax = _jax()
    if sigma_b is None or sigma_b == 0:
        return jax.nn.initializers.zeros
    if isinstance(sigma_b, bool) or not isinstance(sigma_b, (int, float)) or sigma_b < 0:
        raise VanishcalcError(f"bias_initializer: sigma_b = {sigma_b!r} must be a number ≥ 0")
    return jax.nn.initializers.normal(stddev=float(sigma_b))
