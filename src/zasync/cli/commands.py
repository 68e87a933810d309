"""The operators' commands of ``zasync``: status, jobs, job, retry, cancel,
set-aside, discard, prune; settings, quota, agents, intervals, retention
(cluster-wide settings); pause, resume; mode (where the queues live).

Each opens the database named by the usual options (``--zodb-conf`` or
``--zope-conf``; no dispatcher is started), does its work with
:mod:`zasync.admin`, and closes the database. Reads happen in one
transaction that is aborted; writes in transactions that are retried on
conflicts. Whatever the person must fix is a CommandError. JSON output
gives job ids as strings (see zasync.admin.for_json).

``status``, ``jobs``, ``job``, ``retry`` and ``cancel`` also take ``--url
SITE_URL --user USER``: then they ask a running Plone site through its
REST API (zasync.cli.remote) and print the same.
"""

import argparse
import contextlib
import datetime
import getpass
import json
import socket
import sys

import transaction

from zasync import admin, clock
from zasync.cli import connect, remote
from zasync.config import DEFAULT_QUEUE_LABEL
from zasync.registry import threads_text
from zasync.status import ACTIVE, ASSIGNED
from zasync.transact import abort

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


def _print_json(data):
    """Print plain data as JSON: job ids as strings (JavaScript and jq round
    18-digit numbers), times in ISO 8601, durations in seconds."""
    print(json.dumps(admin.for_json(data), indent=2))


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
    site = remote.from_args(args)
    if site is not None:
        report = site.status()
    else:
        with _reading(args) as queues:
            report = admin.status_report(queues)
    if args.json:
        _print_json(report)
        return 0
    now = report["time"]
    print(f"zasync status at {now:{TIME_FORMAT}} UTC")
    if report.get("pruning") is not None:
        print(_pruning_text(report["pruning"], now))
    for queue in report["queues"]:
        _print_queue_status(queue)
    scheduled = report.get("recurring") or {}
    if scheduled.get("count"):
        print()
        print(
            f"recurring jobs: {scheduled['count']} ({scheduled['paused']} paused); "
            f"'zasync recurring list' shows them"
        )
    return 0


def _pruning_text(pruning, now):
    """One line: what the automatic pruning (zasync.retention) did last."""

    def jobs(count):
        return f"{count} job{'' if count == 1 else 's'}"

    if pruning.get("running_since") is not None:
        return (
            f"automatic prune: under way since "
            f"{_when(pruning['running_since'], now)} by dispatcher "
            f"{pruning['holder']}, {jobs(pruning['running_removed'])} removed so far"
        )
    if pruning.get("last_ended") is None:
        return "automatic prune: none yet (a running dispatcher begins one)"
    text = (
        f"automatic prune: last ended {_when(pruning['last_ended'], now)}, "
        f"{jobs(pruning['last_removed'])} removed"
    )
    if pruning.get("next_pass") is not None:
        text += f"; next {_when(pruning['next_pass'], now)}"
    return text


def _print_queue_status(queue):
    counts = queue["counts"]
    print()
    print(f"queue {queue['label']}")
    paused = queue.get("paused")
    if paused:
        since = paused["since"]
        since = since if isinstance(since, str) else f"{since:{TIME_FORMAT}} UTC"
        option = (
            ""
            if queue["label"] == DEFAULT_QUEUE_LABEL
            else f" --queue {queue['label']}"
        )
        print(
            f"  PAUSED since {since} by {paused['by']}: no job is claimed; "
            f"'zasync resume{option}' resumes it"
        )
    # Jobs waiting for others are shown where there are any.
    waiting = f"{counts['waiting']} waiting, " if counts.get("waiting") else ""
    print(
        f"  jobs: {waiting}{counts['pending']} pending, {counts['assigned']} assigned, "
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
    _print_quotas(queue["quotas"])


def _print_quotas(quotas):
    if not quotas:
        print("  quotas: none")
        return
    # Rates and pauses get columns only where a quota has one.
    extra = any(q.get("rate") or q.get("paused") for q in quotas)
    headers = ["QUOTA", "SIZE", "ACTIVE"]
    if extra:
        headers += ["RATE", "STARTS IN PERIOD", "STATE"]
    rows = []
    for q in quotas:
        row = [q["name"], q["size"], q["active"]]
        if extra:
            row += [*_rate_cells(q.get("rate")), _quota_state(q.get("paused"))]
        rows.append(row)
    _table(headers, rows, indent="  ")


def _rate_cells(rate):
    if not rate:
        return ["-", "-"]
    used = str(rate["used"])
    if rate.get("opens_at") is not None:
        used += f" (next start at {_short_time(rate['opens_at'])})"
    return [f"{rate['limit']} per {admin.format_period(rate['per_seconds'])}", used]


def _quota_state(paused):
    if not paused:
        return "running"
    return f"PAUSED since {_short_time(paused['since'])} by {paused['by']}"


def _short_time(when):
    if isinstance(when, str):  # from a site's REST API
        when = datetime.datetime.fromisoformat(when)
    return f"{when:{TIME_FORMAT}} UTC"


# -- jobs -------------------------------------------------------------------


def _jobs(args):
    filters = {
        "status": args.status,
        "queue": args.queue,
        "callable": args.callable,
        "older_than": args.older_than,
        "newer_than": args.newer_than,
    }
    site = remote.from_args(args)
    if site is not None:
        rows, more = site.jobs(limit=args.limit, **filters)
    else:
        with _reading(args) as queues:
            jobs, more = admin.find_jobs(queues, limit=args.limit, **filters)
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
    for row in rows:
        if row.get("problem") is not None:
            print(f"job {row['id']} cannot be loaded: {row['problem']}")
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


def _ids(ids):
    return ", ".join(map(str, ids)) if ids else None


def _depends_on(info):
    """The jobs it was put to wait for, and what it does if one fails."""
    if not info.get("depends_on"):
        return None
    return (
        f"{_related(info['depends_on'])}; if one fails: {info['on_dependency_failure']}"
    )


def _job(args):
    site = remote.from_args(args)
    if site is not None:
        info = site.job(args.id, full=args.full)
    else:
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
        ("cannot be loaded", info.get("problem")),
        ("stored class", info.get("class")),
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
        ("depends on", _depends_on(info)),
        ("waiting for", _ids(info.get("waiting_for"))),
        ("jobs waiting for it", _ids([i["id"] for i in info.get("dependents", ())])),
    ]
    for name, state in info.get("steps", {}).items():
        rows.append(("steps" if name == "items" else f"steps {name}", state["text"]))
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
        return (
            outcome.made_due,
            job.id,
            job.callable_name,
            label,
            outcome.was_due,
            outcome.set_aside_reason,
        )

    site = remote.from_args(args)
    if site is not None:
        done = site.retry(args.id)
        made_due, job_id, name, label, was_due, aside = (
            done["made_due"],
            done["id"],
            done["callable"],
            done["queue"],
            done["was_due"],
            done["set_aside_reason"],
        )
    else:
        with _opened(args) as opened:
            made_due, job_id, name, label, was_due, aside = _storing(
                opened, work, args.id
            )
    put_back = aside is not None
    if args.json:
        _print_json(
            {
                "id": job_id,
                "callable": name,
                "queue": label,
                "made_due": made_due,
                "was_due": was_due,
                "put_back": put_back,
                "set_aside_reason": aside,
                "retry_of": None if made_due or put_back else args.id,
            }
        )
        return 0
    if put_back:
        print(
            f"job {job_id} ({name}) in queue {label} is back in the run order; "
            f"it had been set aside because: {aside}"
        )
    elif made_due:
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


