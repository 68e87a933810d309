"""Jobs that wait for other jobs (IQueue.put's ``depends_on``).

A job put with dependencies that have not all completed is WAITING: it is
in its queue's waiting index (with serial/parallel parents), in no lane
and no inbox, so it holds no thread and no quota slot. The queue's
dependents index maps ``(dependency id, dependent id)`` to the dependent;
when a dependency's completion is recorded (Queue._record_completion, in
the dispatcher's transaction that indexes it) its dependents are counted
down, failed or left waiting, as their policy says, and a dependent whose
last dependency completed enters the run order in that transaction.

Conflicts, and why nothing is lost:

- Every completion that counts a dependent down writes the dependent
  (its ``waiting_for``). Two dependencies of one job completing at once on
  two dispatchers write the same job: one transaction gets a ConflictError
  and its round is tried again, seeing the other's count. So the last
  one is always seen, by one of them only.
- A put reads its dependencies' status and registers in the dependents
  index. So that a dependency completing meanwhile cannot miss the
  registration, the put asks ZODB to check at commit that each dependency
  it saw unfinished is still as it read it (``Connection.readCurrent``):
  if it changed (claimed, run, completed), the put's transaction gets a
  ConflictError and is tried again (a web request is retried by Zope),
  and then sees the new status. Only the put may conflict, never the
  dependency's worker.
- Puts insert distinct keys in the dependents index and the waiting index,
  which BTrees merge (but for a bucket split, which a retry settles).
"""

from zasync.exceptions import DependencyFailed, JobCancelled
from zasync.failure import failure_from
from zasync.job import Job
from zasync.status import COMPLETED, NEW, WAITING

#: What a job does when a job it depends on fails (on_dependency_failure).
RUN = "run"  # it runs anyway, once all have completed
FAIL = "fail"  # it fails at once, with a DependencyFailed naming that job
WAIT = "wait"  # it waits for a retry of that job (zasync retry) to succeed
POLICIES = (RUN, FAIL, WAIT)

# The largest job id (ids fit a signed 64-bit integer).
_MAX_ID = 2**63 - 1


def _name(job):
    return f"job {job.id} ({job.callable_name})"


def check(queue, job, depends_on, on_failure):
    """The dependencies of ``job`` to be put in ``queue``, checked: a tuple
    of distinct queued jobs of ``queue`` (empty for None). Raises TypeError
    or ValueError saying what to fix; changes nothing."""
    if on_failure not in POLICIES:
        raise ValueError(
            f"on_dependency_failure must be one of {', '.join(map(repr, POLICIES))}, "
            f"not {on_failure!r}"
        )
    if depends_on is None:
        return ()
    if isinstance(depends_on, Job):
        depends_on = (depends_on,)
    try:
        given = list(depends_on)
    except TypeError:
        raise TypeError(
            f"depends_on must be a list of queued jobs, not {depends_on!r}"
        ) from None
    found = []
    for position, dependency in enumerate(given, 1):
        if not isinstance(dependency, Job):
            raise TypeError(
                f"depends_on must hold zasync.Job objects (as put() returns "
                f"them), not {dependency!r} (item {position})"
            )
        if dependency is job:
            raise ValueError(f"{_name(job)} cannot depend on itself")
        dependency.forget_aborted_put()
        if dependency.status == NEW or dependency.queue is None:
            raise ValueError(
                f"{_name(dependency)} in depends_on is not queued (status "
                f"{dependency.status}): put it in the queue first, in this "
                f"transaction or an earlier one"
            )
        if dependency.queue is not queue:
            raise ValueError(
                f"{_name(dependency)} in depends_on is in queue "
                f"{dependency.queue.name!r}, not {queue.name!r}: a job can only "
                f"depend on jobs of its own queue"
            )
        if queue.get(dependency.id) is not dependency:
            raise ValueError(
                f"{_name(dependency)} in depends_on is not held by queue "
                f"{queue.name!r} any more (removed or pruned)"
            )
        if dependency not in found:
            found.append(dependency)
    _refuse_cycle(job, found)
    return tuple(found)


def _refuse_cycle(job, dependencies):
    """ValueError if ``job`` is among what ``dependencies`` wait for,
    directly or not: then none could ever run."""
    seen = set()
    todo = [(dependency, (dependency,)) for dependency in dependencies]
    while todo:
        current, path = todo.pop()
        if current is job:
            chain = " -> ".join(_name(each) for each in (job, *path))
            raise ValueError(f"depends_on would make a cycle: {chain}")
        if id(current) in seen or current.status != WAITING:
            continue
        seen.add(id(current))
        waiting = set(current.waiting_for)
        for dependency in current.depends_on:
            if dependency.id in waiting or dependency is job:
                todo.append((dependency, (*path, dependency)))


