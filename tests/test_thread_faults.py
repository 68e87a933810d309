"""Threads that die must not stop the work (issue 14): a job's
BaseException is its Failure and keeps its worker thread; a worker thread
that dies anyway is replaced and its job recovered; storage errors (a full
disk, a missing or unreadable record) postpone jobs instead of failing them.

Real dispatchers on real FileStorages; the full disk is a real one (a small
tmpfs, filled with a file)."""

import contextlib
import errno
import os
import subprocess
import uuid

import pytest
import transaction
import ZODB
import ZODB.FileStorage
from ZODB.POSException import ConflictError, POSKeyError
from ZODB.utils import p64

import jobfuncs
import zasync
from zasync import clock
from zasync.retry import RetryWithDelay
from zasync.testing import wait_for_all_jobs, wait_for_result, wait_for_start
from zasync.transact import storage_error

TIMEOUT = 10


def _token(label):
    return f"{label}-{uuid.uuid4()}"


def _pool_is_sound(dispatcher, threads):
    """The pool has ``threads`` live threads, all idle, and no job in flight."""
    pool = dispatcher.pool
    live = [thread for thread in pool._threads if thread.is_alive()]
    return (
        pool.in_flight == 0
        and len(live) == len(pool._threads) == threads
        and pool._idle_threads == threads
    )


# -- a job's BaseException -------------------------------------------------------


@pytest.mark.parametrize("name", sorted(jobfuncs.BASE_EXCEPTIONS))
def test_base_exception_of_a_job_is_its_failure_and_keeps_the_thread(
    queue, start_dispatcher, name
):
    dispatcher = start_dispatcher(agent_size=1)
    job = queue.put(zasync.Job(jobfuncs.raise_base, name))
    transaction.commit()
    failure = wait_for_result(job, TIMEOUT)
    assert isinstance(failure, zasync.Failure)
    assert failure.check(jobfuncs.BASE_EXCEPTIONS[name])
    assert "raised by the job" in failure.getErrorMessage()
    assert "jobfuncs.py" in failure.getTraceback()
    assert (job.attempts, job.interruptions) == (1, 0)
    # The same thread runs the next job: it did not die, nor count as idle
    # while dead.
    (thread,) = dispatcher.pool._threads
    after = queue.put(zasync.Job(jobfuncs.add, 1, 2))
    transaction.commit()
    assert wait_for_result(after, TIMEOUT) == 3
    assert dispatcher.pool._threads == [thread]
    assert thread.is_alive()
    assert clock.wait_until(lambda: _pool_is_sound(dispatcher, 1), TIMEOUT)
    assert dispatcher.stats["failed"] == 1


def test_base_exception_of_a_job_goes_through_its_retry_policy(queue, start_dispatcher):
    start_dispatcher(agent_size=1)
    policy = RetryWithDelay(
        delay=0, max_attempts=3, jitter=0, retry_on=(KeyboardInterrupt,)
    )
    job = queue.put(
        zasync.Job(
            jobfuncs.raise_base_first, _token("ki"), "KeyboardInterrupt", "done"
        ),
        retry_policy=policy,
    )
    transaction.commit()
    assert wait_for_result(job, TIMEOUT) == "done"
    assert (job.attempts, job.interruptions) == (2, 0)


def test_a_clean_stop_after_a_base_exception_leaves_nothing_running(
    queue, start_dispatcher
):
    dispatcher = start_dispatcher(agent_size=1)
    job = queue.put(zasync.Job(jobfuncs.raise_base, "SystemExit"))
    transaction.commit()
    assert wait_for_result(job, TIMEOUT).check(SystemExit)
    # Nothing is left in flight: the stop does not wait, and does not put
    # the job back to do the same at the next start.
    assert dispatcher.stop(TIMEOUT)
    transaction.begin()
    assert job.failed and job.attempts == 1
    assert not queue.unsettled()


def test_base_exception_in_a_batch_is_the_job_s_failure(conn, queue, start_dispatcher):
    from test_group_commit import run_together, warmed_up

    dispatcher, tree = warmed_up(conn, queue, start_dispatcher)
    warm = queue.put(zasync.Job(jobfuncs.record_then_raise, tree, "warm"))
    transaction.commit()
    assert wait_for_result(warm, TIMEOUT) == "warm"
    jobs = [zasync.Job(jobfuncs.record_then_raise, tree, f"k{n}") for n in range(4)]
    exiting = zasync.Job(jobfuncs.record_then_raise, tree, "exit", "SystemExit")
    jobs.insert(2, exiting)
    run_together(conn, queue, dispatcher, jobs)
    assert exiting.failed and exiting.result.check(SystemExit)
    assert "exit" not in tree  # its writes were rolled back, the others kept
    for n in range(4):
        assert tree[f"k{n}"] == ((1, True),), list(tree.items())
    assert clock.wait_until(lambda: _pool_is_sound(dispatcher, 1), TIMEOUT)