def _who(command="zasync cancel"):
    try:
        user = getpass.getuser()
    except Exception:
        user = "unknown"
    return f"{command} (user {user} on {socket.gethostname()})"


def _cancel(args):
    by = _who()

    def work(queues):
        job = admin.cancel_job(queues, args.id, by=by, reason=args.reason)
        label = admin.queue_label(job.queue.name)
        callbacks = [cb for cb in job.callbacks if not cb.internal]
        # A running (or claimed) job was asked to stop: it stays as it is.
        requested = job.status in (ACTIVE, ASSIGNED) and admin.cancel_state(job)
        return len(callbacks), job.callable_name, label, requested or None

    site = remote.from_args(args)
    if site is not None:
        done = site.cancel(args.id, args.reason)
        callbacks, name, label = done["callbacks"], done["callable"], done["queue"]
        requested = done.get("cancel_requested")
    else:
        with _opened(args) as opened:
            callbacks, name, label, requested = _storing(opened, work, args.id)
    if args.json:
        _print_json(
            {
                "id": args.id,
                "callable": name,
                "queue": label,
                "callbacks": callbacks,
                "cancel_requested": requested,
            }
        )
        return 0
    if requested:
        print(
            f"cancel requested for running job {args.id} ({name}) in queue "
            f"{label}; {requested['stops']}"
        )
        return 0
    queued = f"; its {callbacks} callbacks were queued" if callbacks else ""
    print(f"cancelled job {args.id} ({name}) in queue {label}{queued}")
    return 0


def _storing(opened, work, job_id):
    """``admin.in_transaction``; a commit that fails because the job cannot
    be stored (not a conflict: those are retried) is a CommandError."""
    try:
        return admin.in_transaction(opened.db, work, opened.database)
    except admin.AdminError:
        raise
    except Exception as exc:
        raise connect.CommandError(
            f"could not store the change of job {job_id}: {type(exc).__name__}: "
            f"{exc}. Is the code it needs installed? 'zasync job {job_id}' "
            f"shows what it is"
        ) from None


# -- set aside --------------------------------------------------------------


def _set_aside(args):
    with _reading(args) as queues:
        rows = admin.set_aside_report(queues, queue=args.queue)
    if args.json:
        _print_json({"jobs": rows})
        return 0
    if not rows:
        print("no job is set aside")
        return 0
    _table(
        ["ID", "QUEUE", "STATUS", "CALLABLE", "QUEUED (UTC)", "LOADS", "REASON"],
        [
            [
                row["id"],
                row["queue"],
                row["status"],
                row["callable"],
                _time(row["queued"]),
                "yes" if row["loads"] else "no",
                row["reason"],
            ]
            for row in rows
        ],
    )
    print(
        "'zasync job ID' shows one; 'zasync retry ID' puts it back in the run "
        "order once its code is back; 'zasync discard ID' removes it"
    )
    return 0


def _discard(args):
    with _opened(args) as opened:
        info = _storing(
            opened, lambda queues: admin.discard_job(queues, args.id), args.id
        )
    if args.json:
        _print_json(info)
        return 0
    print(
        f"discarded set-aside job {info['id']} ({info['callable']}) of queue "
        f"{info['queue']}; it had been set aside because: {info['reason']}"
    )
    return 0


# -- prune ------------------------------------------------------------------


