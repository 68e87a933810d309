"""``zasync serve`` (what ``make run`` runs): an instance home, an admin
user and a Plone site with zasync, made on the first run and reused on the
next; the demo page used from a real browser; Ctrl-C and SIGTERM stop it
cleanly."""

import os
import re
import signal
import socket
import subprocess

import pytest
from deploy_support import Served, Site, edit_site_offline, environment, zasync

from zasync.clock import wait_until
from zasync.testing import processes
from zasync.testing.browser import launch_chromium

pytestmark = pytest.mark.slow
# A job of the demo, seen in the browser: queued, run, its result shown.
SEEN_TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def instance(tmp_path_factory):
    return str(tmp_path_factory.mktemp("serve") / "instance")


@pytest.fixture(scope="module")
def first_run(instance, tmp_path_factory):
    """The first ``zasync serve`` of a new instance home, serving."""
    output = str(tmp_path_factory.mktemp("output") / "first.log")
    served = Served(instance, processes.free_port(), output)
    served.wait_for("zasync serve: ready at")
    yield served
    served.kill()


def test_first_run_makes_the_instance_user_and_site(first_run, instance):
    text = first_run.text()
    assert f"made the instance home {instance}" in text
    assert "made the Plone site /Plone" in text
    assert "Zope user admin (new), password" in text
    # The embedded process runs the dispatcher itself, on a FileStorage.
    assert "zasync: started dispatcher" in text and "role embedded" in text
    assert os.path.exists(os.path.join(instance, "var", "filestorage", "Data.fs"))
    with open(os.path.join(instance, "var", "admin-password.txt")) as f:
        assert f.read().strip() == first_run.password()
    assert (
        os.stat(os.path.join(instance, "var", "admin-password.txt")).st_mode & 0o77 == 0
    )

    site = Site(f"{first_run.url}/Plone", first_run.password())
    status, page = site.request("")
    # Themed with Barceloneta, though reached as 127.0.0.1.
    assert status == 200 and "++theme++barceloneta" in page
    check_front_page(page, instance, first_run.url)
    # The demo needs a login: anonymous gets no form.
    status, page = site.request("@@zasync-demo", authenticated=False)
    assert 'name="_authenticator"' not in page
    wrong = Site(f"{first_run.url}/Plone", "not-the-password")
    assert 'name="_authenticator"' not in wrong.request("@@zasync-demo")[1]


FRONT_PAGE = "This is a Plone site with <strong>zasync</strong>"


def check_front_page(page, instance, url):
    """The front page says what the site is: zasync, embedded (the
    dispatcher in the web process, on a FileStorage), where the docs are;
    and links to the demo."""
    text = " ".join(page.split())
    assert FRONT_PAGE in text, text[:3000]
    assert "runs the dispatcher that executes the jobs" in text
    found = re.search(r"a FileStorage database, <code>([^<]+)</code>", text)
    assert found, text[:3000]
    data_fs = os.path.join(instance, "var", "filestorage", "Data.fs")
    assert os.path.samefile(found.group(1), data_fs)
    assert "<code>make docs</code>" in text and "docs/quickstart.md" in text
    link = re.search(r'<a href="([^"]+)"[^>]*>Open the zasync demo</a>', text)
    assert link, text[:3000]
    status, demo = Site(url, _password(instance)).request(link.group(1))
    assert status == 200 and "zasync demo: background jobs" in demo


def _password(instance):
    with open(os.path.join(instance, "var", "admin-password.txt")) as f:
        return f.read().strip()


_browser = launch_chromium


def _queue(page, form, **fields):
    """Press the button of ``form`` on the demo page; the new job's row."""
    for name, value in fields.items():
        page.fill(f"#{form} [name={name}]", value)
    page.click(f"#{form} button[type=submit]")
    message = page.locator("text=/Queued job \\d+/").first
    message.wait_for(timeout=SEEN_TIMEOUT_MS)
    job_id = re.search(r"Queued job (\d+)", message.inner_text()).group(1)
    return page.locator(f'tr[data-job-id="{job_id}"]')


def _check_job_id(page, row, jobs_url):
    job_id = row.get_attribute("data-job-id")
    assert len(job_id) >= 17 and int(job_id) > 2**53, job_id
    assert row.locator("small").first.inner_text() == job_id
    ids = page.evaluate(
        """url => fetch(url, {credentials: "same-origin"})
               .then(response => response.json())
               .then(data => data.jobs.map(job => job.id))""",
        jobs_url,
    )
    assert job_id in ids, ids
    assert all(isinstance(each, str) for each in ids), ids


