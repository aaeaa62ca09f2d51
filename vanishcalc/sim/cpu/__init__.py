"""The CPU backend: ``@njit`` bodies of each network op and the ensemble loops over nets.

* :mod:`.rng`      xoroshiro128+ streams (one per net) and ziggurat normals;
* :mod:`.dense`    the plain dense net (4-column exact conditional sampling, any width);
* :mod:`.ops`      the ``@njit`` steps both kernel files below use (standardization,
  per-layer statistics);
* :mod:`.composed` the op program of ``sim/program.py`` (Dense / BatchNorm / LayerNorm /
  Activation / RBF / residual save and add / dropout) and the RNN;
* :mod:`.rnn_norm` the RNN with recurrent BatchNorm / LayerNorm.

Imports ``sim/program.py``, ``sim/source.py``, ``sim/compile.py`` and ``sim/limits.py`` only
(never ``api``, ``check`` or ``cuda``).  :func:`run_dense` is the backend contract
``sim/api.py`` calls.
"""
from __future__ import annotations

from ..compile import configure_threading

configure_threading()        # fork-safe layer, before any parallel kernel runs (compile.py)

from .composed import measure_rate, simulate_rnn, simulate_stack  # noqa: E402
from .dense import run_dense  # noqa: E402
from .rng import fill_normal, normal, seed_states  # noqa: E402

__all__ = ["run_dense", "simulate_stack", "simulate_rnn", "measure_rate", "seed_states",
           "normal", "fill_normal"]
