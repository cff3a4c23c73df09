"""Child processes of a test cluster: started (optionally inside a network namespace and
detached from the caller, for `scripts/cluster up`), logged to files, recorded by pid so
that another process (`scripts/cluster down`) can stop them, stopped in reverse order."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path


class Procs:
    def __init__(self, folder: Path, netns: str | None = None, detach: bool = False) -> None:
        self.folder, self.netns, self.detach = folder, netns, detach
        folder.mkdir(parents=True, exist_ok=True)
        self.pids_file = folder / "pids"
        self.popens: dict[str, subprocess.Popen[bytes]] = {}

    def wrap(self, argv: list[str]) -> list[str]:
        """``argv`` run inside the namespace: nsenter only switches the network namespace
        (``ip netns exec`` would remount /sys and hide the cgroup mounts a kubelet needs)."""
        if self.netns is None:
            return argv
        return ["nsenter", f"--net=/run/netns/{self.netns}", *argv]

    def run(self, *argv: str) -> str:
        out = subprocess.run(self.wrap(list(argv)), capture_output=True, text=True, check=False)
        if out.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed: {out.stderr.strip()}")
        return out.stdout

    def start(self, name: str, argv: list[str], cwd: Path | None = None) -> subprocess.Popen[bytes]:
        with (self.folder / f"{name}.log").open("w") as log:
            proc = subprocess.Popen(
                self.wrap(argv),
                cwd=cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=self.detach,  # outlives `scripts/cluster up`
            )
        self.popens[name] = proc
        with self.pids_file.open("a") as f:
            f.write(f"{name} {proc.pid}\n")
        return proc

    def check(self) -> None:
        for name, proc in self.popens.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited ({proc.returncode}): {self.tail(name)}")

    def tail(self, name: str, size: int = 3000) -> str:
        path = self.folder / f"{name}.log"
        return path.read_text(errors="replace")[-size:] if path.exists() else ""

    def recorded(self) -> list[tuple[str, int]]:
        if not self.pids_file.exists():
            return []
        rows = [line.split() for line in self.pids_file.read_text().splitlines() if line]
        return [(name, int(pid)) for name, pid in rows]

    def alive(self) -> dict[str, bool]:
        return {name: _alive(pid) for name, pid in self.recorded()}

    def stop(self, only: str | None = None, timeout: float = 3.0) -> None:
        """SIGTERM to each (``only``: that one), SIGKILL to what is left after
        ``timeout``. All at once: the callers stop what must go first on its own. The
        cluster is thrown away, so nothing waits for a graceful end (the API server
        takes over 15 s)."""
        targets = [
            (name, pid)
            for name, pid in reversed(self.recorded())
            if (only is None or name == only) and _alive(pid)
        ]
        for _, pid in targets:
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(_alive(pid) for _, pid in targets):
            for name, _ in targets:
                self._reap(name)
            time.sleep(0.1)
        for name, pid in targets:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
                while _alive(pid):
                    self._reap(name)
                    time.sleep(0.05)
        if only is None:
            self.pids_file.unlink(missing_ok=True)

    def _reap(self, name: str) -> None:
        proc = self.popens.get(name)
        if proc is not None:
            proc.poll()


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited
