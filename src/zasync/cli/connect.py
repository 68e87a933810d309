"""Opening the database a ``zasync`` command works on.

Either a ZODB configuration file (``--zodb-conf``: the ``<zodb>`` sections
of ZODB's ZConfig schema, e.g. with a ``<zeoclient>`` or ``<relstorage>``
storage; several sections make a multi-database) or a Zope instance's
``zope.conf`` (``--zope-conf``: Zope is booted without serving HTTP).
Every problem becomes a :class:`CommandError` that says what to fix.
"""

import contextlib
import dataclasses
import os
import threading

from zasync.cli import zope
from zasync.clock import wait_until
from zasync.exceptions import CommandError


@dataclasses.dataclass
class Opened:
    """An open database: ``db`` (the main one) and ``database``, the name
    of the database holding the queues in a multi-database setup (None:
    the main one)."""

    db: object
    database: str | None = None
    description: str = ""

    def queues_db(self):
        if self.database is None:
            return self.db
        return self.db.databases[self.database]


def _load_zodb_config(path):
    import ZConfig
    import ZODB.config

    if not os.path.exists(path):
        raise CommandError(f"--zodb-conf {path}: no such file")
    try:
        config, _ = ZConfig.loadConfig(ZODB.config.getDbSchema(), path)
    except ZConfig.ConfigurationError as exc:
        raise CommandError(
            f"--zodb-conf {path} is not a valid ZODB configuration: {exc}\n"
            f"It needs one or more <zodb> sections, for example:\n"
            f"  <zodb>\n"
            f"    <zeoclient>\n"
            f"      server 127.0.0.1:8100\n"
            f"    </zeoclient>\n"
            f"  </zodb>"
        ) from None
    if not config.database:
        raise CommandError(f"--zodb-conf {path} has no <zodb> section")
    return config


def _storage_description(factory):
    section = factory.config.storage
    name = type(section).__name__
    cfg = getattr(section, "config", None)
    servers = getattr(cfg, "server", None)
    if servers:
        addresses = ", ".join(
            ":".join(map(str, s.address)) if isinstance(s.address, tuple) else s.address
            for s in servers
        )
        return f"ZEO server {addresses}"
    path = getattr(cfg, "path", None)
    if path:
        return f"{name} {path}"
    return name


def _limit_zeo_wait(factory, timeout):
    """Make a ZEO client storage wait at most ``timeout`` seconds for its
    server (ZODB's <zeoclient> section would wait 30 s, or forever), so an
    unreachable server is a clear error."""
    section = factory.config.storage
    cfg = getattr(section, "config", None)
    if cfg is None or not getattr(cfg, "server", None):
        return
    open_storage = section.open

    def open_within_timeout():
        cfg.wait = False
        storage = open_storage()
        if not wait_until(storage.is_connected, timeout):
            storage.close()
            raise CommandError(
                f"cannot reach the {_storage_description(factory)} within "
                f"{timeout:g}s: is it running, and is the address right?"
            )
        return storage

    # ZODB's database section calls its storage section's open().
    section.open = open_within_timeout


def open_zodb_conf(path, database=None, timeout=30.0):
    """Open the databases of the ZODB config file ``path``.

    ``database`` names the one holding the queues in a multi-database
    file (default: the first). Raises CommandError when the file is wrong or
    a server cannot be reached within ``timeout`` seconds.
    """
    config = _load_zodb_config(path)
    factories = config.database
    names = [f.name for f in factories]
    if database is not None and database not in names:
        raise CommandError(
            f"--database {database}: {path} has no <zodb {database}> section; "
            f"its databases are {', '.join(map(repr, names))}"
        )
    databases = {}
    described = []
    opened = []
    try:
        for factory in factories:
            _limit_zeo_wait(factory, timeout)
            what = _storage_description(factory)
            described.append(what)
            try:
                opened.append(factory.open(databases))
            except CommandError:
                raise
            except Exception as exc:
                raise CommandError(
                    f"cannot open the database {factory.name!r} of {path} "
                    f"({what}): {type(exc).__name__}: {exc}"
                ) from None
    except BaseException:
        for db in opened:
            with contextlib.suppress(Exception):
                db.close()
        raise
    main = opened[0]
    if database is not None and database == main.database_name:
        database = None
    return Opened(main, database, f"{path} ({described[0]})")


def check_reachable(opened, timeout=10.0):
    """Load the root of the queues' database, so that a dead server or a
    wrong DSN shows now, with a clear error, not in the first job."""
    result = {}

    def probe():
        try:
            conn = opened.queues_db().open()
            try:
                conn.root()
            finally:
                conn.close()
            result["ok"] = True
        except Exception as exc:
            result["error"] = exc

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    if "error" in result:
        exc = result["error"]
        raise CommandError(
            f"cannot read the database {opened.description}: "
            f"{type(exc).__name__}: {exc}"
        )
    if not result:
        raise CommandError(
            f"the database {opened.description} did not answer within {timeout}s"
        )


def boot_zope(zope_conf, dispatcher, overrides=None):
    """Boot the Zope instance of ``zope_conf`` without serving HTTP and
    return an Opened for its database (see zasync.cli.zope.boot)."""
    db, database = zope.boot(zope_conf, dispatcher, overrides)
    return Opened(db, database, f"{zope_conf}")


def add_database_options(parser, remote=False):
    """The options every command that opens a database takes; ``remote``:
    and --url/--user, to ask a running site instead (zasync.cli.remote)."""
    where = parser.add_mutually_exclusive_group(required=True)
    if remote:
        from zasync.cli import remote as remote_site

        remote_site.add_options(parser, where)
    where.add_argument(
        "--zodb-conf",
        metavar="FILE",
        help="a ZODB configuration file: <zodb> sections with a storage such as "
        "<zeoclient> or <relstorage> (several sections: a multi-database)",
    )
    where.add_argument(
        "--zope-conf",
        metavar="FILE",
        help="the zope.conf of a Zope/Plone instance, booted without serving HTTP",
    )
    parser.add_argument(
        "--database",
        metavar="NAME",
        help="with --zodb-conf: the <zodb NAME> holding the queues in a "
        "multi-database file (default: the first)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="how long to wait for the database server (default: 30)",
    )


def open_from_args(args, dispatcher=False, overrides=None):
    """Open the database named by the options of add_database_options."""
    if args.zope_conf:
        if args.database:
            raise CommandError(
                "--database goes with --zodb-conf; with --zope-conf the queues' "
                "database is <product-config zasync> database"
            )
        opened = boot_zope(args.zope_conf, dispatcher, overrides)
    else:
        opened = open_zodb_conf(args.zodb_conf, args.database, args.timeout)
    try:
        check_reachable(opened, args.timeout)
    except BaseException:
        close(opened)
        raise
    return opened


def close(opened):
    """Close every database of ``opened``."""
    seen = set()
    for db in list(opened.db.databases.values()) or [opened.db]:
        if id(db) not in seen:
            seen.add(id(db))
            with contextlib.suppress(Exception):
                db.close()