# -- a worker thread that dies anyway ----------------------------------------------


def test_dead_worker_thread_is_replaced_and_its_job_recovered(queue, start_dispatcher):
    dispatcher = start_dispatcher(agent_size=1)
    (first,) = _threads_after_one_job(queue, dispatcher)
    # The job fails once; its (broken) policy raises SystemExit outside the
    # job, which ends the worker thread.
    job = queue.put(
        zasync.Job(jobfuncs.fail_first, _token("policy"), 1, "second try"),
        retry_policy=jobfuncs.PolicyKillsThread(),
    )
    transaction.commit()
    assert wait_for_result(job, TIMEOUT) == "second try"
    # Recovered through its policy, as an interruption; not failed.
    assert (job.attempts, job.interruptions) == (2, 1)
    # A new thread took the dead one's place; the counts stayed right, so
    # the agent's one thread still runs jobs.
    assert clock.wait_until(lambda: _pool_is_sound(dispatcher, 1), TIMEOUT)
    assert clock.wait_until(lambda: not first.is_alive(), TIMEOUT)
    assert dispatcher.pool._threads != [first]
    later = [queue.put(zasync.Job(jobfuncs.add, n, n)) for n in range(3)]
    transaction.commit()
    assert [wait_for_result(j, TIMEOUT) for j in later] == [0, 2, 4]
    assert clock.wait_until(lambda: _pool_is_sound(dispatcher, 1), TIMEOUT)


def _threads_after_one_job(queue, dispatcher):
    job = queue.put(zasync.Job(jobfuncs.add, 0, 0))
    transaction.commit()
    assert wait_for_result(job, TIMEOUT) == 0
    assert clock.wait_until(lambda: _pool_is_sound(dispatcher, 1), TIMEOUT)
    return dispatcher.pool._threads


# -- storage errors -------------------------------------------------------------------


def test_missing_record_postpones_the_job_instead_of_failing_it(
    queue, start_dispatcher
):
    dispatcher = start_dispatcher(agent_size=1)
    job = queue.put(zasync.Job(jobfuncs.missing_record_first, _token("pos"), "ok"))
    transaction.commit()
    assert wait_for_result(job, TIMEOUT) == "ok"
    assert (job.attempts, job.interruptions) == (1, 0)
    assert job.postponements >= 1
    assert dispatcher.stats["storage_errors"] >= 1
    assert not dispatcher.stats["failed"]


def _damage_version_length(storage, oid):
    """Make the current record of ``oid`` unreadable the way a damaged
    FileStorage is ("Non-zero version length"); returns how to undo it."""
    pos = storage._lookup_pos(oid)
    where = pos + 32  # the data header: oid, tid, prev, tloc, then vlen
    with open(storage._file_name, "r+b") as file:
        file.seek(where)
        good = file.read(2)
        file.seek(where)
        file.write(b"\x00\x01")
    storage._files.flush()  # no read buffer holds the good bytes

    def repair():
        with open(storage._file_name, "r+b") as file:
            file.seek(where)
            file.write(good)
        # The storage's read buffers may still hold the damaged bytes.
        storage._files.flush()

    return repair


def test_storage_error_tells_the_storage_s_errors_from_the_job_s(db, conn):
    victim = conn.root()["victim"] = jobfuncs.Counter()
    transaction.commit()
    oid = victim._p_oid
    repair = _damage_version_length(db.storage, oid)
    try:
        with pytest.raises(ValueError, match="Non-zero version length") as raised:
            db.storage.load(oid)
    finally:
        repair()
    assert storage_error(raised.value) == "ValueError"
    with pytest.raises(POSKeyError) as missing:
        conn.get(p64(2**62))
    assert storage_error(missing.value) == "POSKeyError"
    # The same kinds raised by a job's own code are the job's.
    for own in (ValueError("bad input"), OSError(errno.ENOENT, "no such file")):
        try:
            raise own
        except Exception as exc:
            assert storage_error(exc) is None
    assert storage_error(SystemExit("bye")) is None
    assert storage_error(ConflictError()) is None


def test_unreadable_record_postpones_the_job_until_it_reads_again(
    db, conn, queue, start_dispatcher
):
    victim = conn.root()["victim"] = jobfuncs.Counter()
    victim.value = 42
    transaction.commit()
    repair = _damage_version_length(db.storage, victim._p_oid)
    try:
        dispatcher = start_dispatcher(agent_size=1)
        job = queue.put(zasync.Job(jobfuncs.read_value, victim))
        transaction.commit()
        # The job reads the damaged record (and is postponed, or failed).
        clock.wait_until(
            lambda: dispatcher.stats["storage_errors"] or dispatcher.stats["failed"],
            TIMEOUT,
        )
    finally:
        repair()
    assert wait_for_result(job, TIMEOUT) == 42
    assert (job.attempts, job.interruptions) == (1, 0)
    assert job.postponements >= 1
    assert dispatcher.stats["storage_errors"] >= 1


