"""Job functions for the dashboard's tests (a worker imports them by name).

``gated`` reports progress and then waits for the test to open its gate
before each next step, so a test sees the progress move without sleeping.
"""

import threading

from zasync import local

#: Opened by the test (set) to let a gated job take its next step; the job
#: closes it again after each step.
gate = threading.Event()
#: Set by release(): gated jobs run through without waiting.
released = threading.Event()
#: How long a gated job waits for the gate before failing (seconds).
GATE_TIMEOUT = 60


def echo(context, value):
    """Return ``value``."""
    return value


def fail(context, message):
    """Fail with ``message``."""
    raise ValueError(message)


def _gated(steps, what):
    local.set_progress(0.0, f"0 of {steps} {what}")
    for step in range(1, steps + 1):
        if not released.is_set() and not gate.wait(GATE_TIMEOUT):
            raise TimeoutError(f"the gate stayed closed at step {step}")
        gate.clear()
        local.set_progress(step / steps, f"{step} of {steps} {what}")
    return {what: steps}


def gated(context, steps=4):
    """Take ``steps`` steps, reporting progress after each; wait for the
    gate before each step."""
    return _gated(steps, "steps")


# What the screenshots show: jobs with the names a site's jobs have.


def send_newsletter(context, issue, recipients=120):
    return {"issue": issue, "sent": recipients}


def export_report(context, path):
    return {"exported": path, "rows": 2450}


def notify_subscribers(context, server):
    raise ConnectionRefusedError(f"SMTP server {server} refused the login")


def import_members(context, batches=4):
    """As gated, in batches of members."""
    return _gated(batches, "batches")


def reset():
    """Close the gate: gated jobs wait for the test again."""
    released.clear()
    gate.clear()


def release():
    """Let every gated job run to its end (a test's teardown)."""
    released.set()
    gate.set()


def in_steps(context, count, every):
    """Do ``count`` items in steps of ``every`` (zasync.steps)."""
    from zasync import steps

    return steps.run(list(range(count)), lambda item: None, every=every)["done"]


def until_cancelled(context, seconds=60):
    """Check for a cancel request until one comes (a running job to cancel)."""
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        local.check_cancelled()
        threading.Event().wait(0.01)  # the job's own pace between checks
    return "never cancelled"