def _prune(args):
    failed_older_than = args.failed_older_than
    if failed_older_than is None:
        failed_older_than = args.older_than * admin.FAILED_KEEP_FACTOR
    verb = "would remove" if args.dry_run else "removed"

    def progress(step):
        # On stderr, so that --json output stays one document.
        print(
            f"queue {admin.queue_label(step['queue'])}: {verb} {step['removed']} "
            f"of ~{step['estimate']} {step['kind']} jobs",
            file=sys.stderr,
            flush=True,
        )

    with _opened(args) as opened:
        counts = admin.prune(
            opened.db,
            args.older_than,
            failed_older_than,
            queue=args.queue,
            dry_run=args.dry_run,
            database=opened.database,
            batch_size=args.batch_size,
            set_aside=args.set_aside,
            progress=progress,
        )
    if args.json:
        _print_json(
            {
                "older_than": args.older_than,
                "failed_older_than": failed_older_than,
                "dry_run": args.dry_run,
                "queues": [
                    {"name": name, "label": admin.queue_label(name), **count}
                    for name, count in counts.items()
                ],
            }
        )
        return 0
    print(
        f"completed jobs that ended over {admin.format_duration(args.older_than)} "
        f"ago, failed ones over {admin.format_duration(failed_older_than)} ago:"
    )
    for name, count in counts.items():
        kept = (
            f" (kept {count['kept']} parts of unfinished jobs)" if count["kept"] else ""
        )
        aside = (
            f" and {count['set_aside']} set-aside jobs"
            if count.get("set_aside") is not None
            else ""
        )
        print(
            f"  queue {admin.queue_label(name)}: {verb} {count['succeeded']} "
            f"succeeded and {count['failed']} failed jobs{aside}{kept}"
        )
    if args.dry_run:
        print("dry run: nothing was removed")
    return 0


# -- cluster-wide settings --------------------------------------------------


def _settings(args):
    with _reading(args) as queues:
        report = admin.settings_report(queues, queue=args.queue)
    if args.json:
        _print_json(report)
        return 0
    print(
        f"zasync settings at {report['time']:{TIME_FORMAT}} UTC: cluster-wide, "
        f"for every process and site of this database"
    )
    _print_intervals(report["intervals"])
    print(_pruning_text(report["pruning"], report["time"]))
    for queue in report["queues"]:
        _print_queue_settings(queue)
    return 0


def _print_intervals(intervals):
    shown = []
    for field, entry in intervals.items():
        name = field.split("_")[0]
        if entry["setting"] is None:
            shown.append(f"{name} {entry['default']:g}s (built-in default)")
        else:
            shown.append(f"{name} {entry['setting']:g}s (cluster setting)")
    print(
        f"intervals: {', '.join(shown)}; 'zasync intervals set' changes them "
        f"for dispatchers whose process sets none"
    )


def _intervals_set(args, unset=False):
    changes = {
        field: (None if unset else value)
        for field, value in (
            ("poll_interval", args.poll),
            ("ping_interval", args.ping),
            ("death_interval", args.death),
        )
        if (value if unset else value is not None)
    }
    if not changes:
        raise connect.CommandError("give at least one of --poll, --ping and --death")
    done = _writing(args, lambda q: admin.set_intervals(q, changes))
    if args.json:
        _print_json(done)
        return 0
    for field, seconds in done["intervals"].items():
        was = done["was"][field]
        print(
            f"{field}: {'unset' if seconds is None else f'{seconds:g}s'} (was "
            f"{'unset' if was is None else f'{was:g}s'})"
        )
    print(
        "dispatchers whose process sets none of its own follow at their next "
        "round; 'zasync settings' shows each one's intervals"
    )
    return 0


def _print_queue_settings(queue):
    label = queue["label"]
    option = "" if label == DEFAULT_QUEUE_LABEL else f" --queue {label}"
    print()
    print(f"queue {label}")
    _print_quotas(queue["quotas"])
    print(
        f"  retention: {admin.describe_retention(queue['retention'])}; "
        f"'zasync retention set{option}' changes it"
    )
    default = queue["default_agent_size"]
    print(
        f"  default agent size: {threads_text(default['size'])} ({default['source']}; "
        f"'zasync agents set N{option}' changes it)"
    )
    rows = []
    for d in queue["dispatchers"]:
        source = d["source"]
        if not d["follows_settings"]:
            source = f"{source}, wins over the database"
            if d["setting"] is not None:
                source += f" (its setting of {d['setting']} is not in force)"
        rows.append(
            [
                d["uuid"],
                f"{d['host']}:{d['pid']}",
                "alive" if d["alive"] else "dead",
                d["size"],
                source,
            ]
        )
    if rows:
        _table(["DISPATCHER", "HOST:PID", "STATE", "THREADS", "FROM"], rows, "  ")
        for d in queue["dispatchers"]:
            own = {
                field.split("_")[0]: entry
                for field, entry in (d.get("intervals") or {}).items()
                if entry["source"] not in (None, "cluster setting", "built-in default")
            }
            if own:
                print(
                    f"  dispatcher {d['uuid']} sets its own "
                    + ", ".join(
                        f"{name} {e['seconds']:g}s ({e['source']})"
                        for name, e in own.items()
                    )
                )
    else:
        print("  dispatchers: none")
    for entry in queue["unregistered_settings"]:
        print(
            f"  dispatcher {entry['uuid']} (not registered now): "
            f"{threads_text(entry['size'])} when it starts"
        )


def _writing(args, work):
    with _opened(args) as opened:
        return admin.in_transaction(opened.db, work, opened.database)


def _quota_set(args):
    done = _writing(
        args, lambda q: admin.set_quota_size(q, args.name, args.size, args.queue)
    )
    if args.json:
        _print_json(done)
        return 0
    paused = " (0: its jobs wait until it grows)" if done["size"] == 0 else ""
    if done["was"] is None:
        print(
            f"created quota {done['quota']} in queue {done['queue']} with size "
            f"{done['size']}{paused}"
        )
    else:
        print(
            f"quota {done['quota']} of queue {done['queue']}: size {done['size']} "
            f"(was {done['was']}){paused}; every dispatcher of the cluster follows "
            f"at its next claim"
        )
    return 0


