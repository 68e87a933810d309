"""The contracts of the zasync engine.

The interfaces carry the documentation; the implementations stay short.
Nothing here imports Zope, AccessControl or Plone.
"""

from zope.interface import Attribute, Interface


class IFailure(Interface):
    """What a failed job keeps as its result.

    A Failure is small and picklable: it keeps the exception type's dotted
    name, the exception value (or, when the value would not pickle, an
    :class:`zasync.failure.UnpicklableError` with the same ``str``), and the
    traceback as text. It is returned, never raised, by ``job.result`` and by
    :func:`zasync.testing.wait_for_result`.
    """

    type = Attribute(
        "The exception class. If it cannot be imported any more, the class of "
        "the stored value (a stand-in) is returned instead."
    )
    type_name = Attribute(
        "The exception class's dotted name, e.g. 'builtins.KeyError'."
    )
    value = Attribute("The exception instance (or its stand-in).")

    def getTraceback():
        """The formatted traceback, as text (shortened to its end if huge)."""

    def getErrorMessage():
        """``str()`` of the exception value."""

    def check(*exception_types):
        """Return the first of ``exception_types`` that the failure is an
        instance of, or None. Types may be classes or dotted names."""

    def raiseException():
        """Raise the stored exception value (handy in tests)."""


class IJobEnvironment(Interface):
    """Where, and as whom, a job runs.

    An environment is stored with the job (it must pickle by value or be a
    persistent object) and is shared by the job's callbacks and children.
    The engine knows nothing of what it restores; the Plone layer uses one
    to run a job in its site, as its user, on its context object.

    ``enter`` and ``arguments`` run inside the job's transaction, in the
    worker thread, before the job's own ``setUp``; an exception from either
    fails the job (through its retry policy) without calling it.
    """

    def enter(job):
        """Restore the environment for ``job``; return a token for ``exit``."""

    def arguments(job, args, kwargs):
        """Return the ``(args, kwargs)`` the callable is called with, given
        the stored ones (for example: objects stored by path looked up)."""

    def exit(job, token):
        """Undo ``enter``. Always called after a successful ``enter``; it
        must not raise."""


