"""Job functions for the REST API tests (the dispatcher imports them)."""


def echo(context, value):
    """Return ``value``: a job whose result is what it was given."""
    return value


def explode(context, message):
    """Fail with ValueError(message)."""
    raise ValueError(message)


def until_cancelled(context, seconds=60):
    """Check for a cancel request until one comes (a running job to cancel)."""
    import threading
    import time

    from zasync import local

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        local.check_cancelled()
        threading.Event().wait(0.01)  # the job's own pace between checks
    return "never cancelled"
