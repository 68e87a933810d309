"""The jobs of the buildout smoke test (tests/buildout/smoke.sh), queued and
checked through the web instance with ``bin/instance run``:

    bin/instance run smoke_job.py queue
    bin/instance run smoke_job.py wait WORKER_UUID_FILE SECONDS
    bin/instance run smoke_job.py plone-queue
    bin/instance run smoke_job.py plone-wait SECONDS
    bin/instance run smoke_job.py stopped WORKER_UUID_FILE SECONDS

``queue`` puts one engine job, ``os.getpid()``, in the default queue (in the
main database, or in the queues' own in multi-database mode) and commits.
``wait`` waits (at most SECONDS) until it completed and checks that it
succeeded in the worker: its result is the pid of the dispatcher
registered under the worker's UUID file, and no dispatcher runs in this
instance.

``plone-queue`` makes a Plone site with zasync (if there is none), a user
who is only a Member of it, and a folder where that user has the local
role Contributor; then, logged in as that user in the site, it queues a
real Plone job with ``IAsyncService.queueJob``: the demo's
``create_documents`` (part of zasync.plone, so the worker has it), which
creates a Document in the folder. It prints the job's id (smoke.sh looks
for it in the worker's log). ``plone-wait`` waits until that job completed
and checks, in the database the worker wrote to, that it succeeded, that
the document exists, created and owned by that user, and that the catalog
has it: found by its path and its Title, with its Creator and its
workflow state (``review_state``, which is only right when the job's
indexing ran in its site).

``stopped`` waits until the worker's dispatcher left the queue, which a
worker stopped gracefully does.

``bin/instance run`` executes this file with ``app``, the Zope application
of the instance's zope.conf, in its globals; it exits 1 when this raises.
Not a pytest module: its name does not start with ``test_``.
"""

import os
import sys
import time

import transaction

import zasync
from zasync.clock import wait_until
from zasync.dispatcher import read_uuid_file
from zasync.plone import roles, startup

KEY = "zasync-buildout-smoke"
PLONE_KEY = "zasync-buildout-smoke-plone"
POLL = 0.1

#: The Plone part: the site, the user who queues, the folder they may add
#: content to (and nothing else), and what the job creates there.
SITE_ID = "Plone"
SITE_PROFILES = ("plone.app.contenttypes:default", "zasync.plone:default")
ADMIN = "admin"  # buildout.cfg's user = admin:admin
MEMBER = "smoke-member"
MEMBER_PASSWORD = "smoke-member-password-1"
FOLDER_ID = "smoke-folder"
DOCUMENT_TITLE = "Smoke document"
#: The state of a new Document in Plone's default workflow.
INITIAL_STATE = "private"


class SmokeFailure(Exception):
    """The deployment did not do what the smoke test expects."""


def default_queue(app):
    """The default queue, where this process's role keeps it."""
    return zasync.get_queues(app._p_jar, roles.queues_database())[""]


def where():
    database = roles.queues_database()
    return "the main database" if database is None else f"database {database!r}"


def queue(app):
    role = roles.current_role()
    if roles.runs_dispatcher():
        raise SmokeFailure(
            f"the instance runs a dispatcher (role {role.name}): is "
            f"single_db_instance.zcml or multi_db_instance.zcml loaded?"
        )
    job = default_queue(app).put(zasync.Job(os.getpid))
    # The job's id, in the main database: the job may be in another one.
    app._p_jar.root()[KEY] = job.id
    transaction.commit()
    print(
        f"queued {job!r} ({job.callable_name}) in {where()}, from process "
        f"{os.getpid()} (role {role.name})"
    )


def _site_request(app, site):
    """``app`` with a request, and ``site`` entered: as in a published
    request to the site (plone.api and IAsyncService need both)."""
    from Testing.makerequest import makerequest
    from zope.component.hooks import setSite
    from zope.globalrequest import setRequest

    app = makerequest(app)
    setRequest(app.REQUEST)
    site = app.unrestrictedTraverse(site.getPhysicalPath())
    setSite(site)
    return app, site


def _login(user_folder, user_id):
    from AccessControl.SecurityManagement import newSecurityManager

    user = user_folder.getUserById(user_id)
    if user is None:
        raise SmokeFailure(
            f"no user {user_id!r} in {'/'.join(user_folder.getPhysicalPath())}"
        )
    newSecurityManager(None, user.__of__(user_folder))


