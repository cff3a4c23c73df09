"""How many threads each video decoder gets: chosen for CPU, not latency, when busy.

Frame threading lets one stream decode faster than real time on idle cores, but costs
12-17% more CPU per frame than one thread (thread hand-offs, reference waits). A monitor
running more streams than it has cores is limited by CPU, not by any one stream's
latency, so there every decoder gets one thread; frame threading is used only while this
process runs no more decoders than it has cores. ``AVMON_DECODE_THREADS`` forces either:
``single`` or ``frame`` (``auto`` is the default).

The choice is made when a decoder opens (a stream starts or reconnects) and counts the
decoders open in this process; cores are those the process may use (CPU affinity, and a
cgroup CPU quota, such as a Kubernetes CPU limit, when one is set).
"""

from __future__ import annotations

import math
import os
import threading
from pathlib import Path
from typing import Literal

Mode = Literal["auto", "single", "frame"]


class DecodeThreads:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.mode: Mode = "auto"
        self.share = 1  # this process's share of the cores (worker processes split them)
        self.open = 0

    def configure(self, mode: Mode, processes: int = 1) -> None:
        """Set the mode; ``processes``: how many processes of this service share the
        cores (``AVMON_WORKERS``), each deciding for its own decoders."""
        self.mode = mode
        self.share = max(1, processes)

    def acquire(self) -> str:
        """A decoder opens: the thread type it should use ("AUTO" = frame threading
        where the codec has it, "NONE" = one thread). Pair with ``release()``."""
        with self._lock:
            self.open += 1
            if self.mode == "frame":
                return "AUTO"
            if self.mode == "single":
                return "NONE"
            cores = max(1, available_cores() // self.share)
            return "AUTO" if self.open < cores else "NONE"

    def release(self) -> None:
        with self._lock:
            self.open = max(0, self.open - 1)


def available_cores() -> int:
    cores = len(os.sched_getaffinity(0))
    try:  # cgroup v2: "max 100000" (no limit) or "<quota> <period>"
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores)


POLICY = DecodeThreads()  # one per process
configure = POLICY.configure
acquire = POLICY.acquire
release = POLICY.release
