"""Memory budgets: refuse, before allocating, a computation that cannot fit in this machine.

An allocation larger than the memory the machine has does not fail cleanly: Linux
overcommits, the process grows into swap and is OOM-killed minutes later.  Every caller that
allocates in proportion to its arguments (simulations in ``sim/limits.py``, ``phase_diagram``,
finite-batch ``bn_gradient_rate``) estimates the bytes from the arguments and asks this module
first, so there is one notion of "what this machine can give":

* :data:`MEMORY_FRACTION` of what the OS reports available (``MemAvailable`` of
  ``/proc/meminfo``, bounded by a cgroup v2 ``memory.max``), or
* the environment variable ``VANISHCALC_MAX_MEMORY`` (bytes; suffixes K, M, G, T), when set.
"""
from __future__ import annotations

import os

from .errors import VanishcalcError

#: Share of the available memory one call may plan to use.
MEMORY_FRACTION = 0.8


class MemoryBudgetError(VanishcalcError):
    """The arguments ask for more memory than this machine has; the message says what fits."""


def _parse_bytes(text: str) -> int | None:
    t = text.strip().upper().rstrip("B").rstrip("I")
    mult = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
    try:
        if t and t[-1] in mult:
            return int(float(t[:-1]) * mult[t[-1]])
        return int(float(t))
    except ValueError:
        return None


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _cgroup_available() -> int | None:
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            limit = f.read().strip()
        if limit == "max":
            return None
        with open("/sys/fs/cgroup/memory.current") as f:
            used = int(f.read().strip())
        return max(0, int(limit) - used)
    except (OSError, ValueError):
        return None


def available_memory() -> int | None:
    """Bytes available to a new allocation (the smaller of MemAvailable and the cgroup's
    headroom), or None when neither can be read."""
    avail = [v for v in (_meminfo_available(), _cgroup_available()) if v is not None]
    return min(avail) if avail else None


def memory_budget() -> int | None:
    """Bytes one call may plan to allocate (None: unknown, no check)."""
    env = os.environ.get("VANISHCALC_MAX_MEMORY")
    if env:
        value = _parse_bytes(env)
        if value is None or value <= 0:
            raise VanishcalcError(f"VANISHCALC_MAX_MEMORY = {env!r} is not a size in bytes "
                                  "(e.g. 8G or 8589934592)")
        return value
    avail = available_memory()
    return None if avail is None else int(MEMORY_FRACTION * avail)


def memory_limit() -> float:
    """:func:`memory_budget` as a number; 2^62 (never refused, still finite for the callers
    that divide it into a size that fits) when it is unknown."""
    budget = memory_budget()
    return float(1 << 62) if budget is None else float(budget)


def budget_source() -> str:
    """Where the budget comes from, for messages."""
    if os.environ.get("VANISHCALC_MAX_MEMORY"):
        return "VANISHCALC_MAX_MEMORY"
    return f"{MEMORY_FRACTION:.0%} of the memory this machine has available"


def fmt_bytes(n: float) -> str:
    for unit, size in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n:.0f} B"


def require_memory(where: str, nbytes: float, fix: str) -> None:
    """Raise :class:`MemoryBudgetError` when ``nbytes`` exceeds :func:`memory_limit`; the
    message names the need, the limit, where the limit comes from and ``fix`` (a setting
    that fits)."""
    limit = memory_limit()
    if nbytes > limit:
        raise MemoryBudgetError(
            f"{where}: these arguments need about {fmt_bytes(nbytes)} of memory, more than the "
            f"{fmt_bytes(limit)} this machine can give ({budget_source()}); {fix}")
