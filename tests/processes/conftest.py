"""Fixtures of the Zope process tests."""

import pytest


@pytest.fixture
def client(zeo):
    """A connection to the test's main ZEO storage."""
    db = zeo.open()
    conn = db.open()
    yield conn
    conn.transaction_manager.abort()
    conn.close()
    db.close()
