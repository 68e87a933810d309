"""Zope instance homes for a Plone site with zasync.

An instance home is the directory Zope runs from: ``etc/zope.conf`` (the
databases and zasync's product-config), ``etc/site.zcml`` (Zope, the
Products, Plone through plone.autoinclude, and the zasync role file) and
``etc/zope.ini`` (the WSGI pipeline, the HTTP address and the logs), with
``var/`` for the data, the logs and the dispatcher's UUID file.

``zasync serve`` writes an embedded home (FileStorage, the dispatcher runs
in the web process); ``zasync cluster`` writes a web instance and workers
on ZEO or RelStorage. Existing files are never overwritten: an operator's
edits survive the next start.
"""

import dataclasses
import os
import textwrap

from zasync.identity import UUID_FILENAME
from zasync.plone.rolefiles import (  # noqa: F401 (importable here, as before)
    EMBEDDED,
    INSTANCE,
    QUEUES_DATABASE,
    ROLES,
    WORKER,
    role_zcml,
)


@dataclasses.dataclass(frozen=True)
class FileStorage:
    """A FileStorage with its blobs next to it (one process only)."""

    path: str
    blob_dir: str

    def section(self):
        return (
            f"<blobstorage>\n"
            f"    blob-dir {self.blob_dir}\n"
            f"    <filestorage>\n"
            f"        path {self.path}\n"
            f"    </filestorage>\n"
            f"</blobstorage>\n"
        )


@dataclasses.dataclass(frozen=True)
class ZEOClient:
    """A storage of a ZEO server; blobs are fetched into a local cache."""

    address: str
    storage: str
    blob_cache: str

    def section(self):
        return (
            f"<zeoclient>\n"
            f"    server {self.address}\n"
            f"    storage {self.storage}\n"
            f"    blob-dir {self.blob_cache}\n"
            f"    shared-blob-dir off\n"
            f"</zeoclient>\n"
        )


@dataclasses.dataclass(frozen=True)
class RelStorage:
    """A RelStorage on PostgreSQL; blobs are kept in the database and
    cached locally."""

    dsn: str
    blob_cache: str

    def section(self):
        return (
            f"%import relstorage\n"
            f"<relstorage>\n"
            f"    blob-dir {self.blob_cache}\n"
            f"    shared-blob-dir false\n"
            f"    <postgresql>\n"
            f"        dsn {self.dsn}\n"
            f"    </postgresql>\n"
            f"</relstorage>\n"
        )


def site_zcml(role, multi_db=False):
    """etc/site.zcml: Zope, every Product (Plone among them, which loads
    its add-ons, zasync.plone included, through plone.autoinclude), and the
    role file."""
    name = role_zcml(role, multi_db)
    include = (
        f'  <include package="zasync.plone" file="{name}" />\n'
        if name
        else "  <!-- No role file: an embedded process that runs a dispatcher. -->\n"
    )
    return (
        "<configure\n"
        '    xmlns="http://namespaces.zope.org/zope"\n'
        '    xmlns:meta="http://namespaces.zope.org/meta"\n'
        '    xmlns:five="http://namespaces.zope.org/five">\n'
        '  <include package="Zope2.App" />\n'
        '  <include package="Products.Five" />\n'
        '  <meta:redefinePermission from="zope2.Public" to="zope.Public" />\n'
        '  <five:loadProducts file="meta.zcml" />\n'
        "  <five:loadProducts />\n"
        "  <five:loadProductsOverrides />\n"
        '  <securityPolicy component="AccessControl.security.SecurityPolicy" />\n'
        f"{include}"
        "</configure>\n"
    )


def zope_conf(home, main, queues=None, product_config=None):
    """etc/zope.conf for the instance home ``home``: the main database on
    the storage ``main`` and, in multi-database mode, the queues' database
    on ``queues``; ``product_config`` gives <product-config zasync> lines."""

    def database(name, storage, mount_point):
        return (
            f"<zodb_db {name}>\n"
            f"{textwrap.indent(storage.section(), '    ')}"
            f"    mount-point {mount_point}\n"
            f"    cache-size 30000\n"
            f"</zodb_db>\n"
        )

    parts = [
        f"%define INSTANCE {home}\n",
        "instancehome $INSTANCE\n",
        "clienthome $INSTANCE/var\n",
        "debug-mode off\n",
        # zope_i18n_compile_mo_files: the translations (locales/*.po) are
        # compiled when Zope starts, as Plone instances do.
        "<environment>\n    CHAMELEON_CACHE $INSTANCE/var/cache\n"
        "    zope_i18n_compile_mo_files true\n</environment>\n",
        "<dos_protection>\n</dos_protection>\n",
        database("main", main, "/"),
    ]
    settings = dict(product_config or {})
    if queues is not None:
        parts.append(database(QUEUES_DATABASE, queues, f"/{QUEUES_DATABASE}"))
        settings.setdefault("database", QUEUES_DATABASE)
    if settings:
        lines = "".join(f"    {key} {value}\n" for key, value in settings.items())
        parts.append(f"<product-config zasync>\n{lines}</product-config>\n")
    return "\n".join(parts)


