"""Importable callables, persistent classes and small helpers for job tests.

Jobs must name module-level functions or methods of persistent objects, so
the tests keep theirs here (a worker imports them). ``tests/`` is on
``sys.path`` when pytest runs.
"""

import collections
import datetime
import threading

import persistent
import transaction
import ZODB
import ZODB.FileStorage
from persistent.list import PersistentList
from ZODB.POSException import ConflictError
from zope.interface import implementer

import zasync
from zasync import local
from zasync.interfaces import IJobEnvironment

UTC = datetime.UTC
# A fixed, aware "now" for tests that inject time.
NOW = datetime.datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)

# Events a test sets to let a blocked job go on, by name.
events = collections.defaultdict(threading.Event)
# Non-transactional counters: they survive aborted attempts.
counters = collections.Counter()
_lock = threading.Lock()
running = collections.Counter()
most_running = collections.Counter()


def add(a, b):
    return a + b


def fail(message="boom"):
    raise ValueError(message)  # the raising line, looked for in tracebacks


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


# -- from the engine tests: callbacks, filters, persistent helpers -------------


def echo(*args, **kwargs):
    return args, kwargs


def fail_connection(message="network down"):
    raise ConnectionError(message)


def tag(name):
    """A job whose first argument says which agent filter accepts it."""
    return name


def which_job():
    """Return the job running this call (zasync.local.get_job())."""
    return local.get_job()


def set_progress(fraction, message=None):
    local.set_progress(fraction, message)
    return "reported"


def annotate_live(name, value):
    local.set_live_annotation(name, value)
    return local.get_live_annotation(name)


def labelled(result, label):
    """A callback: return what it was given, tagged."""
    return (label, result)


def tag_success(result):
    return ("success", result)


def tag_failure(failure):
    return ("failure", failure.getErrorMessage())


def explode(result):
    """A callback that raises."""
    raise RuntimeError(f"callback exploded on {result!r}")


# -- agent filters -------------------------------------------------------------


def accepts_a(job):
    return job.args[:1] == ("a",)


def accepts_b(job):
    return job.args[:1] == ("b",)


# -- persistent classes ----------------------------------------------------------


class Counter(persistent.Persistent):
    """A persistent object whose methods can be job callables."""

    def __init__(self):
        self.value = 0

    def add(self, n=1):
        self.value += n
        return self.value

    def __call__(self, n=1):
        return self.add(n)


class Log(persistent.Persistent):
    """Records what callbacks were given, in order."""

    def __init__(self):
        self.entries = PersistentList()

    def append(self, result, label=None):
        self.entries.append((label, result))
        return len(self.entries)


class Plain:
    """Not persistent: its methods cannot be job callables."""

    def method(self):
        return 1

    @classmethod
    def build(cls, value):
        return (cls.__name__, value)


# -- exceptions ------------------------------------------------------------------


class LockedError(Exception):
    """An importable exception whose instances hold a lock (do not pickle)."""

    def __init__(self, message):
        super().__init__(message)
        self.lock = threading.Lock()


# -- databases ---------------------------------------------------------------------


def file_db(path):
    """A ZODB.DB on a FileStorage file in directory ``path``."""
    return ZODB.DB(ZODB.FileStorage.FileStorage(str(path / "Data.fs")))


def open_connection(db):
    """A connection with its own transaction manager (not the thread's)."""
    return db.open(transaction_manager=transaction.TransactionManager())


def started_at():
    """A job that returns when it started (aware UTC)."""
    return datetime.datetime.now(UTC)


# -- thread faults (test_thread_faults.py) -----------------------------------------


class JobBaseException(BaseException):
    """An importable BaseException that is not an Exception."""


BASE_EXCEPTIONS = {
    cls.__name__: cls
    for cls in (SystemExit, KeyboardInterrupt, GeneratorExit, JobBaseException)
}


def raise_base(name, message="raised by the job"):
    """Raise the BaseException called ``name`` (see BASE_EXCEPTIONS)."""
    raise BASE_EXCEPTIONS[name](message)


def raise_base_first(token, name, result):
    """Raise the BaseException ``name`` on the first call, then return result."""
    if _count_call(token) == 1:
        raise_base(name)
    return result


class PolicyKillsThread(zasync.retry.NeverRetry):
    """A broken retry policy: asked about a job's error, it raises
    SystemExit, outside the job, in the worker thread. Interruptions are
    retried at once."""

    def job_error(self, job, failure):
        raise SystemExit("a retry policy that raises SystemExit")

    def interrupted(self, job):
        return datetime.timedelta(0)


def missing_record_first(token, result):
    """Load a record the storage does not have (POSKeyError) on the first
    call, then return result."""
    if _count_call(token) == 1:
        from ZODB.utils import p64

        local.get_job()._p_jar.get(p64(2**62))
    return result


def read_value(obj):
    """Return ``obj.value`` (loads ``obj`` from the storage)."""
    return obj.value


def block_then_add(name, counter, payload_size=0):
    """Wait until events[name] is set, then add one to ``counter`` (a
    Counter), with ``payload_size`` bytes written beside it; counts calls
    in counters[name]."""
    _count_call(name)
    if not events[name].wait(30):
        raise RuntimeError(f"event {name!r} was never set")
    counter.add(1)
    counter.payload = b"x" * payload_size
    return counter.value


def record_then_raise(tree, key, name=None):
    """Record one run in ``tree[key]`` as (attempt, ran in a batch), then
    raise the BaseException ``name`` if given; returns ``key``."""
    in_batch = bool(transaction.get()._savepoint2index)
    tree[key] = tree.get(key, ()) + ((local.get_job().attempts, in_batch),)
    if name is not None:
        raise_base(name)
    return key
