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


def gated(context, steps=4):
    """Take ``steps`` steps, reporting progress after each; wait for the
    gate before each step."""
    local.set_progress(0.0, f"0 of {steps} steps")
    for step in range(1, steps + 1):
        if not released.is_set() and not gate.wait(GATE_TIMEOUT):
            raise TimeoutError(f"the gate stayed closed at step {step}")
        gate.clear()
        local.set_progress(step / steps, f"{step} of {steps} steps")
    return {"steps": steps}


def reset():
    """Close the gate: gated jobs wait for the test again."""
    released.clear()
    gate.clear()


def release():
    """Let every gated job run to its end (a test's teardown)."""
    released.set()
    gate.set()
