"""The benches' CPU accounting (bench._nodes.CpuWindow): what a group of processes spent over a
window, processes that start within it included (a database backend for a pool's connection)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import psutil
import pytest

from bench._nodes import CpuWindow

BUSY_S = 0.6
SPIN = "import time\nends = time.process_time() + 3\nwhile time.process_time() < ends: pass"
PYTHON = psutil.Process().name()
"""The name a child running this interpreter has (the name CpuWindow's ``spawned`` matches)."""


def spin(seconds: float) -> None:
    ends = time.process_time() + seconds
    while time.process_time() < ends:
        pass


def test_a_named_process_started_within_the_window_is_counted_in_its_group() -> None:
    window = CpuWindow({"bench": [os.getpid()]}, {PYTHON: "spawned"}).start()
    child = subprocess.Popen([sys.executable, "-c", SPIN])
    try:
        spent = 0.0
        deadline = time.monotonic() + 5
        while spent < BUSY_S and time.monotonic() < deadline:
            time.sleep(0.05)
            times = psutil.Process(child.pid).cpu_times()
            spent = times.user + times.system
        figures = window.stop()
    finally:
        child.kill()
        child.wait()
    assert spent >= BUSY_S, "the child never got the CPU it needed"
    assert figures["spawned_cpu_s"] >= BUSY_S * 0.9
    assert figures["bench_cpu_s"] < figures["spawned_cpu_s"]


def test_a_group_counts_only_what_it_spent_within_the_window() -> None:
    spin(0.3)  # before the window: not counted
    window = CpuWindow({"bench": [os.getpid()]}).start()
    spin(0.2)
    figures = window.stop()
    assert figures["bench_cpu_s"] == pytest.approx(0.2, abs=0.1)
    assert figures["cores"] == psutil.cpu_count()
    assert 0.0 <= figures["machine_busy"] <= 1.0


def test_a_process_that_ended_within_the_window_adds_nothing_and_takes_nothing_away() -> None:
    child = subprocess.Popen([sys.executable, "-c", SPIN])
    time.sleep(0.3)
    window = CpuWindow({"bench": [os.getpid()], "child": [child.pid]}).start()
    child.kill()
    child.wait()
    figures = window.stop()
    assert figures["child_cpu_s"] == 0.0
    assert figures["other_cpu_s"] >= 0.0


def test_a_named_process_running_at_the_start_counts_only_what_it_spent_within() -> None:
    child = subprocess.Popen([sys.executable, "-c", SPIN])
    try:
        time.sleep(0.6)  # spent before the window: not counted
        window = CpuWindow({"bench": [os.getpid()]}, {PYTHON: "named"}).start()
        time.sleep(0.4)
        figures = window.stop()
    finally:
        child.kill()
        child.wait()
    assert figures["named_cpu_s"] == pytest.approx(0.4, abs=0.25)
