"""One real control plane (etcd + kube-apiserver) for the whole e2e session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.apiserver import ControlPlane


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    cp = ControlPlane(tmp_path_factory.mktemp("control-plane"))
    try:
        yield cp
    finally:
        cp.stop()
