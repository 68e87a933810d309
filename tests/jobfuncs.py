"""Module-level callables for the dispatcher tests (a worker imports them)."""

import collections
import threading

from ZODB.POSException import ConflictError
from zope.interface import implementer

import zasync
from zasync import local
from zasync.interfaces import IJobEnvironment

# Events a test sets to let a blocked job go on, by name.
events = collections.defaultdict(threading.Event)
# Non-transactional counters: they survive aborted attempts.
counters = collections.Counter()
_lock = threading.Lock()
running = collections.Counter()
most_running = collections.Counter()


def add(a, b):
    return a + b


def fail(message):
    raise ValueError(message)


def append(container, value):
    container.append(value)
    return value


def block(name, result=None):
    """Wait (inside the job) until the test sets events[name]."""
    if not events[name].wait(30):
        raise RuntimeError(f"event {name!r} was never set")
    return result


def _count_call(token):
    with _lock:
        counters[token] += 1
        return counters[token]


def conflict_first(token, times, result):
    """Raise ConflictError the first ``times`` calls, then return result."""
    calls = _count_call(token)
    if calls <= times:
        raise ConflictError(f"simulated conflict {calls}")
    return result


def fail_first(token, times, result):
    calls = _count_call(token)
    if calls <= times:
        raise ConnectionError(f"service unavailable (call {calls})")
    return result


def write_then_return_unpicklable(container):
    container.append("written by the job")
    return threading.Lock()


def report_progress(name):
    local.set_progress(0.5, "half way")
    local.set_live_annotation("seen", local.get_live_annotation("seen", 0) + 1)
    return block(name, "done")


def count_concurrency(token, name):
    """Count how many jobs of ``token`` run at once, then wait for events[name]
    for a short while so that overlaps would show."""
    with _lock:
        running[token] += 1
        most_running[token] = max(most_running[token], running[token])
    try:
        events[name].wait(0.05)
    finally:
        with _lock:
            running[token] -= 1
    return token


def in_job():
    return local.get_job().id


def callback_value(result, extra=""):
    return f"callback got {result!r}{extra}"


def failing_callback(result):
    raise KeyError("callback broke")


def on_failure(failure):
    return f"handled {failure.type.__name__}"


def join(*jobs):
    return [job.result for job in jobs]


# A job subclass that restores an environment around its call, as the Plone
# layer does with the site and the user.
environment = {}
teardowns = []


class EnvironmentJob(zasync.Job):
    site = "default"

    def setUp(self):
        environment["site"] = self.site
        return f"set up for {self.site}"

    def tearDown(self, setup_info):
        teardowns.append((self.id, setup_info))
        environment.pop("site", None)


class HookJob(zasync.Job):
    """A job whose setUp or tearDown raises, as told; every tearDown call
    is recorded in ``teardowns`` (non-transactional)."""

    setup_error = None
    teardown_error = None

    def setUp(self):
        if self.setup_error:
            raise LookupError(self.setup_error)
        return "set up"

    def tearDown(self, setup_info):
        teardowns.append((self.id, setup_info))
        if self.teardown_error:
            raise RuntimeError(self.teardown_error)


def current_site():
    return environment.get("site")


def fail_in_site():
    raise RuntimeError(f"failed in {environment.get('site')}")


def mark(markers, key):
    """Count a run of job ``key`` in a BTree: exactly once is the promise."""
    markers[key] = markers.get(key, 0) + 1
    return key


@implementer(IJobEnvironment)
class Environment:
    """An IJobEnvironment that records what it did, by name."""

    def __init__(self, name, fail_on_enter=False):
        self.name = name
        self.fail_on_enter = fail_on_enter

    def enter(self, job):
        if self.fail_on_enter:
            raise LookupError(f"environment {self.name} is gone")
        environment["site"] = self.name
        return f"token of {self.name}"

    def arguments(self, job, args, kwargs):
        args = tuple(self._resolve(a) for a in args)
        return args, kwargs

    def _resolve(self, value):
        if isinstance(value, str) and value.startswith("@"):
            return f"{self.name}:{value[1:]}"
        return value

    def exit(self, job, token):
        teardowns.append((job.id, token))
        environment.pop("site", None)


def site_and_args(*args):
    return (environment.get("site"),) + args


after_commit = []


def join_transaction():
    """Join the current transaction the way MailHost and friends do."""
    import transaction

    transaction.get().addAfterCommitHook(after_commit.append)
    return "joined"


def commit_half_way(container, fail):
    """A batch job that commits its progress itself, then goes on."""
    import transaction

    container["first"] = 1
    transaction.commit()
    container["second"] = 2
    if fail:
        raise ValueError("after the batch commit")
    return "done"
