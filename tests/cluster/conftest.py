"""Fixtures of the cluster tests: a real ZEO server or a RelStorage database
on PostgreSQL per test, each with a Cluster (see cluster_support) whose
worker and queuer processes are killed at the end."""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from cluster_support import Cluster  # noqa: E402

from zasync import processes  # noqa: E402


@pytest.fixture
def zeo(tmp_path):
    server = processes.ZEOServer(str(tmp_path / "zeo")).start()
    yield server
    server.kill()


@pytest.fixture
def zeo_cluster(zeo, tmp_path):
    conf = zeo.client_conf(str(tmp_path / "zeo-client.conf"))
    cluster = Cluster(str(tmp_path), conf, zeo.client_storage, "zeo")
    cluster.zeo = zeo
    yield cluster
    cluster.close()


@pytest.fixture
def postgres():
    """A PostgreSQL database of the test's own, dropped at the end. Without
    PostgreSQL the test is skipped, except under CI, where it fails."""
    if not processes.postgres_available():
        message = f"PostgreSQL is not reachable at {processes.POSTGRES_DSN!r}"
        if os.environ.get("CI"):
            pytest.fail(f"{message} (CI needs it)")
        pytest.skip(message)
    with processes.PostgresDatabase() as database:
        yield database


@pytest.fixture
def pg_cluster(postgres, tmp_path):
    import ZConfig
    import ZODB.config

    conf = postgres.zodb_conf(str(tmp_path / "relstorage.conf"))

    def open_storage():
        config, _ = ZConfig.loadConfig(ZODB.config.getDbSchema(), conf)
        return config.database[0].config.storage.open()

    cluster = Cluster(str(tmp_path), conf, open_storage, "postgresql")
    yield cluster
    cluster.close()