def _quota_rate(args):
    if args.off == (args.limit is not None or args.per is not None):
        raise connect.CommandError(
            "give LIMIT and PER (e.g. 'zasync quota rate mail 100 1h'), or --off"
        )
    if not args.off and (args.limit is None or args.per is None):
        raise connect.CommandError(
            "give both LIMIT and PER, e.g. 'zasync quota rate mail 100 1h'"
        )
    limit = None if args.off else args.limit
    done = _writing(
        args,
        lambda q: admin.set_quota_rate(q, args.name, limit, args.per, args.queue),
    )
    if args.json:
        _print_json(done)
        return 0

    def text(rate):
        if rate is None:
            return "no rate"
        return f"{rate['limit']} per {admin.format_period(rate['per_seconds'])}"

    print(
        f"quota {done['quota']} of queue {done['queue']}: {text(done['rate'])} "
        f"(was {text(done['was'])}); every dispatcher of the cluster follows at "
        f"its next claim"
    )
    return 0


def _agents_set(args, size):
    done = _writing(
        args,
        lambda q: admin.set_agent_size(q, size, args.queue, args.dispatcher),
    )
    if args.json:
        _print_json(done)
        return 0
    whose = (
        f"dispatcher {done['dispatcher']}"
        if done["dispatcher"]
        else "every dispatcher that sets none of its own"
    )
    was = "unset" if done["was"] is None else done["was"]
    if size is None:
        print(f"queue {done['queue']}: agent size of {whose} unset (was {was})")
    else:
        print(
            f"queue {done['queue']}: agent size of {whose} set to {size} (was "
            f"{was}); kept when dispatchers restart"
        )
    for entry in done["resized"]:
        print(f"  dispatcher {entry['uuid']}: now {threads_text(entry['size'])}")
    for entry in done["overridden"]:
        print(
            f"  dispatcher {entry['uuid']}: keeps {threads_text(entry['size'])} from "
            f"its {entry['source']}"
        )
    return 0


def _non_negative(text):
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of 0 or more")
    return value


def _pause(args):
    if args.quota is not None:
        return _pause_quota(args)
    done = _writing(args, lambda q: admin.pause_queue(q, args.queue, by=args.by))
    if args.json:
        _print_json(done)
        return 0
    state = "was paused already" if done["was_paused"] else "paused"
    print(
        f"queue {done['queue']} {state}: no dispatcher claims from it; running "
        f"jobs finish, jobs can still be queued"
    )
    return 0


def _pause_quota(args):
    done = _writing(
        args, lambda q: admin.pause_quota(q, args.quota, args.queue, by=args.by)
    )
    if args.json:
        _print_json(done)
        return 0
    state = "was paused already" if done["was_paused"] else "paused"
    print(
        f"quota {done['quota']} of queue {done['queue']} {state}: no job naming "
        f"it is claimed; running jobs finish, jobs can still be queued"
    )
    return 0


def _resume(args):
    if args.quota is not None:
        done = _writing(args, lambda q: admin.resume_quota(q, args.quota, args.queue))
        what = f"quota {done['quota']} of queue {done['queue']}"
        again = "its jobs are claimed again"
    else:
        done = _writing(args, lambda q: admin.resume_queue(q, args.queue))
        what = f"queue {done['queue']}"
        again = "dispatchers claim from it again"
    if args.json:
        _print_json(done)
        return 0
    if done["was_paused"]:
        print(f"{what} resumed: {again}")
    else:
        print(f"{what} was not paused")
    return 0


def _recurring_list(args):
    with _reading(args) as queues:
        report = admin.recurring_report(queues)
    if args.json:
        _print_json(report)
        return 0
    if not report:
        print("no recurring jobs are defined")
        return 0
    now = clock.utcnow()
    rows = []
    for entry in report:
        last = entry["last_run"]
        rows.append(
            [
                entry["name"],
                entry["schedule"],
                entry["queue"],
                "paused" if entry["paused"] else _when(entry["next_tick"], now),
                "-" if last is None else f"{last['id']} {last['status']}",
                entry["catch_up"],
                entry["source"],
            ]
        )
    _table(["name", "schedule", "queue", "next", "last run", "catch-up", "from"], rows)
    for entry in report:
        if entry["last_error"]:
            print(f"{entry['name']}: its last tick put no job: {entry['last_error']}")
    return 0


def _recurring_action(args):
    action = {
        "pause": admin.pause_recurring,
        "resume": admin.resume_recurring,
        "run": admin.run_recurring,
        "remove": admin.remove_recurring,
    }[args.action]
    done = _writing(args, lambda q: action(q, args.name))
    if args.json:
        _print_json(done)
        return 0
    name = done["name"]
    if args.action == "pause":
        state = "was paused already" if done["was_paused"] else "paused"
        print(f"recurring job {name} {state}: its ticks put no job until resumed")
    elif args.action == "resume":
        state = "resumed" if done["was_paused"] else "was not paused"
        print(
            f"recurring job {name} {state}; next tick "
            f"{_when(done['next_tick'], clock.utcnow())}"
        )
    elif args.action == "run":
        print(f"recurring job {name}: job {done['job_id']} queued in {done['queue']}")
    else:
        print(f"recurring job {name} removed; the jobs it queued stay")
        if done["source"] == "zcml":
            print(
                "  it was defined in ZCML: remove it there too, or it is "
                "defined again when its instance starts"
            )
    return 0


