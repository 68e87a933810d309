"""Operations on the queues of a database: what an operator needs.

This is what the ``zasync status``, ``jobs``, ``job``, ``retry``,
``cancel``, ``set-aside``, ``discard``, ``prune``, ``settings``,
``quota``, ``agents``, ``recurring`` and ``mode``
commands do, without any command-line parsing, so that Python code (a
script, a Zope control panel) can do the same.

Reading functions take an IQueues (see :func:`read_queues`) and return
plain data: dicts and lists of str, int, float, bool, None and aware UTC
datetimes. :func:`retry_job` and :func:`cancel_job` change the queues in
the caller's current transaction (commit it, or use :func:`in_transaction`,
which retries conflicts); :func:`prune` runs transactions of its own, a
batch at a time. Anything that cannot be done as asked raises
:class:`AdminError`, whose message says why and what to do instead.

Job ids are ints here. They have 18 digits, more than a JSON number keeps
in JavaScript or jq (2**53): :func:`for_json` makes data ready for JSON,
with ids as strings.

Cluster-wide settings live with the queues, so every process and every
site of the database sees the same: the size of each quota (the quota
itself), and the agent sizes of dispatchers (see zasync.registry):
:func:`settings_report` shows them with where each comes from;
:func:`set_quota_size`, :func:`set_agent_size` and :func:`set_interval`
(the poll, ping and death intervals of dispatchers) change them in the
current transaction. :func:`retention_report` and :func:`set_retention`
do the same for how long each queue keeps its completed jobs (see
zasync.retention), and :func:`pruning_report` tells what the automatic
pruning did last.
"""

# The library, by subject; every public name is importable from here.
from zasync.admin.actions import (
    MAX_CONFLICTS,
    RetryOutcome,
    cancel_job,
    cancel_state,
    discard_job,
    in_transaction,
    pause_queue,
    pause_quota,
    request_cancel,
    resume_queue,
    resume_quota,
    retry_job,
    set_default_timeout,
)
from zasync.admin.location import (
    LOCATION_KEY,
    describe_location,
    queues_location,
    record_queues_location,
    unfinished_jobs,
)
from zasync.admin.pruning import (
    FAILED_KEEP_FACTOR,
    PRUNE_BATCH,
    prune,
)
from zasync.admin.recurring import (
    describe_recurring,
    pause_recurring,
    recurring_report,
    remove_recurring,
    resume_recurring,
    run_recurring,
)
from zasync.admin.reports import (
    RETRY_OF,
    STATUS_FILTERS,
    describe_job,
    find_jobs,
    get_job,
    job_summary,
    read_queues,
    select_queues,
    set_aside_report,
    status_report,
)
from zasync.admin.retention import (
    RETENTION_FIELDS,
    describe_retention,
    describe_value,
    pruning_report,
    queue_pruned,
    queue_retention,
)
from zasync.admin.settings import (
    interval_report,
    retention_report,
    set_agent_size,
    set_interval,
    set_intervals,
    set_quota_rate,
    set_quota_size,
    set_retention,
    settings_report,
)
from zasync.admin.text import (
    ARGUMENT_REPR_LIMIT,
    JSON_SAFE_INTEGER,
    VALUE_REPR_LIMIT,
    for_json,
    format_duration,
    format_period,
    parse_duration,
    parse_job_id,
    queue_label,
    queue_name,
)
from zasync.exceptions import (
    AdminError,
    JobCancelled,
    JobNotFound,
    NoQueues,
)
from zasync.registry import (
    DEFAULT_AGENT_SIZE,
    FROM_BUILT_IN,
    FROM_DISPATCHER_SETTING,
    FROM_QUEUE_DEFAULT,
)

__all__ = [
    "ARGUMENT_REPR_LIMIT",
    "AdminError",
    "DEFAULT_AGENT_SIZE",
    "FAILED_KEEP_FACTOR",
    "FROM_BUILT_IN",
    "FROM_DISPATCHER_SETTING",
    "FROM_QUEUE_DEFAULT",
    "JSON_SAFE_INTEGER",
    "JobCancelled",
    "JobNotFound",
    "LOCATION_KEY",
    "MAX_CONFLICTS",
    "NoQueues",
    "PRUNE_BATCH",
    "RETENTION_FIELDS",
    "RETRY_OF",
    "RetryOutcome",
    "STATUS_FILTERS",
    "VALUE_REPR_LIMIT",
    "cancel_job",
    "cancel_state",
    "describe_job",
    "describe_recurring",
    "describe_location",
    "describe_retention",
    "describe_value",
    "discard_job",
    "find_jobs",
    "for_json",
    "format_duration",
    "format_period",
    "get_job",
    "in_transaction",
    "interval_report",
    "job_summary",
    "parse_duration",
    "parse_job_id",
    "pause_queue",
    "pause_quota",
    "pause_recurring",
    "prune",
    "pruning_report",
    "queue_pruned",
    "queue_retention",
    "queue_label",
    "queue_name",
    "queues_location",
    "read_queues",
    "record_queues_location",
    "recurring_report",
    "remove_recurring",
    "resume_queue",
    "request_cancel",
    "resume_quota",
    "resume_recurring",
    "retention_report",
    "retry_job",
    "run_recurring",
    "set_default_timeout",
    "select_queues",
    "set_agent_size",
    "set_interval",
    "set_intervals",
    "set_aside_report",
    "set_quota_rate",
    "set_quota_size",
    "set_retention",
    "settings_report",
    "status_report",
    "unfinished_jobs",
]
