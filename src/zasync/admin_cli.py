"""The operators' commands of ``zasync``: status, jobs, job, retry, cancel,
prune.

Each opens the database named by the usual options (``--zodb-conf`` or
``--zope-conf``; no dispatcher is started), does its work with
:mod:`zasync.admin`, and closes the database. Reads happen in one
transaction that is aborted; writes in transactions that are retried on
conflicts. Whatever the person must fix is a CommandError.
"""

import argparse
import contextlib
import datetime
import getpass
import json
import socket

import transaction

from zasync import admin, clock, connect
from zasync.runner import abort

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
DISPATCHER_COLUMNS = (
    "DISPATCHER",
    "STATE",
    "HOST:PID",
    "LAST HEARTBEAT (UTC)",
    "AGE",
    "AGENTS",
)
JOB_COLUMNS = (
    "ID",
    "QUEUE",
    "STATUS",
    "CALLABLE",
    "QUEUED (UTC)",
    "ENDED (UTC)",
    "ATTEMPTS",
)


# -- argument types (argparse shows their errors with the usage) ------------


def _duration(text):
    try:
        return admin.parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _job_id(text):
    try:
        return admin.parse_job_id(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _whole_number(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a whole number of at least 1"
        )
    return value


# -- opening and closing ----------------------------------------------------


@contextlib.contextmanager
def _opened(args):
    """The opened database; AdminError becomes CommandError."""
    opened = connect.open_from_args(args)
    try:
        yield opened
    except admin.AdminError as exc:
        raise connect.CommandError(str(exc)) from None
    finally:
        connect.close(opened)


@contextlib.contextmanager
def _reading(args):
    """The queues of the database, in a transaction that is aborted."""
    with _opened(args) as opened:
        tm = transaction.TransactionManager(explicit=True)
        conn = opened.db.open(transaction_manager=tm)
        try:
            tm.begin()
            yield admin.read_queues(conn, opened.database)
        finally:
            abort(tm)
            conn.close()


# -- output -----------------------------------------------------------------


def _json_value(value):
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _print_json(data):
    print(json.dumps(data, indent=2, default=_json_value))


def _time(when):
    return "-" if when is None else f"{when:{TIME_FORMAT}}"


def _when(when, now):
    """A time with how long ago (or in how long) it is."""
    if when is None:
        return "-"
    delta = now - when
    if delta >= datetime.timedelta(0):
        return f"{when:{TIME_FORMAT}} UTC ({admin.format_duration(delta)} ago)"
    return f"{when:{TIME_FORMAT}} UTC (in {admin.format_duration(-delta)})"


def _table(headers, rows, indent=""):
    """Columns as wide as their widest cell, two spaces apart."""
    cells = [list(map(str, headers))] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        line = "  ".join(
            cell.ljust(width) for cell, width in zip(row, widths, strict=True)
        )
        print(indent + line.rstrip())


# -- status -----------------------------------------------------------------


def _status(args):
    with _reading(args) as queues:
        report = admin.status_report(queues)
    if args.json:
        _print_json(report)
        return 0
    now = report["time"]
    print(f"zasync status at {now:{TIME_FORMAT}} UTC")
    for queue in report["queues"]:
        _print_queue_status(queue)
    return 0


def _print_queue_status(queue):
    counts = queue["counts"]
    print()
    print(f"queue {queue['label']}")
    print(
        f"  jobs: {counts['pending']} pending, {counts['assigned']} assigned, "
        f"{counts['active']} active, {counts['callbacks']} in callbacks, "
        f"{counts['completed']} completed ({counts['succeeded']} succeeded, "
        f"{counts['failed']} failed), {queue['set_aside']} set aside"
    )
    dispatchers = queue["dispatchers"]
    if not dispatchers:
        print("  dispatchers: none; no worker serves this queue, its jobs wait")
    else:
        if not any(d["alive"] for d in dispatchers):
            print("  no live dispatcher serves this queue: its jobs wait")
        rows = []
        for d in dispatchers:
            state = "alive" if d["alive"] else "dead"
            if d["declared_dead"]:
                state = "dead, jobs recovered"
            agents = ", ".join(
                f"{a['name']} {a['size']} threads, {a['claimed']} claimed"
                for a in d["agents"]
            )
            rows.append(
                [
                    d["uuid"],
                    state,
                    f"{d['host']}:{d['pid']}",
                    _time(d["last_heartbeat"]),
                    admin.format_duration(d["heartbeat_age"]),
                    agents or "-",
                ]
            )
        _table(
            [
                "DISPATCHER",
                "STATE",
                "HOST:PID",
                "LAST HEARTBEAT (UTC)",
                "AGE",
                "AGENTS",
            ],
            rows,
            indent="  ",
        )
    if queue["quotas"]:
        _table(
            ["QUOTA", "SIZE", "ACTIVE"],
            [[q["name"], q["size"], q["active"]] for q in queue["quotas"]],
            indent="  ",
        )
    else:
        print("  quotas: none")


# -- jobs -------------------------------------------------------------------


def _jobs(args):
    with _reading(args) as queues:
        jobs, more = admin.find_jobs(
            queues,
            status=args.status,
            queue=args.queue,
            callable=args.callable,
            older_than=args.older_than,
            newer_than=args.newer_than,
            limit=args.limit,
        )
        rows = [admin.job_summary(job) for job in jobs]
    if args.json:
        _print_json({"jobs": rows, "more": more})
        return 0
    if not rows:
        print("no jobs match")
        return 0
    _table(
        [
            "ID",
            "QUEUE",
            "STATUS",
            "CALLABLE",
            "QUEUED (UTC)",
            "ENDED (UTC)",
            "ATTEMPTS",
        ],
        [
            [
                row["id"],
                row["queue"],
                row["status"],
                row["callable"],
                _time(row["queued"]),
                _time(row["ended"]),
                row["attempts"],
            ]
            for row in rows
        ],
    )
    if more:
        print(f"(the first {len(rows)}; more jobs match: raise --limit or filter)")
    return 0


# -- job --------------------------------------------------------------------


def _related(items):
    if not items:
        return "-"
    return ", ".join(
        f"{i['id']} {i['callable']} ({i['status']}"
        + (f": {i['error']})" if i["error"] else ")")
        for i in items
    )


def _job(args):
    with _reading(args) as queues:
        info = admin.describe_job(admin.get_job(queues, args.id), full=args.full)
    if args.json:
        _print_json(info)
        return 0
    now = clock.utcnow()
    assignee = info["assignee"]
    if assignee is not None:
        where = f"dispatcher {assignee['dispatcher']}, agent {assignee['agent']}"
        if assignee["host"] is not None:
            where += f", {assignee['host']}:{assignee['pid']}"
        assignee = where
    rows = [
        ("status", info["status"]),
        ("set aside because", info["set_aside_reason"]),
        ("callable", info["callable"]),
        ("arguments", ", ".join(info["args"]) or "-"),
        (
            "keyword arguments",
            ", ".join(f"{k}={v}" for k, v in info["kwargs"].items()) or "-",
        ),
        ("quotas", ", ".join(info["quota_names"]) or "-"),
        ("priority", info["priority"]),
        ("unique key", info["unique_key"] or "-"),
        ("begin after", _when(info["begin_after"], now)),
        (
            "begin by",
            "-" if info["begin_by"] is None else f"{info['begin_by']} after that",
        ),
        ("queued", _when(info["queued"], now)),
        ("started", _when(info["started"], now)),
        ("ended", _when(info["ended"], now)),
        ("attempts", info["attempts"]),
        ("interruptions", info["interruptions"]),
        ("postponements", info["postponements"]),
        ("assignee", assignee or "-"),
        ("retry policy", info["retry_policy"]),
        ("environment", info["environment"] or "-"),
        ("retry of job", info["retry_of"]),
        (
            "parent",
            "-"
            if info["parent"] is None
            else f"{_related([info['parent']])}, this job is its {info['role']}",
        ),
        ("callbacks", _related(info["callbacks"])),
        ("parts", _related(info["children"]) if info["children"] else None),
    ]
    for name, value in info["annotations"].items():
        rows.append((f"annotation {name}", value))
    for name, value in info["live_annotations"].items():
        rows.append((f"live {name}", value))
    if info["error"] is not None:
        rows.append(("error", info["error"]))
    elif info["result"] is not None:
        rows.append(("result", info["result"]))
    print(f"job {info['id']} in queue {info['queue']}")
    rows = [(name, value) for name, value in rows if value is not None]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"  {name.ljust(width)}  {value}")
    if info["traceback"] is not None:
        print("traceback:")
        for line in info["traceback"].rstrip("\n").splitlines():
            print(f"  {line}")
    return 0