def _register_recurring(commands):
    parser = commands.add_parser(
        "recurring",
        help="list, pause, resume, run or remove recurring jobs",
        description="The recurring jobs of the database (defined in code "
        "with zasync.recurring.define, or in Plone's ZCML). Changes take "
        "effect in the running dispatchers within 10 seconds.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    listing = actions.add_parser("list", help="the recurring jobs, next and last run")
    connect.add_database_options(listing)
    _json_option(listing)
    listing.set_defaults(run=_recurring_list)
    for action, what in (
        ("pause", "pause it: its ticks pass without a job"),
        ("resume", "resume it from its next tick"),
        ("run", "queue one run now; the schedule stays"),
        ("remove", "remove its definition; its jobs stay"),
    ):
        sub = actions.add_parser(
            action, help=what, description=what[0].upper() + what[1:] + "."
        )
        connect.add_database_options(sub)
        sub.add_argument("name", metavar="NAME", help="the recurring job's name")
        _json_option(sub)
        sub.set_defaults(run=_recurring_action)
    parser.set_defaults(run=_usage(parser))


def _register_pause(commands):
    pause = commands.add_parser(
        "pause",
        help="pause a queue or a quota, cluster-wide: nothing is claimed from it",
        description="Pause a queue (or, with --quota, the jobs naming a "
        "quota) for the whole cluster: no dispatcher claims them until "
        "'zasync resume'; running jobs finish and jobs can still be queued. "
        "'zasync status' shows it.",
    )
    resume = commands.add_parser(
        "resume",
        help="resume a paused queue or quota",
        description="Let the dispatchers claim from a paused queue (or the "
        "jobs of a paused quota) again, at once.",
    )
    for parser in (pause, resume):
        connect.add_database_options(parser)
        _queue_option(parser, "the queue (default: the default queue)")
        parser.add_argument(
            "--quota",
            metavar="NAME",
            help="the quota of the queue whose jobs to pause or resume, "
            "instead of the whole queue",
        )
        _json_option(parser)
    pause.add_argument(
        "--by",
        default="zasync pause",
        metavar="TEXT",
        help="who pauses it, shown by 'zasync status' (default: zasync pause)",
    )
    pause.set_defaults(run=_pause)
    resume.set_defaults(run=_resume)


def _timeout_value(text):
    """SECONDS of ``zasync timeout``: a positive number, or "none"."""
    if text.strip().lower() in ("none", "off", "0"):
        return None
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a number of seconds; give one such as 300, or "
            f"'none' for no time limit"
        ) from None
    if not seconds > 0 or seconds != seconds or seconds == float("inf"):
        raise argparse.ArgumentTypeError(
            f"the time limit must be a positive number of seconds, not {text!r}; "
            f"or 'none' for no time limit"
        )
    return seconds


def _timeout(args):
    done = _writing(
        args, lambda q: admin.set_default_timeout(q, args.seconds, args.queue)
    )
    if args.json:
        _print_json(done)
        return 0
    limit = done["default_timeout"]
    if limit is None:
        print(
            f"queue {done['queue']}: jobs without a time limit of their own have none"
        )
    else:
        print(
            f"queue {done['queue']}: jobs without a time limit of their own are "
            f"failed after running {limit:g}s (jobs running now keep theirs)"
        )
    return 0


def _register_timeout(commands):
    timeout = commands.add_parser(
        "timeout",
        help="set a queue's default time limit of running jobs, cluster-wide",
        description="Set how long the jobs of a queue that have no timeout of "
        "their own (queue.put(..., timeout=)) may run: a job still running "
        "after it is failed with JobTimedOut and none of its writes commit. "
        "Jobs running now keep the limit they started with.",
    )
    connect.add_database_options(timeout)
    _queue_option(timeout, "the queue (default: the default queue)")
    _json_option(timeout)
    timeout.add_argument(
        "seconds",
        type=_timeout_value,
        metavar="SECONDS",
        help="the time limit in seconds, or 'none' for no limit",
    )
    timeout.set_defaults(run=_timeout)


