"""The persistent Job."""

import datetime
import inspect
import itertools
import logging
import random
import threading
import types

import persistent
from persistent.mapping import PersistentMapping
from ZODB.broken import Broken
from ZODB.POSException import ConnectionStateError
from zope.interface import implementer

from zasync import clock, keys, local
from zasync.config import queue_label
from zasync.exceptions import (
    BadStatusError,
    CallableNotFound,
    JobInterrupted,
    JobTimedOut,
)
from zasync.failure import Failure, failure_from
from zasync.interfaces import IJob
from zasync.retry import DEFAULT_POLICY
from zasync.status import (
    ACTIVE,
    ASSIGNED,
    CALLBACKS,
    COMPLETED,
    NEW,
    PENDING,
    WAITING,
    Status,
)
from zasync.storable import (
    BadJobError,
    callable_name,
    check_callable,
    check_value,
    resolve,
)

__all__ = ["Job", "BadJobError", "BadStatusError", "CallableNotFound", "new_job_id"]

log = logging.getLogger("zasync.job")

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
    """The callback that add_callbacks() installs (callables by reference).

    Stored jobs name it ``zasync.job.success_or_failure``: it stays here."""
    if isinstance(result, Failure):
        if failure is None:
            return result
        return resolve_reference(failure)(result)
    return resolve_reference(success)(result) if success is not None else result


def _callbacks_name(success, failure):
    """What a job made by add_callbacks() is called in logs and displays:
    the functions it calls, not the wrapper that chooses between them."""
    return " or ".join(callable_name(f) for f in (success, failure) if f is not None)


def _statuses(statuses):
    names = [str(status) for status in statuses]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


