"""Fixtures of the cluster tests: a Cluster (see cluster_support) on the
test's own ZEO server or RelStorage database (the ``zeo`` and ``postgres``
fixtures of tests/conftest.py), whose worker and queuer processes are
killed at the end."""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from cluster_support import Cluster  # noqa: E402


@pytest.fixture
def zeo_cluster(zeo, tmp_path):
    conf = zeo.client_conf(str(tmp_path / "zeo-client.conf"))
    cluster = Cluster(str(tmp_path), conf, zeo.client_storage, "zeo")
    cluster.zeo = zeo
    yield cluster
    cluster.close()


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
