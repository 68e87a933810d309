"""``zasync worker``: a process that only runs jobs.

With ``--zodb-conf`` it opens the database itself and runs the engine's
dispatcher; with ``--zope-conf`` it boots the Zope instance (so jobs find
Plone, its sites and users) without serving HTTP, and the Plone
integration starts the dispatcher. Either way SIGTERM or SIGINT stops it
gracefully: no new claims, running jobs get ``--grace`` seconds to finish,
the rest go back to the queue, and the dispatcher deregisters.
"""

import logging
import os
import signal
import threading

import zasync
from zasync.cli import connect, zope
from zasync.config import (
    COMMAND_LINE,
    DEFAULT_AGENT_SIZE,
    DEFAULTS,
    WORKER_READY,
    ConfigurationError,
    DispatcherConfig,
    queue_name,
)
from zasync.identity import UUID_ENVIRONMENT, environment_uuid_file, read_uuid_file

log = logging.getLogger("zasync.worker")

# The line logged once the worker is up (zasync.config.WORKER_READY).
READY = WORKER_READY
# Where --metrics-port listens unless --metrics-address says otherwise.
METRICS_ADDRESS = "127.0.0.1"
# The counters logged when a worker stops (see Dispatcher.stats).
STATS = ("completed", "failed", "retried", "conflicts", "disconnects", "rounds")


def add_arguments(parser):
    connect.add_database_options(parser)
    parser.add_argument(
        "--queue",
        dest="queues",
        action="append",
        metavar="NAME",
        help="a queue to serve (repeat for several; 'default' or '' is the "
        "default queue, which is served when none is given)",
    )
    parser.add_argument(
        "--agent-size",
        type=_positive_int,
        metavar="N",
        help="jobs run at once by this worker, per queue; wins over the sizes "
        "set for the cluster with 'zasync agents set' (default: those, else "
        f"{DEFAULT_AGENT_SIZE}; with --zope-conf, <product-config zasync> "
        "threads if set)",
    )
    parser.add_argument(
        "--poll-interval",
        type=_positive_float,
        metavar="SECONDS",
        help="how often an idle worker looks for work it was not woken for "
        f"(default: {DEFAULTS.poll_interval:g})",
    )
    parser.add_argument(
        "--uuid-file",
        metavar="PATH",
        help="file keeping this worker's dispatcher UUID, created if missing "
        "(default: $ZASYNC_UUID); one per worker, so that a restarted worker "
        "recovers its unfinished jobs at once",
    )
    parser.add_argument(
        "--ping-interval",
        type=_positive_float,
        metavar="SECONDS",
        help=f"seconds between heartbeats (default: {DEFAULTS.ping_interval:g})",
    )
    parser.add_argument(
        "--death-interval",
        type=_positive_float,
        metavar="SECONDS",
        help="heartbeat age after which live peers recover this worker's jobs "
        f"(default: {DEFAULTS.death_interval:g})",
    )
    parser.add_argument(
        "--group-commit",
        type=_positive_int,
        metavar="N",
        help="at most N short jobs of one thread commit in one transaction, "
        "each in a savepoint of its own; 1 commits every job alone "
        f"(default: {DEFAULTS.group_commit})",
    )
    parser.add_argument(
        "--metrics-port",
        type=_port,
        metavar="PORT",
        help="serve Prometheus metrics (the queues, this worker's jobs) at "
        "http://ADDRESS:PORT/metrics (see docs/metrics.md); off by default",
    )
    parser.add_argument(
        "--metrics-address",
        default=METRICS_ADDRESS,
        metavar="ADDRESS",
        help="the address --metrics-port listens on (default: "
        f"{METRICS_ADDRESS}, this machine only: the metrics are not "
        "protected, so listen elsewhere only on a trusted network)",
    )
    parser.add_argument(
        "--grace",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="on SIGTERM/SIGINT, how long running jobs may take to finish before "
        "they are put back in the queue (default: 30)",
    )
    parser.set_defaults(run=run)


def _positive_int(text):
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


_positive_int.__name__ = "whole number of at least 1"


def _positive_float(text):
    value = float(text)
    if value <= 0:
        raise ValueError(text)
    return value


_positive_float.__name__ = "positive number"


def _port(text):
    value = int(text)
    if not 1 <= value <= 65535:
        raise ValueError(text)
    return value


_port.__name__ = "port number (1-65535)"


def _queue_names(args):
    if not args.queues:
        return None
    return tuple(queue_name(name) for name in args.queues)


def _uuid(args):
    """(UUID, file) from --uuid-file or the environment, or (None, None)."""
    path = args.uuid_file or environment_uuid_file()
    if path is None:
        return None, None
    try:
        return read_uuid_file(path), path
    except (OSError, ValueError) as exc:
        raise connect.CommandError(f"--uuid-file {path}: {exc}") from None


class _Stop:
    """Turns SIGTERM and SIGINT into a request to stop; a second one stops
    at once, as it would have without us."""

    def __init__(self):
        self.requested = threading.Event()
        self.signal_name = None

    def install(self):
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._handle)

    def _handle(self, signum, frame):
        self.signal_name = signal.Signals(signum).name
        signal.signal(signum, signal.SIG_DFL)
        self.requested.set()


