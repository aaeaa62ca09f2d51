"""The CUDA backend (``backend="cuda"``): ``@cuda.jit`` bodies of each network op and launches.

* :mod:`.runtime`  ``numba.cuda`` on demand, availability, φ as device functions, compilation
  (on-disk cache + notice), the simulator patch;
* :mod:`.rng`      xoroshiro128+ device streams, seeded on the host;
* :mod:`.dense`    the plain dense-net kernel (4-column exact conditional sampling);
* :mod:`.summary`  its per-net sums reduced over nets on the device (per-layer sums back,
  per-net arrays copied only on request);
* :mod:`.blocks`   device functions both kernel files below use (Box–Muller, block
  reductions, per-layer statistics, standardization);
* :mod:`.composed` the op program of ``sim/program.py`` (Dense / BatchNorm / LayerNorm /
  Activation / RBF / residual save and add / dropout) and the RNN;
* :mod:`.rnn_norm` the RNN with recurrent BatchNorm / LayerNorm.

Importing this package never imports ``numba.cuda`` (nor needs a GPU): every module reaches
it through :func:`runtime.import_cuda` inside functions.  Imports ``sim/program.py``,
``sim/source.py``, ``sim/compile.py`` and ``sim/limits.py`` only (never ``api``, ``check`` or
``cpu``).  :func:`run_dense` and :func:`is_available` are the backend contract ``sim/api.py``
calls.
"""
from __future__ import annotations

from .dense import (MAX_NET_BLOCKS, MAX_THREADS, N_GRAM, N_STATS, PIVOT_RTOL, SAT_FRACTION,
                    CudaOrthogonalError, kernel_functions, kernels, run_dense)
from .summary import (SUMMARY_KERNELS, DeviceRaw, reduce_on_device, summary_kernel_functions,
                      summary_kernels)
from .rng import load_state, rng_device_functions, rng_states, store_state
from .runtime import (CudaUnavailableError, check_numba_cuda, compile_kernels, cuda_available,
                      device_functions, import_cuda, is_available, next_pow2, quiet_simulator,
                      require_device, simulator_enabled)

__all__ = ["run_dense", "cuda_available", "is_available", "simulator_enabled", "kernels",
           "kernel_functions", "check_numba_cuda", "CudaUnavailableError", "CudaOrthogonalError",
           "MAX_THREADS", "MAX_NET_BLOCKS", "N_STATS", "N_GRAM", "PIVOT_RTOL", "SAT_FRACTION",
           "import_cuda", "require_device", "device_functions", "compile_kernels", "next_pow2",
           "quiet_simulator", "rng_states", "rng_device_functions", "load_state", "store_state",
           "SUMMARY_KERNELS", "DeviceRaw", "reduce_on_device", "summary_kernel_functions",
           "summary_kernels"]
