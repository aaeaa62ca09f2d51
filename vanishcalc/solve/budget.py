"""Memory budgets: refuse, before allocating, a computation that cannot fit in this machine.

An allocation larger than the memory the machine has does not fail cleanly: Linux
overcommits, the process grows into swap and is OOM-killed minutes later.  Callers estimate
the bytes a call needs from its arguments and call :func:`require_memory` first.
"""
from __future__ import annotations

import os

from ..errors import VanishcalcError

#: Share of the available memory one call may plan to use.
MEMORY_SHARE = 0.75


class MemoryBudgetError(VanishcalcError):
    """The arguments ask for more memory than this machine has."""


def available_memory() -> int:
    """Bytes available to a new allocation: MemAvailable from /proc/meminfo when readable,
    else the physical memory (os.sysconf)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 62          # unknown: do not refuse


def fmt_bytes(n: float) -> str:
    for unit, size in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n:.0f} B"


def memory_limit() -> float:
    """The bytes one call may plan to use: MEMORY_SHARE of :func:`available_memory`."""
    return MEMORY_SHARE * available_memory()


def require_memory(where: str, nbytes: float, fix: str) -> None:
    """Raise :class:`MemoryBudgetError` when ``nbytes`` exceeds :func:`memory_limit`; the
    message names the need, the limit and ``fix`` (a setting that fits)."""
    limit = memory_limit()
    if nbytes > limit:
        raise MemoryBudgetError(
            f"{where}: these arguments need about {fmt_bytes(nbytes)} of memory, more than the "
            f"{fmt_bytes(limit)} this machine can give ({MEMORY_SHARE:.0%} of "
            f"{fmt_bytes(available_memory())} available); {fix}")
