"""Run with ``zconsole run etc/zope.conf plone_steps_site.py setup OUT
COUNT`` in a Plone instance home, for tests/processes/test_plone_steps_kill.py:
makes a Plone site with COUNT private documents and queues, as the site's
admin, a job in steps that publishes them; writes the job's id and the
documents' UIDs to OUT as JSON."""

import json
import sys
import time

import transaction
from AccessControl.SecurityManagement import newSecurityManager
from Testing.makerequest import makerequest
from zope.component import getUtility
from zope.component.hooks import setSite

SITE = "Plone"
EVERY = 100


def as_admin(app):
    if app.acl_users.getUserById("admin") is None:
        app.acl_users._doAddUser("admin", "secret", ["Manager"], [])
    admin = app.acl_users.getUserById("admin")
    newSecurityManager(None, admin.__of__(app.acl_users))


def setup(app, count):
    import zope_process_jobs
    from Products.CMFPlone.factory import addPloneSite

    from plone import api
    from zasync.plone.interfaces import IAsyncService

    began = time.monotonic()
    as_admin(app)
    site = addPloneSite(
        app,
        SITE,
        extension_ids=["plone.app.contenttypes:default", "zasync.plone:default"],
    )
    setSite(site)
    print(f"site made in {time.monotonic() - began:.1f}s", flush=True)
    folder = api.content.create(container=site, type="Folder", id="bulk")
    uids = []
    for i in range(count):
        doc = api.content.create(
            container=folder, type="Document", id=f"doc-{i:04}", title=f"Doc {i}"
        )
        uids.append(api.content.get_uuid(doc))
        if i % 200 == 199:
            transaction.commit()  # a bounded transaction
    print(f"documents made in {time.monotonic() - began:.1f}s", flush=True)
    transaction.commit()
    print(f"documents committed in {time.monotonic() - began:.1f}s", flush=True)
    job = getUtility(IAsyncService).queueJob(
        zope_process_jobs.publish_in_steps, folder, uids, EVERY
    )
    transaction.commit()
    print(f"job queued in {time.monotonic() - began:.1f}s", flush=True)
    return {"job": job.id, "uids": uids}


def main(app, argv):
    action, out = argv[0], argv[1]
    app = makerequest(app)
    assert action == "setup", action
    result = setup(app, int(argv[2]))
    with open(out, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    # zconsole run leaves sys.argv as it was: zconsole run CONF SCRIPT ARGS...
    main(app, sys.argv[4:])  # noqa: F821 (zconsole run gives ``app``)
