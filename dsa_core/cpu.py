"""Torch's CPU threads sized to the CPUs this process may actually use."""

from __future__ import annotations

import os

import torch
from joblib import cpu_count


def fit_threads(reserve: int = 0) -> int:
    """Lower torch's intra-op threads to this process's CPU budget less `reserve`, and return
    the count.  Torch counts the machine's cores; a container's CPU limit (a cgroup quota, as on
    a Hugging Face Space or any Kubernetes pod) and an affinity mask leave fewer, and threads
    past them wait on each other at every barrier.  On this 2-core machine under a 1-CPU quota,
    a 5-s video took 2.3-2.7 s on 2 threads against 1.5-1.9 s on 1 (and with one core busy with
    another process, which no count here can see, 62 s against 1.6 s).  joblib reads the quota
    (cgroup v1 and v2) and the affinity.
    A count set on purpose (`OMP_NUM_THREADS`, as torchrun sets per process) is kept, and the
    count is never raised."""
    if os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads()
    want = max(1, cpu_count() - reserve)
    if want < torch.get_num_threads():
        torch.set_num_threads(want)
    return torch.get_num_threads()
