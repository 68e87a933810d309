"""``zasync cluster``: a ZEO server, a web instance and workers, locally.

``zasync cluster start`` makes (the first time) and starts, in one
directory, the processes of a production-like Plone cluster on this
machine: a ZEO server (runzeo), one web instance that only queues jobs
(``zasync serve`` on an instance home that loads single_db_instance.zcml),
and headless workers (``zasync worker --zope-conf`` on homes that load
single_db_worker.zcml), each with its own UUID file. With ``--multi-db``
the queues live in a database of their own (multi_db_*.zcml, a second ZEO
storage mounted at /zasync_queues); with ``--relstorage DSN`` PostgreSQL
holds the data instead of ZEO. Logs go to DIR/log, pid files to DIR/run;
``zasync cluster stop`` stops them all, the workers first, the ZEO server
last.
"""

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time

from zasync.clock import wait_until
from zasync.config import WORKER_READY
from zasync.deploy import instance
from zasync.deploy.serve import READY as WEB_READY
from zasync.exceptions import CommandError

SETTINGS = "cluster.json"
# The settings that shape the files; a later start must not change them.
LAYOUT = ("multi_db", "relstorage", "queues_dsn", "workers", "zeo_port", "port")


def add_arguments(parser):
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    start = actions.add_parser(
        "start", help="make (the first time) and start the cluster's processes"
    )
    _directory_option(start)
    start.add_argument(
        "--port", type=int, default=8080, help="the web instance's port (8080)"
    )
    start.add_argument(
        "--zeo-port", type=int, default=8100, help="the ZEO server's port (8100)"
    )
    start.add_argument(
        "--workers", type=int, default=2, help="how many worker processes (2)"
    )
    start.add_argument(
        "--multi-db",
        action="store_true",
        help="keep the queues in a database of their own (multi_db_*.zcml)",
    )
    start.add_argument(
        "--relstorage",
        metavar="DSN",
        help="keep the data in PostgreSQL through RelStorage instead of ZEO, "
        "e.g. 'dbname=plone host=127.0.0.1 user=plone'",
    )
    start.add_argument(
        "--queues-dsn",
        metavar="DSN",
        help="with --relstorage --multi-db: the PostgreSQL database of the queues",
    )
    start.add_argument("--site", default="Plone", help="the Plone site's id (Plone)")
    start.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        help="seconds to wait for every process to be ready (300)",
    )
    start.set_defaults(run=run_start)
    stop = actions.add_parser("stop", help="stop the cluster's processes")
    _directory_option(stop)
    stop.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        help="seconds each process gets to stop before it is killed (60)",
    )
    stop.set_defaults(run=run_stop)
    status = actions.add_parser("status", help="which of the processes run")
    _directory_option(status)
    status.set_defaults(run=run_status)


def _directory_option(parser):
    parser.add_argument(
        "--directory",
        default=os.path.join("var", "cluster"),
        metavar="DIR",
        help="where the cluster's files, logs and pid files are (var/cluster)",
    )


class Layout:
    """The files of a cluster directory."""

    def __init__(self, directory):
        self.directory = os.path.abspath(directory)
        self.log = os.path.join(self.directory, "log")
        self.run = os.path.join(self.directory, "run")
        self.settings_file = os.path.join(self.directory, SETTINGS)

    def home(self, name):
        return instance.InstanceHome(os.path.join(self.directory, name))

    def log_file(self, name):
        return os.path.join(self.log, f"{name}.log")

    def pid_file(self, name):
        return os.path.join(self.run, f"{name}.pid")

    def read_settings(self):
        if not os.path.exists(self.settings_file):
            return None
        with open(self.settings_file) as f:
            return json.load(f)

    def write_settings(self, settings):
        os.makedirs(self.directory, exist_ok=True)
        with open(self.settings_file, "w") as f:
            json.dump(settings, f, indent=2, sort_keys=True)
            f.write("\n")

    def process_names(self, settings):
        """In the order they start; they stop in the reverse order."""
        names = [] if settings["relstorage"] else ["zeo"]
        names.append("web")
        names.extend(f"worker{n}" for n in range(1, settings["workers"] + 1))
        return names


