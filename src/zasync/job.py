"""The persistent Job."""

import datetime
import inspect
import itertools
import random
import threading
import types

import persistent
from persistent.mapping import PersistentMapping
from ZODB.broken import Broken
from zope.interface import implementer

from zasync import clock, local
from zasync.exceptions import CallableNotFound
from zasync.failure import Failure
from zasync.interfaces import IJob
from zasync.status import ACTIVE, CALLBACKS, COMPLETED, NEW, Status
from zasync.storable import (
    BadJobError,
    callable_name,
    check_callable,
    check_value,
    resolve,
)

__all__ = ["Job", "BadJobError", "CallableNotFound", "new_job_id"]

# Job ids: microseconds since 2025 shifted left 12 bits, plus a per-process
# sequence, so ids grow with arrival and fit a signed 64-bit BTree key.
_ID_EPOCH = clock.to_micros(datetime.datetime(2025, 1, 1, tzinfo=clock.UTC))
_sequence = itertools.count(random.randrange(4096))
_id_lock = threading.Lock()


_last_id = [0]


def new_job_id(now=None):
    """A new job id, larger than any this process gave before."""
    micros = clock.to_micros(now or clock.utcnow()) - _ID_EPOCH
    with _id_lock:
        job_id = max((micros << 12) | (next(_sequence) & 0xFFF), _last_id[0] + 1)
        _last_id[0] = job_id
    return job_id


def storable_reference(func):
    """How a job stores a callable.

    Importable functions and classes are stored by name, not as pickled
    globals, so that a job whose function was removed can still be loaded,
    updated and failed cleanly. A method of a persistent object is stored as
    (object, method name); jobs and callable persistent objects as they are.
    """
    if inspect.ismethod(func) and not isinstance(func.__self__, type):
        return (func.__self__, func.__name__)
    if isinstance(func, (Job, persistent.Persistent)):
        return func
    owner = func.__self__ if inspect.ismethod(func) else func
    module = getattr(owner, "__module__", None)
    qualname = getattr(func, "__qualname__", None)
    if not module or not qualname:
        return func  # e.g. a method descriptor such as str.upper: pickles as is
    return (module, qualname)


def resolve_reference(ref):
    if isinstance(ref, tuple):
        first, name = ref
        if isinstance(first, str):
            return resolve(first, name)
        if isinstance(first, Broken):
            raise ImportError(f"the class of {first!r} cannot be imported")
        return getattr(first, name)
    return ref


def success_or_failure(result, success, failure):
    """The callback that add_callbacks() installs (callables by reference)."""
    if isinstance(result, Failure):
        if failure is None:
            return result
        return resolve_reference(failure)(result)
    return resolve_reference(success)(result) if success is not None else result