class IJob(Interface):
    """A call to be made later, in its own transaction, by a dispatcher.

    ``Job(callable, *args, **kwargs)``. The callable is a module-level
    function, a method of a persistent object, a callable persistent object,
    or another job. Anything that would not survive pickling (lambdas,
    closures, nested functions, methods of non-persistent objects, open files)
    is refused with a :class:`zasync.job.BadJobError` naming the offending
    argument, when the job is created or at the latest when it is put into a
    queue, never later in a worker.

    A job's ZODB writes, its new status and its result are committed in one
    transaction; a short plain job may share that transaction with other
    jobs of its dispatcher thread (group commit), each in a savepoint of
    its own, and a batch commits or aborts whole, so a job's effects are
    never split (see the Guarantees in docs/concepts.md). Status moves
    NEW, PENDING, (ASSIGNED), ACTIVE, (CALLBACKS), COMPLETED; a retried job
    goes from ACTIVE back to PENDING.

    The job owns its life cycle. Every change of status is one of the
    transition methods below (``enter_queue`` ... ``complete``); each checks
    the status it starts from and raises
    :class:`zasync.exceptions.BadStatusError`, naming the job, its status
    and what was asked, if the job is not in one it allows. Queues,
    dispatchers and runners call them; they do not set a job's fields::

        NEW --enter_queue--> PENDING --assign--> ASSIGNED --begin_attempt-->
        ACTIVE --record_outcome--> CALLBACKS --complete--> COMPLETED
                                   (or COMPLETED at once, without callbacks)

        PENDING (just put) --wait_for--> WAITING --stop_waiting--> PENDING
        ACTIVE --postpone / retry_later / handle_interrupt--> PENDING
        ASSIGNED, ACTIVE --put_back--> PENDING
        WAITING, PENDING, ASSIGNED (not run) --fail--> CALLBACKS or COMPLETED

    A pending job is *in the run order* of its queue (``pending_key`` is
    set) or not: the queue takes it out when it claims, cancels,
    reschedules or removes it, and puts it in (``enter_run_order``) when it
    was queued or taken back. A job its worker took back waits out of the
    run order until its dispatcher indexes it.
    """

    id = Attribute(
        "An integer, given when the job is made and renewed (unique within "
        "the queue) when it is put, so the ids of queued jobs grow with their "
        "arrival."
    )
    status = Attribute("A :class:`zasync.status.Status`.")
    callable = Attribute("What will be called.")
    callable_name = Attribute("The callable's dotted name, for logs and displays.")
    args = Attribute("Positional arguments (a tuple).")
    kwargs = Attribute("Keyword arguments (a dict).")
    result = Attribute(
        "The return value of the call, or an IFailure if it raised, was "
        "interrupted too often or missed its ``begin_by`` deadline. None "
        "until the job has completed. In a dispatcher's worker thread any "
        "exception the call raises is its Failure, SystemExit, "
        "KeyboardInterrupt, GeneratorExit and other BaseExceptions too, "
        "through the retry policy (``job_error``); they are not raised "
        "again, since in a worker thread they would end only that thread "
        "(and leave the job running for ever), never the process. A storage "
        "error met while the job runs or commits (a full disk, an "
        "unreadable record: zasync.transact.storage_error) is never the "
        "job's: the job is postponed, its attempt not counted, and runs "
        "again once the storage works."
    )
    failed = Attribute("True if the job completed with a Failure.")
    queue = Attribute("The queue the job was put in, or None.")
    parent = Attribute(
        "For a callback, the job it is a callback of; for a sub-job of "
        "serial()/parallel(), the composite job; otherwise None."
    )
    queued = Attribute("When the job was put into a queue (aware UTC datetime).")
    begin_after = Attribute("The job does not start before this (aware UTC datetime).")
    begin_by = Attribute(
        "A timedelta or None. If the job has not started within this time "
        "after ``begin_after``, it completes with a timeout Failure instead of "
        "running late."
    )
    timeout = Attribute(
        "A timedelta or None (``put(timeout=...)``): how long an attempt of "
        "the job may run. None: the ``default_timeout`` of its queue. May be "
        "set (a timedelta or a number of seconds; TypeError or ValueError "
        "for anything but a positive duration) until an attempt starts, "
        "which reads it: so a job queued by an API without the argument "
        "(Plone's IAsyncService) can be given one in the same transaction."
    )
    time_limit = Attribute(
        "The time limit in force (read-only): ``timeout``, else its queue's "
        "``default_timeout``, else None (no limit). An attempt still running "
        "``time_limit`` after its start (by its dispatcher's clock) is "
        "failed with a JobTimedOut Failure, through its retry policy's "
        "``job_error`` like any error of the job (the default policies do not "
        "retry it; a policy whose ``retry_on`` names it does). None of the "
        "attempt's writes commit, even if its code returns later: its "
        "transactions are doomed, and its own commit conflicts with the "
        "failure. Its code runs on in its thread until it returns (Python "
        "cannot stop a thread), asked to stop by "
        "``zasync.local.check_cancelled()``, which raises JobTimedOut; its "
        "dispatcher lets another thread take its slot meanwhile, up to "
        "zasync.pool.MAX_ABANDONED_THREADS such threads. Callbacks are not "
        "limited. A job that has a limit never shares a transaction with "
        "others (group commit)."
    )
    cancel_requested = Attribute(
        "None, or ``(when, by, reason)`` once someone asked the running "
        "job to stop (zasync.admin.cancel_job, ``zasync cancel``, the "
        "dashboard, REST). A live annotation: seen at once by the job's "
        "code on any dispatcher, at ``zasync.local.check_cancelled()``, "
        "which raises JobCancelled saying by whom; the job then fails, "
        "never retried, and none of the attempt's writes commit. A claimed "
        "job that has not started yet fails so without running. Code that "
        "never checks runs on until it ends (or its time limit)."
    )
    started = Attribute("When the last attempt started (aware UTC), or None.")
    ended = Attribute("When the job completed (aware UTC), or None.")
    attempts = Attribute(
        "How many times the callable was started. Attempts undone by a "
        "ConflictError or another transient transaction error are not counted."
    )
    interruptions = Attribute(
        "How many times the job was found active on a dispatcher that died."
    )
    postponements = Attribute(
        "How many times the job was put back for later after repeated "
        "ConflictErrors or other transient errors; the pause before the next "
        "try doubles each time, up to a minute. Not attempts: they never "
        "fail the job."
    )
    annotations = Attribute(
        "A persistent mapping for the caller's own data, written in ordinary "
        "transactions."
    )
    quota_names = Attribute("Names of the queue's quotas this job counts against.")
    priority = Attribute(
        "An integer; a higher number runs earlier. Jobs of equal priority run "
        "in order of ``begin_after``, then of arrival."
    )
    unique_key = Attribute("A string, or None; see IQueue.put.")
    retry_policy = Attribute("The job's IRetryPolicy.")
    callbacks = Attribute("The callback jobs, in the order they were added.")
    environment = Attribute(
        "The job's IJobEnvironment, or None. Set on a job, it applies to its "
        "callbacks, children and postprocess job too, unless they have one "
        "of their own."
    )
    log_context = Attribute(
        "Where and as whom the job runs, for log lines: its queue and the "
        "str() of its environment (the Plone layer's names user and site)."
    )
    internal = Attribute(
        "True for a bookkeeping callback an application adds to every job "
        "(the Plone layer's event delivery): operators' listings and counts "
        "leave it out, and its runs are logged at DEBUG. False by default."
    )
    progress = Attribute(
        "(fraction, message) as last set by zasync.local.set_progress, as "
        "committed when this job's connection last began a transaction; or "
        "None."
    )
    steps = Attribute(
        "The state of the job's runs in steps (zasync.steps, see ISteps): "
        "a dict of a plain-data dict per name of a run (``cursor``, "
        "``done``, ``total``, ``chunks``, ``runs``, ``resumed_from``, "
        "``finished``), committed with each chunk of work; or None for a "
        "job that never ran in steps."
    )
    own_annotations = Attribute(
        "The job's annotations, read without creating them: the mapping "
        "``annotations`` returns if the job has one, else an empty read-only "
        "mapping (so reading never writes the job)."
    )
    explicit_retry_policy = Attribute(
        "The retry policy set on this job (by ``retry_policy = ...`` or "
        "``put(retry_policy=...)``), or None if it uses the default one; "
        "what a copy of the job should be given."
    )
    pending_key = Attribute(
        "The job's key in its queue's run order while it is in it (an "
        "integer, see zasync.keys), else None."
    )
    index_key = Attribute(
        "The job's key in its queue's completed indexes, derived from its "
        "end time and id (newest first, see zasync.keys); never stored."
    )
    depends_on = Attribute(
        "The jobs this job was put to wait for (IQueue.put's depends_on), "
        "a tuple; empty for most jobs."
    )
    on_dependency_failure = Attribute(
        "What the job does if one of ``depends_on`` fails: 'fail', 'run' or "
        "'wait' (see IQueue.put)."
    )
    waiting_for = Attribute(
        "The ids of the jobs of ``depends_on`` it still waits for while it is "
        "WAITING (a tuple); empty otherwise."
    )
    lane_quota_names = Attribute(
        "The quota names of the run-order lane the job waits in: its "
        "``quota_names``, or none for a serial/parallel job (which takes no "
        "quota slot)."
    )

    def add_callback(callback, *args, **kwargs):
        """Have ``callback(result, *args, **kwargs)`` called after the job.

        The callback becomes a job of its own (returned), run in its own
        transaction after the result has been committed, as the same job's
        dispatcher sees fit; callbacks run in the order they were added. An
        exception in a callback becomes that callback job's Failure and is
        logged; it never changes the result of this job. Adding a callback
        to a completed job queues it to run at once. ``addCallback`` is the
        same method (the name plone.app.async code uses).
        """

    def add_callbacks(success=None, failure=None):
        """Have ``success(result)`` called if the job succeeds, and
        ``failure(failure)`` if it fails. Either may be None, in which case
        the result passes through. Returns the callback job. ``addCallbacks``
        is the same method."""

    def get_live_annotation(name, default=None):
        """A live annotation as committed when this job's connection last
        began a transaction; see :func:`zasync.local.set_live_annotation`."""

    def setUp():
        """A hook for subclasses, called just before the callable: in the
        worker's thread, inside the job's transaction, after the job's
        environment (IJobEnvironment, what restores a site and user) was
        entered. Its return value is handed to ``tearDown``.

        If it raises, the callable is not called and the job fails with
        that error, as if the callable had raised it (through the retry
        policy); ``tearDown`` is still called, with None. The default does
        nothing and returns None."""

    def tearDown(setup_info):
        """A hook for subclasses, called after the callable whatever
        happened (it returned, raised, or ``setUp`` raised), before the
        job's outcome is recorded and committed and before the environment
        is left; ``setup_info`` is what ``setUp`` returned, or None if
        ``setUp`` raised.

        It should not raise. If it does, the error is logged (logger
        ``zasync.job``, ERROR, with the job's ``log_context``) and the
        job's outcome is kept: a job whose callable succeeded keeps its
        result, one whose callable (or ``setUp``) failed keeps that
        failure. The default does nothing."""

    def invoke(extra_args=(), extra_kwargs=None, conclude=None):
        """Make the call: enter the environment, ``setUp``, call, then
        ``tearDown`` and leave the environment, whatever happened.

        ``conclude(result)``, if given, is called after ``tearDown`` with
        the call's result, while the environment is still entered; invoke
        then returns what ``conclude`` returns. Dispatchers record the
        result and commit the job's transaction there, so that whatever
        runs at commit (before-commit hooks, Plone's indexing queue) sees
        the job's environment. Exceptions propagate; the caller decides
        what they mean."""

    def __call__(*args, **kwargs):
        """Run the job at once, in the current thread and transaction.

        Extra arguments are appended to the job's own. The result (or a
        Failure, which is returned, not raised) is stored and the job's
        callbacks run. This is what the inline mode of zasync.testing uses;
        dispatchers use their own transaction handling instead. A NEW,
        PENDING or ASSIGNED job begins an attempt; an ACTIVE one (claimed
        and started) runs the attempt begun; a job in CALLBACKS or
        COMPLETED ran already and raises BadStatusError.
        """

    # -- transitions: each raises BadStatusError from any other status ----

    def enter_queue(
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
        """NEW -> PENDING (not yet in the run order): the job is put in
        ``queue`` with the id ``job_id``, ``queued`` and ``begin_after``
        (aware datetimes), and the other settings; a ``retry_policy`` that
        is not None replaces the job's. What IQueue.put calls, after
        checking the arguments; the queue then adds it to its run order."""

    def forget_aborted_put():
        """If this job was put by a transaction that was aborted, make it
        NEW again (out of any queue) and return True; otherwise change
        nothing and return False.

        ``put`` changes a job in memory; an abort undoes the queue's side
        only. Such a job is PENDING, was never stored (it has no
        ``_p_jar``), and its queue does not hold it (or can no longer be
        read: its connection was closed). A job that is really queued,
        committed or not, is left alone, and so is a job that ran (in the
        inline mode of zasync.testing). IQueue.put calls this first, so a
        job made outside a retry loop can be put again after an abort."""

    def wait_for(depends_on, waiting_for, on_failure):
        """PENDING, out of the run order -> WAITING: the job waits for the
        jobs whose ids are ``waiting_for`` (of ``depends_on``, all it was
        put to wait for), and does ``on_failure`` if one fails (see
        IQueue.put)."""

    def dependency_done(job_id):
        """WAITING: the job ``job_id`` no longer keeps it waiting; returns
        the ids it still waits for (the queue releases it when none)."""

    def replace_dependency(job, retry):
        """WAITING: wait for ``retry`` instead of the failed ``job``."""

    def stop_waiting():
        """WAITING -> PENDING, out of the run order (the queue then adds it
        to the run order): the jobs it waited for are done."""

    def enter_run_order(front=False):
        """PENDING, out of the run order -> in it: computes and returns
        ``pending_key``, under which the queue files the job.

        With ``front``, the key puts the job before every other job of its
        priority (as if it were due since 1970): the queue does so for a
        job it takes back from a dispatcher that died or stopped, once the
        job is due."""

    def leave_run_order():
        """PENDING, in the run order -> out of it (still PENDING): returns
        the ``pending_key`` it had, which is cleared."""

    def reschedule(begin_after):
        """PENDING, out of the run order: ``begin_after`` changes (the
        queue takes the job out of the run order and puts it back)."""

    def leave_queue():
        """WAITING or PENDING out of the run order -> NEW, or COMPLETED
        (stays COMPLETED): the job forgets its queue (IQueue.remove and
        pull)."""

    def renew(parent):
        """Any status but COMPLETED (and not in a run order) -> NEW, as a
        sub-job (callback, child or postprocess job) of ``parent``: out of
        any queue, unassigned, ready to be put in its parent's queue. A
        callback that was running in its parent's thread when the worker
        died starts again this way."""

    def assign(assignee, now):
        """PENDING, out of the run order -> ASSIGNED: claimed by
        ``assignee`` (dispatcher uuid, agent name) at ``now``. If the
        ``begin_by`` deadline has passed, the job is marked expired: it
        will be failed with a timeout instead of run."""

    def begin_attempt(now):
        """NEW, PENDING (out of the run order) or ASSIGNED -> ACTIVE: an
        attempt starts at ``now``; ``attempts`` counts it and ``started``
        is ``now``. An expired job becomes ACTIVE without an attempt: it is
        about to be failed (see ``fail``), not run."""

    def postpone(begin_after):
        """ACTIVE -> PENDING (out of the run order) after repeated
        transient errors (ConflictError): the attempt is not counted,
        ``postponements`` grows by one, and the job waits until
        ``begin_after``."""

    def retry_later(begin_after):
        """ACTIVE -> PENDING (out of the run order), as the retry policy
        decided after an error: the attempt stays counted and the job runs
        again after ``begin_after``."""

    def put_back():
        """ASSIGNED or ACTIVE -> PENDING (out of the run order) without an
        outcome: its dispatcher stopped, or it was claimed and never
        started. An attempt begun is not counted; ``begin_after`` stays."""

    def handle_interrupt(now):
        """ACTIVE, on a dispatcher that died: count the interruption and
        ask the retry policy (``interrupted``). Returns True if the job was
        taken back to PENDING (out of the run order) to run again after the
        policy's delay; False if the policy gave up: then the job has a
        JobInterrupted Failure as its outcome (CALLBACKS or COMPLETED, as
        ``record_outcome``) and its callbacks are to be resumed."""

    def record_steps(name, state):
        """ACTIVE only, the status unchanged: store ``state`` (a dict of
        plain data) as the state of the job's run in steps called ``name``
        (see ``steps``). zasync.steps calls it in the transaction of each
        chunk of work, so that the work and the cursor commit together.

        A state with more items ``done`` than the one stored before sets
        ``interruptions`` back to 0: the job was killed while making
        progress, not killing its worker, so the retry policy's bound on
        interruptions counts those since its last committed chunk (each
        run advances the cursor, so the runs stay bounded)."""

    def record_outcome(result, now):
        """ACTIVE -> CALLBACKS if the job has callbacks, else COMPLETED:
        ``result`` (the return value, or an IFailure) and ``ended`` (now)
        are recorded."""

    def fail(failure, now):
        """A job that has not run -> CALLBACKS if it has callbacks, else
        COMPLETED, with ``failure`` (an IFailure) as its result: WAITING
        (cancelled, or a dependency failed), PENDING out of the run order
        (cancelled), ASSIGNED, or ACTIVE but expired (its
        ``begin_by`` deadline passed). A running job records its outcome
        instead (``record_outcome``)."""

    def deadline_failure():
        """The JobTimedOut Failure of a job whose ``begin_by`` deadline
        passed before it started (changes nothing)."""

    def run_time_failure(limit, elapsed):
        """The JobTimedOut Failure of an attempt that ran ``elapsed``
        seconds, past its time limit ``limit`` (changes nothing)."""

    def resume_callbacks(queue, now):
        """CALLBACKS (or COMPLETED without callbacks), in ``queue``: the
        callbacks that have not completed are queued as jobs of their own
        (each ``renew``-ed) and the job waits for them in the queue; with
        none left, the queue completes it at once (IQueue ``finish``)."""

    def complete(now):
        """CALLBACKS -> COMPLETED, once its callbacks have completed;
        ``ended`` is set to ``now`` if it was not. A COMPLETED job stays
        so."""


class IQueue(Interface):
    """Jobs waiting to run, and the records of those that ran.

    Pending jobs are ordered by priority (higher first), then ``begin_after``,
    then arrival. The queue keeps per-status indexes and counters, so counts,
    the next job to run and a page of failed jobs are found without scanning
    all jobs. It also holds the quotas and the registry of dispatchers.
    """

    name = Attribute("The queue's name; the default queue is ''.")
    quotas = Attribute("The queue's IQuotas.")
    dispatchers = Attribute(
        "Mapping of dispatcher UUID (str) to IDispatcherRecord: the "
        "dispatchers serving this queue, their heartbeats and agents."
    )
    agent_settings = Attribute(
        "The IAgentSettings of this queue's dispatchers (the cluster-wide "
        "agent sizes), or None until one is set (see "
        "zasync.registry.agent_settings())."
    )
    paused = Attribute(
        "None, or ``(since, by)`` while the queue is paused (see pause): "
        "an aware datetime and a text saying who paused it."
    )
    default_timeout = Attribute(
        "The time limit of the queue's jobs that have no ``timeout`` of "
        "their own (see IJob.time_limit), cluster-wide: a timedelta, or None "
        "(no limit; the default, and what a queue stored before there were "
        "time limits has). Set it to a timedelta or a number of seconds "
        "(TypeError or ValueError for anything but a positive duration), "
        "or None. An attempt keeps the limit it started with."
    )

    def pause(now, by=None):
        """Pause the queue, cluster-wide, in the current transaction: no
        dispatcher claims a job from it until ``resume``; running jobs
        finish, jobs can still be queued, and due times pass (a job whose
        ``begin_by`` expires meanwhile fails with its time-out when the
        queue is resumed, as it would have on a stopped cluster). Pausing a
        paused queue changes nothing. Returns ``paused``."""

    def resume():
        """Let dispatchers claim from the queue again (at once: they watch
        the queue); returns whether it was paused."""

    def put(
        job_or_callable,
        begin_after=None,
        begin_by=None,
        quota_names=(),
        priority=0,
        unique_key=None,
        retry_policy=None,
        rate_limit=None,
        timeout=None,
        depends_on=None,
        on_dependency_failure="fail",
    ):
        """Queue a job (or a callable, which is wrapped in a Job) and return it.

        This is part of the caller's transaction: if it aborts, no job exists.
        ``begin_after`` is an aware datetime, or a duration from now;
        ``begin_by`` a duration after ``begin_after`` (a duration is a
        timedelta or a number of seconds); ``timeout`` a positive duration,
        how long each attempt may run (see IJob.time_limit; None: the
        queue's ``default_timeout``; not enforced for jobs run inline).
        Every name in ``quota_names`` must name an existing quota.
        ``rate_limit`` names a quota that has a rate (see IQuota.rate;
        ValueError if none does): the job counts against it like against
        the quotas it names. If ``unique_key`` (a string) matches a job of
        this queue that is pending or running, that job is returned instead
        and nothing is added; two concurrent transactions putting the same
        key end with exactly one job (one of them gets a ConflictError and
        its retry finds the other's job).

        A put writes only the new job, one inbox shard of the queue and the
        pending count; all three merge concurrent changes, so puts do not
        conflict with each other nor with dispatchers' claims. The job is
        pending, in the run order (its ``pending_key`` is set), counted,
        listed and found by ``get`` at once; dispatchers take it from the
        inbox when they claim it, or file it in the run-order indexes.

        ``depends_on`` is a list of jobs of this queue (as ``put`` returned
        them, queued in this transaction or before): the job waits until
        all of them have completed. A dependency that has completed already
        counts at once. While it waits the job is WAITING: in no run order,
        on no agent, holding no thread and no quota slot; it enters the run
        order in the transaction that records the completion of the last
        one. What happens when one of them fails (its Failure is final: a
        retry by its retry policy is not a failure) is
        ``on_dependency_failure``:

        - ``"fail"`` (the default): the job does not run; it completes at
          once with a Failure of zasync.exceptions.DependencyFailed naming
          the failed job and its error (its callbacks run; jobs waiting for
          it fail in turn);
        - ``"run"``: the job runs anyway, once all have completed;
        - ``"wait"``: the job goes on waiting for a retry of the failed job
          (``zasync retry``, ``move_dependents``) and runs when that retry
          succeeds; a dependency that was cancelled fails it as ``"fail"``
          does (waiting would be waiting for an operator).

        Whatever the policy, a job whose dependency is removed from the
        queue (``remove``, ``pull``, ``zasync prune`` of a failed job it
        waits a retry of, ``discard_set_aside``) fails with a
        DependencyFailed saying so: it would wait for ever. Cycles cannot
        form (a job depends only on jobs queued before it, and dependencies
        are fixed when it is put); a job given as its own dependency, or
        one that would close a cycle, is refused.

        A put with ``depends_on`` also writes the waiting and dependents
        indexes (BTrees whose concurrent inserts merge), and its transaction
        conflicts (to be retried) if a dependency it saw unfinished changes
        before it commits: so a dependency completing meanwhile never
        misses it. Dependencies must be queued jobs of this queue: jobs of
        another queue, unqueued or removed jobs raise ValueError, anything
        but jobs TypeError.

        Raises ValueError for a job that was already queued, an unknown quota,
        a naive datetime or a duration that is not positive, TypeError for
        a duration that is neither a timedelta nor a number, and
        zasync.job.BadJobError for anything that would not pickle. Nothing
        already queued is touched when it raises.
        """

    def dependents(job):
        """The jobs of this queue WAITING for ``job`` (put with it in their
        ``depends_on``, and not released yet), as a list, oldest first;
        read from the dependents index, not by scanning."""

    def move_dependents(job, retry):
        """The jobs waiting for the failed ``job`` (put with
        ``on_dependency_failure="wait"``) wait for ``retry`` (a job queued
        to run it again) instead; returns them, as a list. What ``zasync
        retry`` does when it queues a retry of a failed job."""

    def pull(index=0):
        """Remove the pending job at ``index`` in run order and return it
        (its status goes back to NEW, so it may be put again)."""

    def remove(job):
        """Remove a waiting, pending or completed job from this queue.

        A waiting or pending job goes back to NEW; jobs waiting for the job
        removed fail (see ``put``'s ``depends_on``); a completed one is forgotten by the
        queue's indexes; a set-aside one is discarded (``discard_set_aside``).
        Removing a job that is running raises ValueError.
        """

    def cancel(job, failure, now):
        """Complete a pending or waiting job with ``failure`` (an IFailure)
        without running it; ``now`` is its end time.

        The job leaves the run order and is completed like a job that
        failed: its callbacks are queued (they get the failure), then it is
        indexed among the failed jobs and its unique key is freed. A pending
        job holds no quota slot, so none is released. Raises ValueError for
        a job that is not pending in this queue's run order. What
        ``zasync cancel`` uses (see :func:`zasync.admin.cancel_job`).
        """

    def reschedule(job, begin_after):
        """Move a pending job to ``begin_after`` (an aware datetime) in the
        run order; dispatchers are woken when the transaction commits.
        Raises ValueError for a job that is not pending in this queue's run
        order. What ``zasync retry`` uses to make a waiting job due now."""

    def __len__():
        """The number of pending jobs."""

    def __iter__():
        """The pending jobs, in the order they will run (ignoring quotas)."""

    def __getitem__(index):
        """The pending job at ``index`` in run order."""

    def get(job_id, default=None):
        """The job of this queue with id ``job_id`` (any status), or default."""

    def counts():
        """A dict of counts by status, without scanning jobs.

        Keys are the Status values 'waiting' (jobs waiting for their
        dependencies), 'pending', 'assigned', 'active', 'callbacks',
        'completed', plus 'succeeded' and 'failed' (which add up
        to 'completed'). Completed jobs are counted until removed. Callbacks
        run by the thread of their job are part of that job and not counted;
        queued sub-jobs (serial/parallel children, callbacks added after
        completion or resumed after a crash) are.
        """

    set_aside_jobs = Attribute(
        "{job id: (job, reason)}: jobs a dispatcher isolated because they "
        "cannot be run, with the reason: their class, or that of their "
        "retry policy or environment, cannot be imported (the job may then "
        "be ZODB's Broken stand-in: see zasync.loading.readable), their "
        "record cannot be read, or they could not be stored again (an "
        "argument refers to a function whose module was removed). They are "
        "out of the run order, held by no agent and no quota, unchanged, "
        "and every other job goes on. Fix the cause, then "
        "``put_back_set_aside``; or ``discard_set_aside``."
    )

    def set_aside(job, reason, key=None):
        """Take a pending job out of the run order without writing it and
        keep it in ``set_aside_jobs`` with ``reason`` (text), logged once at
        ERROR. ``key`` is its run-order key (default: the one it has; given
        for a Broken stand-in). What a claim does with a job that cannot be
        run; a dispatcher also does it with a job whose claim cannot be
        committed. ValueError if the job is not in the run order."""

    def set_aside_reason(job_id):
        """Why the job ``job_id`` was set aside (text), or None if it is not
        (reads one entry of ``set_aside_jobs``)."""

    def put_back_set_aside(job_id, now=None):
        """Put the set-aside job ``job_id`` back in the run order, at the
        front of its priority (as a recovered job), once what stopped it is
        fixed; no attempt is counted. Returns the job. ValueError if it is
        not set aside, or still cannot be loaded or stored (saying why);
        then it stays set aside. What ``zasync retry`` does with one."""

    def discard_set_aside(job_id):
        """Remove the set-aside job ``job_id`` from this queue (its unique
        key and live annotations too) without writing the job, which may
        not load or store; returns it. ValueError if it is not set aside.
        What ``zasync discard`` does."""

    def peek(agent, now):
        """The job that a claim for ``agent`` would take now, or None
        (reads only)."""

    def unsettled():
        """How many jobs are pending, claimed or waiting for sub-jobs,
        counting completed jobs their dispatcher has not indexed yet (it
        does so in its next round, milliseconds later)."""

    def claimed_jobs():
        """An iterator over the jobs held by this queue's dispatchers
        (ASSIGNED, ACTIVE, in CALLBACKS, or COMPLETED by their worker and not
        indexed yet) and the jobs waiting for their sub-jobs (serial and
        parallel parents, jobs whose callbacks were queued), in no
        particular order. Jobs WAITING for their dependencies are among them
        (they are in the same waiting index)."""

    def indexed_completed(failed=None, min_key=None):
        """An iterator of ``(index_key, job)`` over the completed jobs in
        this queue's indexes, newest first: the failed ones (``failed`` is
        True), the succeeded ones (False) or both (None), from ``min_key``
        on (see :func:`zasync.keys.ended_before`). Read lazily from the
        index; what ``zasync prune`` walks in batches."""

    def completed_items(failed=None, min_key=None):
        """Like ``indexed_completed``, merged with the completed jobs their
        dispatcher has not indexed yet, all newest first."""

    def watched_objects(parts=None):
        """A new list of the persistent objects whose change by another
        process means work may have arrived: the pending count (a job was
        queued; with ``parts``, a set of run parts, the inbox shards of
        those parts instead, so that a put in another dispatcher's parts
        wakes only that one), the queue itself (paused or resumed), the
        quotas and each quota (room was made, paused or resumed, rate
        changed). A dispatcher listens for
        invalidations of their oids."""

    def jobs(status=None, failed=None, start=0, limit=None):
        """Jobs of this queue with a status (any if None), as a list.

        For COMPLETED, ``failed`` may be True or False to get only failed or
        only succeeded jobs, newest first. Pending jobs come in run order.
        ``start`` and ``limit`` page through the index without loading the
        jobs before ``start``.
        """


class IQueues(Interface):
    """The mapping of names to queues, at one well-known key of the root.

    Get it with :func:`zasync.get_queues`. The default queue is ``''``.
    """

    def create(name):
        """Return the queue called ``name``, creating it if missing."""

    def __getitem__(name):
        """The queue called ``name``."""


class IQuota(Interface):
    """A limit on how many jobs naming it may run at once, cluster-wide.

    Claims and releases write the quota object itself. Concurrent changes
    are merged while they fit the size; two dispatchers claiming the last
    slot at once conflict and one of them tries again: at most ``size`` jobs
    naming the quota are ever claimed at once anywhere.
    """

    name = Attribute("The quota's name.")
    size = Attribute(
        "How many jobs naming the quota may be claimed at once. May be changed "
        "at any time; the change takes effect at the next claim."
    )
    active = Attribute("Ids of the jobs holding a slot now.")
    rate = Attribute(
        "None, or ``(limit, per)``: at most ``limit`` jobs naming the quota "
        "start in any period ``per`` (a timedelta), cluster-wide. A start is "
        "counted when a job is claimed; jobs held back by the rate stay "
        "pending, holding no thread, and are claimed when the period's "
        "oldest start falls out of it (a dispatcher's round waits until "
        "then, not polling). Two dispatchers claiming at once never exceed it: "
        "their claims merge only while no ``limit + 1`` starts fall in one "
        "period, else one of them conflicts and tries again."
    )
    paused = Attribute(
        "None, or ``(since, by)`` while the quota is paused (see pause): an "
        "aware datetime and a text saying who paused it."
    )

    def has_room():
        """True if fewer than ``size`` slots are held (whatever the pause
        and the rate)."""

    def may_start(now):
        """True if a job naming the quota may be claimed at ``now`` (an aware
        datetime): it is not paused, has room and its rate is not used up."""

    def pause(now, by=None):
        """Pause the quota, cluster-wide, in the current transaction: no job
        naming it is claimed until ``resume``; running jobs finish and jobs
        naming it can still be queued. Pausing a paused quota changes
        nothing. Returns ``paused``."""

    def resume():
        """Let jobs naming the quota be claimed again (at once: dispatchers
        watch the quota); returns whether it was paused."""

    def set_rate(rate, per=None):
        """Set the rate: ``(limit, per)``, or ``limit`` and ``per`` as two
        arguments, or None for no rate (its record of starts is dropped).
        ValueError for a limit that is not a whole number of 1 or more or a
        period that is not a positive timedelta; nothing is changed then.
        The new rate takes effect at the next claim."""

    def starts_in_period(now):
        """How many starts count against the rate at ``now`` (0 without a
        rate)."""

    def rate_opens_at(now):
        """None if the rate lets a job start at ``now``, else when it next
        does (an aware datetime)."""

    def record_start(job_id, now):
        """Count the start of job ``job_id`` at ``now`` against the rate
        (nothing without one); the claim calls it with ``hold``."""

    def __len__():
        """How many slots are held."""


class IQuotas(Interface):
    """The quotas of a queue, by name."""

    def create(name, size=1, rate=None):
        """Create a quota and return it, with a rate if ``rate`` is given
        (see IQuota.set_rate). Raises ValueError if it exists or ``rate`` is
        not a rate."""

    def remove(name):
        """Delete a quota. Pending jobs naming it are no longer limited by it."""

    def __getitem__(name):
        """The quota called ``name``."""

    def __contains__(name):
        """True if there is a quota called ``name``."""


class IAgent(Interface):
    """The part of a dispatcher that claims jobs from one queue.

    Agents live in the database, so their settings can be changed while the
    cluster runs: the dispatcher reads them before every claim.
    """

    name = Attribute("The agent's name, unique within its dispatcher.")
    size = Attribute("How many of this agent's jobs may run at once (threads).")
    filter = Attribute(
        "None, or a module-level function ``filter(job) -> bool``; only jobs "
        "it accepts are claimed by this agent."
    )
    jobs = Attribute("Mapping of job id to the jobs this agent has claimed.")


class IIntervalSettings(Interface):
    """The poll, ping and death intervals set in the database for every
    dispatcher of the cluster (kept in ``queues.interval_settings``).

    A dispatcher follows each interval its process does not set itself
    (``--ping-interval``, ``<product-config zasync> ping-interval``, an
    argument of ``zasync.start``): when it registers and at each round
    after a change, it takes the value set here, else the built-in
    default, and records the intervals in force, with where each comes
    from, in its dispatcher records (peers judge its death by them).
    """

    def get(field):
        """The seconds set for ``field`` ('poll_interval', 'ping_interval'
        or 'death_interval'), or None (not set)."""

    def set(field, seconds):
        """Set ``field`` to ``seconds`` (> 0), or unset it with None.
        ValueError for an unknown field, a bad value, or a death interval
        that would not be longer than the ping interval (with the built-in
        default for one not set)."""

    def update(changes):
        """``set`` each of ``changes`` (``{field: seconds or None}``),
        checking the intervals they make together; nothing changes if one
        cannot be used."""

    def values():
        """``{field: seconds}`` of the intervals set."""


class IAgentSettings(Interface):
    """The agent sizes set in the database for the dispatchers of one
    queue, cluster-wide (kept in ``queue.agent_settings``).

    A dispatcher whose process does not set its size explicitly gives its
    agent in the queue the size ``size_for(uuid)`` returns, when it
    registers and while it runs (see this module's docstring for the
    order). Sizes are whole numbers >= 0; 0 makes the dispatcher claim
    nothing from the queue.
    """

    default_size = Attribute(
        "The queue's default agent size for every dispatcher, or None "
        "(unset: DEFAULT_AGENT_SIZE)."
    )

    def size_for(uuid):
        """``(size, source)`` for dispatcher ``uuid`` when its process sets
        none: its own setting, else the default size, else
        DEFAULT_AGENT_SIZE; source is FROM_DISPATCHER_SETTING,
        FROM_QUEUE_DEFAULT or FROM_BUILT_IN."""

    def dispatcher_size(uuid):
        """The size set for dispatcher ``uuid``, or None."""

    def set_dispatcher_size(uuid, size):
        """Set (or, with None, unset) the size of dispatcher ``uuid``."""

    def dispatcher_sizes():
        """``{uuid: size}`` of the dispatchers that have a size of their own."""


class IDispatcherRecord(Interface):
    """A dispatcher as its queue knows it: identity, heartbeat and agents."""

    uuid = Attribute("The dispatcher's UUID, as a string.")
    host = Attribute("Host name of its process.")
    pid = Attribute("Process id.")
    started = Attribute("When it registered (aware UTC).")
    last_ping = Attribute("Its last heartbeat (aware UTC).")
    ping_interval = Attribute("Seconds between heartbeats.")
    death_interval = Attribute(
        "Seconds without a heartbeat after which peers declare it dead and "
        "recover its jobs."
    )
    agents = Attribute("Mapping of agent name to IAgent.")
    agent_size_source = Attribute(
        "Where the size of its agents comes from when its process set one "
        "explicitly ('zope.conf', 'command line', 'agent_size argument'), "
        "or None: it follows the queue's IAgentSettings."
    )

    heartbeat_tid = Attribute(
        "The transaction id of the commit of its last heartbeat (the "
        "storage's time of it), or None before its first commit."
    )

    def is_dead(now):
        """True if declared dead, or if the heartbeat's time, as the
        dispatcher's own clock wrote it, is older than the death interval
        at ``now`` (this process's clock). For display only: peers judge by
        the storage's time (looks_dead)."""

    def heartbeat_age(tid, since=None):
        """Seconds of the storage's time from the last heartbeat's commit
        (or from ``since``, a transaction id, if later) to the transaction
        ``tid``; 0 if either is unknown. No machine's clock enters it."""

    def looks_dead(tid, since=None):
        """True if declared dead, or if heartbeat_age(tid, since) exceeds
        the death interval."""


class IRetryPolicy(Interface):
    """Decides what happens when a job raises, cannot commit, or was
    interrupted by the death of its worker.

    Each method returns None to give up (the job completes with the
    Failure), or a ``datetime.timedelta`` after which the job is run again
    (``timedelta(0)``: at once). A policy is a small picklable object stored
    with its job. ConflictError and other transient transaction errors
    (``transaction.interfaces.TransientError``) never reach the policy: they
    are postponements, retried without counting an attempt.
    """

    def job_error(job, failure):
        """The callable raised; ``failure`` describes it. ``job.attempts``
        counts this attempt. The exception may be a BaseException that is
        not an Exception (SystemExit, KeyboardInterrupt, GeneratorExit):
        the policies of zasync.retry give those up, unless named in
        ``retry_on``. Storage errors never get here (the job is postponed)."""

    def commit_error(job, failure):
        """The call returned but its transaction could not be committed
        (for example an unpicklable result). A storage error at commit (a
        full disk) is not the job's and never gets here: the job is
        postponed, its attempt not counted."""

    def interrupted(job):
        """The job was found active on a dead dispatcher, or its worker
        thread died under it (an error outside the job: the thread is
        replaced); ``job.interruptions`` counts this interruption."""


class IChore(Interface):
    """Work every dispatcher does now and then besides its rounds: firing
    recurring jobs, pruning old ones (see zasync.chores).

    Each running dispatcher calls ``run`` when the chore is due, in a
    transaction of its own that it commits after the call, and calls it
    again when it conflicts. All dispatchers of a cluster run the same
    chores: what must happen once per cluster is decided through the
    database (a unique key, an object whose concurrent changes conflict),
    never by electing a leader. A call must be short (it holds up the
    dispatcher's next round): a long chore does a bounded part of its work
    and asks to be called again at once."""

    name = Attribute("A unique, non-empty string naming the chore.")
    interval = Attribute(
        "Seconds between two runs by one dispatcher when ``run`` returns None."
    )

    def run(dispatcher, queues, now):
        """Do the chore's work in the current transaction. ``queues``: the
        IQueues of the dispatcher's database; ``now``: the dispatcher's
        aware UTC time. Returns when to run it next in this dispatcher (a
        timedelta or seconds; 0 for at once after the next round), or None
        for ``interval``. An exception is logged (once per kind) and the
        chore is tried again later; it never stops the dispatcher."""


class IRecurringJob(Interface):
    """A recurring job's stored definition (see zasync.recurring): when its
    ticks are, and the job each tick puts. Read it; change it through
    IRecurringJobs, which checks the changes.

    At each tick one job is put into ``queue`` (exactly one across the
    cluster, however many dispatchers run): ``callable(*args, **kwargs)``
    with ``environment``, ``quota_names``, ``priority`` and
    ``retry_policy``, ``begin_after`` being the tick, annotated
    ``job.annotations["zasync.recurring"] == {"name": ..., "tick": ...}``.
    It is a normal job: retried by its policy, with callbacks and history.

    Cron ticks are wall-clock times in ``timezone``. When the clocks go
    forward, a tick in the skipped hour runs at the first minute after it
    (``30 2 * * *`` runs at 03:00 that day); when they go back, a tick at a
    fixed hour runs once (at its first occurrence), one whose hour is ``*``
    in both hours. Interval ticks are every ``every`` from the time the
    schedule was defined, in real (UTC) time.
    """

    name = Attribute("The unique name (str).")
    cron = Attribute("The cron expression (five fields), or None.")
    every = Attribute("The interval (timedelta), or None.")
    timezone = Attribute("The IANA timezone name the cron expression is read in.")
    queue = Attribute("The name of the queue the jobs go to.")
    quota_names = Attribute("The quota names of its jobs (tuple).")
    priority = Attribute("The priority of its jobs (int).")
    catch_up = Attribute(
        "What happens to ticks missed while no dispatcher ran: 'skip' (only a "
        "tick at most a minute, or half its period, late runs; the older ones "
        "are dropped), 'once' "
        "(one job for all missed ticks), 'each' (one job per missed tick, the "
        "newest 100 at most)."
    )
    callable = Attribute("The function its jobs call (resolved from its reference).")
    callable_name = Attribute("The callable's dotted name, for display.")
    args = Attribute("The positional arguments (tuple).")
    kwargs = Attribute("The keyword arguments (dict).")
    environment = Attribute("The IJobEnvironment of its jobs, or None.")
    retry_policy = Attribute("The retry policy of its jobs, or None for the default.")
    paused = Attribute("True while paused: its ticks pass without a job.")
    last_tick = Attribute("The last tick fired (aware UTC datetime), or None.")
    next_tick = Attribute("The next tick to fire (aware UTC datetime).")
    last_job = Attribute("The job its last tick or run-now put, or None.")
    last_error = Attribute(
        "Why its last tick could not put a job (text), or None. Such a tick is "
        "spent, not tried again."
    )
    source = Attribute("Where it was defined: 'code', 'zcml', ...")


class IRecurringJobs(Interface):
    """The recurring jobs of a database: ``zasync.recurring`` provides it.
    Every function works in the caller's transaction (commit to make it
    count). Definitions are stored in the database; running dispatchers
    take a new, changed, paused or removed definition within
    ``CHECK_EVERY`` (10) seconds, without a restart."""

    def define(
        queues,
        name,
        callable,
        *,
        cron=None,
        every=None,
        timezone="UTC",
        queue="",
        quota_names=(),
        priority=0,
        catch_up="skip",
        args=(),
        kwargs=None,
        environment=None,
        retry_policy=None,
        source="code",
        now=None,
    ):
        """Add the recurring job ``name`` to ``queues`` (an IQueues), or
        change it, and return its IRecurringJob. Exactly one of ``cron`` (a
        five-field expression) and ``every`` (seconds or a timedelta, at
        least one second) is given. ValueError (saying what to fix) for a
        bad expression, an unknown timezone, queue or quota, a bad priority
        or catch-up policy; BadJobError for a callable or argument that
        cannot be stored. Nothing is stored then. Defining it again with
        the same values writes nothing; a changed schedule starts again from
        ``now``; a paused definition stays paused."""

    def remove(queues, name):
        """Remove the definition; jobs it put already stay. KeyError if
        there is none of that name."""

    def pause(queues, name):
        """Stop putting jobs for its ticks; the ticks that pass meanwhile are
        not run later."""

    def resume(queues, name, now=None):
        """Put jobs again, from the first tick after ``now``."""

    def run_now(queues, name, now=None):
        """Put one job of the definition now (paused or not) and return it;
        the schedule does not change."""

    def definitions(queues):
        """The stored IRecurringJob definitions, ordered by name."""

    def get(queues, name):
        """The IRecurringJob named ``name``; KeyError if there is none."""


class IRetentionSettings(Interface):
    """How long one queue keeps its completed jobs, set in the database for
    the whole cluster (kept in ``queue.retention``; see zasync.retention).

    The settings are ``enabled`` (False: nothing is pruned automatically),
    ``succeeded_age`` and ``failed_age`` (timedeltas: jobs that ended
    longer ago are pruned), ``succeeded_count`` and ``failed_count`` (whole
    numbers: only that many of the newest are kept). An age or count may be
    ``zasync.retention.UNLIMITED``: no limit of that kind. A job is pruned
    when either limit of its kind says so. A setting not set takes the
    built-in default: enabled, succeeded jobs kept 7 days, failed ones 30
    days, no count limits.
    """

    def get(field):
        """The value set for ``field``, or None (not set). ValueError for a
        field that is not a retention setting."""

    def update(changes):
        """Set each of ``changes`` (``{field: value}``); None unsets one.
        ValueError/TypeError for an unknown field or a bad value (a
        non-positive age, a count below 1), and then nothing changes."""

    def values():
        """``{field: value}`` of the settings set."""


class IRetentionState(Interface):
    """The cluster's automatic pruning (``queues.retention_state``): the
    lease of the one dispatcher pruning now, the pass under way and the
    last one finished. Written by the lease's holder only, except when a
    dispatcher takes the lease: then two taking it at once conflict and
    one wins."""

    holder = Attribute("The UUID of the dispatcher holding the lease, or None.")
    renewed = Attribute("The holder's time of its last batch, or None.")
    next_pass = Attribute("When the next pass begins (aware UTC), or None.")
    current = Attribute(
        "The pass under way, or None: {'started', 'by' (a dispatcher UUID), "
        "'queues': {queue name: {'succeeded', 'failed', 'kept'}}}, the jobs "
        "removed (and kept, being parts of unfinished jobs) so far."
    )
    last = Attribute(
        "The last pass finished, or None: as ``current``, with 'ended' and "
        "'removed' (the jobs removed in all)."
    )

    def held_by_other(holder, now, tid=None):
        """Whether a dispatcher other than ``holder`` holds the lease: it
        wrote this state less than zasync.retention.LEASE_SECONDS ago,
        judged on the storage's time (``tid``: the latest transaction seen)
        or, when the storage does not tell, on ``now``."""


class IDispatcher(Interface):
    """Runs jobs in this process: claims them for its agents, runs each in a
    thread with its own connection and transaction manager, heartbeats, and
    recovers the jobs of dead peers.

    Up to ``config.group_commit`` short plain jobs of one thread (no
    environment, callbacks, quota or deadline, never interrupted, their
    callable under ``config.group_commit_window`` on average) commit in one
    transaction, each in a savepoint of its own: a job that raises loses
    only its own writes; the batch commits or aborts whole, and a batch
    that cannot commit, or whose job touched the transaction itself, is
    aborted and its jobs run again alone.

    Start one with :func:`zasync.start`.
    """

    uuid = Attribute("This process's dispatcher UUID (str).")
    db = Attribute("The ZODB database it serves.")
    queue_names = Attribute("Names of the queues it serves.")
    running = Attribute("True between start and stop.")
    agent_size = Attribute(
        "The size its process set for its agents, or None: it follows the "
        "agent sizes kept in each queue (IAgentSettings)."
    )
    agent_size_source = Attribute(
        "Where agent_size came from ('zope.conf', 'command line', "
        "'agent_size argument'), or None."
    )
    agent_sizes = Attribute(
        "{queue name: (size, source)}: the size of its agent in each queue it "
        "serves and where that size comes from (its process, a dispatcher or "
        "cluster setting, the built-in default), as registered and followed "
        "since. For display; empty until it started."
    )
    config = Attribute(
        "Its options: a zasync.config.DispatcherConfig (with the UUID in use)."
    )
    clock_offset = Attribute(
        "Seconds its rounds add to its clock to decide due and expired jobs: "
        "the storage's time less its clock, measured at its heartbeat "
        "commits, when they differ by more than a second; else 0."
    )
    last_round_started = Attribute(
        "time.monotonic() when its loop last started a round (None before "
        "the first): how long it has been quiet."
    )
    stats = Attribute(
        "Counters since it was made (a collections.Counter, read-only for "
        "others): 'completed', 'failed' and 'retried' jobs, 'conflicts' and "
        "'disconnects' (transactions lost to a conflict or to a lost storage "
        "server, and tried again), 'storage_errors' (storage errors its "
        "worker threads met: a full disk, an unreadable record; the jobs "
        "were postponed), 'rounds' (loop transactions committed), "
        "'judgements' (heartbeat rounds that judged peers), 'stalls' (rounds "
        "after a stall of the loop, which judged no one), 'peers declared "
        "dead', 'timed_out' (jobs failed at their time limit, among the "
        "'failed' or 'retried'), and the postponements of jobs (put back "
        "for later, their attempt not counted) by cause: 'postponed_conflict', "
        "'postponed_disconnect', 'postponed_storage_error'. "
        "A counter that never counted is missing (0). zasync worker logs "
        "them when it stops. Observers (IDispatcherObserver) see each count."
    )

    def wake():
        """Make an idle dispatcher look for work now (called after commits
        that queued work in this process)."""

    def stop(timeout=30):
        """Stop claiming, let running jobs finish for up to ``timeout``
        seconds, put back the rest, and deregister. Returns True if all
        running jobs finished in time."""


class IDispatcherObserver(Interface):
    """Told what the dispatchers of this process do, for metrics: add one
    with :func:`zasync.dispatcher.add_observer`.

    Its methods are called in the dispatchers' threads (the loop, the worker
    threads), after the fact and outside any transaction; they must be quick
    and must not block, since a job's thread waits for them. What they raise
    is logged (once per kind) and otherwise ignored.
    """

    def counted(what, n):
        """A dispatcher added ``n`` to its counter ``what`` (see
        IDispatcher.stats)."""

    def attempt_ended(outcome, pickup, duration):
        """An attempt of a job claimed from a queue (not a callback) ended,
        and its outcome was committed. ``outcome`` is 'succeeded',
        'failed' (for good) or 'retried' (to be tried again later);
        ``pickup`` the seconds from when the attempt could have started
        (the job's queue time, or its begin_after if later) to when it did,
        ``duration`` the seconds from its start to its end (by the clock of
        the dispatcher, which may differ from that of the process that
        queued it: then pickup is off by the difference)."""


class ISteps(Interface):
    """The module ``zasync.steps``: a long job over many items, done in
    chunks that commit one by one, and that goes on where it stopped.

    Code running in a job calls ``zasync.steps.run(items, process)``
    instead of looping over the items itself. Each chunk (``every`` items,
    or fewer once ``seconds`` passed) calls ``process(item)`` for its
    items, stores the cursor (where the next chunk starts) and the counts
    on the job (IJob.record_steps), and commits: the chunk's work and its
    cursor commit together, in one transaction, so each item's effect is
    committed exactly once. A worker killed mid-way loses only the chunk it
    was doing; the job is recovered as any interrupted job (IRetryPolicy.
    interrupted) and its next run starts at the stored cursor, not at the
    first item. A ConflictError (or another transient error) in a chunk
    aborts that chunk only and does it again, after a growing pause, up to
    ``tries`` times; then it is raised, and the dispatcher runs the job
    again later, from the cursor. A chunk finds out when the job is no
    longer its worker's (recovered by a peer, cancelled, put back by a
    stopping dispatcher) and raises JobTakenBack, committing nothing more.
    A committed chunk sets the job's ``interruptions`` back to 0 (see
    IJob.record_steps): the retry policy's bound on interruptions counts
    only those after the last chunk, so a long job killed at every deploy
    is not failed as long as each of its runs gets work done.

    Chunks commit only when a dispatcher runs the job alone
    (zasync.local.own_transaction_manager()); a job called directly or
    inline, or sharing a transaction with others (group commit: a job with
    a cursor never does), does all its items in the transaction it is in,
    still recording the state. What the job did before ``run`` commits
    with the first chunk's start; what it does after commits with its
    outcome. In Plone, the job keeps its user and its site across the
    chunks' commits.
    """

    def run(
        items,
        process,
        every=100,
        seconds=None,
        key=None,
        total=None,
        name="items",
        clock=None,
        tries=10,
    ):
        """Call ``process(item)`` for each item, in chunks that commit
        their work and the cursor together; return the final state (a dict,
        as in IJob.steps). Only in a job (else NotInJobError).

        ``items`` is either a sequence (``len`` and slicing; a list of ids
        or paths passed as the job's argument): the cursor is the position
        of the next item, and ``total`` its length; or a function
        ``fetch(after, limit)`` giving, in a stable order, up to ``limit``
        items that come after the cursor ``after`` (None at the start),
        and none once all are done: the cursor is ``key(item)`` of the last
        item done (the item itself without ``key``), a value that may be
        stored (a string, a number, a tuple of them), and ``total`` (how
        many in all, for progress) may be given. The job's arguments must
        give the same items, in the same order, when it runs again.

        A chunk ends after ``every`` items (at least 1), or after the item
        during which ``seconds`` passed since it began (by ``clock()``,
        ``time.monotonic`` by default). After each commit the job's progress
        (zasync.local.set_progress) says how many items are done, when the
        total is known. ``name`` tells apart several runs in one job (a
        run whose state says ``finished`` returns at once).
        """

    def state(job, name="items"):
        """The state of ``job``'s run in steps called ``name`` (a copy of
        the dict in IJob.steps), or None."""

    def describe(state):
        """One line of text about a state: "1,000 of 2,000 items done in 10
        chunks, resumed from item 1,000 (run 2)"."""