# ---------------------------------------------------------------- files


def _settings_from(args):
    if args.workers < 1:
        raise CommandError("--workers must be at least 1")
    if args.queues_dsn and not (args.relstorage and args.multi_db):
        raise CommandError("--queues-dsn goes with --relstorage and --multi-db")
    if args.relstorage and args.multi_db and not args.queues_dsn:
        raise CommandError(
            "--relstorage --multi-db keeps the queues in a PostgreSQL database "
            "of their own: name it with --queues-dsn"
        )
    return {
        "multi_db": args.multi_db,
        "relstorage": args.relstorage,
        "queues_dsn": args.queues_dsn,
        "workers": args.workers,
        "zeo_port": None if args.relstorage else args.zeo_port,
        "port": args.port,
        "site": args.site,
    }


def _check_same_layout(layout, stored, wanted):
    changed = [key for key in LAYOUT if stored.get(key) != wanted.get(key)]
    if changed:
        was = ", ".join(f"{key}={stored.get(key)!r}" for key in changed)
        raise CommandError(
            f"{layout.directory} holds a cluster made with {was}; start it with "
            f"the same options, or give another --directory"
        )


def _zeo_conf(layout, settings):
    data = os.path.join(layout.directory, "zeo")
    storages = ["main"] + (["queues"] if settings["multi_db"] else [])
    sections = "".join(
        f"<filestorage {name}>\n"
        f"    path {data}/{name}.fs\n"
        f"    blob-dir {data}/{name}-blobs\n"
        f"</filestorage>\n"
        for name in storages
    )
    return (
        f"<zeo>\n    address 127.0.0.1:{settings['zeo_port']}\n</zeo>\n"
        f"{sections}"
        f"<eventlog>\n    <logfile>\n        path STDOUT\n"
        f"        format %(asctime)s %(levelname)s [%(name)s] %(message)s\n"
        f"    </logfile>\n</eventlog>\n"
    )


def _storages(layout, settings, home):
    """The main and the queues' storage (or None) of instance home ``home``."""
    cache = os.path.join(home.path, "var", "blobcache")
    if settings["relstorage"]:
        main = instance.RelStorage(settings["relstorage"], cache)
        queues = settings["queues_dsn"] and instance.RelStorage(
            settings["queues_dsn"], cache + "-queues"
        )
        return main, queues or None
    address = f"127.0.0.1:{settings['zeo_port']}"
    main = instance.ZEOClient(address, "main", cache)
    queues = None
    if settings["multi_db"]:
        queues = instance.ZEOClient(address, "queues", cache + "-queues")
    return main, queues


def write_files(layout, settings):
    """Write what is missing: the ZEO server's configuration and the homes."""
    for directory in (layout.log, layout.run):
        os.makedirs(directory, exist_ok=True)
    if not settings["relstorage"]:
        os.makedirs(os.path.join(layout.directory, "zeo"), exist_ok=True)
        conf = os.path.join(layout.directory, "zeo", "zeo.conf")
        if not os.path.exists(conf):
            with open(conf, "w") as f:
                f.write(_zeo_conf(layout, settings))
    for name in layout.process_names(settings):
        if name == "zeo":
            continue
        home = layout.home(name)
        role = instance.INSTANCE if name == "web" else instance.WORKER
        main, queues = _storages(layout, settings, home)
        home.write(role, main, queues, port=settings["port"])


# ---------------------------------------------------------------- processes


def _command(layout, settings, name):
    bin_dir = os.path.dirname(sys.executable)
    zasync = os.path.join(bin_dir, "zasync")
    if name == "zeo":
        conf = os.path.join(layout.directory, "zeo", "zeo.conf")
        return [os.path.join(bin_dir, "runzeo"), "-C", conf]
    home = layout.home(name)
    if name == "web":
        return [zasync, "serve", "--instance", home.path, "--site", settings["site"]]
    return [
        zasync,
        "worker",
        "--zope-conf",
        home.zope_conf,
        "--uuid-file",
        home.uuid_file,
        "--grace",
        "10",
    ]