def run(args):
    options = _dispatcher_options(args)  # refused before opening anything
    uuid, uuid_file = _uuid(args)
    if uuid_file is None and not args.zope_conf:
        log.warning(
            "no --uuid-file (or ZASYNC_UUID): this worker gets a new UUID each "
            "start, so after a crash its jobs wait for its heartbeat to expire "
            "(--death-interval) instead of being recovered when it restarts"
        )
    stop = _Stop()
    stop.install()  # before opening: a signal during start-up stops cleanly
    # Before opening: a port in use is refused at once, and the counters
    # count from the dispatcher's start.
    metrics = _MetricsServer.start(args)
    try:
        dispatcher, opened, uuid_file = _start(args, options, uuid, uuid_file)
    except BaseException:
        if metrics is not None:
            metrics.close()
        raise
    if metrics is not None:
        metrics.serve(opened.db, opened.database)
    log.info(
        "%s: dispatcher %s (UUID file %s), queues %s, %s, database %s",
        READY,
        dispatcher.uuid,
        uuid_file or "none",
        ", ".join(repr(q) for q in dispatcher.queue_names),
        _threads(dispatcher),
        opened.description,
    )
    try:
        while not stop.requested.wait(3600):
            pass
    finally:
        log.info(
            "zasync worker: %s received; stopping (running jobs get %gs)",
            stop.signal_name or "stop",
            args.grace,
        )
        if args.zope_conf:
            finished = zope.stop_dispatcher(args.grace)
        else:
            finished = dispatcher.stop(args.grace)
        if metrics is not None:
            metrics.close()
        connect.close(opened)
        counts = {name: dispatcher.stats.get(name, 0) for name in STATS}
        log.info(
            "zasync worker stats: %s",
            " ".join(f"{name}={value}" for name, value in counts.items()),
        )
        log.info(
            "zasync worker stopped%s",
            "" if finished else "; unfinished jobs were put back in the queue",
        )
    return 0


def _start(args, options, uuid, uuid_file):
    """(dispatcher, opened database, UUID file) of a started worker."""
    if args.zope_conf:
        return _start_in_zope(args, options, uuid_file)
    opened = connect.open_from_args(args)
    config = DispatcherConfig(
        uuid=uuid,
        database=opened.database,
        agent_size_source="command line",
        names=COMMAND_LINE,
        **options,
    ).with_sources_of(options, "command line")
    try:
        dispatcher = zasync.start(opened.db, config=config)
    except BaseException:
        connect.close(opened)
        raise
    return dispatcher, opened, uuid_file


class _MetricsServer:
    """``--metrics-port``: Prometheus's HTTP endpoint of this worker, on a
    thread of its own (prometheus_client's server). Its port is bound
    before the database opens; the queues are read once it is open."""

    def __init__(self, registry, server):
        self.registry = registry
        self.server = server

    @classmethod
    def start(cls, args):
        """The server of ``--metrics-port``, listening; None without it.
        CommandError if it cannot listen there (a port in use)."""
        if args.metrics_port is None:
            return None
        from prometheus_client import start_http_server

        from zasync.admin import metrics

        registry = metrics.make_registry(None)
        where = f"{args.metrics_address}:{args.metrics_port}"
        try:
            server, _ = start_http_server(
                args.metrics_port, addr=args.metrics_address, registry=registry
            )
        except OSError as exc:
            raise connect.CommandError(
                f"--metrics-port {args.metrics_port}: cannot listen on {where} "
                f"({exc.strerror or exc}); is another worker (or program) using "
                f"it? Give each worker its own port"
                + (
                    ""
                    if args.metrics_address == METRICS_ADDRESS
                    else ", or check --metrics-address"
                )
            ) from None
        log.info("zasync worker: Prometheus metrics at http://%s/metrics", where)
        return cls(registry, server)

    def serve(self, db, database):
        """Add the queues of ``db`` (``database``: theirs in multi-database
        mode) to what the server shows."""
        from zasync.admin import metrics

        self.registry.register(metrics.QueuesCollector(db, database))

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def _threads(dispatcher):
    """``3 threads each`` (the agents' sizes in force), or one per queue."""
    sizes = {name: size for name, (size, _) in dispatcher.agent_sizes.items()}
    if len(set(sizes.values())) == 1:
        return f"{next(iter(sizes.values()))} threads each"
    return "threads " + ", ".join(f"{name!r} {size}" for name, size in sizes.items())


def _dispatcher_options(args):
    """The DispatcherConfig options given on the command line, checked
    (CommandError names the option to fix)."""
    options = {
        "queues": _queue_names(args),
        "agent_size": args.agent_size,
        "poll_interval": args.poll_interval,
        "ping_interval": args.ping_interval,
        "death_interval": args.death_interval,
        "group_commit": args.group_commit,
    }
    options = {k: v for k, v in options.items() if v is not None}
    try:
        DispatcherConfig(names=COMMAND_LINE, **options)
    except ConfigurationError as exc:
        raise connect.CommandError(str(exc)) from None
    return options


def _start_in_zope(args, options, uuid_file):
    if uuid_file:
        os.environ[UUID_ENVIRONMENT[0]] = os.path.abspath(uuid_file)
    overrides = {
        "queues": options.get("queues"),
        "threads": options.get("agent_size"),
        "poll_interval": options.get("poll_interval"),
        "ping_interval": options.get("ping_interval"),
        "death_interval": options.get("death_interval"),
        "group_commit": options.get("group_commit"),
    }
    opened = connect.open_from_args(args, dispatcher=True, overrides=overrides)
    try:
        dispatcher, uuid_file = zope.started_dispatcher(args.zope_conf)
    except BaseException:
        connect.close(opened)
        raise
    return dispatcher, opened, uuid_file