# -- retry and cancel -------------------------------------------------------


def _retry(args):
    def work(queues):
        outcome = admin.retry_job(queues, args.id)
        job = outcome.job
        label = admin.queue_label(job.queue.name)
        return outcome.made_due, job.id, job.callable_name, label, outcome.was_due

    with _opened(args) as opened:
        made_due, job_id, name, label, was_due = admin.in_transaction(
            opened.db, work, opened.database
        )
    if made_due:
        print(
            f"job {job_id} ({name}) in queue {label} is due now; it was due at "
            f"{was_due:{TIME_FORMAT}} UTC"
        )
    else:
        print(
            f"queued job {job_id} ({name}) in queue {label}: a retry of failed "
            f"job {args.id}"
        )
    return 0


def _who():
    try:
        user = getpass.getuser()
    except Exception:
        user = "unknown"
    return f"zasync cancel (user {user} on {socket.gethostname()})"


def _cancel(args):
    by = _who()

    def work(queues):
        job = admin.cancel_job(queues, args.id, by=by, reason=args.reason)
        label = admin.queue_label(job.queue.name)
        return len(job.callbacks), job.callable_name, label

    with _opened(args) as opened:
        callbacks, name, label = admin.in_transaction(opened.db, work, opened.database)
    queued = f"; its {callbacks} callbacks were queued" if callbacks else ""
    print(f"cancelled job {args.id} ({name}) in queue {label}{queued}")
    return 0


