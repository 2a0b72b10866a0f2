"""Was the machine quiet? Load average and the CPU time other processes used during a run.

On a shared machine a speed figure means little unless one knows what else ran. A
:class:`LoadMonitor` reads, at start and stop:

- the 1-minute load average (``/proc/loadavg``);
- the CPU time all processes used (``/proc/stat``: user + nice + system + irq + softirq +
  steal, in clock ticks);
- the CPU time of this process tree (:func:`os.times`: this process with all its threads,
  plus children it has waited for, e.g. the torch worker);

and reports the difference as ``others_cpu_seconds``: CPU time that other processes took
while we measured. Its share of the machine's capacity (wall time x CPUs) is
``others_cpu_fraction``; a run is ``quiet`` when that share stayed under
:data:`QUIET_OTHERS_FRACTION`. The load average is reported but does not decide: it
counts this process too, and after one benchmark it stays high for minutes while the
next one runs alone (measured: load 0.73 before a run during which others used 0.75%
of the CPUs). Linux only; elsewhere the fields are ``None``.
"""

from __future__ import annotations

import os
import time

QUIET_OTHERS_FRACTION = 0.05  # of wall time x CPUs
_BUSY_FIELDS = (0, 1, 2, 5, 6, 7)  # user nice system irq softirq steal (guest is inside user)


def load_average() -> float | None:
    """The 1-minute load average, or None where /proc/loadavg is missing."""
    try:
        with open("/proc/loadavg") as f:
            return float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def machine_busy_seconds() -> float | None:
    """CPU seconds all processes have used since boot (/proc/stat), or None off Linux."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    ticks = sum(int(fields[1 + i]) for i in _BUSY_FIELDS if 1 + i < len(fields))
    return ticks / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    """CPU seconds of this process (all threads) and of the children it has waited for."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class LoadMonitor:
    """``start()`` before measuring, ``stop()`` after; ``report()`` gives the record."""

    def __init__(self):
        self.cpus = os.cpu_count() or 1
        self._start = self._stop = None

    @staticmethod
    def _sample():
        return {"load1": load_average(), "busy": machine_busy_seconds(), "own": own_cpu_seconds(),
                "wall": time.monotonic()}

    def start(self) -> "LoadMonitor":
        self._start = self._sample()
        return self

    def stop(self) -> "LoadMonitor":
        self._stop = self._sample()
        return self

    def report(self) -> dict:
        """``load1_before``, ``load1_after``, ``wall_seconds``, ``own_cpu_seconds``,
        ``others_cpu_seconds``, ``others_cpu_fraction``, ``cpus``, ``quiet``."""
        if self._start is None or self._stop is None:
            raise RuntimeError("LoadMonitor.report() needs start() and stop() first")
        a, b = self._start, self._stop
        wall = b["wall"] - a["wall"]
        own = b["own"] - a["own"]
        others = None if a["busy"] is None else max(0.0, (b["busy"] - a["busy"]) - own)
        fraction = None if others is None or wall <= 0 else others / (wall * self.cpus)
        quiet = None if fraction is None else fraction < QUIET_OTHERS_FRACTION
        return {"load1_before": a["load1"], "load1_after": b["load1"], "cpus": self.cpus,
                "wall_seconds": round(wall, 3), "own_cpu_seconds": round(own, 3),
                "others_cpu_seconds": None if others is None else round(others, 3),
                "others_cpu_fraction": None if fraction is None else round(fraction, 4),
                "quiet": quiet}


def warning(report: dict) -> str | None:
    """One line when the machine was not quiet (None when it was, or when unknown)."""
    if report.get("quiet") is not False:
        return None
    return (f"# warning: machine not quiet: other processes used {report['others_cpu_seconds']:.1f} "
            f"CPU s ({100 * report['others_cpu_fraction']:.0f}% of {report['cpus']} CPUs) during "
            f"{report['wall_seconds']:.1f} s, load average {report['load1_before']:.2f} before, "
            f"{report['load1_after']:.2f} after; these figures are not comparable to a quiet run")
