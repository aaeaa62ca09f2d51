"""Running CUDA kernels in a child process, shared by the CUDA test files.

``NUMBA_ENABLE_CUDASIM=1`` only takes effect if it is set before numba is imported, so the
kernels run in children whose environment has it (or, with VANISHCALC_TEST_REAL_GPU=1, does
not, and the children use the real GPU).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

REAL_GPU = os.environ.get("VANISHCALC_TEST_REAL_GPU") == "1"


def child_env(simulate: bool) -> dict:
    """This process's environment with the CUDA simulator switched on or off."""
    env = dict(os.environ)
    env.pop("NUMBA_ENABLE_CUDASIM", None)
    if simulate:
        env["NUMBA_ENABLE_CUDASIM"] = "1"
    return env


def start(script: str, group: str, cases: dict, simulate: bool = not REAL_GPU):
    """Start ``python -c script group json(cases)``; its last stdout line is JSON."""
    return subprocess.Popen([sys.executable, "-c", script, group, json.dumps(cases)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=child_env(simulate))


# The kernels' streams in Python live with the other independent references
# (tests/reference/replay.py); re-exported for the CUDA test files.
from tests.reference.replay import Stream  # noqa: E402,F401
