"""Real servers for the cluster backends, started once per session on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ._etcd import EtcdProcess, etcd_binary
from ._nats import NatsServer, running_nats
from ._postgres import postgres_dsn, postgres_server  # noqa: F401 (fixtures)

# -- etcd ------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def etcd_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``host:port`` of a real etcd (3.4) on free ports with a temp data dir."""
    binary = etcd_binary()
    if binary is None:
        pytest.skip("etcd not installed (/usr/bin/etcd): run scripts/install-servers")
    server = EtcdProcess(binary, tmp_path_factory.mktemp("etcd") / "data")
    server.start()
    try:
        yield server.endpoint
    finally:
        server.stop()


@pytest.fixture
def etcd_process(tmp_path: Path) -> Iterator[EtcdProcess]:
    """A private etcd this test may stop and restart (stopped at the end)."""
    binary = etcd_binary()
    if binary is None:
        pytest.skip("etcd not installed (/usr/bin/etcd): run scripts/install-servers")
    server = EtcdProcess(binary, tmp_path / "etcd")
    server.start()
    try:
        yield server
    finally:
        server.stop()


# -- NATS ------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """A JetStream nats-server (file store, ``sync_interval: always``) for the session."""
    with running_nats(tmp_path_factory.mktemp("nats")) as server:
        yield server


@pytest.fixture(scope="session")
def nats_url(nats_server: NatsServer) -> str:
    """The URL of the session's nats-server."""
    return nats_server.url
