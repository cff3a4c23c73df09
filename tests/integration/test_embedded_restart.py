"""Embedded mode with ``AVMON_DATA_DIR``: a restart forgets nothing (DESIGN.md section 6).

A real `avmon serve` watches a live feed (black from 2 s to 18 s) and is SIGKILLed with
the black defect open; a new process on the same data directory runs the stream again
by itself, continues the defect (same id) and closes it when the picture returns. The
webhook receiver (verified with the standardwebhooks library) gets one open and one
close, and the API of the new process shows that one defect, closed."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.integration.live_http import LiveHttpSource
from tests.integration.service_proc import Hooks, Service, wait_for

SECRET = "embedded-hook-secret"


@pytest.fixture
def source(black_feed: LiveHttpSource) -> LiveHttpSource:
    return black_feed


def test_a_restarted_embedded_service_continues_its_streams_and_open_defects(
    tmp_path: Path, source: LiveHttpSource
) -> None:
    hooks = Hooks(SECRET)
    env = {
        "AVMON_DATA_DIR": str(tmp_path / "data"),
        "AVMON_WEBHOOK_URLS": hooks.url,
        "AVMON_WEBHOOK_SECRET": SECRET,
    }
    first = Service(tmp_path, **env)
    second: Service | None = None
    try:
        status, stream = first.request(
            "POST", "/api/v1/streams", {"name": "live", "url": source.url, "detectors": ["black"]}
        )
        assert status == 201, stream
        assert wait_for(lambda: hooks.bodies, 20), "the black never opened"
        first.proc.kill()
        first.proc.wait()
        second = Service(tmp_path, **env)
        listed = second.request("GET", "/api/v1/streams")[1]
        assert [s["id"] for s in listed] == [stream["id"]]  # it runs again by itself
        assert wait_for(lambda: len(hooks.bodies) >= 2, max(5.0, source.started + 30 - time.time()))
        time.sleep(1.0)
        events = [e for _, e in hooks.verified(SECRET) if e["defect"]["type"] == "black"]
        first_run = [e for e in events if e["defect"]["id"] == events[0]["defect"]["id"]]
        assert [e["kind"] for e in first_run] == ["open", "close"], events
        assert len({e["defect"]["id"] for e in events if e["kind"] == "open"}) == 1, events
        (record,) = [
            d
            for d in second.request("GET", f"/api/v1/streams/{stream['id']}/defects")[1]
            if d["id"] == events[0]["defect"]["id"]
        ]
        assert record["state"] == "closed" and record["end"] > record["start"] + 10, record
    finally:
        for service in (first, second):
            if service is not None and service.proc.poll() is None:
                service.stop()
        hooks.close()