def zope_ini(home, host, port):
    """etc/zope.ini: waitress on ``host:port``; the event log on the
    console and in var/log/event.log, the access log in var/log/access.log."""
    log = os.path.join(home, "var", "log")
    return f"""\
[app:zope]
use = egg:Zope#main
zope_conf = %(here)s/zope.conf

[pipeline:main]
pipeline =
    egg:Zope#httpexceptions
    translogger
    zope

[filter:translogger]
use = egg:Paste#translogger
setup_console_handler = False

[server:main]
use = egg:waitress#main
listen = {host}:{port}
threads = 4

[loggers]
keys = root, wsgi

[handlers]
keys = console, eventlog, accesslog

[formatters]
keys = generic, message

[logger_root]
level = INFO
handlers = console, eventlog

[logger_wsgi]
level = INFO
handlers = accesslog
qualname = wsgi
propagate = 0

[handler_console]
class = StreamHandler
args = (sys.stderr,)
formatter = generic

[handler_eventlog]
class = FileHandler
args = (r'{log}/event.log', 'a')
formatter = generic

[handler_accesslog]
class = FileHandler
args = (r'{log}/access.log', 'a')
formatter = message

[formatter_generic]
format = %(asctime)s %(levelname)s [%(name)s] %(message)s
datefmt = %Y-%m-%d %H:%M:%S

[formatter_message]
format = %(message)s
"""


@dataclasses.dataclass(frozen=True)
class InstanceHome:
    """The files of one Zope instance home."""

    path: str

    @property
    def zope_conf(self):
        return os.path.join(self.path, "etc", "zope.conf")

    @property
    def zope_ini(self):
        return os.path.join(self.path, "etc", "zope.ini")

    @property
    def site_zcml(self):
        return os.path.join(self.path, "etc", "site.zcml")

    @property
    def var(self):
        return os.path.join(self.path, "var")

    @property
    def uuid_file(self):
        """The dispatcher's UUID file (the default one of zasync.plone)."""
        return os.path.join(self.var, UUID_FILENAME)

    def exists(self):
        return os.path.exists(self.zope_conf)

    def write(
        self, role, main, queues=None, host="127.0.0.1", port=8080, product_config=None
    ):
        """Write the files that are missing; return the paths written."""
        home = os.path.abspath(self.path)
        for directory in ("etc", "var/log", "var/cache"):
            os.makedirs(os.path.join(home, directory), exist_ok=True)
        files = {
            self.zope_conf: zope_conf(home, main, queues, product_config),
            self.site_zcml: site_zcml(role, multi_db=queues is not None),
            self.zope_ini: zope_ini(home, host, port),
        }
        written = []
        for path, text in files.items():
            if not os.path.exists(path):
                with open(path, "w") as f:
                    f.write(text)
                written.append(path)
        return written

    def write_embedded(self, host="127.0.0.1", port=8080):
        """An embedded home: FileStorage in var/, and this process runs the
        dispatcher."""
        var = os.path.abspath(self.var)
        storage = FileStorage(
            os.path.join(var, "filestorage", "Data.fs"),
            os.path.join(var, "blobstorage"),
        )
        os.makedirs(os.path.dirname(storage.path), exist_ok=True)
        return self.write(EMBEDDED, storage, host=host, port=port)

    def listen_address(self):
        """(host, port) of etc/zope.ini's waitress server."""
        import configparser

        parser = configparser.ConfigParser(interpolation=None)
        parser.read(self.zope_ini)
        listen = parser.get("server:main", "listen", fallback="127.0.0.1:8080")
        host, _, port = listen.rpartition(":")
        return host or "127.0.0.1", int(port)
