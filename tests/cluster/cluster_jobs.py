"""Job functions run by the ``zasync worker`` processes of the cluster tests.

The workers import this module by name (the tests put ``tests/cluster`` on
their PYTHONPATH), so everything here is a module-level function.
"""

import os
import signal
import time

from zasync import local


def mark(markers, key, seconds=0.0):
    """Record one committed run of job ``key`` in the ``markers`` BTree.

    The value is a tuple of one token per run, replaced (not mutated) by each
    run: two runs that commit one after the other leave two tokens, and two
    that commit at once change the same key of the same bucket, which BTree
    conflict resolution refuses, so one of them is retried and sees the
    other's token. The number of tokens is the number of committed runs.
    """
    if seconds:
        time.sleep(seconds)
    job = local.get_job()
    token = f"pid {os.getpid()} attempt {job.attempts} job {job.id}"
    markers[key] = markers.get(key, ()) + (token,)
    return key


def kill_my_worker():
    """A poison job: kills the process running it, every time."""
    os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(60)  # never reached: SIGKILL cannot be caught
    return "survived"


class _AnswerLost:
    """A resource manager that commits last and then says the storage server
    went away: the job's transaction is committed on the server, but the
    worker's commit raises ClientDisconnected, as when a ZEO server stops
    between committing a transaction and answering it."""

    def sortKey(self):
        return "~~~ zasync cluster tests: after every storage"

    def abort(self, txn):
        pass

    def tpc_begin(self, txn):
        pass

    def commit(self, txn):
        pass

    def tpc_vote(self, txn):
        pass

    def tpc_finish(self, txn):
        from ZEO.Exceptions import ClientDisconnected

        raise ClientDisconnected("the answer to tpc_finish was lost (simulated)")

    def tpc_abort(self, txn):
        pass


def mark_and_lose_the_answer(markers, key):
    """``mark``, in a transaction whose commit succeeds but raises
    ClientDisconnected in the worker."""
    import transaction

    transaction.get().join(_AnswerLost())
    return mark(markers, key)


_answers_lost = []


def lose_the_answer_of_a_claim(job):
    """An agent filter that accepts every job, and makes the first claim
    transaction of its process commit but raise ClientDisconnected in the
    dispatcher (see _AnswerLost)."""
    if not _answers_lost:
        _answers_lost.append(job.id)
        job._p_jar.transaction_manager.get().join(_AnswerLost())
    return True


_heartbeat_conflicts = []
INJECTED = "zasync cluster tests: ConflictError injected into a heartbeat round"


def conflict_once_in_a_heartbeat_round(job):
    """An agent filter that accepts no job (so it is asked at every round
    while a job is pending) and raises ConflictError once, in the first
    round of its process that stores a heartbeat."""
    if not _heartbeat_conflicts:
        for record in job.queue.dispatchers.values():
            if record.heartbeat._p_changed:
                _heartbeat_conflicts.append(record.uuid)
                import logging

                from ZODB.POSException import ConflictError

                logging.getLogger("cluster_jobs").warning(INJECTED)
                raise ConflictError(INJECTED)
    return False


def mark_in_steps(markers, keys, every, seconds_per_item=0.0):
    """Write the marker of each of ``keys`` in steps of ``every``
    (zasync.steps): a worker killed mid-way must leave each key marked
    exactly once when the job ends, wherever it ran again."""
    from zasync import steps

    def process(key):
        if seconds_per_item:
            # The job's own work, paced so that a kill lands mid-way; the
            # test waits on committed chunks, not on this.
            time.sleep(seconds_per_item)
        job = local.get_job()
        markers[key] = markers.get(key, ()) + (f"pid {os.getpid()} job {job.id}",)

    return steps.run(keys, process, every=every)
