"""serial() and parallel(): jobs made of jobs.

A composite job is claimed like any other, but it takes no thread and no
quota slot: when claimed it queues its children (one at a time for serial,
all at once for parallel) and waits in the queue's waiting index. Each
child's completion advances it; when all are done its result is
``postprocess(*children)`` (run as a job of its own) or the tuple of
children. Children run whether or not earlier ones failed; look at each
child's ``result`` (a Failure if it failed).
"""

from zasync.job import Job
from zasync.status import COMPLETED, NEW
from zasync.storable import check_callable


class _Composite(Job):
    is_composite = True
    children_finished = False
    _postprocess = None

    def __init__(self, *jobs, postprocess=None):
        if not jobs:
            raise ValueError(f"{type(self).__name__.lower()}() needs at least one job")
        children = tuple(j if isinstance(j, Job) else Job(j) for j in jobs)
        for child in children:
            if child.status != NEW or child.queue is not None:
                raise ValueError(f"{child!r} is already queued; pass new jobs")
        if postprocess is not None:
            check_callable(postprocess, "postprocess")
        super().__init__(_composite_marker)
        self.callable_name = f"{type(self).__name__.lower()}({len(children)} jobs)"
        self.children = children
        for child in children:
            child.parent = self
            child.role = "child"
        self._postprocess = postprocess

    @property
    def lane_quota_names(self):
        """The parent waits in the lane of no quota; its quota names are
        passed on to children that name none."""
        return ()

    def _put_child(self, child, queue):
        queue.put_sub_job(
            child, self, quota_names=child.quota_names or self.quota_names
        )

    def start(self, queue, now):
        """Claimed: queue the first children and wait for them."""
        self.begin_attempt(now)
        queue.wait_for_sub_jobs(self)
        self.start_children(queue)

    def sub_job_done(self, sub_job, queue, now):
        if sub_job.role == "child":
            if self.children_finished:
                # Children that finish together are reconciled one by one,
                # each seeing all done: advance only once.
                return
            if all(child.status == COMPLETED for child in self.children):
                self.children_finished = True
                self._children_done(queue, now)
            else:
                self.child_done(queue)
        elif sub_job.role == "postprocess":
            self.record_outcome(sub_job.result, now)
            self.resume_callbacks(queue, now)
        else:
            super().sub_job_done(sub_job, queue, now)

    def _children_done(self, queue, now):
        if self._postprocess is not None:
            job = Job(self._postprocess, *self.children)
            job.role = "postprocess"
            queue.put_sub_job(job, self, quota_names=())
        else:
            self.record_outcome(self.children, now)
            self.resume_callbacks(queue, now)

    def invoke(self, extra_args=(), extra_kwargs=None, conclude=None):
        # job() called directly: run the children here, in order.
        for child in self.children:
            if child.status != COMPLETED:
                child()
        if self._postprocess is not None:
            result = self._postprocess(*self.children)
        else:
            result = self.children
        return result if conclude is None else conclude(result)


def _composite_marker():
    """Stands in as the callable of serial and parallel jobs."""
    raise RuntimeError("a serial/parallel job is run by its queue, not called")


class Serial(_Composite):
    """Children run one after the other, in order."""

    def start_children(self, queue):
        self._put_child(self.children[0], queue)

    def child_done(self, queue):
        for child in self.children:
            if child.status == NEW and child.queue is None:
                self._put_child(child, queue)
                return


class Parallel(_Composite):
    """Children run at once, as far as agents and quotas allow."""

    def start_children(self, queue):
        for child in self.children:
            self._put_child(child, queue)

    def child_done(self, queue):
        pass


def serial(*jobs, postprocess=None):
    """A job that runs ``jobs`` (jobs or callables) one after the other."""
    return Serial(*jobs, postprocess=postprocess)


def parallel(*jobs, postprocess=None):
    """A job that runs ``jobs`` (jobs or callables) at the same time."""
    return Parallel(*jobs, postprocess=postprocess)
