"""Running a real stream runner over a file in a test."""

from __future__ import annotations

from service.pipeline.runner import StreamRunner
from tests.integration.service_proc import wait_for


def run_to_the_end(runner: StreamRunner, timeout: float = 15.0) -> None:
    """Start ``runner`` and wait until it has analysed its whole file (then stopped)."""
    runner.start()
    try:
        assert wait_for(lambda: runner.state == "stopped", timeout), runner.state
    finally:
        runner.stop()
