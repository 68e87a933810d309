"""Running ``zasync serve`` and ``zasync cluster`` as a user does, and
talking to the served Plone site over HTTP as a browser would."""

import base64
import html
import json
import os
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request

from zasync.clock import wait_until

BIN = os.path.dirname(sys.executable)
ZASYNC = os.path.join(BIN, "zasync")
HERE = os.path.dirname(os.path.abspath(__file__))
# Booting Plone, and making a site the first time, on a busy 2-core machine.
START_TIMEOUT = 240.0
PASSWORD = re.compile(r"Zope user admin(?: \(new\))?, password (\S+)")


def environment(**changes):
    env = dict(os.environ)
    for name in ("ZASYNC_UUID", "ZC_ASYNC_UUID", "ZASYNC_DISPATCHER"):
        env.pop(name, None)
    env["PYTHONPATH"] = os.pathsep.join(
        [HERE, *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    env.update(changes)
    return env


def zasync(*args, env=None, timeout=START_TIMEOUT, cwd=None):
    """Run a zasync command to its end; the CompletedProcess."""
    return subprocess.run(
        [ZASYNC, *args],
        capture_output=True,
        text=True,
        env=env or environment(),
        timeout=timeout,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
    )


class Served:
    """``zasync serve`` running in the background, its output in a file."""

    def __init__(self, instance, port, output, env=None, options=()):
        self.instance = instance
        self.port = port
        self.output = output
        self.url = f"http://127.0.0.1:{port}"
        with open(output, "w") as out:
            self.process = subprocess.Popen(
                [ZASYNC, "serve", "--instance", instance, "--port", str(port)]
                + list(options),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env or environment(),
            )

    def text(self):
        with open(self.output, errors="replace") as f:
            return f.read()

    def wait_for(self, needle, timeout=START_TIMEOUT):
        def seen():
            if needle in self.text():
                return True
            if self.process.poll() is not None:
                raise AssertionError(
                    f"zasync serve exited with {self.process.returncode} before "
                    f"printing {needle!r}:\n{self.text()[-5000:]}"
                )
            return False

        if not wait_until(seen, timeout, 0.2):
            raise AssertionError(
                f"no {needle!r} within {timeout}s:\n{self.text()[-5000:]}"
            )

    def password(self):
        found = PASSWORD.search(self.text())
        assert found, f"no admin password printed:\n{self.text()[-3000:]}"
        return found.group(1)

    def interrupt(self, signum=signal.SIGINT, timeout=60):
        """Send ``signum`` (Ctrl-C by default); the exit code."""
        self.process.send_signal(signum)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise AssertionError(
                f"zasync serve did not stop within {timeout}s:\n{self.text()[-3000:]}"
            ) from None

    def kill(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


class Site:
    """A Plone site over HTTP, as user ``admin`` with basic authentication."""

    def __init__(self, url, password, user="admin"):
        self.url = url.rstrip("/")
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        self.headers = {"Authorization": f"Basic {token}"}

    def request(self, path, data=None, authenticated=True):
        """(status, body) of GET, or POST of the dict ``data``."""
        body = None if data is None else urllib.parse.urlencode(data).encode()
        request = urllib.request.Request(
            f"{self.url}/{path.lstrip('/')}",
            data=body,
            headers=self.headers if authenticated else {},
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")

    def demo_token(self):
        status, page = self.request("@@zasync-demo")
        assert status == 200, f"the demo page answered {status}:\n{page[:2000]}"
        found = re.search(r'name="_authenticator"\s+value="([^"]+)"', page)
        assert found, "the demo page has no CSRF token"
        return html.unescape(found.group(1))

    def queue_demo_job(self, job, **fields):
        """Press one of the demo page's buttons; the response status."""
        data = {"job": job, "_authenticator": self.demo_token(), **fields}
        status, _ = self.request("@@zasync-demo", data)
        return status

    def demo_jobs(self):
        status, body = self.request("@@zasync-demo-jobs")
        assert status == 200, f"@@zasync-demo-jobs answered {status}: {body[:500]}"
        return json.loads(body)


# Run by edit_site_offline in a process of its own: Plone's classes, no Zope.
_EDIT_SITE = """
import json, sys
import transaction, ZODB, ZODB.FileStorage
from plone.app.textfield.value import RichTextValue

path, site_id, fields = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
db = ZODB.DB(ZODB.FileStorage.FileStorage(path))
try:
    conn = db.open()
    site = conn.root()["Application"][site_id]
    for name, value in fields.items():
        if name == "text" and value is not None:
            value = RichTextValue(value, "text/html", "text/x-html-safe")
        setattr(site, name, value)
    transaction.commit()
finally:
    db.close()
"""


def edit_site_offline(instance, site_id="Plone", **fields):
    """Set attributes of the Plone site ``site_id`` in the FileStorage of the
    stopped instance ``instance``, as an older zasync left them or as a user
    edited them (``text`` is HTML)."""
    path = os.path.join(instance, "var", "filestorage", "Data.fs")
    result = subprocess.run(
        [sys.executable, "-c", _EDIT_SITE, path, site_id, json.dumps(fields)],
        capture_output=True,
        text=True,
        timeout=120,
        env=environment(),
    )
    assert result.returncode == 0, result.stdout + result.stderr