def ensure_plone(app):
    """The Plone site with zasync, the Member and their folder; made once."""
    from plone import api

    site = app.get(SITE_ID)
    if site is None:
        from Products.CMFPlone.factory import addPloneSite

        _login(app.acl_users, ADMIN)
        started = time.monotonic()
        site = addPloneSite(
            app, SITE_ID, title="zasync smoke", extension_ids=SITE_PROFILES
        )
        transaction.get().note("smoke: Plone site")
        transaction.commit()
        print(
            f"made the Plone site /{SITE_ID} with {', '.join(SITE_PROFILES)} "
            f"in {time.monotonic() - started:.0f}s"
        )
    app, site = _site_request(app, site)
    _login(app.acl_users, ADMIN)
    if site.acl_users.getUserById(MEMBER) is None:
        site.acl_users.userFolderAddUser(MEMBER, MEMBER_PASSWORD, ["Member"], [])
    folder = site.get(FOLDER_ID)
    if folder is None:
        folder = api.content.create(
            container=site, type="Folder", id=FOLDER_ID, title="Smoke folder"
        )
        # The member may add content here, and nowhere else.
        folder.manage_setLocalRoles(MEMBER, ["Contributor"])
        folder.reindexObjectSecurity()
    transaction.get().note("smoke: member and folder")
    transaction.commit()
    return app, site, folder


def plone_queue(app):
    from zope.component import getUtility

    from plone import api
    from zasync.plone.demo.jobs import create_documents
    from zasync.plone.interfaces import IAsyncService

    app, site, folder = ensure_plone(app)
    _login(site.acl_users, MEMBER)
    site_roles = sorted(api.user.get_roles(username=MEMBER))
    folder_roles = sorted(api.user.get_roles(username=MEMBER, obj=folder))
    if site_roles != ["Authenticated", "Member"] or "Manager" in folder_roles:
        raise SmokeFailure(
            f"{MEMBER} must be only a Member of the site (roles {site_roles}) "
            f"and a Contributor of {FOLDER_ID} (roles {folder_roles})"
        )
    job = getUtility(IAsyncService).queueJob(
        create_documents, folder, 1, DOCUMENT_TITLE
    )
    app._p_jar.root()[PLONE_KEY] = job.id
    transaction.get().note("smoke: a Plone job")
    transaction.commit()
    print(
        f"queued Plone job {job.id} ({job.callable_name}) as {MEMBER} (roles "
        f"{site_roles} in the site, {folder_roles} in "
        f"{'/'.join(folder.getPhysicalPath())})"
    )


def plone_wait(app, seconds):
    """The Plone job succeeded in the worker, as the member; the catalog
    has what it made."""
    from plone import api

    queues = zasync.get_queues(app._p_jar, roles.queues_database())
    job = queues.find_job(app._p_jar.root()[PLONE_KEY])
    if job is None:
        raise SmokeFailure("the Plone job is in no queue")
    started = time.monotonic()
    poll(
        app,
        seconds,
        lambda: job.status == zasync.Status.COMPLETED,
        lambda: f"the Plone job {job!r} is {job.status.name}, not COMPLETED",
    )
    if job.failed:
        raise SmokeFailure(f"{job!r} failed:\n{job.result.getTraceback()}")
    print(
        f"Plone job {job.id} completed "
        f"{time.monotonic() - started:.2f}s after the wait began: {job.result}"
    )
    if job.environment.user_id != MEMBER:
        raise SmokeFailure(f"{job!r} was queued as {job.environment.user_id!r}")
    [path] = job.result["paths"]
    app, site = _site_request(app, app[SITE_ID])
    _login(app.acl_users, ADMIN)
    document = app.unrestrictedTraverse(path, None)
    if document is None:
        raise SmokeFailure(f"the job's document {path} does not exist")
    owner = document.getOwner().getId()
    facts = {
        "Creator": document.Creator(),
        "owner": owner,
        "Title": document.Title(),
        "state": api.content.get_state(document, default=None),
    }
    expected = {
        "Creator": MEMBER,
        "owner": MEMBER,
        "Title": f"{DOCUMENT_TITLE} 1",
        "state": INITIAL_STATE,
    }
    if facts != expected:
        raise SmokeFailure(f"the document {path} is {facts}, not {expected}")
    print(f"{path}: {facts}")

    catalog = api.portal.get_tool("portal_catalog")
    brains = catalog.unrestrictedSearchResults(
        path={"query": path, "depth": 0}, Title=f'"{DOCUMENT_TITLE} 1"'
    )
    if len(brains) != 1:
        raise SmokeFailure(
            f"portal_catalog finds {len(brains)} objects at {path} titled "
            f"{DOCUMENT_TITLE} 1, not 1: the job's content was not indexed"
        )
    [brain] = brains
    indexed = {
        "Creator": brain.Creator,
        "Title": brain.Title,
        "review_state": brain.review_state,
        "portal_type": brain.portal_type,
    }
    wanted = {
        "Creator": MEMBER,
        "Title": f"{DOCUMENT_TITLE} 1",
        "review_state": INITIAL_STATE,
        "portal_type": "Document",
    }
    if indexed != wanted:
        raise SmokeFailure(
            f"portal_catalog has {path} as {indexed}, not {wanted} (the job's "
            f"indexing did not run in its site?)"
        )
    by_state = catalog.unrestrictedSearchResults(
        path={"query": path, "depth": 0}, review_state=INITIAL_STATE
    )
    if len(by_state) != 1:
        raise SmokeFailure(f"the review_state index lacks {path}")
    print(f"portal_catalog: {indexed}")