@implementer(IJob)
class Job(persistent.Persistent):
    """A call to make later; see :class:`zasync.interfaces.IJob`.

    The job owns its life cycle: every change of its status is one of the
    methods under "transitions" below, each of which checks the status it
    starts from and raises BadStatusError otherwise. Queues, dispatchers
    and runners ask the job; they do not set its fields.
    """

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
    # {name: state} of the job's runs in steps (zasync.steps), or None.
    steps = None
    # Set at claim time when the begin_by deadline has passed.
    expired = False
    # How long an attempt may run (a timedelta), or None: the queue's
    # default_timeout then (see timeout, time_limit).
    _timeout = None
    # The job's key in its queue's run order while it is in it (see
    # zasync.keys); None otherwise. Stored: the queue's lanes are keyed by it.
    pending_key = None
    # The jobs it was put to wait for (IQueue.put's depends_on), what it
    # does when one fails, and the ids of those it still waits for.
    depends_on = ()
    on_dependency_failure = "fail"
    _waiting_for = ()

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
        # For tests that put a job in a state by hand; the engine uses the
        # transitions below.
        self._status = Status(value).value

    @property
    def failed(self):
        return self._status in (CALLBACKS.value, COMPLETED.value) and isinstance(
            self.result, Failure
        )

    @property
    def index_key(self):
        """The job's key in its queue's completed indexes (derived, never
        stored): newest first, see zasync.keys."""
        return keys.completion_key(getattr(self, "_ended_us", None) or 0, self.id)

    @property
    def lane_quota_names(self):
        """The quota names of the run-order lane the job waits in."""
        return self.quota_names

    @property
    def waiting_for(self):
        """The ids of the jobs of ``depends_on`` this job still waits for."""
        return self._waiting_for

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
            return DEFAULT_POLICY
        return self._retry_policy

    @retry_policy.setter
    def retry_policy(self, policy):
        if policy is not None:
            check_value(policy, "retry_policy")
        self._retry_policy = policy

    @property
    def explicit_retry_policy(self):
        return self._retry_policy

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
    def own_annotations(self):
        if self._annotations is None:
            return types.MappingProxyType({})
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
        where = "no queue" if queue is None else f"queue {queue_label(queue.name)!r}"
        environment = self.environment
        return where if environment is None else f"{where}, {environment}"

    def live_annotations(self, create=False):
        """The mapping of committed live annotations (may be empty)."""
        queue = self.home_queue
        if queue is None:
            if not create:
                return self.own_annotations.get("zasync.live", {})
            return self.annotations.setdefault("zasync.live", PersistentMapping())
        return queue.live_annotations(self.id, create)

    def get_live_annotation(self, name, default=None):
        return self.live_annotations().get(name, default)

    @property
    def progress(self):
        return self.get_live_annotation(local.PROGRESS)

    @property
    def cancel_requested(self):
        return self.get_live_annotation(local.CANCEL)

    @property
    def timeout(self):
        return self._timeout

    @timeout.setter
    def timeout(self, value):
        # Read when an attempt starts: a pending job may be given one.
        if value is not None:
            value = clock.duration(
                value, "timeout (how long the job may run)", positive=True
            )
        self._timeout = value

    @property
    def time_limit(self):
        if self.timeout is not None:
            return self.timeout
        queue = self.home_queue
        return None if queue is None else queue.default_timeout

    def run_time_failure(self, limit, elapsed):
        """The JobTimedOut Failure of an attempt that ran past ``limit``."""
        return failure_from(
            JobTimedOut(
                f"Job {self.id} ({self.callable_name}) ran longer than its time "
                f"limit of {limit} (it had run {elapsed:.1f}s): it was failed, "
                f"and none of its writes of this attempt were committed."
            )
        )

    # -- transitions (see IJob) -------------------------------------------

    def _require(self, action, *statuses):
        """Raise BadStatusError unless the job is in one of ``statuses``."""
        if self._status not in {status.value for status in statuses}:
            raise BadStatusError(
                f"Cannot {action} job {self.id} ({self.callable_name}): it is "
                f"{self._status}, and only a job that is {_statuses(statuses)} "
                f"can."
            )

    def _require_out_of_run_order(self, action):
        if self._status == PENDING.value and self.pending_key is not None:
            raise BadStatusError(
                f"Cannot {action} job {self.id} ({self.callable_name}): it is "
                f"pending in the run order of its queue; the queue takes it "
                f"out first."
            )

    def enter_queue(
        self,
        queue,
        job_id,
        queued,
        begin_after,
        begin_by=None,
        quota_names=(),
        priority=0,
        unique_key=None,
        retry_policy=None,
    ):
        self._require("queue", NEW)
        if retry_policy is not None:
            self.retry_policy = retry_policy
        self.id = job_id
        self.queue = queue
        self.quota_names = tuple(quota_names)
        self.priority = priority
        self.unique_key = unique_key
        self.queued = queued
        self.begin_after = begin_after
        self.begin_by = begin_by
        self.pending_key = None
        self._status = PENDING.value

    def forget_aborted_put(self):
        # put() changes the job in memory only; an abort undoes the queue's
        # side but leaves the job as put() left it. Such a job was never
        # stored (no jar) and its queue does not hold it.
        if self._status not in (PENDING.value, WAITING.value):
            return False
        if self._p_jar is not None:
            return False
        queue = self.queue
        if queue is None:
            return False
        try:
            held = queue.get(self.id) is self
        except ConnectionStateError:  # its queue's connection was closed
            held = False
        if held:
            return False
        self.queue = None
        self.pending_key = None
        self._waiting_for = ()
        if self.depends_on:  # a put again may name none
            self.depends_on = ()
        self._status = NEW.value
        return True

    def wait_for(self, depends_on, waiting_for, on_failure):
        self._require("make wait for other jobs", PENDING)
        self._require_out_of_run_order("make wait for other jobs")
        self.depends_on = tuple(depends_on)
        self.on_dependency_failure = on_failure
        self._waiting_for = tuple(waiting_for)
        self._status = WAITING.value

    def dependency_done(self, job_id):
        self._require("count a dependency of", WAITING)
        self._waiting_for = tuple(i for i in self._waiting_for if i != job_id)
        return self._waiting_for

    def replace_dependency(self, job, retry):
        self._require("change a dependency of", WAITING)
        self.depends_on = tuple(retry if d is job else d for d in self.depends_on)
        self._waiting_for = tuple(
            retry.id if i == job.id else i for i in self._waiting_for
        )

    def stop_waiting(self):
        self._require("release", WAITING)
        self._waiting_for = ()
        self._status = PENDING.value

    def enter_run_order(self, front=False):
        self._require("enter the run order of", PENDING)
        if self.pending_key is not None:
            raise BadStatusError(
                f"Cannot enter job {self.id} ({self.callable_name}) in the run "
                f"order: it is in it already (key {self.pending_key})."
            )
        # In front: as if due since 1970, before every job of its priority.
        begin_us = 0 if front else self._begin_after_us
        self.pending_key = keys.run_order_key(self.priority, begin_us, self.id)
        return self.pending_key

    def leave_run_order(self):
        self._require("take out of the run order", PENDING)
        key = self.pending_key
        if key is None:
            raise BadStatusError(
                f"Cannot take job {self.id} ({self.callable_name}) out of the "
                f"run order: it is not in it."
            )
        self.pending_key = None
        return key

    def reschedule(self, begin_after):
        self._require("reschedule", PENDING)
        self._require_out_of_run_order("reschedule")
        self.begin_after = begin_after

    def leave_queue(self):
        self._require("remove from its queue", WAITING, PENDING, COMPLETED)
        self._require_out_of_run_order("remove from its queue")
        self._waiting_for = ()
        if self._status in (PENDING.value, WAITING.value):
            self._status = NEW.value
        self.queue = None

    def renew(self, parent):
        self._require(
            "queue again as a sub-job", NEW, PENDING, ASSIGNED, ACTIVE, CALLBACKS
        )
        self._require_out_of_run_order("queue again as a sub-job")
        self.parent = parent
        self.queue = None
        self.assignee = None
        self.expired = False
        self._status = NEW.value

    def assign(self, assignee, now):
        self._require("assign", PENDING)
        self._require_out_of_run_order("assign")
        self.assignee = assignee
        deadline = self.begin_by and self.begin_after + self.begin_by
        self.expired = bool(deadline and deadline < now)
        self._status = ASSIGNED.value

    def begin_attempt(self, now):
        self._require("begin an attempt of", NEW, PENDING, ASSIGNED)
        self._require_out_of_run_order("begin an attempt of")
        self._begin_attempt(now)

    def _begin_attempt(self, now):
        self._status = ACTIVE.value
        if not self.expired:  # an expired job is failed without running
            self.started = now
            self.attempts += 1

    def postpone(self, begin_after):
        self._require("postpone", ACTIVE)
        self.postponements += 1
        self.attempts = max(self.attempts - 1, 0)
        self.begin_after = begin_after
        self._status = PENDING.value

    def retry_later(self, begin_after):
        self._require("retry", ACTIVE)
        self.begin_after = begin_after
        self._status = PENDING.value

    def put_back(self):
        self._require("put back", ASSIGNED, ACTIVE)
        if self._status == ACTIVE.value and not self.expired:
            self.attempts = max(self.attempts - 1, 0)
        self.expired = False
        self._status = PENDING.value

    def handle_interrupt(self, now):
        self._require("handle the interruption of", ACTIVE)
        self.interruptions += 1
        policy = self.retry_policy
        delay = policy.interrupted(self)
        if delay is not None:
            self.retry_later(now + delay)
            return True
        self._conclude(
            failure_from(
                JobInterrupted(
                    f"Job {self.id} ({self.callable_name}) was interrupted "
                    f"{self.interruptions} times: its worker died or was "
                    f"killed while running it. The retry policy {policy!r} "
                    f"gave up."
                )
            ),
            now,
        )
        return False

    def record_steps(self, name, state):
        self._require("record the steps of", ACTIVE)
        steps = dict(self.steps or {})
        before = steps.get(name) or {}
        if self.interruptions and state.get("done", 0) > before.get("done", 0):
            # Work committed since the last interruption: the job is not
            # killing its worker, it was killed while making progress.
            self.interruptions = 0
        steps[name] = dict(state)
        self.steps = steps  # a new dict: the job is written with it

    def record_outcome(self, result, now):
        self._require("record the outcome of", ACTIVE)
        self._conclude(result, now)

    def fail(self, failure, now):
        if not isinstance(failure, Failure):
            raise TypeError(f"fail() needs a zasync.Failure, not {failure!r}")
        if self._status == ACTIVE.value and not self.expired:
            raise BadStatusError(
                f"Cannot fail job {self.id} ({self.callable_name}) without "
                f"running it: it is running; record its outcome instead."
            )
        self._require("fail", WAITING, PENDING, ASSIGNED, ACTIVE)
        self._require_out_of_run_order("fail")
        self._waiting_for = ()
        self._conclude(failure, now)

    def deadline_failure(self):
        return failure_from(
            JobTimedOut(
                f"Job {self.id} ({self.callable_name}) did not start by its "
                f"deadline {self.begin_after + self.begin_by:%Y-%m-%d %H:%M:%S} "
                f"UTC (begin_by={self.begin_by}); it was not run."
            )
        )

    def _conclude(self, result, now):
        self.result = result
        self.ended = now
        self._status = CALLBACKS.value if self._callbacks else COMPLETED.value

    def complete(self, now):
        self._require("complete", CALLBACKS, COMPLETED)
        if self.ended is None:
            self.ended = now
        self._status = COMPLETED.value

    def resume_callbacks(self, queue, now):
        self._require("resume the callbacks of", CALLBACKS, COMPLETED)
        pending = [cb for cb in self._callbacks if cb.status != COMPLETED]
        if not pending:
            queue.finish(self, now)
            return
        queue.wait_for_sub_jobs(self)
        for callback in pending:
            queue.put_sub_job(callback, self)

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
        job = Job(
            success_or_failure,
            None if success is None else storable_reference(success),
            None if failure is None else storable_reference(failure),
        )
        job.callable_name = _callbacks_name(success, failure)
        return self.add_callback(job)

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
        # The contract is IJob.setUp / IJob.tearDown: tearDown always runs,
        # and its own error never replaces the outcome of the call.
        info = None
        try:
            info = self.setUp()
            result = func(*args, **kwargs)
        except BaseException:
            self._tear_down(info)
            raise
        self._tear_down(info)
        return result

    def _tear_down(self, info):
        try:
            self.tearDown(info)
        except Exception:
            log.exception(
                "job %s (%s): tearDown raised (%s); the job's outcome is kept",
                self.id,
                self.callable_name,
                self.log_context,
            )

    def __call__(self, *args, **kwargs):
        # Called directly, a job runs whatever queue it is in (tests call
        # queued and claimed jobs); an ACTIVE one runs the attempt its claim
        # began. Only a job that ran already refuses.
        if self._status != ACTIVE.value:
            self._require("call", NEW, PENDING, ASSIGNED, ACTIVE)
            self._begin_attempt(clock.utcnow())
        try:
            result = self.invoke(args, kwargs)
        except Exception:
            result = Failure()
        self.record_outcome(result, clock.utcnow())
        for callback in self._callbacks:
            if callback.status != COMPLETED:
                callback()
        if self._status == CALLBACKS.value:
            self.complete(self.ended)
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

    # Attributes left out of the stored state while they have their class
    # default: a job is stored several times in its life, so it pays.
    _SPARSE = (
        "internal",
        "expired",
        "pending_key",
        "unique_key",
        "priority",
        "begin_by",
        "_timeout",
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
        "depends_on",
        "on_dependency_failure",
        "_waiting_for",
        "steps",
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
