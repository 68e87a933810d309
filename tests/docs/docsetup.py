"""Set-up functions that markers name (``setup=NAME``, ``then=NAME``): what
a page's example needs and the page itself does not show. Each takes the
PageRun. Keep them few and small, and say in each why the page does not
show it."""

import transaction
import ZODB

import zasync

EXPORT_REPORT = '''\
"""The application's jobs (a page on workers does not show them)."""


def export_report(month):
    return f"report for {month}"
'''


def queue_export_report(run):
    """docs/workers.md: the worker it starts logs a job of
    myapp.jobs.export_report; the application that queues it is not the
    page's subject."""
    run.write("myapp/jobs.py", EXPORT_REPORT)
    import myapp.jobs

    zeo = run.fixture("zeo").server
    db = ZODB.DB(zeo.client_storage())
    try:
        with db.transaction() as conn:
            zasync.get_queues(conn)[""].put(
                zasync.Job(myapp.jobs.export_report, "2026-11")
            )
    finally:
        db.close()


def old_zc_async_data(run):
    """docs/plone-migration.md: a database that still holds zc.async's
    queues under root["zc.async"] (a stand-in: the real records need
    zc.async, which Python 3 cannot import)."""
    from persistent.mapping import PersistentMapping

    root = run.namespace["app"]._p_jar.root()
    root["zc.async"] = PersistentMapping(queues="old")
    transaction.commit()
