"""Composed stacks (Dense / BatchNorm / LayerNorm / Activation) and RNNs: the public names.

A stable import path, nothing more: :func:`simulate_stack` and :func:`measure_rate` run on the
CPU backend (``sim/cpu/composed.py``), :func:`simulate_rnn` is the front door's
(``sim/api.py``: ``backend="cpu"|"cuda"|"auto"``); the op program and :class:`ComposedTrace`
are ``sim/program.py``'s.  ``vanishcalc.simulate(block, ...)`` is the one entry point that
chooses the backend for a composed stack.
"""
from __future__ import annotations

from .api import simulate_rnn
from .cpu.composed import measure_rate, simulate_stack
from .program import OP_ACT, OP_BN, OP_DENSE, OP_LN, ComposedTrace

__all__ = ["simulate_stack", "simulate_rnn", "measure_rate", "ComposedTrace", "OP_ACT", "OP_BN",
           "OP_DENSE", "OP_LN"]