def _failure(job, dependency, what):
    return failure_from(
        DependencyFailed(f"{_name(job)} did not run: {_name(dependency)} {what}")
    )


def _failed_text(dependency):
    failure = dependency.result
    if failure.check(JobCancelled):
        return f"was cancelled ({failure.value})"
    return f"failed ({failure.type_name}: {failure.value})"


def decision(dependency, on_failure):
    """What a completed dependency means for a job waiting for it:
    'done' (counts as done), 'fail' or 'wait'."""
    if not dependency.failed or on_failure == RUN:
        return "done"
    if on_failure == WAIT and not dependency.result.check(JobCancelled):
        return "wait"
    return "fail"


def hold(queue, job, dependencies, on_failure, now):
    """Make ``job`` (PENDING, just put, out of the run order) wait for
    ``dependencies``, or fail it if one failed already and its policy says
    so. Returns False if it may enter the run order at once (all have
    completed, or failed where that does not matter)."""
    job.depends_on = dependencies
    job.on_dependency_failure = on_failure
    waiting = []
    for dependency in dependencies:
        if dependency.status == COMPLETED:
            outcome = decision(dependency, on_failure)
            if outcome == "fail":
                fail_dependent(
                    queue, job, _failure(job, dependency, _failed_text(dependency)), now
                )
                return True
            if outcome == "done":
                continue
        else:
            # See the module docstring: a change before commit conflicts.
            jar = dependency._p_jar
            if jar is not None and dependency._p_oid is not None:
                jar.readCurrent(dependency)
        waiting.append(dependency)
    if not waiting:
        return False
    job.wait_for(dependencies, [each.id for each in waiting], on_failure)
    queue._waiting[job.id] = job
    index = queue._dependents_index()
    for dependency in waiting:
        index[(dependency.id, job.id)] = job
    return True


def _forget(queue, job):
    """Take a waiting job out of the dependents index."""
    index = queue._dependents
    if index is not None:
        for dependency_id in job.waiting_for:
            index.pop((dependency_id, job.id), None)


def _entries(queue, dependency_id):
    index = queue._dependents
    if not index:
        return []
    return list(index.items(min=(dependency_id, 0), max=(dependency_id, _MAX_ID)))


def release(queue, job, now):
    """A waiting job's dependencies are done: into the run order."""
    _forget(queue, job)
    queue._waiting.pop(job.id, None)
    job.stop_waiting()
    queue._enter_run_order(job)


def fail_dependent(queue, job, failure, now):
    """Complete a waiting (or just put) job with ``failure``, without
    running it; its callbacks run, its own dependents follow suit."""
    _forget(queue, job)
    queue._waiting.pop(job.id, None)
    queue._part(queue._part_of(job.id)).jobs[job.id] = job
    job.fail(failure, now)
    job.resume_callbacks(queue, now)


def completed(queue, dependency, now):
    """``dependency``'s completion was recorded: advance its dependents."""
    for key, job in _entries(queue, dependency.id):
        if job.status != WAITING or dependency.id not in job.waiting_for:
            del queue._dependents[key]
            continue
        outcome = decision(dependency, job.on_dependency_failure)
        if outcome == "wait":
            continue  # for a retry (see move), or until cancelled
        if outcome == "fail":
            what = _failed_text(dependency)
            fail_dependent(queue, job, _failure(job, dependency, what), now)
            continue
        del queue._dependents[key]
        if not job.dependency_done(dependency.id):
            release(queue, job, now)


def removed(queue, dependency, now):
    """``dependency`` left the queue (removed, pulled, pruned, discarded):
    the jobs still waiting for it can never run; they fail."""
    if dependency.status == WAITING:
        _forget(queue, dependency)
    for key, job in _entries(queue, dependency.id):
        del queue._dependents[key]
        if job.status == WAITING and dependency.id in job.waiting_for:
            fail_dependent(
                queue,
                job,
                _failure(job, dependency, f"was removed from queue {queue.name!r}"),
                now,
            )


def dependents(queue, job_id):
    """The jobs waiting for the job ``job_id``, oldest first."""
    return [
        job
        for _, job in _entries(queue, job_id)
        if job.status == WAITING and job_id in job.waiting_for
    ]


def move(queue, job, retry):
    """Jobs waiting for the failed ``job`` wait for ``retry`` instead."""
    moved = []
    for key, dependent in _entries(queue, job.id):
        del queue._dependents[key]
        if dependent.status == WAITING and job.id in dependent.waiting_for:
            dependent.replace_dependency(job, retry)
            queue._dependents[(retry.id, dependent.id)] = dependent
            moved.append(dependent)
    return moved
