"""keras_resnet.benchmark.quiet: the CPU time other processes use is accounted to them, ours to us.

The outside fact pinned: Linux's own per-process accounting (/proc/PID/stat utime + stime)
of a busy-loop process we start. No timing thresholds: we wait for CPU time to be spent.
"""

import os
import subprocess
import sys
import time

import pytest

from keras_resnet.benchmark import quiet

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="Linux /proc accounting")


def cpu_seconds_of(pid):
    """utime + stime of ``pid`` as Linux accounts them (fields 14 and 15 of /proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_a_busy_process_beside_us_counts_as_others_and_warns():
    monitor = quiet.LoadMonitor().start()
    child = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        deadline = time.monotonic() + 120  # a guard against a stuck machine, not a speed limit
        while cpu_seconds_of(child.pid) < 1.0 and time.monotonic() < deadline:
            time.sleep(0.1)
        monitor.stop()
        spent = cpu_seconds_of(child.pid)
    finally:
        child.kill()
        child.wait()
    report = monitor.report()
    assert spent >= 1.0
    # the child has not been waited for while we measured, so it is "another process";
    # one clock tick of rounding on each of the two /proc/stat reads
    assert report["others_cpu_seconds"] >= spent - 2 / os.sysconf("SC_CLK_TCK") - 0.05
    assert report["quiet"] is False
    line = quiet.warning(report)
    assert line is not None and "\n" not in line and "not quiet" in line
    assert report["load1_before"] is not None and report["cpus"] == os.cpu_count()


def test_our_own_cpu_time_is_ours_not_others():
    monitor = quiet.LoadMonitor().start()
    start = time.process_time()
    while time.process_time() - start < 0.5:  # burn half a CPU second in this process
        pass
    burned = time.process_time() - start
    report = monitor.stop().report()
    assert report["own_cpu_seconds"] >= burned - 0.02
    assert report["others_cpu_seconds"] >= 0


def test_report_is_quiet_when_nothing_else_ran(monkeypatch):
    # Fake /proc readings: the machine's busy time grows exactly by our own CPU time.
    clock = {"busy": 100.0, "own": 10.0}
    # a load average still high from our own previous benchmark does not make it noisy
    # (measured: 0.73 before a run in which other processes used 0.75% of the CPUs)
    monkeypatch.setattr(quiet, "load_average", lambda: 1.5)
    monkeypatch.setattr(quiet, "machine_busy_seconds", lambda: clock["busy"])
    monkeypatch.setattr(quiet, "own_cpu_seconds", lambda: clock["own"])
    monitor = quiet.LoadMonitor().start()
    clock.update(busy=103.0, own=13.0)
    time.sleep(0.01)
    report = monitor.stop().report()
    assert report["others_cpu_seconds"] == 0 and report["own_cpu_seconds"] == 3.0
    assert report["quiet"] is True and quiet.warning(report) is None
    with pytest.raises(RuntimeError):
        quiet.LoadMonitor().report()