def _register_settings(commands):
    settings = commands.add_parser(
        "settings",
        help="cluster-wide settings: quota sizes, agent sizes and where they come from",
        description="The settings every process and every site of this "
        "database share, as they are in force: the size of each quota, the "
        "default agent size of each queue, and each dispatcher's agent size "
        "with where it comes from (its zope.conf or command line, which win, "
        "or a size set with 'zasync agents set').",
    )
    connect.add_database_options(settings)
    _queue_option(settings, "only this queue ('default': the default queue)")
    _json_option(settings)
    settings.set_defaults(run=_settings)

    quota = commands.add_parser(
        "quota",
        help="change the size or the rate of a quota, cluster-wide",
        description="Quotas limit how many jobs naming them run at once in "
        "the whole cluster.",
    )
    quota_commands = quota.add_subparsers(dest="action", metavar="ACTION")
    quota_set = quota_commands.add_parser(
        "set",
        help="set the size of a quota (created if missing)",
        description="Set the size of quota NAME, created if missing; 0 pauses "
        "the jobs naming it. Every dispatcher follows at its next claim.",
    )
    connect.add_database_options(quota_set)
    quota_set.add_argument("name", metavar="NAME", help="the quota, e.g. default")
    quota_set.add_argument(
        "size", type=_non_negative, metavar="SIZE", help="jobs running at once"
    )
    _queue_option(quota_set, "the queue (default: the default queue)")
    _json_option(quota_set)
    quota_set.set_defaults(run=_quota_set)
    quota_rate = quota_commands.add_parser(
        "rate",
        help="set or remove the rate of a quota",
        description="Let at most LIMIT jobs naming quota NAME start in any "
        "period PER (like 1m, 2h), cluster-wide; the others wait, pending, "
        "holding no thread. --off removes the rate. Every dispatcher follows "
        "at its next claim.",
    )
    connect.add_database_options(quota_rate)
    quota_rate.add_argument("name", metavar="NAME", help="the quota, e.g. default")
    quota_rate.add_argument(
        "limit", type=_non_negative, nargs="?", metavar="LIMIT", help="starts"
    )
    quota_rate.add_argument(
        "per", type=_duration, nargs="?", metavar="PER", help="per period, e.g. 1m"
    )
    quota_rate.add_argument("--off", action="store_true", help="remove the rate")
    _queue_option(quota_rate, "the queue (default: the default queue)")
    _json_option(quota_rate)
    quota_rate.set_defaults(run=_quota_rate)
    quota.set_defaults(run=_usage(quota))

    agents = commands.add_parser(
        "agents",
        help="change agent sizes (threads per dispatcher), cluster-wide",
        description="An agent's size is how many jobs of a queue one "
        "dispatcher runs at once. A dispatcher whose process sets its size "
        "(zope.conf threads, zasync worker --agent-size) keeps that; the others "
        "take the size set here, for them or for the queue, also after a "
        "restart.",
    )
    agent_commands = agents.add_subparsers(dest="action", metavar="ACTION")
    agents_set = agent_commands.add_parser(
        "set",
        help="set the agent size of every dispatcher, or of one",
        description="Set the default agent size of the queue, for every "
        "dispatcher that sets none of its own, or with --dispatcher the size "
        "of one dispatcher. Running dispatchers follow at once.",
    )
    agents_unset = agent_commands.add_parser(
        "unset",
        help="remove a size set with 'agents set'",
        description="Remove the default agent size of the queue (dispatchers "
        "then run 3 threads) or, with --dispatcher, the size of one dispatcher "
        "(it then follows the queue's default).",
    )
    for parser in (agents_set, agents_unset):
        connect.add_database_options(parser)
        parser.add_argument(
            "--dispatcher",
            metavar="UUID",
            help="one dispatcher, by its UUID or a unique beginning of it "
            "(see 'zasync settings')",
        )
        _queue_option(parser, "the queue (default: the default queue)")
        _json_option(parser)
    agents_set.add_argument(
        "size", type=_non_negative, metavar="SIZE", help="threads (0: claim nothing)"
    )
    agents_set.set_defaults(run=lambda args: _agents_set(args, args.size))
    agents_unset.set_defaults(run=lambda args: _agents_set(args, None))
    agents.set_defaults(run=_usage(agents))

    intervals = commands.add_parser(
        "intervals",
        help="change the poll, ping and death intervals, cluster-wide",
        description="The intervals of every dispatcher whose process does "
        "not set them itself (zope.conf poll-interval, ping-interval, "
        "death-interval; zasync worker --poll-interval, ...): running "
        "dispatchers follow at their next round, and the settings stay "
        "when they restart.",
    )
    interval_commands = intervals.add_subparsers(dest="action", metavar="ACTION")
    intervals_set = interval_commands.add_parser(
        "set",
        help="set intervals (seconds)",
        description="Set the cluster-wide intervals given; the death "
        "interval must stay longer than the ping interval.",
    )
    intervals_unset = interval_commands.add_parser(
        "unset",
        help="go back to the built-in defaults",
        description="Remove the cluster-wide intervals named: dispatchers "
        "go back to the built-in defaults for them.",
    )
    for parser in (intervals_set, intervals_unset):
        connect.add_database_options(parser)
        for name, what in (
            ("poll", "seconds an idle dispatcher waits before it polls"),
            ("ping", "seconds between heartbeats"),
            ("death", "heartbeat age (seconds) at which peers recover its jobs"),
        ):
            if parser is intervals_set:
                parser.add_argument(
                    f"--{name}", type=float, metavar="SECONDS", help=what
                )
            else:
                parser.add_argument(f"--{name}", action="store_true", help=what)
        _json_option(parser)
    intervals_set.set_defaults(run=_intervals_set)
    intervals_unset.set_defaults(run=lambda args: _intervals_set(args, unset=True))
    intervals.set_defaults(run=_usage(intervals))


def _retention_show(args):
    with _reading(args) as queues:
        report = admin.retention_report(queues, queue=args.queue)
    if args.json:
        _print_json(report)
        return 0
    print(_pruning_text(report["pruning"], report["time"]))
    for queue in report["queues"]:
        print(f"queue {queue['label']}: {admin.describe_retention(queue['retention'])}")
    return 0


def _retention_set(args, unset=False):
    fields = ("succeeded_age", "succeeded_count", "failed_age", "failed_count")
    if unset:
        changes = {f: None for f in ("enabled", *fields) if getattr(args, f)}
    else:
        changes = {f: getattr(args, f) for f in fields if getattr(args, f) is not None}
        if args.enabled is not None:
            changes["enabled"] = args.enabled
    if not changes:
        options = "--on, --off, " if not unset else "--enabled, "
        raise connect.CommandError(
            f"give at least one of {options}--succeeded-age, --succeeded-count, "
            f"--failed-age and --failed-count"
        )
    done = _writing(args, lambda q: admin.set_retention(q, changes, args.queue))
    if args.json:
        _print_json(done)
        return 0
    for field, value in done["retention"].items():
        was = done["was"][field]
        print(
            f"queue {done['queue']}: {field} {admin.describe_value(value)} "
            f"(was {admin.describe_value(was)})"
        )
    print(
        "the dispatcher pruning next follows it; 'zasync retention show' "
        "shows the retention in force"
    )
    return 0


