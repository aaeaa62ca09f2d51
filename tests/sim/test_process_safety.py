"""Processes and caches (issue 11.5) and the compile notice (issue 10.9), in fresh processes.

* fork after ``simulate``: with GNU OpenMP as Numba's threading layer the child died
  ("fork() called from a process already using GNU OpenMP"); the CPU kernels now ask for a
  fork-safe layer and serialize their launches.
* a corrupted Numba cache (random bytes in a .nbi, a truncated .nbc) made every later
  ``simulate`` fail with UnpicklingError/EOFError; now the corrupted files are discarded, a
  warning says so, and the kernels compile again.
* the first use prints one line on stderr when kernels are compiled, none when loaded.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SIM = "from vanishcalc import simulate; s = simulate('tanh', 1.0, depth=3, width=16, n_nets=8)"


def _python(code, env=None, timeout=300):
    e = dict(os.environ, PYTHONPATH=str(ROOT))
    e.pop("NUMBA_THREADING_LAYER", None)
    e.update(env or {})
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=e, timeout=timeout, cwd=ROOT)


def test_fork_after_simulate_child_works():
    code = SIM + """
import os
pid = os.fork()
if pid == 0:
    try:
        t = simulate('tanh', 1.0, depth=3, width=16, n_nets=8)
        os._exit(0 if (t.q == s.q).all() else 5)
    except BaseException:
        os._exit(4)
_, status = os.waitpid(pid, 0)
print('child', os.waitstatus_to_exitcode(status))
"""
    out = _python(code)
    assert out.returncode == 0, out.stderr
    assert "child 0" in out.stdout, out.stdout + out.stderr
    assert "GNU OpenMP" not in out.stderr


def test_threads_may_call_simulate_concurrently():
    # the fork-safe 'workqueue' layer is not thread-safe by itself: launches are serialized
    code = SIM + """
import threading
res = []
def work(i):
    res.append(simulate('tanh', 1.0, depth=20, width=64, n_nets=32, seed=i).q[-1])
ts = [threading.Thread(target=work, args=(i,)) for i in range(4)]
[t.start() for t in ts]; [t.join() for t in ts]
print('done', len(res))
"""
    out = _python(code)
    assert out.returncode == 0 and "done 4" in out.stdout, out.stderr


def _numba_subdir(cache_root: Path, source_dir: Path) -> Path:
    """Numba's NUMBA_CACHE_DIR layout: <root>/<dirname>_<sha1 of the absolute dir>."""
    parent = os.path.abspath(source_dir)
    return cache_root / (os.path.basename(parent) + "_" + hashlib.sha1(parent.encode()).hexdigest())


@pytest.mark.slow
def test_corrupted_numba_cache_is_discarded_and_recompiled(tmp_path):
    cache = tmp_path / "numba"
    env = {"NUMBA_CACHE_DIR": str(cache), "VANISHCALC_CACHE_DIR": str(tmp_path / "vc")}
    # the CPU dense kernel lives in vanishcalc/sim/cpu/dense.py (numba names its cache files
    # after the module file: dense._dense_kernel-<line>.py3x.nbi)
    cpu_src = ROOT / "vanishcalc" / "sim" / "cpu"
    sim_dir = _numba_subdir(cache, cpu_src)
    sim_dir.mkdir(parents=True)
    # start from this checkout's in-tree kernel cache when there is one (saves a cold compile)
    for f in (cpu_src / "__pycache__").glob("*.nb*"):
        shutil.copy(f, sim_dir / f.name)
    first = _python(SIM + "; print(s.q.tolist())", env)
    assert first.returncode == 0, first.stderr
    acts = next(cache.glob("activations_*"))
    rng = __import__("random").Random(1)
    (next(sim_dir.glob("dense._dense_kernel-*.nbi"))).write_bytes(
        bytes(rng.randrange(256) for _ in range(300)))                 # random bytes in a .nbi
    nbc = next(acts.glob("*.phi-*.nbc"))
    nbc.write_bytes(nbc.read_bytes()[:100])                            # a truncated .nbc
    second = _python(SIM + "; print(s.q.tolist())", env)
    assert second.returncode == 0, second.stderr
    assert second.stdout == first.stdout                               # same numbers
    assert "corrupted Numba cache" in second.stderr
    third = _python(SIM + "; print(s.q.tolist())", env)               # repaired for good
    assert third.returncode == 0 and third.stdout == first.stdout
    assert "corrupted" not in third.stderr and "compiling" not in third.stderr


def test_compile_notice_only_when_compiling(tmp_path):
    # a new activation (its φ, φ' are compiled; the kernels load from the cache) announces
    # itself once; the second process loads everything from disk and is silent
    env = {"VANISHCALC_CACHE_DIR": str(tmp_path / "vc")}
    code = ("from vanishcalc import simulate; "
            "simulate('tanh(x) + 0.0123*x', 1.0, depth=2, width=8, n_nets=2)")
    first = _python(code, env)
    assert first.returncode == 0, first.stderr
    lines = [ln for ln in first.stderr.splitlines() if ln.startswith("vanishcalc: compiling")]
    assert len(lines) == 1 and "first use" in lines[0], first.stderr
    second = _python(code, env)
    assert second.returncode == 0 and "compiling" not in second.stderr, second.stderr
