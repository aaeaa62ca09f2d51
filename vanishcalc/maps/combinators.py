"""``serial`` and ``repeat``: layers composed are again a layer (Neural Tangents' ``stax.serial``).

The forward map folds the layers; the backward factor, ∂q/∂q and ∂c/∂c multiply along the
intermediate forward states (chain rule; the q-map of a single input does not depend on c,
so the c-slopes at fixed q multiply).
"""
from __future__ import annotations


from ..errors import VanishcalcError
from ..validate import integer
from .layer import Layer
from .state import MomentState


class Serial(Layer):
    """Layers applied in order."""

    def __init__(self, layers):
        flat = []
        for layer in layers:
            if isinstance(layer, Serial):
                flat.extend(layer.children)
            elif isinstance(layer, Layer):
                flat.append(layer)
            else:
                raise VanishcalcError(f"serial: {layer!r} is not a layer; use Dense(...), "
                                      "Activation(...) or another vanishcalc.maps layer")
        self.children = tuple(flat)

    def states(self, state: MomentState):
        """The input state of every child and the final output: len(children) + 1 states."""
        out = [state]
        for layer in self.children:
            state = layer.moment_map(state)
            out.append(state)
        return out

    def moment_map(self, state):
        for layer in self.children:
            state = layer.moment_map(state)
        return state

    def _product(self, state, method):
        total = 1.0
        for layer, s in zip(self.children, self.states(state)):
            total *= getattr(layer, method)(s)
        return total

    def grad_factor(self, state):
        return self._product(state, "grad_factor")

    def q_slope(self, state):
        return self._product(state, "q_slope")

    def c_slope(self, state):
        return self._product(state, "c_slope")

    def moments_expr(self, q, cov, symbolic=False):
        for layer in self.children:
            try:
                res = layer.moments_expr(q, cov, symbolic=symbolic)
            except TypeError:
                res = layer.moments_expr(q, cov)
            if res is None:
                return None
            q, cov = res
        return q, cov

    @property
    def layers(self):
        return self.children

    def __repr__(self):
        return "serial(" + ", ".join(map(repr, self.children)) + ")"


def serial(*layers) -> Serial:
    """The composition of ``layers`` (applied left to right) as one layer.

    >>> from vanishcalc.maps import Activation, Dense, serial
    >>> serial(Activation("tanh"), Dense(1.5, 0.1))
    serial(Activation('tanh'), Dense(sigma_w=1.5, sigma_b=0.1))
    """
    if len(layers) == 1 and isinstance(layers[0], (list, tuple)):
        layers = tuple(layers[0])
    if not layers:
        raise VanishcalcError("serial: needs at least one layer")
    return Serial(layers)


class Repeat(Serial):
    """``block`` applied ``depth`` times; stores the block once."""

    def __init__(self, block, depth):
        depth = integer("repeat", "depth", depth, 0)
        self.block = block if isinstance(block, Layer) else serial(block)
        self.depth = depth
        super().__init__([self.block] * depth if depth else [])

    def __repr__(self):
        return f"repeat({self.block!r}, {self.depth})"


def repeat(block, depth: int) -> Repeat:
    """``block`` composed with itself ``depth`` times."""
    return Repeat(block, depth)
