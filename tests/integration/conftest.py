"""Fixtures shared by the cluster test modules."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ClipFactory
from tests.integration.cluster import RedisServer
from tests.integration.live_http import LiveHttpSource


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    yield server
    server.stop()


@pytest.fixture
def black_feed(make_clip: ClipFactory) -> Iterator[LiveHttpSource]:
    """A live MPEG-TS feed over HTTP, black from 2 s to 18 s of every 26 s."""
    clip, _ = make_clip("black@2-18", duration=26.0, size="320x180")
    live = LiveHttpSource(clip)
    yield live
    live.close()
