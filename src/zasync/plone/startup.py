"""Starting and stopping this Zope process's dispatcher.

When Zope has opened its database (IDatabaseOpenedWithRoot), every process
checks its zasync configuration, checks that it keeps the queues where the
rest of the cluster does (the main database records it: see
check_queues_location), and makes sure the queues and the 'default' quota
exist; a worker or an embedded process (see roles.py) then starts its
dispatcher. An instance only queues.

Zope 6 under WSGI announces no shutdown, so the dispatcher is stopped when
its database is closed (``runwsgi`` closes the databases as soon as waitress
returns, before ``atexit`` handlers run) or else at exit. waitress ends
normally on Ctrl-C but is killed outright by SIGTERM, which would leave the
dispatcher's jobs to be recovered only when its heartbeat expires; so when
nobody else handles SIGTERM, it is turned into the same normal exit.
"""

import atexit
import functools
import logging
import os
import signal
import socket
import threading

from zope.component import adapter
from zope.processlifetime import IDatabaseOpenedWithRoot

import zasync
from zasync import admin
from zasync.identity import UUID_FILENAME, uuid_and_file
from zasync.plone import recurring, roles
from zasync.plone.config import (
    ConfigurationError,
    process_config,
    product_config_sections,
)
from zasync.plone.interfaces import DEFAULT_QUOTA
from zasync.plone.rolefiles import role_zcml
from zasync.queue import get_queues
from zasync.transact import in_own_transaction

log = logging.getLogger("zasync.plone")


#: Seconds that running jobs get to finish when the process stops; jobs
#: still running then go back to the queue.
STOP_TIMEOUT = 5.0


_lock = threading.Lock()
_dispatcher = None
_installed_hooks = []


def get_dispatcher():
    """This process's running dispatcher (IDispatcher), or None."""
    return _dispatcher


@adapter(IDatabaseOpenedWithRoot)
def database_opened(event):
    """Prepare the queues and start the dispatcher if this process runs one."""
    config = process_config()
    role = roles.current_role()
    database = roles.queues_database(config)
    check_database(event.database, database)
    if config.check_location:
        check_queues_location(event.database, database, config)
    size = prepare_queues(event.database, database, config.default_quota_size or 1)
    sync_recurring(event.database, database)
    if config.default_quota_size is not None and size != config.default_quota_size:
        log.warning(
            "zasync: zope.conf sets default-quota-size %d, but the %r quota of "
            "this cluster has size %d, set in the database (zasync quota set, "
            "the zasync control panel); default-quota-size only applies when "
            "the quota is created",
            config.default_quota_size,
            DEFAULT_QUOTA,
            size,
        )
    if not roles.runs_dispatcher(config):
        log.info(
            "zasync: role %s, queues in %s; this process runs no dispatcher",
            role.name,
            _describe(database),
        )
        return
    start_dispatcher(event.database, config)


def sync_recurring(db, database=None):
    """Store the recurring jobs this process's ZCML defines (see
    zasync.plone.recurring); a failure is logged, Zope still starts."""
    try:
        done = recurring.sync(db, database)
    except Exception:
        log.exception("zasync: the recurring jobs of the ZCML could not be stored")
        return
    if done["defined"] or done["removed"]:
        log.info(
            "zasync: recurring jobs from ZCML: %d defined, %d removed",
            len(done["defined"]),
            len(done["removed"]),
        )


def _describe(database):
    return "the main database" if database is None else f"database {database!r}"


def check_database(db, name):
    """Raise ConfigurationError unless ``name`` (None: the main database) is
    one of the databases Zope opened next to ``db``."""
    if name is None or name in db.databases:
        return
    known = ", ".join(repr(n) for n in sorted(db.databases))
    problem = (
        f"zasync keeps its queues in a database of their own (multi-database "
        f"mode: multi_db_instance.zcml or multi_db_worker.zcml is loaded), "
        f"but zope.conf defines no database {name!r} (it has {known})."
    )
    if name.lower() in _product_config_names():
        # ZConfig refuses two sections of the same name, so the database
        # cannot be called like the <product-config> section.
        suggestion = f"{name}_queues"
        raise ConfigurationError(
            f"{problem} As zope.conf has a <product-config {name}> section, "
            f"the database needs another name; every instance and worker of "
            f"the cluster needs the same lines:\n\n"
            f"    <product-config zasync>\n"
            f"        database {suggestion}\n"
            f"    </product-config>\n"
            f"{_zodb_db_snippet(suggestion)}"
        )
    raise ConfigurationError(
        f"{problem} Add it to zope.conf of every instance and worker of the "
        f"cluster, for example:\n\n{_zodb_db_snippet(name)}\n"
        f"or load single_db_instance.zcml / single_db_worker.zcml instead."
    )


