"""dsa_core.cpu: torch's threads fitted to the CPUs the process may use."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dsa_core import cpu

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def threads(monkeypatch):
    """Torch's thread count, restored afterwards; no OMP_NUM_THREADS unless a test sets one."""
    before = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("budget, reserve, start, expected", [
    (1, 0, 4, 1),  # a 1-CPU quota on a 4-core machine
    (3, 1, 4, 2),  # one CPU left to other work
    (2, 5, 4, 1),  # never below one thread
    (8, 0, 2, 2),  # never raised
])
def test_threads_fit_the_budget(threads, monkeypatch, budget, reserve, start, expected):
    monkeypatch.setattr(cpu, "cpu_count", lambda: budget)
    torch.set_num_threads(start)
    assert cpu.fit_threads(reserve) == expected == torch.get_num_threads()


def test_a_count_set_on_purpose_is_kept(threads, monkeypatch):
    monkeypatch.setattr(cpu, "cpu_count", lambda: 1)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    torch.set_num_threads(2)
    assert cpu.fit_threads() == 2


def test_loading_a_pipeline_fits_the_threads_to_the_quota_joblib_reads():
    # LOKY_MAX_CPU_COUNT caps joblib's count as a container's quota would.
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"} | {"LOKY_MAX_CPU_COUNT": "1"}
    code = ("import torch; from dsa_core.pipeline import StreamingPipeline; "
            "torch.set_num_threads(2); StreamingPipeline.from_preset('tiny', random_init=True); "
            "print(torch.get_num_threads())")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split()[-1] == "1"