def _watch_progress(bar, enough, seconds=30):
    """The values of the progress ``bar`` seen until ``enough(values)``;
    an empty set if that did not happen within ``seconds``."""
    seen = set()

    def moved():
        value = bar.get_attribute("aria-valuenow")
        if value is not None:
            seen.add(int(value))
        return enough(seen)

    return seen if wait_until(moved, seconds) else set()


def test_the_demo_in_a_browser(first_run):
    playwright_api = pytest.importorskip("playwright.sync_api")
    password = first_run.password()
    anonymous = Site(f"{first_run.url}/Plone", "")
    with playwright_api.sync_playwright() as playwright:
        browser = _browser(playwright)
        try:
            # Plone answers anonymous requests for the demo with its login
            # form, not a 401 challenge: send the credentials up front.
            context = browser.new_context(
                extra_http_headers=Site(first_run.url, password).headers
            )
            page = context.new_page()
            page.goto(f"{first_run.url}/Plone/@@zasync-demo")
            expect = playwright_api.expect

            # Create three documents: the row shows the result when done,
            # without reloading the page.
            row = _queue(page, "zasync-demo-create", count="3", title="Browser doc")
            expect(row).to_contain_text("Created 3 documents", timeout=SEEN_TIMEOUT_MS)
            # The row was redrawn from the JSON view by the page's script,
            # with the job's id exact (18 digits: no JavaScript number).
            _check_job_id(page, row, f"{first_run.url}/Plone/@@zasync-demo-jobs")
            paths = re.findall(r"/Plone/zasync-demo/[\w-]+", row.inner_text())
            assert len(paths) == 3
            # Private until published: anonymous cannot see them.
            first = paths[0].removeprefix("/Plone")
            assert (
                "Browser doc 1" not in anonymous.request(first, authenticated=False)[1]
            )

            row = _queue(page, "zasync-demo-publish")
            expect(row).to_contain_text("Published 3", timeout=SEEN_TIMEOUT_MS)
            status, body = anonymous.request(first, authenticated=False)
            assert status == 200 and "Browser doc 1" in body

            # A job that reports progress: the bar moves while it runs.
            row = _queue(page, "zasync-demo-progress")
            bar = row.locator(".progress")
            bar.wait_for(timeout=SEEN_TIMEOUT_MS)
            seen = _watch_progress(bar, lambda seen: any(0 < v < 100 for v in seen))
            assert seen, "the progress bar did not move"
            expect(row).to_contain_text("10 steps in", timeout=SEEN_TIMEOUT_MS)

            # A job that fails shows its error, and the page says so.
            row = _queue(page, "zasync-demo-fail")
            error = row.locator(".text-danger")
            expect(error).to_be_visible(timeout=SEEN_TIMEOUT_MS)
            assert "what a failed job looks like" in error.inner_text()
            expect(row.locator(".badge")).to_have_text("failed")
            expect(row.locator("details summary")).to_have_text("Traceback")
        finally:
            browser.close()


def screenshot(page, name):
    """Save ``page`` as docs/_static/<name>.png when ZASYNC_SCREENSHOTS is
    set (``make screenshots``), so that the docs show what the tests saw."""
    if os.environ.get("ZASYNC_SCREENSHOTS"):
        root = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
        page.screenshot(
            path=os.path.join(root, "docs", "_static", f"{name}.png"), full_page=True
        )