# -- prune ------------------------------------------------------------------


def _prune(args):
    failed_older_than = args.failed_older_than
    if failed_older_than is None:
        failed_older_than = args.older_than * admin.FAILED_KEEP_FACTOR
    with _opened(args) as opened:
        counts = admin.prune(
            opened.db,
            args.older_than,
            failed_older_than,
            queue=args.queue,
            dry_run=args.dry_run,
            database=opened.database,
            batch_size=args.batch_size,
        )
    verb = "would remove" if args.dry_run else "removed"
    print(
        f"completed jobs that ended over {admin.format_duration(args.older_than)} "
        f"ago, failed ones over {admin.format_duration(failed_older_than)} ago:"
    )
    for name, count in counts.items():
        kept = (
            f" (kept {count['kept']} parts of unfinished jobs)" if count["kept"] else ""
        )
        print(
            f"  queue {admin.queue_label(name)}: {verb} {count['succeeded']} "
            f"succeeded and {count['failed']} failed jobs{kept}"
        )
    if args.dry_run:
        print("dry run: nothing was removed")
    return 0


# -- the parsers ------------------------------------------------------------


def _queue_option(parser, help):
    parser.add_argument("--queue", metavar="NAME", help=help)


def _json_option(parser):
    parser.add_argument(
        "--json", action="store_true", help="print JSON (times in ISO 8601, UTC)"
    )


