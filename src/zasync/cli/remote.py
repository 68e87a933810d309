"""``--url`` and ``--user``: the operators' commands through a running site's
REST API (docs/rest.md) instead of opening its database.

A Zope instance with a FileStorage keeps the file locked while it runs, so
``zasync status --zope-conf`` cannot open it then; ``zasync status --url
http://localhost:8080/plone --user admin`` asks the site itself. The
password comes from the environment variable ``ZASYNC_PASSWORD``, or is
asked for when stdin is a terminal. Requests use Basic auth and ask for
JSON; what comes back is turned into the plain data zasync.admin returns
(ids as ints, times as datetimes), so that the commands print the same as
without ``--url``. Only the standard library is used (urllib).
"""

import base64
import contextlib
import datetime
import getpass
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request

from zasync.admin.text import JOB_ID_KEYS
from zasync.exceptions import CommandError

PASSWORD_VARIABLE = "ZASYNC_PASSWORD"

#: Keys whose values the services give as ISO 8601 text.
TIME_KEYS = frozenset(
    {
        "time",
        "started",
        "last_heartbeat",
        "queued",
        "ended",
        "begin_after",
        "was_due",
        # the automatic pruning (zasync.admin.pruning_report)
        "running_since",
        "last_started",
        "last_ended",
        "next_pass",
    }
)
#: Keys whose values the services give as seconds (timedeltas here).
DURATION_KEYS = frozenset({"begin_by"})

#: The largest batch the jobs service gives.
MAX_BATCH = 200


def add_options(parser, where):
    """Add --url (to ``where``, the group of --zodb-conf and --zope-conf)
    and --user to a command's ``parser``."""
    where.add_argument(
        "--url",
        metavar="SITE_URL",
        help="a running Plone site with zasync, such as "
        "http://localhost:8080/plone: ask it through its REST API instead of "
        "opening the database (which a running FileStorage keeps locked)",
    )
    parser.add_argument(
        "--user",
        metavar="USER",
        help=f"with --url: log in as USER (password from ${PASSWORD_VARIABLE}, "
        f"or asked for in a terminal); it needs 'zasync: Manage jobs'",
    )


def from_args(args):
    """The RemoteSite of ``--url``/``--user``, or None without --url."""
    url = getattr(args, "url", None)
    user = getattr(args, "user", None)
    if url is None:
        if user is not None:
            raise CommandError("--user goes with --url SITE_URL")
        return None
    if not user:
        raise CommandError(
            "--url needs --user USER: the site's services are for logged-in "
            "users with the permission 'zasync: Manage jobs'"
        )
    return RemoteSite(url, user, password_of(user, url), timeout=args.timeout)


def password_of(user, url):
    """The password of ``user``: $ZASYNC_PASSWORD, or asked for in a
    terminal; CommandError if neither can be."""
    password = os.environ.get(PASSWORD_VARIABLE)
    if password is not None:
        return password
    if sys.stdin is not None and sys.stdin.isatty():
        return getpass.getpass(f"password of {user} at {url}: ")
    raise CommandError(
        f"no password for {user}: set the environment variable "
        f"{PASSWORD_VARIABLE} (stdin is not a terminal to ask for it)"
    )


def from_json(data, key=None):
    """The plain data of zasync.admin from a service's JSON: job ids as
    ints, times as aware datetimes, durations as timedeltas; ``@id`` links
    left out."""
    if isinstance(data, dict):
        return {k: from_json(v, k) for k, v in data.items() if k != "@id"}
    if isinstance(data, list):
        return [from_json(v) for v in data]
    if isinstance(data, str) and key in JOB_ID_KEYS and data.isdigit():
        return int(data)
    if isinstance(data, str) and key in TIME_KEYS:
        with contextlib.suppress(ValueError):
            return datetime.datetime.fromisoformat(data)
    if isinstance(data, (int, float)) and key in DURATION_KEYS:
        return datetime.timedelta(seconds=data)
    return data


def duration_text(delta):
    """A timedelta as the services read it (seconds)."""
    return f"{delta.total_seconds():g}s"


class RemoteSite:
    """A Plone site's zasync REST API, as ``user``."""

    def __init__(self, url, user, password, timeout=30.0):
        self.url = url.rstrip("/")
        self.user = user
        self.timeout = timeout
        token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        self._authorization = f"Basic {token}"

    # -- the services ----------------------------------------------------------

    def status(self):
        return from_json(self.request("GET", "@zasync-status"))

    def jobs(self, limit=50, **filters):
        """``(rows, more)`` as zasync.admin.find_jobs and job_summary give
        them: at most ``limit`` rows, in batches of the service."""
        query = {name: value for name, value in filters.items() if value is not None}
        for name in ("older_than", "newer_than"):
            if name in query:
                query[name] = duration_text(query[name])
        rows, start = [], 0
        while True:
            size = min(MAX_BATCH, limit - len(rows))
            data = self.request(
                "GET",
                "@zasync-jobs",
                query={**query, "b_start": start, "b_size": size},
            )
            batch = data["items"]
            rows.extend(
                {k: v for k, v in from_json(item).items() if k not in ("user", "site")}
                for item in batch
            )
            more = "next" in data.get("batching", {})
            if not more or not batch or len(rows) >= limit:
                return rows[:limit], more
            start += len(batch)

    def job(self, job_id, full=False):
        query = {"full": "1"} if full else None
        info = from_json(self.request("GET", f"@zasync-jobs/{job_id}", query=query))
        info.pop("user", None)
        info.pop("site", None)
        return info

    def retry(self, job_id):
        return from_json(self.request("POST", f"@zasync-jobs/{job_id}/@retry"))

    def cancel(self, job_id, reason=None):
        body = {} if reason is None else {"reason": reason}
        return from_json(self.request("POST", f"@zasync-jobs/{job_id}/@cancel", body))

    # -- HTTP --------------------------------------------------------------------

    def request(self, method, path, body=None, query=None):
        """The JSON answer of ``method path``; CommandError saying what went
        wrong and what to do otherwise."""
        url = f"{self.url}/{path}"
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = None if body is None else json.dumps(body).encode("utf-8")
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Accept", "application/json")
        request.add_header("Authorization", self._authorization)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                text = response.read()
        except urllib.error.HTTPError as exc:
            raise self._error(exc, method, path) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise CommandError(
                f"cannot reach {self.url}: {reason}. Is the site running, and "
                f"is --url its address (such as http://localhost:8080/plone)?"
            ) from None
        if not text:
            return {}
        try:
            return json.loads(text)
        except ValueError:
            raise CommandError(
                f"{self.url} did not answer {method} {path} with JSON: is --url "
                f"the address of a Plone site with plone.restapi and zasync?"
            ) from None

    def _error(self, exc, method, path):
        try:
            message = json.loads(exc.read()).get("message")
        except Exception:
            message = None
        status = exc.code
        if status == 401:
            return CommandError(
                f"{self.url} refused {method} {path} for user {self.user!r}: a "
                f"wrong user or password (${PASSWORD_VARIABLE}), or the user "
                f"lacks the permission 'zasync: Manage jobs'"
            )
        missing = message is None or message.startswith("Resource not found")
        if status == 404 and (missing or path == "@zasync-status"):
            return CommandError(
                f"{self.url} has no zasync REST API ({method} {path} is not "
                f"found): is --url the address of the Plone site itself, and is "
                f"zasync installed in it?"
            )
        if message:
            return CommandError(message)
        return CommandError(
            f"{self.url} answered {method} {path} with {status} {exc.reason}"
        )