def read_pid(layout, name):
    """The pid of ``name`` if it runs (as started by this cluster), else None."""
    try:
        with open(layout.pid_file(name)) as f:
            pid = int(f.read().strip())
    except (OSError, ValueError):
        return None
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read().decode(errors="replace")
    except OSError:
        return None
    # A pid reused by another program is not ours to signal.
    return pid if layout.directory in cmdline else None


def _start_process(layout, settings, name):
    with open(layout.log_file(name), "ab") as log:
        log.write(f"\n=== zasync cluster: starting {name} ===\n".encode())
        log.flush()
        process = subprocess.Popen(
            _command(layout, settings, name),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=layout.directory,
            # Its own session: Ctrl-C in the terminal that started the
            # cluster does not reach it; `zasync cluster stop` does.
            start_new_session=True,
        )
    with open(layout.pid_file(name), "w") as f:
        f.write(f"{process.pid}\n")
    return process


def _size(path):
    try:
        return os.path.getsize(path)
    except FileNotFoundError:
        return 0


def _log_tail(layout, name, lines=30):
    try:
        with open(layout.log_file(name), errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""


def _zeo_answers(port):
    with (
        contextlib.suppress(OSError),
        socket.create_connection(("127.0.0.1", port), timeout=1),
    ):
        return True
    return False


def _ready(layout, settings, name, offset):
    if name == "zeo":
        return _zeo_answers(settings["zeo_port"])
    needle = WEB_READY if name == "web" else WORKER_READY
    with open(layout.log_file(name), errors="replace") as f:
        f.seek(offset)
        return needle in f.read()


def _wait_ready(layout, settings, started, deadline):
    pending = dict(started)
    while pending:
        for name, (process, offset) in list(pending.items()):
            if process.poll() is not None:
                raise CommandError(
                    f"{name} exited with code {process.returncode} while starting; "
                    f"the end of {layout.log_file(name)}:\n{_log_tail(layout, name)}"
                )
            if _ready(layout, settings, name, offset):
                print(f"  {name} is ready (pid {process.pid})", flush=True)
                del pending[name]
        if pending and time.monotonic() > deadline:
            names = ", ".join(pending)
            raise CommandError(
                f"{names} not ready in time; see {layout.log} "
                f"(then `zasync cluster stop --directory {layout.directory}`)"
            )
        if pending:
            time.sleep(0.2)


def run_start(args):
    layout = Layout(args.directory)
    wanted = _settings_from(args)
    stored = layout.read_settings()
    if stored is not None:
        _check_same_layout(layout, stored, wanted)
    settings = {**(stored or {}), **wanted}
    if settings["relstorage"]:
        _check_postgres(settings)
    layout.write_settings(settings)
    write_files(layout, settings)
    names = layout.process_names(settings)
    running = [n for n in names if read_pid(layout, n)]
    if running == names:
        print(f"zasync cluster: already running in {layout.directory}")
        return run_status(args)
    if running:
        raise CommandError(
            f"{', '.join(running)} of the cluster in {layout.directory} run and "
            f"the others do not; `zasync cluster stop` first"
        )
    if not settings["relstorage"] and _zeo_answers(settings["zeo_port"]):
        raise CommandError(
            f"127.0.0.1:{settings['zeo_port']} is in use by another program; "
            f"choose another --zeo-port (or a new --directory)"
        )
    print(f"zasync cluster: starting {', '.join(names)} in {layout.directory}")
    deadline = time.monotonic() + args.timeout
    try:
        # One at a time until the web instance is ready: Zope processes
        # that boot together on a new database conflict making its root
        # objects, and the web instance makes the Plone site. Then the
        # workers, together.
        first = [n for n in names if n in ("zeo", "web")]
        for group in [[n] for n in first] + [[n for n in names if n not in first]]:
            started = {}
            for name in group:
                # Only what this start writes to the log counts as ready.
                offset = _size(layout.log_file(name))
                started[name] = (_start_process(layout, settings, name), offset)
            _wait_ready(layout, settings, started, deadline)
    except BaseException:
        print("zasync cluster: stopping what started", file=sys.stderr)
        stop_all(layout, settings, 30.0)
        raise
    _print_summary(layout, settings)
    return 0


def _check_postgres(settings):
    try:
        import psycopg2
    except ImportError:
        raise CommandError(
            "--relstorage needs RelStorage: pip install 'zasync[relstorage]'"
        ) from None
    for dsn in filter(None, (settings["relstorage"], settings["queues_dsn"])):
        try:
            psycopg2.connect(dsn, connect_timeout=5).close()
        except psycopg2.Error as exc:
            raise CommandError(
                f"cannot connect to PostgreSQL with {dsn!r}: {str(exc).strip()}"
            ) from None


def _print_summary(layout, settings):
    url = f"http://127.0.0.1:{settings['port']}/{settings['site']}"
    password_file = os.path.join(layout.home("web").var, "admin-password.txt")
    storage = (
        f"PostgreSQL ({settings['relstorage']})"
        if settings["relstorage"]
        else f"ZEO on 127.0.0.1:{settings['zeo_port']}"
    )
    queues = "a database of their own" if settings["multi_db"] else "the main database"
    print(
        f"zasync cluster: running\n"
        f"  site:    {url} (demo: {url}/@@zasync-demo)\n"
        f"  admin:   user admin, password in {password_file}\n"
        f"  data:    {storage}; queues in {queues}\n"
        f"  workers: {settings['workers']}\n"
        f"  logs:    {layout.log}\n"
        f"  stop:    zasync cluster stop --directory {layout.directory}"
    )


def _signal(pid, signum):
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def _gone(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A child of this very process (a failed start) is a zombie until reaped.
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == pid
    return False


def _stop_group(layout, names, timeout):
    pids = {n: read_pid(layout, n) for n in names}
    pids = {n: p for n, p in pids.items() if p}
    for pid in pids.values():
        _signal(pid, signal.SIGTERM)
    wait_until(lambda: all(_gone(p) for p in pids.values()), timeout, 0.1)
    for name, pid in pids.items():
        if not _gone(pid):
            print(f"  {name} did not stop in {timeout}s: killed", file=sys.stderr)
            _signal(pid, signal.SIGKILL)
        else:
            print(f"  {name} stopped", flush=True)
    for name in names:
        with contextlib.suppress(FileNotFoundError):
            os.remove(layout.pid_file(name))
    return bool(pids)


def stop_all(layout, settings, timeout):
    names = layout.process_names(settings)
    # Workers and the web instance first (their jobs go back to the queue
    # while the database still answers), the database server last.
    stopped = _stop_group(layout, [n for n in names if n != "zeo"], timeout)
    if "zeo" in names:
        stopped = _stop_group(layout, ["zeo"], timeout) or stopped
    return stopped


def _settings_or_error(layout):
    settings = layout.read_settings()
    if settings is None:
        raise CommandError(
            f"no cluster in {layout.directory} (no {SETTINGS}); "
            f"`zasync cluster start` makes one"
        )
    return settings


def run_stop(args):
    layout = Layout(args.directory)
    settings = _settings_or_error(layout)
    if not stop_all(layout, settings, args.timeout):
        print(f"zasync cluster: nothing runs in {layout.directory}")
    else:
        print("zasync cluster: stopped")
    return 0


def run_status(args):
    layout = Layout(args.directory)
    settings = _settings_or_error(layout)
    names = layout.process_names(settings)
    running = 0
    for name in names:
        pid = read_pid(layout, name)
        running += bool(pid)
        state = f"running (pid {pid})" if pid else "stopped"
        print(f"  {name:<8} {state:<22} {layout.log_file(name)}")
    print(f"zasync cluster: {running} of {len(names)} processes run")
    # 0 when all run, 3 when some or none do (as `systemctl status`).
    return 0 if running == len(names) else 3