def _register_retention(commands):
    retention = commands.add_parser(
        "retention",
        help="how long each queue keeps its completed jobs, cluster-wide",
        description="Running dispatchers prune completed jobs automatically, "
        "one dispatcher at a time: succeeded jobs after 7 days and failed "
        "ones after 30 days unless a queue's retention says otherwise. "
        "Pack the storage to give the space back.",
    )
    actions = retention.add_subparsers(dest="action", metavar="ACTION")
    show = actions.add_parser(
        "show", help="the retention in force and the last automatic prune"
    )
    retention_set = actions.add_parser(
        "set",
        help="set a queue's retention",
        description="Set how long a queue keeps its completed jobs: an age "
        "(like 12h, 7d, 2w) and/or a count per kind, or 'unlimited'; a job "
        "is pruned when either limit says so.",
    )
    retention_unset = actions.add_parser(
        "unset",
        help="go back to the built-in defaults",
        description="Remove the settings named: the queue goes back to the "
        "built-in default for them.",
    )
    for parser in (show, retention_set, retention_unset):
        connect.add_database_options(parser)
        _queue_option(
            parser,
            "the queue (default: the default queue)"
            if parser is not show
            else "only this queue ('default': the default queue)",
        )
        _json_option(parser)
    for kind in ("succeeded", "failed"):
        retention_set.add_argument(
            f"--{kind}-age",
            metavar="DURATION",
            help=f"prune {kind} jobs that ended longer ago than this, or 'unlimited'",
        )
        retention_set.add_argument(
            f"--{kind}-count",
            metavar="N",
            help=f"keep only the newest N {kind} jobs, or 'unlimited'",
        )
        for what in ("age", "count"):
            retention_unset.add_argument(
                f"--{kind}-{what}", action="store_true", help=f"the {kind} jobs' {what}"
            )
    switch = retention_set.add_mutually_exclusive_group()
    switch.add_argument(
        "--on", dest="enabled", action="store_const", const=True, help="prune the queue"
    )
    switch.add_argument(
        "--off",
        dest="enabled",
        action="store_const",
        const=False,
        help="prune nothing of the queue automatically",
    )
    retention_unset.add_argument(
        "--enabled", action="store_true", help="the --on/--off setting"
    )
    show.set_defaults(run=_retention_show)
    retention_set.set_defaults(run=_retention_set)
    retention_unset.set_defaults(run=lambda args: _retention_set(args, unset=True))
    retention.set_defaults(run=_usage(retention))


def _usage(parser):
    def run(args):
        parser.print_help()
        return 2

    return run


# -- where the queues live ---------------------------------------------------

MODES = ("single-db", "multi-db")


def _mode_of(database):
    return "single-db" if database is None else "multi-db"


def _mode_show(args):
    with _opened_for_mode(args) as opened:
        tm = transaction.TransactionManager(explicit=True)
        conn = opened.db.open(transaction_manager=tm)
        try:
            tm.begin()
            recorded = admin.queues_location(conn)
            in_main = conn.root().get("zasync") is not None
        finally:
            abort(tm)
            conn.close()
    data = {
        "recorded": recorded,
        "mode": None if recorded is None else _mode_of(recorded["database"]),
        "queues_in_main_database": in_main,
    }
    if args.json:
        _print_json(data)
        return 0
    if recorded is None:
        print(
            "no mode recorded: the first Zope process with zasync.plone that "
            "starts records its own"
        )
    else:
        print(
            f"the queues live in {admin.describe_location(recorded['database'])}, "
            f"recorded by {recorded['recorded_by']} at "
            f"{recorded['recorded']:{TIME_FORMAT}} UTC"
        )
    if in_main and recorded is None:
        print("the main database holds queues (of single-database mode)")
    elif in_main and recorded["database"] is not None:
        print("the main database holds queues too (of single-database mode)")
    return 0


def _mode_set(args):
    if args.mode is None and not args.zope_conf:
        raise connect.CommandError(
            "say which mode: single-db, or multi-db [--name NAME] (with "
            "--zope-conf, the mode of that instance is taken when none is given)"
        )
    # Booting Zope would refuse a process of the other mode: this command
    # is how the mode is changed, so it must not be refused.
    with _opened_for_mode(args) as opened:
        if args.mode is None:
            database = opened.database  # the instance's own
        elif args.mode == "single-db":
            database = None
        else:
            database = args.name
        by = _who("zasync mode set")
        tm = transaction.TransactionManager(explicit=True)
        conn = opened.db.open(transaction_manager=tm)
        try:
            tm.begin()
            before = admin.queues_location(conn)
            old = None if before is None else before["database"]
            if before is not None and old != database and not args.force:
                left = _unfinished_at(conn, opened, old)
                if left:
                    raise connect.CommandError(
                        f"{left} jobs are pending or running in the queues of "
                        f"{admin.describe_location(old)}; no process would run "
                        f"them after the switch. Let them finish first (keep "
                        f"that mode's workers running; 'zasync jobs' lists them), "
                        f"or pass --force to leave them behind"
                    )
            admin.record_queues_location(conn, database, by)
            tm.commit()
        finally:
            abort(tm)
            conn.close()
    if args.json:
        _print_json({"database": database, "mode": _mode_of(database)})
        return 0
    was = "" if before is None else f" (was {admin.describe_location(old)})"
    print(
        f"recorded: the queues live in {admin.describe_location(database)}{was}; "
        f"every instance and worker must load the {_mode_of(database)} ZCML files "
        f"({'single' if database is None else 'multi'}_db_instance.zcml, "
        f"{'single' if database is None else 'multi'}_db_worker.zcml)"
    )
    return 0