def test_my_jobs_and_the_control_panel_in_a_browser(first_run):
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as playwright:
        browser = _browser(playwright)
        try:
            context = browser.new_context(
                extra_http_headers=Site(first_run.url, first_run.password()).headers,
                viewport={"width": 1280, "height": 900},
            )
            page = context.new_page()
            expect = playwright_api.expect
            page.goto(f"{first_run.url}/Plone/@@zasync-demo")
            done = _queue(page, "zasync-demo-create", count="2", title="Mine")
            expect(done).to_contain_text("Created 2 documents", timeout=SEEN_TIMEOUT_MS)
            failed = _queue(page, "zasync-demo-fail")
            expect(failed.locator(".text-danger")).to_be_visible(
                timeout=SEEN_TIMEOUT_MS
            )
            slow = _queue(page, "zasync-demo-progress")
            job_id = slow.get_attribute("data-job-id")

            # My jobs, from the user menu: the slow job's progress moves
            # without a reload.
            page.goto(f"{first_run.url}/Plone")
            page.goto(page.locator("a[href$='/@@my-jobs']").first.get_attribute("href"))
            row = page.locator(f'#zasync-my-jobs tr[data-job-id="{job_id}"]')
            bar = row.locator(".progress")
            bar.wait_for(timeout=SEEN_TIMEOUT_MS)
            screenshot(page, "my-jobs")
            # Running, then on: the page itself redrew the bar.
            seen = _watch_progress(
                bar, lambda seen: any(0 < v < 100 for v in seen) and len(seen) >= 2
            )
            assert seen, "the progress bar did not move"
            expect(row.locator(".zasync-status")).to_have_text(
                "succeeded", timeout=SEEN_TIMEOUT_MS
            )
            assert page.locator("#zasync-my-jobs tbody tr").count() >= 3

            page.goto(f"{first_run.url}/Plone/@@zasync-controlpanel")
            expect(page.locator("body")).to_contain_text("Every site of this database")
            expect(page.locator("body")).to_contain_text("Heartbeat interval (seconds)")
            # Tall enough that Plone's sticky form buttons cover no field.
            page.set_viewport_size({"width": 1280, "height": 1700})
            screenshot(page, "controlpanel")
        finally:
            browser.close()


def test_ctrl_c_stops_and_a_second_run_reuses_everything(first_run, instance, tmp_path):
    password = first_run.password()
    assert first_run.interrupt(signal.SIGINT) == 0
    text = first_run.text()
    assert "zasync serve: stopped" in text
    assert re.search(r"dispatcher \S+ stopped", text), text[-2000:]
    assert "Traceback" not in text.split("zasync serve: ready at")[-1]

    # As a site made before zasync wrote front pages: it gets one now.
    edit_site_offline(instance, description="", text=None)

    again = Served(instance, first_run.port, str(tmp_path / "second.log"))
    try:
        again.wait_for("zasync serve: ready at")
        text = again.text()
        assert "made the" not in text
        assert again.password() == password
        # The documents of the demo are still there.
        site = Site(f"{again.url}/Plone", password)
        assert "Browser doc" in site.request("zasync-demo")[1]
        status, page = site.request("")
        assert status == 200
        check_front_page(page, instance, again.url)
        assert again.interrupt(signal.SIGTERM) == 0
        assert "zasync serve: stopped" in again.text()
    finally:
        again.kill()


def test_password_from_the_environment(first_run, instance, tmp_path):
    if first_run.process.poll() is None:
        first_run.interrupt()
    # A front page somebody wrote is theirs: the next start keeps it.
    edit_site_offline(instance, text="<p>Our own front page</p>")
    env = environment(ZASYNC_ADMIN_PASSWORD="secret from env 42")
    third = Served(instance, first_run.port, str(tmp_path / "third.log"), env=env)
    try:
        third.wait_for("zasync serve: ready at")
        assert "password from $ZASYNC_ADMIN_PASSWORD" in third.text()
        assert "secret from env 42" not in third.text()
        # The kept password no longer works: it is gone.
        assert not os.path.exists(os.path.join(instance, "var", "admin-password.txt"))
        site = Site(f"{third.url}/Plone", "secret from env 42")
        assert 'name="_authenticator"' in site.request("@@zasync-demo")[1]
        page = site.request("")[1]
        assert "Our own front page" in page and FRONT_PAGE not in page
        # Ctrl-C twice, as an impatient person does: still a clean stop.
        third.process.send_signal(signal.SIGINT)
        assert third.interrupt() == 0
        assert "Traceback" not in third.text().split("zasync serve: ready at")[-1]
        assert "zasync serve: stopped" in third.text()
    finally:
        third.kill()


def test_a_port_in_use_is_said_at_once(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = zasync(
            "serve", "--instance", str(tmp_path / "i"), "--port", str(port), timeout=60
        )
    assert result.returncode == 2
    assert f"127.0.0.1:{port} is in use" in result.stderr
    assert "choose another --port" in result.stderr


# The README's run command.
MAKE_RUN = "make run"


def test_make_run_is_zasync_serve_of_var_instance():
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    result = subprocess.run(
        # Run from `make test`, make would announce the directory it enters.
        [*MAKE_RUN.split(), "--dry-run", "--no-print-directory"],
        cwd=repo,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("zasync serve --instance var/instance")