def _zodb_db_snippet(name):
    return (
        f"    <zodb_db {name}>\n"
        f"        <zeoclient>\n"
        f"            server localhost:8100\n"
        f"            storage {name}\n"
        f"        </zeoclient>\n"
        f"        mount-point /{name}\n"
        f"    </zodb_db>\n"
    )


def _product_config_names():
    return {str(key).lower() for key in product_config_sections()}


def prepare_queues(db, database=None, quota_size=1, attempts=20):
    """Install the queues and the default queue's 'default' quota (of
    ``quota_size``) if missing; return the quota's size.

    Several processes may start at once: a conflict means another one got
    there first, so try again and find what it made.
    """

    def install(conn):
        queue = get_queues(conn, database)[""]
        if DEFAULT_QUOTA not in queue.quotas:
            queue.quotas.create(DEFAULT_QUOTA, size=quota_size)
            log.info(
                "zasync: created the %r quota (size %d)", DEFAULT_QUOTA, quota_size
            )
        return queue.quotas[DEFAULT_QUOTA].size

    return in_own_transaction(db, install, attempts)


# -- where the queues live ---------------------------------------------------


def _role_file(role=None):
    """The role ZCML file this process loads, or None (embedded)."""
    role = role or roles.current_role()
    if role.name not in ("instance", "worker"):
        return None
    return role_zcml(role.name, role.multi_database)


def _describe_process(role=None):
    name = _role_file(role) or "no role file (embedded)"
    return f"{name} on {socket.gethostname()}:{os.getpid()}"


def _in_use(queues):
    return queues is not None and any(q.jobs(limit=1) for q in queues.values())


def _found_location(conn, configured):
    """Where an earlier zasync, which recorded nothing, kept the queues:
    None (the main database) or ``configured``, if queues with jobs are
    there; ``...`` if not found or found in both."""
    in_main = _in_use(conn.root().get("zasync"))
    in_own = False
    if configured in conn.db().databases and configured != conn.db().database_name:
        in_own = _in_use(conn.get_connection(configured).root().get("zasync"))
    if in_main == in_own:
        return ...
    return None if in_main else configured


def check_queues_location(db, database, config=None):
    """Raise ConfigurationError unless this process keeps the queues where
    the cluster does: ``database`` (None: the main database) must be what
    the main database of ``db`` records (see zasync.admin.queues_location).
    The first process records its own; one that finds queues with jobs left
    by an earlier zasync, which recorded nothing, takes their place as the
    record.

    A worker of single-database mode in a multi-database cluster (or the
    reverse) would otherwise start, make empty queues of its own and never
    see a job; an instance would queue jobs that no worker runs.
    """
    config = config or process_config()
    by = _describe_process()

    def check(conn):
        recorded = admin.queues_location(conn)
        if recorded is None:
            found = _found_location(conn, config.database)
            if found is not ... and found != database:
                where = "queues with jobs were found there"
                raise ConfigurationError(_mismatch(database, found, where))
            admin.record_queues_location(conn, database, by)
            log.info(
                "zasync: recorded that this cluster keeps its queues in %s",
                admin.describe_location(database),
            )
            return
        if recorded["database"] != database:
            when = recorded["recorded"]
            where = (
                f"as {recorded['recorded_by']} recorded at {when:%Y-%m-%d %H:%M:%S} UTC"
            )
            raise ConfigurationError(_mismatch(database, recorded["database"], where))

    in_own_transaction(db, check)


def _mismatch(mine, theirs, where):
    """The message for a process that keeps the queues in ``mine`` in a
    cluster that keeps them in ``theirs``: both modes, and the fix."""
    role = roles.current_role()
    loaded = _role_file(role)
    this = loaded or "no role file (an embedded process)"
    problem = (
        f"zasync: this process loads {this}, which keeps the queues in "
        f"{admin.describe_location(mine)}, but this cluster keeps them in "
        f"{admin.describe_location(theirs)}, {where}. Started like this, it "
        f"would use queues that no other process of the cluster uses: its jobs "
        f"would never run, or it would never see one."
    )
    if mine is not None and theirs is not None:
        fix = (
            f" Both are multi-database mode, with other names: set\n\n"
            f"    <product-config zasync>\n"
            f"        database {theirs}\n"
            f"    </product-config>\n\n"
            f"in this zope.conf, and mount the database {theirs!r} there as the "
            f"others do."
        )
    else:
        if role.name in ("instance", "worker"):
            wanted = role_zcml(role.name, theirs is not None)
        else:
            wanted = (
                f"{role_zcml('instance', theirs is not None)} (a web instance) or "
                f"{role_zcml('worker', theirs is not None)} (a worker)"
            )
        instead = f" instead of {loaded}" if loaded else ""
        mount = (
            f" and mount the database {theirs!r} in zope.conf,"
            if theirs is not None
            else ""
        )
        fix = f" Load {wanted}{instead}{mount} as the other instances and workers do."
    mode = "single-db" if mine is None else "multi-db"
    name = "" if mine is None or mine == "zasync_queues" else f" --name {mine}"
    switch = (
        f" To move the whole cluster to {admin.describe_location(mine)} on "
        f"purpose: stop every instance and worker, give each the ZCML file of "
        f"that mode, then record the new mode once with 'zasync mode set "
        f"{mode}{name} --zope-conf <a zope.conf of the cluster>' (it refuses "
        f"while jobs are unfinished in the old place) and start them again."
    )
    return problem + fix + switch


