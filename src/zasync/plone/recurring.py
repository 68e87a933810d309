"""Recurring jobs defined in ZCML, run in a site as a named user of it.

``<zasync:recurring name="nightly-export" cron="0 3 * * *"
handler="my.addon.jobs.export" site="Plone" user="exporter" />`` (the
``http://namespaces.zope.org/zasync`` namespace, meta.zcml) checks its
schedule when the ZCML loads. When the process opens its database
(startup.py), :func:`sync` stores each such definition
(zasync.recurring, source "zcml") with a PloneEnvironment for the site and
the user, updates the changed ones and removes the stored "zcml"
definitions that the ZCML no longer has. The handler is called with the
site as its argument, as ``queueJob(handler, site)`` would, as that user
with the roles they had when the instance started (capped as every job's).

``user`` is required: a recurring job never runs as a system user unless
the ZCML names one (an emergency user or a Zope root manager is a user too).
A site or user that the database does not have is logged at start and the
definition is left as it was stored (its jobs fail saying what is missing).
"""

import logging
import threading

from AccessControl.SecurityManagement import (
    getSecurityManager,
    newSecurityManager,
    setSecurityManager,
)
from Acquisition import aq_base, aq_parent
from zope.configuration.fields import GlobalObject, Tokens
from zope.interface import Interface
from zope.schema import Int, TextLine
from zope.testing.cleanup import addCleanUp

from zasync import admin, recurring
from zasync.plone.environment import capture
from zasync.plone.references import reference
from zasync.queue import get_queues
from zasync.storable import check_callable
from zasync.transact import in_own_transaction

log = logging.getLogger("zasync.plone")

SOURCE = "zcml"

# name -> the directive's values, as loaded by this process's ZCML.
_defined = {}
_lock = threading.Lock()


class IRecurringDirective(Interface):
    """``<zasync:recurring />``: a recurring job run in a site as a user."""

    name = TextLine(title="The recurring job's unique name", required=True)
    handler = GlobalObject(
        title="The function to call (dotted name); it gets the site", required=True
    )
    site = TextLine(
        title="The site's path from the Zope root, e.g. 'Plone'", required=True
    )
    user = TextLine(
        title="The id of the user it runs as (of the site or the Zope root)",
        required=True,
    )
    cron = TextLine(title="A five-field cron expression", required=False)
    every = TextLine(title="Or an interval: 90s, 30m, 2h, 1d", required=False)
    timezone = TextLine(title="The cron expression's timezone", required=False)
    queue = TextLine(title="The queue (default: the default queue)", required=False)
    quota_names = Tokens(
        title="Quota names, space-separated",
        value_type=TextLine(),
        required=False,
    )
    priority = Int(title="Priority of its jobs", required=False)
    catch_up = TextLine(title="skip, once or each", required=False)


def recurring_directive(
    _context,
    name,
    handler,
    site,
    user,
    cron=None,
    every=None,
    timezone="UTC",
    queue="",
    quota_names=(),
    priority=0,
    catch_up=recurring.SKIP,
):
    if every is not None:
        every = admin.parse_duration(every)
    # Checked now, so that a bad expression stops the instance at start,
    # naming the definition, instead of being found in a log later.
    cron, every = recurring.check_schedule(name, cron, every, timezone, catch_up)
    check_callable(handler, f"the handler of recurring job {name!r}")
    values = {
        "handler": handler,
        "site": tuple(part for part in site.split("/") if part),
        "user": user,
        "cron": cron,
        "every": every,
        "timezone": timezone,
        "queue": queue,
        "quota_names": tuple(quota_names or ()),
        "priority": priority,
        "catch_up": catch_up,
    }
    _context.action(
        discriminator=("zasync:recurring", name),
        callable=_define,
        args=(name, values),
    )


def _define(name, values):
    with _lock:
        _defined[name] = values


def defined():
    """{name: values} of the recurring jobs this process's ZCML defines."""
    with _lock:
        return dict(_defined)


def _clear():
    with _lock:
        _defined.clear()


addCleanUp(_clear)


def _find_user(site, user_id):
    """The user ``user_id`` of the site's user folder or one above it,
    wrapped in it; None if none has them."""
    context = site
    while context is not None:
        folder = getattr(aq_base(context), "acl_users", None)
        if folder is not None:
            folder = context.acl_users
            user = folder.getUserById(user_id)
            if user is not None:
                if aq_parent(user) is None:
                    user = user.__of__(folder)
                return user
        context = aq_parent(context)
    return None


def environment_for(app, site_path, user_id):
    """``(site, PloneEnvironment)`` for running in the site at
    ``site_path`` as ``user_id``; ValueError saying which is missing."""
    site = app.unrestrictedTraverse(site_path, None)
    where = "/" + "/".join(site_path)
    if site is None:
        raise ValueError(f"the site {where!r} does not exist in this database")
    user = _find_user(site, user_id)
    if user is None:
        raise ValueError(
            f"the user {user_id!r} is not a user of site {where!r} or of the Zope root"
        )
    before = getSecurityManager()
    newSecurityManager(None, user)
    try:
        return site, capture(site)
    finally:
        setSecurityManager(before)


def sync(db, database=None, attempts=20):
    """Store this process's ZCML definitions in the database of ``db``
    (its queues in ``database``), update the changed ones, remove the
    stored ZCML definitions it no longer has. Returns {"defined",
    "removed", "problems"} (names; problems: name -> text). Unchanged
    definitions are not written."""
    wanted = defined()

    def work(conn):
        queues = get_queues(conn, database)
        stored = {d.name: d for d in recurring.definitions(queues)}
        if not wanted and not any(d.source == SOURCE for d in stored.values()):
            return {"defined": [], "removed": [], "problems": {}}
        app = conn.root()["Application"]
        done = {"defined": [], "removed": [], "problems": {}}
        for name, values in sorted(wanted.items()):
            try:
                site, environment = environment_for(app, values["site"], values["user"])
                recurring.define(
                    queues,
                    name,
                    values["handler"],
                    cron=values["cron"],
                    every=values["every"],
                    timezone=values["timezone"],
                    queue=values["queue"],
                    quota_names=values["quota_names"],
                    priority=values["priority"],
                    catch_up=values["catch_up"],
                    args=(reference(site, "site"),),
                    environment=environment,
                    source=SOURCE,
                )
            except Exception as exc:
                done["problems"][name] = str(exc)
                log.error(
                    "zasync: recurring job %r from ZCML is not stored: %s", name, exc
                )
                continue
            done["defined"].append(name)
        for name, definition in stored.items():
            if definition.source == SOURCE and name not in wanted:
                recurring.remove(queues, name)
                done["removed"].append(name)
                log.info(
                    "zasync: recurring job %r removed (not in ZCML any more)", name
                )
        return done

    return in_own_transaction(db, work, attempts)