def worker_uuid(path):
    if not os.path.exists(path):
        raise SmokeFailure(f"no UUID file {path}: has the worker started?")
    return str(read_uuid_file(path))


def poll(app, seconds, ready, describe):
    """Return ready()'s first true value, looking afresh each time; fail
    with describe() after ``seconds``."""

    def afresh():
        transaction.abort()
        app._p_jar.sync()
        return ready()

    value = wait_until(afresh, seconds, POLL)
    if not value:
        raise SmokeFailure(f"after {seconds}s: {describe()}")
    return value


def wait(app, uuid_file, seconds):
    uuid = worker_uuid(uuid_file)
    queue = default_queue(app)
    job = queue.get(app._p_jar.root()[KEY])
    started = time.monotonic()
    poll(
        app,
        seconds,
        lambda: job.status == zasync.Status.COMPLETED,
        lambda: (
            f"{job!r} is {job.status.name}, not COMPLETED; dispatchers in "
            f"the queue: {sorted(queue.dispatchers)} (worker {uuid})"
        ),
    )
    if job.failed:
        raise SmokeFailure(f"{job!r} failed:\n{job.result.getTraceback()}")
    record = queue.dispatchers.get(uuid)
    if record is None:
        raise SmokeFailure(f"the worker's dispatcher {uuid} is not in the queue")
    if job.result != record.pid:
        raise SmokeFailure(
            f"{job!r} ran in process {job.result}, not in the worker's "
            f"dispatcher {uuid} (process {record.pid})"
        )
    if startup.get_dispatcher() is not None or job.result == os.getpid():
        raise SmokeFailure("the job ran in the instance, not in the worker")
    print(
        f"{job!r} completed in the worker (process {job.result}, dispatcher "
        f"{uuid}, queues in {where()}) {time.monotonic() - started:.2f}s "
        f"after the wait began"
    )


def stopped(app, uuid_file, seconds):
    uuid = worker_uuid(uuid_file)
    queue = default_queue(app)
    poll(
        app,
        seconds,
        lambda: uuid not in queue.dispatchers,
        lambda: f"the stopped worker's dispatcher {uuid} is still in the queue",
    )
    print(f"the worker's dispatcher {uuid} left the queue")


def main(app, argv):
    commands = {
        "queue": queue,
        "wait": wait,
        "plone-queue": plone_queue,
        "plone-wait": plone_wait,
        "stopped": stopped,
    }
    if not argv or argv[0] not in commands:
        raise SystemExit(f"usage: smoke_job.py {'|'.join(commands)} [ARGS]")
    command, args = commands[argv[0]], argv[1:]
    if command in (wait, stopped):
        args = [args[0], float(args[1])]
    elif command is plone_wait:
        args = [float(args[0])]
    try:
        command(app, *args)
    except SmokeFailure as exc:
        print(f"smoke_job.py {argv[0]}: FAILED: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


def arguments(argv):
    """This script's arguments: what follows its path in ``argv`` (before it,
    bin/instance run leaves its interpreter's own, and the ``-c`` they ran)."""
    for index, arg in enumerate(argv):
        if os.path.basename(arg) == "smoke_job.py":
            return argv[index + 1 :]
    return []


if __name__ == "__main__":
    main(app, arguments(sys.argv))  # noqa: F821 (app: given by bin/instance run)
