"""The integer keys of a queue's indexes: run order and completion order.

A queue keeps its pending jobs in run order and its completed jobs newest
first, in BTrees keyed by single integers: a job's key is written and
compared often, and an integer pickles and compares far faster than a
tuple. Python integers have no size limit, so a key is a tuple packed into
bit fields, most significant first:

run order (a pending job's ``pending_key``)::

    | level (32 bits) | begin_after (52 bits) | job id (64 bits) |

    level = PRIORITY_LIMIT - priority: a higher priority has a lower level
    and runs first; inside a level, the job due first (earliest
    ``begin_after``, in microseconds since 1970, never negative), then the
    one that arrived first (ids grow with arrival). A job taken back from a
    dispatcher that died or stopped is filed with begin_after 0, before
    every other job of its level (see ``Job.enter_run_order(front=True)``).

completion order (a completed job's ``index_key``)::

    | TIME_MASK - ended (52 bits) | job id (64 bits) |

    the job that ended last has the smallest key, so an index iterates
    newest first; ``ended_before(cutoff)`` is where the jobs that ended
    before ``cutoff`` begin.

52 bits of microseconds last until the year 2112; ids (see
:func:`zasync.job.new_job_id`) fit a signed 64-bit integer.
"""

ID_BITS = 64
TIME_BITS = 52  # microseconds since 1970, good until the year 2112
LEVEL_SHIFT = ID_BITS + TIME_BITS
TIME_MASK = (1 << TIME_BITS) - 1
ID_MASK = (1 << ID_BITS) - 1
#: Priorities run from -PRIORITY_LIMIT to PRIORITY_LIMIT.
PRIORITY_LIMIT = 2**31 - 1


# -- run order ---------------------------------------------------------------


def run_order_key(priority, begin_us, job_id):
    """The run-order key of a pending job: priority (higher first), then
    ``begin_us`` (its ``begin_after`` in microseconds), then its id."""
    level = PRIORITY_LIMIT - priority  # higher priority, lower level, first
    return (level << LEVEL_SHIFT) | (max(begin_us, 0) << ID_BITS) | job_id


def level_of(key):
    """The priority level of a run-order key (lower runs first)."""
    return key >> LEVEL_SHIFT


def begin_of(key):
    """The ``begin_after`` microseconds of a run-order key."""
    return (key >> ID_BITS) & TIME_MASK


def level_end(key, now_us):
    """The largest key of ``key``'s priority level that is due at now_us."""
    return (level_of(key) << LEVEL_SHIFT) | (now_us << ID_BITS) | ID_MASK


def next_level(key):
    """The smallest key of the priority level after ``key``'s."""
    return (level_of(key) + 1) << LEVEL_SHIFT


def id_of(key):
    """The job id of a run-order key."""
    return key & ID_MASK


# -- completion order --------------------------------------------------------


def completion_key(ended_us, job_id):
    """The completed-index key of a job that ended at ``ended_us``
    (microseconds since 1970): newest first, then by id."""
    return ((TIME_MASK - ended_us) << ID_BITS) | job_id


def ended_before(cutoff_us):
    """The smallest completed-index key of a job that ended before
    ``cutoff_us``: ``index.items(min=ended_before(cutoff_us))`` are the jobs
    that ended before it, newest first."""
    cutoff_us = max(cutoff_us, 0)
    return (TIME_MASK - cutoff_us + 1) << ID_BITS


def ended_of(key):
    """The end time, in microseconds, of a completed-index key."""
    return TIME_MASK - (key >> ID_BITS)
