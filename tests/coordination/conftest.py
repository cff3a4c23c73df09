from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.integration.cluster import RedisServer


@pytest.fixture
def client(tmp_path: Path) -> Iterator[redis.Redis]:
    """A real redis-server of the test's own."""
    server = RedisServer(tmp_path)
    yield redis.Redis(port=server.port)
    server.stop()
