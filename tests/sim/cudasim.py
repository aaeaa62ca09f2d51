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
import textwrap

REAL_GPU = os.environ.get("VANISHCALC_TEST_REAL_GPU") == "1"


def child_env(simulate: bool) -> dict:
    """This process's environment with the CUDA simulator switched on or off."""
    env = dict(os.environ)
    env.pop("NUMBA_ENABLE_CUDASIM", None)
    if simulate:
        env["NUMBA_ENABLE_CUDASIM"] = "1"
    return env


#: The start of every kernel-running child script: its group and cases from argv, and a
#: ``skip`` answer when numba.cuda cannot be imported.
CHILD_HEADER = """
import json, math, sys
# The simulator's launcher busy-polls its block's threads under the GIL; a shorter switch
# interval than the default 5 ms makes the children about 3x faster.
sys.setswitchinterval(5e-4)
group, cases = sys.argv[1], json.loads(sys.argv[2])
try:
    from numba import cuda  # noqa: F401
except ImportError as exc:
    print(json.dumps({"skip": f"numba.cuda cannot be imported: {exc}"}))
    raise SystemExit(0)
"""


def child_script(body: str) -> str:
    """:data:`CHILD_HEADER` followed by ``body`` (dedented): a script for :func:`start`."""
    return CHILD_HEADER + textwrap.dedent(body)


def finish(proc, timeout: float = 600) -> dict:
    """The JSON of a child's last stdout line; its stderr on failure; a pytest skip when the
    child said ``skip``."""
    import pytest
    out, err = proc.communicate(timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"CUDA child process failed (rc={proc.returncode}):\n{err[-4000:]}")
    res = json.loads(out.strip().splitlines()[-1])
    if "skip" in res:
        pytest.skip(res["skip"])
    return res


def start(script: str, group: str, cases: dict, simulate: bool = not REAL_GPU):
    """Start ``python -c script group json(cases)``; its last stdout line is JSON."""
    return subprocess.Popen([sys.executable, "-c", script, group, json.dumps(cases)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=child_env(simulate))


# The kernels' streams in Python live with the other independent references
# (tests/reference/replay.py); re-exported for the CUDA test files.
from tests.reference.replay import Stream  # noqa: E402,F401
