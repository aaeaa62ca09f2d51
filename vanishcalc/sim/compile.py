"""φ and φ' as compiled scalar functions, shared by the CPU and CUDA simulators.

:func:`python_source` prints an :class:`~vanishcalc.activation.Activation` as plain Python
text defining ``phi(x)`` and ``dphi(x)``: only ``math.<fn>`` calls, ``abs``/``max``/``min``,
float arithmetic and ``if``/``else``.  Kinked functions branch on their kinks and use the
smooth formula of each piece (φ' is differentiated piece by piece, so no Heaviside or
DiracDelta object is ever printed).  The same text compiles with ``numba.njit`` (here) and
with ``numba.cuda.jit(device=True)`` (``sim/cuda/runtime.py``).

Numerical care taken while printing:

* common subexpressions are computed once (``sympy.cse``);
* ``log(1 + exp(u))`` is printed as ``max(u, 0) + log1p(exp(-|u|))`` (softplus does not
  overflow), and ``log(1 + v)`` as ``log1p(v)``;
* where a smooth piece has finite limits at ±∞ (sigmoid', mish', ...), an ``inf/inf``
  NaN at a finite, huge argument is replaced by that limit, so overflow of an intermediate
  is not mistaken for a non-finite network;
* NaN inputs propagate (kinked functions test ``x != x`` first), so a non-finite layer is
  never turned finite by a constant piece.

See ``notes/simulation.md``.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.util
import math
import os
import sys
from pathlib import Path

import numpy as np
import sympy

from ..activation import Activation, activation
from ..errors import VanishcalcError
from ..parse import X

# Bump when the printed text or the way it is compiled changes: it is part of the cache key.
_SOURCE_VERSION = "1"

_MATH_FUNCS = {
    sympy.exp: "math.exp", sympy.log: "math.log", sympy.sin: "math.sin", sympy.cos: "math.cos",
    sympy.tan: "math.tan", sympy.tanh: "math.tanh", sympy.sinh: "math.sinh",
    sympy.cosh: "math.cosh", sympy.atan: "math.atan", sympy.erf: "math.erf",
    sympy.erfc: "math.erfc", sympy.asinh: "math.asinh", sympy.acosh: "math.acosh",
    sympy.atanh: "math.atanh", sympy.asin: "math.asin", sympy.acos: "math.acos",
}

_REL_OPS = {sympy.StrictLessThan: "<", sympy.LessThan: "<=", sympy.StrictGreaterThan: ">",
            sympy.GreaterThan: ">=", sympy.Equality: "==", sympy.Unequality: "!="}


class _Printer:
    """A small SymPy → Python-``math`` printer; refuses anything it does not know."""

    def __init__(self, var: str = "x"):
        self.names = {X: var}

    def __call__(self, e) -> str:
        return self.p(e)

    def num(self, value) -> str:
        f = float(value)
        if not math.isfinite(f):
            raise VanishcalcError(f"constant {value} is not a finite float; cannot compile φ")
        return repr(f)

    def p(self, e) -> str:  # noqa: C901 - one dispatch table
        if e in self.names:
            return self.names[e]
        if e.is_Number or e in (sympy.pi, sympy.E, sympy.EulerGamma, sympy.Catalan):
            return "(" + self.num(e) + ")" if float(e) < 0 else self.num(e)
        if e.is_Symbol:
            raise VanishcalcError(f"cannot compile φ: free symbol {e} (only x is allowed)")
        if isinstance(e, sympy.Add):
            terms = [self.p(a) for a in e.args]
            return "(" + " + ".join(terms) + ")"
        if isinstance(e, sympy.Mul):
            num, den = [], []
            for a in e.args:
                if isinstance(a, sympy.Pow) and a.exp.is_Number and a.exp < 0:
                    den.append(a.base ** (-a.exp))
                elif a.is_Rational and not a.is_Integer and a.p == 1:
                    den.append(sympy.Integer(a.q))
                else:
                    num.append(a)
            top = " * ".join(self.p(a) for a in num) if num else "1.0"
            if not den:
                return "(" + top + ")"
            bottom = " * ".join(self.p(a) for a in den)
            return f"({top} / ({bottom}))"
        if isinstance(e, sympy.Pow):
            return self.pow(e.base, e.exp)
        if isinstance(e, sympy.log):
            return self.log(e.args[0])
        for cls, name in _MATH_FUNCS.items():
            if isinstance(e, cls):
                return f"{name}({self.p(e.args[0])})"
        if isinstance(e, sympy.Abs):
            return f"abs({self.p(e.args[0])})"
        if isinstance(e, sympy.sign):
            u = self.p(e.args[0])
            return f"(0.0 if {u} == 0.0 else math.copysign(1.0, {u}))"
        if isinstance(e, sympy.Heaviside):
            u = self.p(e.args[0])
            return f"(1.0 if {u} > 0.0 else (0.0 if {u} < 0.0 else 0.5))"
        if isinstance(e, (sympy.Max, sympy.Min)):
            fn = "max" if isinstance(e, sympy.Max) else "min"
            out = self.p(e.args[0])
            for a in e.args[1:]:
                out = f"{fn}({out}, {self.p(a)})"
            return out
        if isinstance(e, sympy.Piecewise):
            out = None
            for branch, cond in reversed(e.args):
                b = self.p(branch)
                out = b if (out is None or cond == sympy.true) else f"({b} if {self.p(cond)} else {out})"
            return out
        if isinstance(e, sympy.core.relational.Relational):
            return f"({self.p(e.lhs)} {_REL_OPS[type(e)]} {self.p(e.rhs)})"
        if isinstance(e, sympy.And):
            return "(" + " and ".join(self.p(a) for a in e.args) + ")"
        if isinstance(e, sympy.Or):
            return "(" + " or ".join(self.p(a) for a in e.args) + ")"
        if isinstance(e, sympy.Not):
            return f"(not {self.p(e.args[0])})"
        raise VanishcalcError(f"cannot compile {type(e).__name__} in {e} for simulation; "
                              "write φ with exp, log, sqrt, tanh, erf, ... (see vanishcalc.parse)")

    def pow(self, base, exp) -> str:
        if base == sympy.E:
            return f"math.exp({self.p(exp)})"
        b = self.p(base)
        if exp == sympy.Rational(1, 2):
            return f"math.sqrt({b})"
        if exp == -sympy.Rational(1, 2):
            return f"(1.0 / math.sqrt({b}))"
        if exp.is_Integer:
            n = int(exp)
            if n == 2:
                return f"({b} * {b})"
            if n == -1:
                return f"(1.0 / {b})"
            if n < 0:
                return f"(1.0 / {b} ** {-n})"
            return f"({b} ** {n})"
        return f"({b} ** {self.p(exp)})"

    def log(self, arg) -> str:
        if isinstance(arg, sympy.Add) and sympy.Integer(1) in arg.args:
            rest = arg - 1
            if isinstance(rest, sympy.exp):        # softplus: log(1 + e^u), overflow-free
                u = self.p(rest.args[0])
                return f"(max({u}, 0.0) + math.log1p(math.exp(-abs({u}))))"
            return f"math.log1p({self.p(rest)})"
        return f"math.log({self.p(arg)})"


def _print_body(expr, indent: str, printer_name: str = "r") -> list[str]:
    """Statements computing ``expr`` into the local ``r`` (common subexpressions first)."""
    expr = sympy.sympify(expr)
    repl, (reduced,) = sympy.cse(expr, symbols=sympy.numbered_symbols("_t"), optimizations=None)
    pr = _Printer()
    lines = []
    for sym, sub in repl:
        lines.append(f"{indent}{sym} = {pr(sub)}")
        pr.names[sym] = str(sym)
    lines.append(f"{indent}{printer_name} = {pr(reduced)}")
    return lines


def _tail_limit(expr, sign: int):
    """lim φ(x) as x → sign·∞ when it is finite and reached by |x| = 1e3 (else None).

    Evaluated in fixed 30-digit mpmath arithmetic at |x| = 1e3 and 1e5, where float64 intermediates
    (e^x) would overflow; used only to replace an ``inf/inf`` NaN at a huge finite argument.
    """
    if not expr.has(X):
        return None
    import mpmath
    try:
        f = sympy.lambdify(X, expr, modules="mpmath")
        with mpmath.workdps(30):          # fixed precision: no adaptive evalf blow-up
            a = complex(f(mpmath.mpf(sign * 1000)))
            b = complex(f(mpmath.mpf(sign * 100000)))
    except (TypeError, ValueError, ZeroDivisionError, OverflowError, NameError):
        return None
    if abs(a.imag) > 0 or abs(b.imag) > 0 or not (math.isfinite(a.real) and math.isfinite(b.real)):
        return None
    if abs(a.real - b.real) <= 1e-12 * max(1.0, abs(b.real)):
        return 0.0 if abs(b.real) < 1e-300 else b.real
    return None


def _function_source(name: str, pieces) -> list[str]:
    """``def name(x)`` branching on the pieces ``[(lo, hi, expr), ...]``."""
    lines = [f"def {name}(x):"]
    if len(pieces) > 1:
        lines.append("    if x != x:")
        lines.append("        return x")
    for i, (lo, hi, expr) in enumerate(pieces):
        if len(pieces) == 1:
            head, ind = None, "    "
        elif i == 0:
            head, ind = f"    if x < {hi!r}:", "        "
        elif i < len(pieces) - 1:
            head, ind = f"    elif x < {hi!r}:", "        "
        else:
            head, ind = "    else:", "        "
        if head:
            lines.append(head)
        lines.extend(_print_body(expr, ind))
        guards = []
        if lo == -math.inf:
            lim = _tail_limit(expr, -1)
            if lim is not None:
                guards.append(("x < 0.0", lim))
        if hi == math.inf:
            lim = _tail_limit(expr, +1)
            if lim is not None:
                guards.append(("x > 0.0", lim))
        if guards:
            lines.append(f"{ind}if r != r and x == x:")
            for cond, lim in guards:
                lines.append(f"{ind}    if {cond}:")
                lines.append(f"{ind}        r = {lim!r}")
        lines.append(f"{ind}return r")
    return lines


@functools.lru_cache(maxsize=256)
def _source_for_key(key: str, act: Activation) -> str:
    phi_pieces = [(p.lo, p.hi, p.expr) for p in act.pieces]
    dphi_pieces = [(p.lo, p.hi, sympy.diff(p.expr, X)) for p in act.pieces]
    head = [f"# vanishcalc {_SOURCE_VERSION}: phi = {act.name}",
            f"# phi(x) = {sympy.sstr(act.expr)}",
            "import math", ""]
    return "\n".join(head + _function_source("phi", phi_pieces) + [""]
                     + _function_source("dphi", dphi_pieces)) + "\n"


def python_source(act) -> str:
    """Python source defining ``phi(x)`` and ``dphi(x)`` for the activation ``act``.

    The text uses only ``import math``, ``math.<fn>``, ``abs``/``max``/``min``, float
    arithmetic and ``if``/``else``, so it compiles unchanged with ``numba.njit`` and with
    ``numba.cuda.jit(device=True)``.  φ' is the derivative of each smooth piece; at a kink
    the right-hand piece is used (a measure-zero choice).

    Parameters
    ----------
    act : Activation or str or sympy.Expr
        φ; anything :func:`vanishcalc.activation.activation` accepts.

    Returns
    -------
    str

    Raises
    ------
    VanishcalcError
        if φ contains a function with no ``math`` counterpart.

    Examples
    --------
    >>> src = python_source("relu")
    >>> ns = {}; exec(src, ns); ns["phi"](-2.0), ns["dphi"](3.0)
    (0.0, 1.0)
    """
    act = activation(act)
    if act.deltas:
        raise VanishcalcError(f"φ = {act.name} has Dirac masses (a jump); it cannot be simulated "
                              "through its derivative")
    return _source_for_key(act.key, act)


# ---------------------------------------------------------------- compiled CPU functions

def cache_dir() -> Path:
    """Directory of generated sources (and numba's on-disk cache next to them).

    ``$VANISHCALC_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/vanishcalc`` or
    ``~/.cache/vanishcalc``.
    """
    env = os.environ.get("VANISHCALC_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "vanishcalc"


def source_module(act):
    """Import the generated source of ``act`` as a module from a file keyed by its hash.

    A real file lets numba's ``cache=True`` persist compiled code across processes.  If the
    cache directory is not writable the module is built in memory (no disk cache).
    """
    act = activation(act)
    src = python_source(act)
    digest = hashlib.sha256(src.encode()).hexdigest()[:20]
    modname = f"_vanishcalc_act_{digest}"
    if modname in sys.modules:
        return sys.modules[modname]
    path = None
    try:
        d = cache_dir() / "activations"
        d.mkdir(parents=True, exist_ok=True)
        path = d / f"{modname}.py"
        if not path.exists() or path.read_text() != src:
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(src)
            os.replace(tmp, path)
    except OSError:
        path = None
    if path is not None:
        spec = importlib.util.spec_from_file_location(modname, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    else:
        import types
        module = types.ModuleType(modname)
        exec(compile(src, f"<vanishcalc {act.name}>", "exec"), module.__dict__)
    sys.modules[modname] = module
    return module


# Fastmath without nnan/ninf: NaN and overflow must stay visible.
FASTMATH = {"nsz", "arcp", "contract", "reassoc"}


@functools.lru_cache(maxsize=256)
def _cpu_functions_for_key(key: str, act: Activation):
    import numba
    module = source_module(act)
    path_backed = getattr(module, "__file__", None) is not None
    phi = numba.njit(cache=path_backed, fastmath=FASTMATH)(module.phi)
    dphi = numba.njit(cache=path_backed, fastmath=FASTMATH)(module.dphi)
    return phi, dphi


@functools.lru_cache(maxsize=256)
def _cpu_cfuncs_for_key(key: str, act: Activation):
    import numba
    from numba.core.caching import FunctionCache
    module = source_module(act)
    path_backed = getattr(module, "__file__", None) is not None
    sig = "float64(float64)"

    def build():
        phi = numba.cfunc(sig, cache=path_backed, fastmath=FASTMATH)(module.phi)
        dphi = numba.cfunc(sig, cache=path_backed, fastmath=FASTMATH)(module.dphi)
        return phi, dphi
    with KERNEL_LOCK, compile_notice(act.name):
        try:
            return build()
        except Exception:
            if not path_backed:
                raise
            removed = purge_corrupted_caches([FunctionCache(module.phi),
                                              FunctionCache(module.dphi)])
            if not removed:
                raise
            _repaired(removed)
            return build()


def cpu_cfuncs(act):
    """``(phi, dphi)`` as ``numba.cfunc`` objects of type ``float64(float64)``.

    The CPU kernels take φ, φ' as first-class functions of this one type, so each kernel
    is compiled (and cached on disk) once for every activation; only these two small
    functions are compiled per activation.
    """
    act = activation(act)
    python_source(act)
    return _cpu_cfuncs_for_key(act.key, act)


def cpu_functions(act):
    """``(phi, dphi)`` as ``numba.njit`` dispatchers, cached per ``act.key`` (and on disk).

    Examples
    --------
    >>> phi, dphi = cpu_functions("tanh")
    >>> round(dphi(0.0), 12)
    1.0
    """
    act = activation(act)
    python_source(act)   # raises on Dirac masses
    return _cpu_functions_for_key(act.key, act)


# ---------------------------------------------------------------- max |φ'|

_DENSE = np.sinh(np.linspace(-12.0, 12.0, 48001))


@functools.lru_cache(maxsize=256)
def _dphi_max_for_key(key: str, act: Activation, bound: float = math.inf) -> float:
    ns: dict = {}
    exec(compile(python_source(act), "<dphi>", "exec"), ns)
    dphi = ns["dphi"]
    pts = [_DENSE]
    for k in act.kinks:
        eps = 1e-9 * max(1.0, abs(k))
        pts.append(np.array([k - eps, k, k + eps]))
    xs = np.concatenate(pts)
    xs = xs[np.abs(xs) <= bound]
    best = 0.0
    for xv in xs.tolist():
        try:
            v = abs(dphi(xv))
        except (OverflowError, ValueError, ZeroDivisionError):
            continue
        if math.isfinite(v) and v > best:
            best = v
    return best


def dphi_max(act) -> float:
    """max |φ'(x)| over the real line, on a dense sinh-spaced grid (|x| ≤ 8e4) plus kinks.

    Used for the saturation threshold ``|φ'| < 1e-3 · max|φ'|``.  A numerical maximum:
    for φ' unbounded on the grid's range (x³) it is the largest value met there.

    Examples
    --------
    >>> dphi_max("tanh")
    1.0
    >>> dphi_max("relu")
    1.0
    """
    act = activation(act)
    return _dphi_max_for_key(act.key, act)


def saturation_reference(act) -> float:
    """The |φ'| scale against which a unit counts as saturated (|φ'(h)| < 1e-3 × this).

    ``dphi_max(act)`` when φ' is bounded; when φ' still grows in the far tail (exp(x),
    x³: the maximum over |x| ≤ 8e4 exceeds that over |x| ≤ 50), the max over |x| ≤ 3,
    the bulk of a unit Gaussian, since "saturated relative to an infinite slope" means
    nothing.
    """
    act = activation(act)
    full = dphi_max(act)
    near = _dphi_max_for_key(act.key, act, 50.0)
    if full > near * (1 + 1e-9):
        return _dphi_max_for_key(act.key, act, 3.0)
    return full


# ---------------------------------------------------------------- running CPU kernels safely
#
# Three process-level hazards of Numba's CPU target, handled here once for every kernel:
#
# * fork: with GNU OpenMP as the threading layer, a child forked after a parallel kernel ran
#   dies ("fork() called from a process already using GNU OpenMP").  configure_threading()
#   asks for Numba's 'forksafe' layers (tbb, Intel OpenMP or workqueue — never GNU OpenMP)
#   unless the user chose one (NUMBA_THREADING_LAYER).  workqueue is not thread-safe, so
#   every kernel launch holds KERNEL_LOCK (re-created in a forked child).
# * a corrupted on-disk cache (random bytes in a .nbi, a truncated .nbc) made every later
#   call fail with UnpicklingError/EOFError until deleted by hand: run_guarded() checks our
#   functions' cache files when a launch fails, deletes the corrupted ones, says so, and
#   compiles again.
# * compilation takes 10–30 s on first use: run_guarded() prints one line on stderr when
#   Numba actually compiles (never when it loads from the cache).

import contextlib  # noqa: E402
import threading  # noqa: E402
import warnings  # noqa: E402

KERNEL_LOCK = threading.RLock()


def _new_lock_in_child():
    global KERNEL_LOCK
    KERNEL_LOCK = threading.RLock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_lock_in_child)


def configure_threading() -> str:
    """Choose a fork-safe Numba threading layer before the first parallel launch.

    Returns the configured layer name (``"forksafe"``, or the user's choice).  Has no effect
    once a parallel kernel has run in this process (Numba fixes its layer then).
    """
    import numba
    if os.environ.get("NUMBA_THREADING_LAYER") or numba.config.THREADING_LAYER != "default":
        return numba.config.THREADING_LAYER
    numba.config.THREADING_LAYER = "forksafe"
    return "forksafe"


COMPILE_SECONDS = "10–30 s"


@functools.lru_cache(maxsize=1)
def _notice_class():
    from numba.core import event as ev

    class CompileNotice(ev.Listener):
        """Prints one stderr line when Numba starts compiling (not when loading a cache)."""

        def __init__(self, label):
            self.label = label
            self.said = False

        def on_start(self, event):
            if not self.said:
                self.said = True
                print(f"vanishcalc: compiling simulation kernels for {self.label}, first use, "
                      f"~{COMPILE_SECONDS} (cached on disk afterwards)", file=sys.stderr,
                      flush=True)

        def on_end(self, event):
            pass
    return CompileNotice


@contextlib.contextmanager
def compile_notice(label):
    """Within the block, the first real Numba compilation prints a line on stderr.

    Loading from the on-disk cache runs no compiler pass, so it stays silent.
    """
    from numba.core import event as ev
    if getattr(_NOTICE, "active", False):      # an outer block announces (one line per call)
        yield None
        return
    notice = _notice_class()(label)
    _NOTICE.active = True
    try:
        with contextlib.ExitStack() as stack:
            for kind in ("numba:compile", "numba:run_pass"):
                stack.enter_context(ev.install_listener(kind, notice))
            yield notice
    finally:
        _NOTICE.active = False


_NOTICE = threading.local()


def _cache_files(cache):
    """(index path, data paths, corrupted?) of one Numba function cache."""
    import glob
    cf = getattr(cache, "_cache_file", None)
    if cf is None:
        return None
    index = cf._index_path
    data = glob.glob(os.path.join(glob.escape(cf._cache_path),
                                  glob.escape(cf._data_name_pattern.split("{")[0]) + "*.nbc"))
    try:
        overloads = cf._load_index()
    except FileNotFoundError:
        return index, data, False
    except Exception:                  # noqa: BLE001 - any unpickling failure is corruption
        return index, data, True
    for name in overloads.values():
        try:
            cf._load_data(name)
        except FileNotFoundError:
            continue
        except Exception:              # noqa: BLE001
            return index, data, True
    return index, data, False


def purge_corrupted_caches(caches) -> list:
    """Delete the files of every corrupted cache among ``caches``; return the paths removed."""
    removed = []
    for cache in caches:
        found = _cache_files(cache)
        if found is None or not found[2]:
            continue
        for path in [found[0], *found[1]]:
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
                removed.append(path)
    return removed


def _module_caches(module_names):
    """The on-disk caches of the Numba functions defined in the named modules."""
    out = []
    for name in module_names:
        module = sys.modules.get(name)
        for obj in vars(module).values() if module is not None else ():
            cache = getattr(obj, "_cache", None)
            if getattr(cache, "_cache_file", None) is not None:
                out.append(cache)
    return out


def _repaired(removed):
    warnings.warn(f"vanishcalc: discarded {len(removed)} corrupted Numba cache file(s) "
                  f"(e.g. {removed[0]}) and compiled again", VanishcalcWarning, stacklevel=4)


def run_guarded(label, call, modules=("vanishcalc.sim.cpu.rng", "vanishcalc.sim.cpu.dense",
                                      "vanishcalc.sim.cpu.composed")):
    """``call()`` holding KERNEL_LOCK, announcing compilation, repairing a corrupted cache.

    ``call`` must allocate its own arrays (it is run again after a repair).
    """
    with KERNEL_LOCK, compile_notice(label):
        try:
            return call()
        except Exception:
            removed = purge_corrupted_caches(_module_caches(modules))
            if not removed:
                raise
            _repaired(removed)
            return call()


from ..errors import VanishcalcWarning  # noqa: E402