@contextlib.contextmanager
def _opened_for_mode(args):
    overrides = {"check_location": False} if args.zope_conf else None
    opened = connect.open_from_args(args, overrides=overrides)
    try:
        yield opened
    except admin.AdminError as exc:
        raise connect.CommandError(str(exc)) from None
    finally:
        connect.close(opened)


def _unfinished_at(conn, opened, database):
    """Unfinished jobs in the queues of ``database`` (None: the main one),
    if this process can open it; 0 if it has no queues or cannot be read."""
    if database is None:
        target = conn
    else:
        if database not in opened.db.databases:
            return 0
        target = conn.get_connection(database)
    queues = target.root().get("zasync")
    return 0 if queues is None else admin.unfinished_jobs(queues)


def _register_mode(commands):
    mode = commands.add_parser(
        "mode",
        help="where the queues live (single- or multi-database mode)",
        description="Every process of a Plone cluster must keep the queues in "
        "the same place: the main database (single_db_*.zcml) or a database "
        "of their own (multi_db_*.zcml). The first process records the mode "
        "in the main database and the others check it at start-up.",
    )
    mode_commands = mode.add_subparsers(dest="action", metavar="ACTION")
    show = mode_commands.add_parser("show", help="the recorded mode")
    connect.add_database_options(show)
    _json_option(show)
    show.set_defaults(run=_mode_show)
    change = mode_commands.add_parser(
        "set",
        help="record another mode, after switching every process to it",
        description="Record where the queues live, after every instance and "
        "worker was stopped and given the other mode's ZCML file. With "
        "--zope-conf and no MODE, that instance's mode is recorded.",
    )
    connect.add_database_options(change)
    change.add_argument("mode", nargs="?", choices=MODES, metavar="MODE")
    change.add_argument(
        "--name",
        default="zasync_queues",
        metavar="NAME",
        help="multi-db: the queues' database, as zope.conf names it "
        "(<product-config zasync> database; default: zasync_queues)",
    )
    change.add_argument(
        "--force",
        action="store_true",
        help="switch even if jobs are left unfinished in the old place",
    )
    _json_option(change)
    change.set_defaults(run=_mode_set)
    mode.set_defaults(run=_usage(mode))


# -- the parsers ------------------------------------------------------------


def _queue_option(parser, help):
    parser.add_argument("--queue", metavar="NAME", help=help)


def _json_option(parser):
    parser.add_argument(
        "--json",
        action="store_true",
        help="print JSON (job ids as strings, times in ISO 8601, UTC)",
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
    connect.add_database_options(status, remote=True)
    _json_option(status)
    status.set_defaults(run=_status)

    jobs = commands.add_parser(
        "jobs",
        help="list jobs, with filters",
        description="List jobs: running ones first, then pending ones in run "
        "order, set-aside ones, and completed ones newest first.",
    )
    connect.add_database_options(jobs, remote=True)
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
    connect.add_database_options(job, remote=True)
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
        "delay, or scheduled for later): make it due now. For a set-aside "
        "job whose code is back: put it back in the run order.",
    )
    connect.add_database_options(retry, remote=True)
    retry.add_argument("id", type=_job_id, metavar="ID", help="the job's id")
    _json_option(retry)
    retry.set_defaults(run=_retry)

    cancel = commands.add_parser(
        "cancel",
        help="cancel a job: a pending one fails with JobCancelled at once, "
        "a running one is asked to stop",
        description="Take a pending job out of the run order and complete it "
        "with a zasync.admin.JobCancelled failure, so that its callbacks run "
        "and it is listed among failed jobs. A running job is asked to stop: "
        "it fails with JobCancelled at its next zasync.local.check_cancelled() "
        "(on whichever worker runs it); code that never checks runs on until "
        "it ends or reaches its time limit.",
    )
    connect.add_database_options(cancel, remote=True)
    cancel.add_argument("id", type=_job_id, metavar="ID", help="the job's id")
    cancel.add_argument(
        "--reason", metavar="TEXT", help="why, kept in the job's failure message"
    )
    _json_option(cancel)
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
    prune.add_argument(
        "--set-aside",
        action="store_true",
        help="also discard set-aside jobs queued longer ago than "
        "--failed-older-than (they are kept otherwise)",
    )
    _json_option(prune)
    prune.set_defaults(run=_prune)

    aside = commands.add_parser(
        "set-aside",
        help="list the jobs set aside because they cannot be run",
        description="Jobs a dispatcher set aside because they cannot be run "
        "(their class or retry policy's cannot be imported, or they cannot be "
        "stored): why, and whether they load now. 'zasync retry ID' puts one "
        "back in the run order, 'zasync cancel ID' cancels one that loads, "
        "'zasync discard ID' removes one.",
    )
    connect.add_database_options(aside)
    _queue_option(aside, "only this queue ('default': the default queue)")
    _json_option(aside)
    aside.set_defaults(run=_set_aside)

    discard = commands.add_parser(
        "discard",
        help="remove a set-aside job for good (it never runs)",
        description="Remove a set-aside job from its queue without loading "
        "or running it; no callback is called. Only set-aside jobs (see "
        "'zasync set-aside') are discarded.",
    )
    connect.add_database_options(discard)
    discard.add_argument("id", type=_job_id, metavar="ID", help="the job's id")
    _json_option(discard)
    discard.set_defaults(run=_discard)
    _register_settings(commands)
    _register_retention(commands)
    _register_pause(commands)
    _register_timeout(commands)
    _register_recurring(commands)
    _register_mode(commands)