def register(commands):
    """Add the operators' sub-commands to ``commands``."""
    status = commands.add_parser(
        "status",
        help="dispatchers, their heartbeats and agents, job counts and quotas",
        description="What serves each queue: its dispatchers (alive or dead, "
        "host:pid, last heartbeat, agents and the jobs they claimed), its job "
        "counts by status, its quotas and set-aside jobs.",
    )
    connect.add_database_options(status)
    _json_option(status)
    status.set_defaults(run=_status)

    jobs = commands.add_parser(
        "jobs",
        help="list jobs, with filters",
        description="List jobs: running ones first, then pending ones in run "
        "order, set-aside ones, and completed ones newest first.",
    )
    connect.add_database_options(jobs)
    jobs.add_argument(
        "--status",
        choices=admin.STATUS_FILTERS,
        help="only jobs with this status ('failed' and 'succeeded' are completed jobs)",
    )
    _queue_option(jobs, "only jobs of this queue ('default': the default queue)")
    jobs.add_argument(
        "--callable",
        metavar="TEXT",
        help="only jobs whose callable's dotted name contains TEXT, or matches "
        "it as a pattern if it has * ? or [ (case matters)",
    )
    jobs.add_argument(
        "--older-than",
        type=_duration,
        metavar="DURATION",
        help="only jobs queued (completed jobs: ended) longer ago than this, "
        "like 90s, 30m, 2h, 7d",
    )
    jobs.add_argument(
        "--newer-than",
        type=_duration,
        metavar="DURATION",
        help="only jobs queued (completed jobs: ended) within this",
    )
    jobs.add_argument(
        "--limit",
        type=_whole_number,
        default=50,
        metavar="N",
        help="show at most N jobs (default: 50)",
    )
    _json_option(jobs)
    jobs.set_defaults(run=_jobs)

    job = commands.add_parser(
        "job",
        help="everything about one job, with its traceback if it failed",
        description="Everything about one job: its call, times, attempts, "
        "assignee, related jobs, live annotations, and its result or its "
        "failure's traceback.",
    )
    connect.add_database_options(job)
    job.add_argument("id", type=_job_id, metavar="ID", help="the job's id")
    job.add_argument("--full", action="store_true", help="do not shorten long values")
    _json_option(job)
    job.set_defaults(run=_job)

    retry = commands.add_parser(
        "retry",
        help="queue a failed job again, or make a waiting job due now",
        description="For a failed job: queue a new job making the same call "
        "(same callable, arguments, environment, quotas, priority, retry "
        "policy and callbacks) in the same queue and print its id; the failed "
        "job is kept as it is. For a pending job waiting to start (a retry "
        "delay, or scheduled for later): make it due now.",
    )
    connect.add_database_options(retry)
    retry.add_argument("id", type=_job_id, metavar="ID", help="the job's id")
    retry.set_defaults(run=_retry)

    cancel = commands.add_parser(
        "cancel",
        help="cancel a pending job: it fails with JobCancelled, callbacks run",
        description="Take a pending job out of the run order and complete it "
        "with a zasync.admin.JobCancelled failure, so that its callbacks run "
        "and it is listed among failed jobs. A running job cannot be stopped.",
    )
    connect.add_database_options(cancel)
    cancel.add_argument("id", type=_job_id, metavar="ID", help="the job's id")
    cancel.add_argument(
        "--reason", metavar="TEXT", help="why, kept in the job's failure message"
    )
    cancel.set_defaults(run=_cancel)

    prune = commands.add_parser(
        "prune",
        help="remove old completed jobs, keeping failed ones longer",
        description="Remove completed jobs that ended before a cutoff, a batch "
        "per transaction so that workers go on meanwhile. Pack the storage "
        "afterwards to give the space back.",
    )
    connect.add_database_options(prune)
    prune.add_argument(
        "--older-than",
        type=_duration,
        required=True,
        metavar="DURATION",
        help="remove succeeded jobs that ended longer ago than this, like 30m, "
        "12h, 7d, 2w",
    )
    prune.add_argument(
        "--failed-older-than",
        type=_duration,
        metavar="DURATION",
        help="remove failed jobs that ended longer ago than this (default: 4 "
        "times --older-than)",
    )
    _queue_option(prune, "only this queue ('default': the default queue); default: all")
    prune.add_argument(
        "--dry-run",
        action="store_true",
        help="only count what would be removed",
    )
    prune.add_argument(
        "--batch-size",
        type=_whole_number,
        default=admin.PRUNE_BATCH,
        metavar="N",
        help=f"jobs removed per transaction (default: {admin.PRUNE_BATCH})",
    )
    prune.set_defaults(run=_prune)