def process_uuid():
    """(UUID, file) of this process's dispatcher (see zasync.identity).

    The file is named by ZASYNC_UUID (or ZC_ASYNC_UUID), else it is
    ``zasync-uuid.txt`` in the Zope client home. (None, None) when there is
    no such file: the dispatcher then gets a new UUID each start.
    """
    return uuid_and_file(default=_client_home_file())


def _client_home_file():
    try:
        from App.config import DefaultConfiguration, getConfiguration
    except ImportError:  # pragma: no cover - Zope is a dependency of the extra
        return None
    config = getConfiguration()
    # The default configuration of unit tests has no instance of its own.
    if isinstance(config, DefaultConfiguration):
        return None
    home = getattr(config, "clienthome", None)
    return os.path.join(home, UUID_FILENAME) if home else None


def start_dispatcher(db, config=None):
    """Start this process's dispatcher on ``db`` and return it."""
    global _dispatcher
    config = config or process_config()
    database = roles.queues_database(config)
    uuid, uuid_file = process_uuid()
    with _lock:
        if _dispatcher is not None:
            raise RuntimeError(
                f"zasync: this process runs dispatcher {_dispatcher.uuid} already; "
                f"stop it with stop_dispatcher() first"
            )
        _dispatcher = zasync.start(
            db, config=config.dispatcher_config(uuid=uuid, database=database)
        )
    _install_hooks(db)
    sizes = [size for size, _ in _dispatcher.agent_sizes.values()]
    log.info(
        "zasync: started dispatcher %s (role %s, %s threads, poll interval %ss, "
        "queues in %s, UUID file %s)",
        _dispatcher.uuid,
        roles.current_role().name,
        "/".join(str(size) for size in dict.fromkeys(sizes)),
        config.poll_interval,
        _describe(database),
        uuid_file or "none: set ZASYNC_UUID",
    )
    return _dispatcher


def stop_dispatcher(timeout=STOP_TIMEOUT):
    """Stop this process's dispatcher, if it runs. Jobs still running after
    ``timeout`` seconds go back to the queue. True if none had to.
    Safe to call from any thread, and more than once."""
    global _dispatcher
    with _lock:
        dispatcher, _dispatcher = _dispatcher, None
    if dispatcher is None:
        return True
    log.info(
        "zasync: stopping dispatcher %s; running jobs get %ss to finish",
        dispatcher.uuid,
        timeout,
    )
    return dispatcher.stop(timeout)


def _stop_quietly():
    try:
        stop_dispatcher()
    except Exception:
        log.exception("zasync: could not stop the dispatcher")


def _install_hooks(db):
    _stop_before_closing(db)
    if _installed_hooks:
        return
    # Registered after logging's own exit handler, so it runs first
    # (last in, first out) and its messages are still written.
    atexit.register(_stop_quietly)
    _installed_hooks.append(_stop_quietly)
    if threading.current_thread() is not threading.main_thread():
        return  # only the main thread may set signal handlers
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        # gunicorn and others handle SIGTERM themselves and exit normally.
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
        _installed_hooks.append(_exit_on_sigterm)


def _stop_before_closing(db):
    """Make ``db.close()`` stop the dispatcher first, while its jobs can
    still be put back. (ZODB has no close hook; DB.close itself replaces
    the attribute on the instance.)"""
    close = db.close
    if getattr(close, "_zasync_stops_dispatcher", False):
        return

    @functools.wraps(close)
    def stop_then_close(*args, **kwargs):
        if _dispatcher is not None and _dispatcher.db is db:
            _stop_quietly()
        return close(*args, **kwargs)

    stop_then_close._zasync_stops_dispatcher = True
    db.close = stop_then_close


def _exit_on_sigterm(signum, frame):
    # A second SIGTERM kills at once, as it would have without us.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    log.info("zasync: SIGTERM received; shutting down")
    # waitress catches SystemExit in its main loop, stops serving and
    # returns; runwsgi then closes the database, which stops the dispatcher
    # first (see _stop_before_closing), and atexit covers other servers.
    raise SystemExit(0)