@implementer(IJob)
class Job(persistent.Persistent):
    """A call to make later; see :class:`zasync.interfaces.IJob`."""

    _status = NEW.value
    result = None
    queue = None
    parent = None
    # What this job is to its parent: 'callback', 'child' or 'postprocess'.
    role = None
    begin_by = None
    attempts = 0
    interruptions = 0
    postponements = 0
    quota_names = ()
    # True for bookkeeping callbacks an application adds to every job (the
    # Plone layer's event delivery): operators' listings leave them out and
    # their runs are logged at DEBUG.
    internal = False
    priority = 0
    unique_key = None
    kwargs = types.MappingProxyType({})  # per job; empty ones are not stored
    _retry_policy = None
    _environment = None
    _callbacks = ()
    _annotations = None
    # (dispatcher uuid, agent name) while claimed by a dispatcher.
    assignee = None
    # Set at claim time when the begin_by deadline has passed.
    expired = False

    def __init__(self, callable, *args, **kwargs):
        check_callable(callable)
        for index, value in enumerate(args):
            check_value(value, f"argument {index + 1}")
        for name, value in kwargs.items():
            check_value(value, f"keyword argument {name!r}")
        self._callable = storable_reference(callable)
        self.callable_name = callable_name(callable)
        self.args = tuple(args)
        self.kwargs = dict(kwargs)
        self.id = new_job_id()

    # -- status and result -------------------------------------------------

    # Times are stored as integer microseconds: a job is pickled several
    # times in its life, and datetimes cost far more to pickle.
    queued = clock.micros_property("_queued_us")
    begin_after = clock.micros_property("_begin_after_us")
    started = clock.micros_property("_started_us")
    ended = clock.micros_property("_ended_us")

    @property
    def status(self):
        return Status(self._status)

    @status.setter
    def status(self, value):
        self._status = Status(value).value

    @property
    def failed(self):
        return self._status in (CALLBACKS.value, COMPLETED.value) and isinstance(
            self.result, Failure
        )

    @property
    def callable(self):
        return self.resolve_callable()

    def resolve_callable(self):
        """The callable, or CallableNotFound saying why it cannot be used."""
        try:
            return resolve_reference(self._callable)
        except (ImportError, AttributeError) as exc:
            raise CallableNotFound(
                f"The callable {self.callable_name} of job {self.id} cannot be "
                f"found any more ({type(exc).__name__}: {exc}). Was its module "
                f"or name removed or renamed? Restore it or install an alias, "
                f"then retry the job."
            ) from exc

    @property
    def retry_policy(self):
        if self._retry_policy is None:
            from zasync.retry import DEFAULT_POLICY

            return DEFAULT_POLICY
        return self._retry_policy

    @retry_policy.setter
    def retry_policy(self, policy):
        if policy is not None:
            check_value(policy, "retry_policy")
        self._retry_policy = policy

    @property
    def environment(self):
        job = self
        while job is not None:
            if job._environment is not None:
                return job._environment
            job = job.parent
        return None

    @environment.setter
    def environment(self, environment):
        if environment is not None:
            check_value(environment, "environment")
        self._environment = environment

    @property
    def annotations(self):
        if self._annotations is None:
            self._annotations = PersistentMapping()
        return self._annotations

    @property
    def callbacks(self):
        return tuple(self._callbacks)

    @property
    def home_queue(self):
        """The queue this job belongs to, directly or through its parent."""
        job = self
        while job is not None:
            if job.queue is not None:
                return job.queue
            job = job.parent
        return None

    @property
    def log_context(self):
        """Where and as whom the job runs, for log lines: its queue, and its
        environment's ``str()`` if it has one."""
        queue = self.home_queue
        where = "no queue" if queue is None else f"queue {queue.name or 'default'!r}"
        environment = self.environment
        return where if environment is None else f"{where}, {environment}"

    def live_annotations(self, create=False):
        """The mapping of committed live annotations (may be empty)."""
        queue = self.home_queue
        if queue is None:
            if not create:
                return self.annotations.get("zasync.live", {})
            return self.annotations.setdefault("zasync.live", PersistentMapping())
        return queue.live_annotations(self.id, create)

    def get_live_annotation(self, name, default=None):
        return self.live_annotations().get(name, default)

    @property
    def progress(self):
        return self.get_live_annotation(local.PROGRESS)

    # -- callbacks ---------------------------------------------------------

    def add_callback(self, callback, *args, **kwargs):
        if isinstance(callback, Job):
            if callback.status != NEW or args or kwargs:
                raise ValueError(
                    "A job given as callback must be new and carries its own "
                    "arguments; pass the callable instead to add arguments."
                )
            job = callback
        else:
            job = Job(callback, *args, **kwargs)
        job.parent = self
        job.role = "callback"
        self._callbacks = self._callbacks + (job,)
        if self._status == COMPLETED.value:
            queue = self.home_queue
            if queue is None:
                job()
            else:
                queue.put_sub_job(job, self)
        return job

    def add_callbacks(self, success=None, failure=None):
        if success is None and failure is None:
            raise ValueError("add_callbacks() needs success, failure or both.")
        for name, func in (("success", success), ("failure", failure)):
            if func is not None:
                check_callable(func, f"the {name} callback")
        return self.add_callback(
            success_or_failure,
            None if success is None else storable_reference(success),
            None if failure is None else storable_reference(failure),
        )

    addCallback = add_callback
    addCallbacks = add_callbacks

    # -- running -----------------------------------------------------------

    def setUp(self):
        return None

    def tearDown(self, setup_info):
        pass

    def call_arguments(self, extra_args=(), extra_kwargs=None):
        args = self.args + tuple(extra_args)
        if self.role == "callback":
            args = (self.parent.result,) + args
        kwargs = dict(self.kwargs)
        if extra_kwargs:
            kwargs.update(extra_kwargs)
        return args, kwargs

    def invoke(self, extra_args=(), extra_kwargs=None, conclude=None):
        """setUp, the call itself and tearDown, with the job as the local job.

        ``conclude(result)``, if given, is called with the result while the
        job is still the local job and its environment is still entered, and
        invoke returns what it returns: a dispatcher commits there, so that
        what the application does at commit (Plone's indexing queue) runs
        in the job's site, as its user. Exceptions propagate; callers decide
        what they mean.
        """
        func = self.resolve_callable()
        args, kwargs = self.call_arguments(extra_args, extra_kwargs)
        environment = self.environment
        with local.running(self):
            token = None if environment is None else environment.enter(self)
            try:
                if environment is not None:
                    args, kwargs = environment.arguments(self, args, kwargs)
                result = self._call_with_hooks(func, args, kwargs)
                return result if conclude is None else conclude(result)
            finally:
                if environment is not None:
                    environment.exit(self, token)

    def _call_with_hooks(self, func, args, kwargs):
        info = self.setUp()
        try:
            return func(*args, **kwargs)
        finally:
            self.tearDown(info)

    def __call__(self, *args, **kwargs):
        self.status = ACTIVE
        self.started = clock.utcnow()
        self.attempts += 1
        try:
            result = self.invoke(args, kwargs)
        except Exception:
            result = Failure()
        self.result = result
        self.ended = clock.utcnow()
        self.status = CALLBACKS
        for callback in self._callbacks:
            if callback.status != COMPLETED:
                callback()
        self.status = COMPLETED
        return result

    # -- sub-jobs (callbacks queued as jobs, serial/parallel children) -----

    def sub_job_done(self, sub_job, queue, now):
        """A queued sub-job of this job completed; advance this job."""
        if (
            sub_job.role == "callback"
            and self._status == CALLBACKS.value
            and all(cb.status == COMPLETED for cb in self._callbacks)
        ):
            queue.finish(self, now)

    def queue_pending_callbacks(self, queue, now):
        """Queue the callbacks that have not completed; finish if none."""
        pending = [cb for cb in self._callbacks if cb.status != COMPLETED]
        if not pending:
            queue.finish(self, now)
            return
        self.status = CALLBACKS
        queue.wait_for_sub_jobs(self)
        for callback in pending:
            callback.status = NEW
            callback.assignee = None
            queue.put_sub_job(callback, self)

    # Attributes left out of the stored state while they have their class
    # default: a job is stored several times in its life, so it pays.
    _SPARSE = (
        "internal",
        "expired",
        "pending_key",
        "unique_key",
        "priority",
        "begin_by",
        "quota_names",
        "interruptions",
        "postponements",
        "parent",
        "role",
        "_retry_policy",
        "_environment",
        "_callbacks",
        "_annotations",
        "kwargs",
    )

    def __getstate__(self):
        state = super().__getstate__()
        for name in self._SPARSE:
            value = state.get(name, state)
            if value is not state and not value and value == getattr(Job, name, None):
                del state[name]
        return state

    def __repr__(self):
        return f"<{type(self).__name__} {self.id} {self.callable_name} {self._status}>"