def _cannot(message):
    """Skip here, but fail under CI, which must run every test."""
    if os.environ.get("CI"):
        pytest.fail(f"{message} (CI needs it)")
    pytest.skip(message)


@contextlib.contextmanager
def _small_disk(path, size="3m"):
    """A tmpfs of ``size`` mounted at ``path`` (skips if it cannot be,
    except under CI, where it fails)."""
    path.mkdir()
    try:
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except FileNotFoundError:
        _cannot("no mount command: cannot make a small disk to fill")
    if mounted.returncode:
        _cannot(
            "cannot mount a small tmpfs to fill (this test needs root, or "
            f"CAP_SYS_ADMIN): {mounted.stderr.strip()}"
        )
    try:
        yield path
    finally:
        if subprocess.run(["umount", str(path)], timeout=30).returncode:
            subprocess.run(["umount", "-l", str(path)], timeout=30)


def _fill(disk):
    """Fill the file system of ``disk`` with a file; returns its path."""
    filler = disk / "filler"
    chunk = b"\0" * 65536
    with open(filler, "wb", buffering=0) as file:
        while True:
            try:
                file.write(chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                return filler


class _RollbackSafeFileStorage(ZODB.FileStorage.FileStorage):
    """ZODB's FileStorage, whose rollback of a commit stopped by a full disk
    cannot fail.

    FileStorage.tpc_vote truncates the partly written transaction; the
    truncate flushes the file's write buffer first, which fails on the full
    disk again, and the bytes left in the buffer are written by a later
    commit, damaging records (about one run in twenty of this test). The
    test is of zasync's handling of the errors, not of that flaw of the
    storage (see the caution in docs/concepts.md): this storage drops the
    buffer by reopening its file."""

    def tpc_vote(self, transaction):
        try:
            return super().tpc_vote(transaction)
        except OSError:
            with self._lock:
                fresh = open(self._file_name, "r+b")  # noqa: SIM115 (kept open)
                old, self._file = self._file, fresh
                old.raw.close()  # its buffer can no longer be written
                with contextlib.suppress(ValueError, OSError):
                    old.close()
                self._file.truncate(self._pos)
            raise


def test_full_disk_postpones_jobs_that_run_once_space_is_freed(tmp_path):
    jobs_count = 4
    with _small_disk(tmp_path / "disk") as disk:
        disk_file = str(disk / "Data.fs")
        db = ZODB.DB(_RollbackSafeFileStorage(disk_file))
        conn = db.open()
        dispatcher = None
        try:
            root = conn.root()
            queue = zasync.get_queues(conn)[""]
            # Make the storage's temporary file large enough once, so that
            # only the data file needs room when the disk is full.
            root["warm"] = jobfuncs.Counter()
            root["warm"].payload = b"w" * 200_000
            transaction.commit()
            name = _token("disk")
            counters, jobs = [], []
            for index in range(jobs_count):
                counter = root[f"counter{index}"] = jobfuncs.Counter()
                counters.append(counter)
                job = zasync.Job(jobfuncs.block_then_add, name, counter, 20_000)
                jobs.append(queue.put(job))
            transaction.commit()
            dispatcher = zasync.start(db, poll_interval=0.05, agent_size=jobs_count)
            for job in jobs:
                wait_for_start(job, TIMEOUT)
            filler = _fill(disk)
            jobfuncs.events[name].set()  # they commit on a full disk
            try:
                clock.wait_until(
                    lambda: (
                        dispatcher.stats["storage_errors"] >= jobs_count
                        or dispatcher.stats["failed"]
                    ),
                    TIMEOUT,
                )
            finally:
                filler.unlink()
            wait_for_all_jobs(conn, TIMEOUT)
            for job, counter in zip(jobs, counters, strict=True):
                assert not job.failed, job.result
                assert job.result == 1
                assert counter.value == 1  # its writes committed once
                assert (job.attempts, job.interruptions) == (1, 0)
                assert job.postponements >= 1
            assert not queue.set_aside_jobs
            assert not dispatcher.stats["failed"]
            assert dispatcher.stats["storage_errors"] >= jobs_count
            assert dispatcher.stats["completed"] == jobs_count
        finally:
            if dispatcher is not None:
                dispatcher.stop(5)
            transaction.abort()
            conn.close()
            db.close()
