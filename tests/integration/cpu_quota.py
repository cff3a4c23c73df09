"""Starve one real process of CPU (a cgroup CPU quota), the way a busy node starves a
member: its reader and analyser fall behind the live edge while its clock runs on."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

V1 = Path("/sys/fs/cgroup/cpu")
V2 = Path("/sys/fs/cgroup/unified")
PERIOD_US = 100_000


def available() -> bool:
    return os.access(V1, os.W_OK) or _v2_cpu() is not None


def _v2_cpu() -> Path | None:
    for root in (V2, Path("/sys/fs/cgroup")):
        controllers = root / "cgroup.controllers"
        if os.access(root, os.W_OK) and controllers.exists() and "cpu" in controllers.read_text():
            return root
    return None


class CpuQuota:
    """``pid`` (and the threads it starts) limited to ``share`` of one CPU until ``close``."""

    def __init__(self, pid: int, share: float) -> None:
        quota = max(1000, int(PERIOD_US * share))
        v2 = None if os.access(V1, os.W_OK) else _v2_cpu()
        self.path = (v2 or V1) / f"avmon-test-{os.getpid()}-{pid}"
        self.path.mkdir()
        if v2 is None:
            (self.path / "cpu.cfs_period_us").write_text(str(PERIOD_US))
            (self.path / "cpu.cfs_quota_us").write_text(str(quota))
        else:
            (self.path / "cpu.max").write_text(f"{quota} {PERIOD_US}")
        self.parent = self.path.parent
        (self.path / "cgroup.procs").write_text(str(pid))

    def close(self) -> None:
        """Give the process its CPU back (idempotent)."""
        if not self.path.exists():
            return
        for line in (self.path / "cgroup.procs").read_text().split():
            with contextlib.suppress(OSError):  # it exited meanwhile
                (self.parent / "cgroup.procs").write_text(line)
        self.path.rmdir()
