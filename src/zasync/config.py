"""The dispatcher's options and their defaults, each documented once, and
the one place that checks them.

:class:`DispatcherConfig` is what :func:`zasync.start` and
:class:`zasync.dispatcher.Dispatcher` are given (as keyword arguments),
what ``zasync worker`` makes of its command line and what the Plone
integration makes of ``<product-config zasync>``. Each front end reads its
own spelling of the options and lets this module check them, telling it
how its users spell them, so that an error names the option as they wrote
it::

    >>> DispatcherConfig(ping_interval=30, death_interval=20,
    ...                  names=COMMAND_LINE)
    Traceback (most recent call last):
    ...
    zasync.exceptions.ConfigurationError: --death-interval (20) must be longer ...

Also here: the few names that zasync and its tools must spell alike (the
default queue and its label, the agent's name, the line a worker prints
when it is up).
"""

import contextlib
import dataclasses
import datetime
import math
import typing
import uuid as uuidlib

from zasync import clock as clocklib
from zasync.exceptions import ConfigurationError

#: The name of the default queue: the empty string.
DEFAULT_QUEUE = ""

#: How people name the default queue (in commands, zope.conf, reports).
DEFAULT_QUEUE_LABEL = "default"

#: The name of the agent each dispatcher has in each queue it serves.
MAIN_AGENT = "main"

#: The start of the line a ``zasync worker`` logs once it is up: process
#: managers, tests and ``zasync cluster`` wait for it.
WORKER_READY = "zasync worker ready"

#: The agent size of a dispatcher that neither its process nor the
#: database gives one.
DEFAULT_AGENT_SIZE = 3


def queue_label(name):
    """How a queue is named to people: the default queue ('') is 'default'."""
    return DEFAULT_QUEUE_LABEL if name == DEFAULT_QUEUE else name


def queue_name(label):
    """The queue name for what a person typed: 'default' (or '') is ''."""
    return DEFAULT_QUEUE if label in (DEFAULT_QUEUE_LABEL, DEFAULT_QUEUE) else label


def check_agent_size(value, what="agent size"):
    """``value`` if it is a valid agent size (a whole number >= 0), else
    ValueError naming it ``what``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{what} must be a whole number >= 0, not {value!r}")
    return value


#: The intervals a process may set itself or follow from the cluster.
INTERVALS = ("poll_interval", "ping_interval", "death_interval")

#: How ``zasync worker`` spells the options (for error messages).
COMMAND_LINE = {
    "queues": "--queue",
    "agent_size": "--agent-size",
    "poll_interval": "--poll-interval",
    "ping_interval": "--ping-interval",
    "death_interval": "--death-interval",
    "group_commit": "--group-commit",
}


@dataclasses.dataclass(frozen=True)
class DispatcherConfig:
    """Every option of a dispatcher, with its default; checked when made.

    Give ``names`` (``{field: how your users spell it}``, e.g.
    :data:`COMMAND_LINE`) and ``where`` (a prefix such as
    ``"<product-config zasync>"``) to have errors name the options as
    they were given; neither is kept.
    """

    #: Names of the queues to serve (created if missing); a single name
    #: may be given as a string. The default queue is ``''``.
    queues: tuple = (DEFAULT_QUEUE,)
    #: Seconds an idle dispatcher waits before looking for work it was not
    #: woken for (commits in other processes, jobs becoming due); commits
    #: in this process wake it at once.
    poll_interval: float = 1.0
    #: Threads (jobs run at once) per queue. When given it wins over the
    #: sizes set in the database; None follows those (``zasync agents
    #: set``, else :data:`DEFAULT_AGENT_SIZE`) and their changes.
    agent_size: int | None = None
    #: Where an explicit ``agent_size`` came from, shown by ``zasync
    #: settings`` ("zope.conf", "command line"); ignored without one.
    #: Default: "agent_size argument".
    agent_size_source: str | None = None
    #: The dispatcher's UUID; None reads the file named by ZASYNC_UUID, or
    #: makes a new one (see :mod:`zasync.identity`).
    uuid: str | None = None
    #: ``filter(job)``: whether this process's agents take a job (a
    #: module-level function); None takes every job.
    agent_filter: typing.Callable | None = None
    #: Seconds between heartbeats.
    ping_interval: float = 30
    #: Heartbeat age (seconds) after which live peers declare the
    #: dispatcher dead and recover its jobs; longer than ping_interval.
    death_interval: float = 300
    #: Which of the intervals (poll, ping, death) the process sets itself,
    #: with where each comes from: ``(("ping_interval", "command line"),
    #: ...)``. Those win over the cluster-wide interval settings (see
    #: zasync.registry.IntervalSettings); the others follow them, with the
    #: values above as their defaults. Dispatcher(**options) and
    #: zasync.start() count the intervals given as arguments.
    interval_sources: tuple = ()
    #: ``clock()``: the time now, timezone-aware (tests give their own).
    clock: typing.Callable[[], datetime.datetime] = clocklib.utcnow
    #: In a multi-database setup, the name of the database holding the
    #: queues; None: the main one.
    database: str | None = None
    #: Seconds a round waits for more running jobs to finish, so that one
    #: commit reconciles several, and the least time between the starts of
    #: two rounds while work keeps coming, so that one round claims
    #: several jobs; 0 does neither.
    batch_window: float = 0.005
    #: Jobs claimed ahead per agent for threads about to finish, when jobs
    #: are short (see prefetch_below); 0 claims only for idle threads.
    prefetch: int = 16
    #: Jobs shorter than this (seconds, a moving average) are claimed ahead.
    prefetch_below: float = 0.05
    #: Group commit: at most this many short jobs of one thread commit in
    #: one transaction, each in a savepoint of its own (see the Guarantees
    #: in docs/concepts.md); 1 commits every job alone.
    group_commit: int = 8
    #: Group commit: a job joins a batch only if its callable took less
    #: than this (seconds, a moving average in this process), and a batch
    #: takes no more jobs once they worked this long in all, which bounds
    #: how long a result waits for its commit; 0 commits every job alone.
    group_commit_window: float = 0.02

    names: dataclasses.InitVar[dict | None] = None
    where: dataclasses.InitVar[str | None] = None

    def __post_init__(self, names, where):
        if isinstance(self.queues, str):
            object.__setattr__(self, "queues", (self.queues,))
        else:
            object.__setattr__(self, "queues", tuple(self.queues))
        if self.uuid is not None:
            with contextlib.suppress(ValueError):  # validate() names it
                object.__setattr__(self, "uuid", str(uuidlib.UUID(str(self.uuid))))
        object.__setattr__(
            self, "interval_sources", tuple(tuple(p) for p in self.interval_sources)
        )
        if self.agent_size is None:
            object.__setattr__(self, "agent_size_source", None)
        elif self.agent_size_source is None:
            object.__setattr__(self, "agent_size_source", "agent_size argument")
        self.validate(names, where)

    def validate(self, names=None, where=None):
        """Raise :class:`ConfigurationError` for the first option that
        cannot be used, named as ``names`` and ``where`` spell it."""
        spelled = dict(names or {})
        prefix = f"{where} " if where else ""

        def name(field):
            return prefix + spelled.get(field, field)

        def fail(message):
            raise ConfigurationError(message)

        for queue in self.queues:
            if not isinstance(queue, str):
                fail(f"{name('queues')} must be queue names (str), not {queue!r}")
        if not self.queues:
            fail(f"{name('queues')} must name at least one queue")
        if self.uuid is not None:
            try:
                uuidlib.UUID(str(self.uuid))
            except ValueError:
                fail(f"{name('uuid')} must be a UUID, not {self.uuid!r}")
        if self.agent_size is not None:
            try:
                check_agent_size(self.agent_size, name("agent_size"))
            except ValueError as exc:
                fail(str(exc))
        for field in ("poll_interval", "ping_interval", "death_interval"):
            value = getattr(self, field)
            if not _positive(value):
                fail(f"{name(field)} must be a number of seconds > 0, not {value!r}")
        if self.death_interval <= self.ping_interval:
            fail(
                f"{name('death_interval')} ({self.death_interval}) must be longer "
                f"than {spelled.get('ping_interval', 'ping_interval')} "
                f"({self.ping_interval}), or live dispatchers would be declared "
                f"dead: raise the one or lower the other"
            )
        for pair in self.interval_sources:
            if len(pair) != 2 or pair[0] not in INTERVALS:
                fail(
                    f"interval_sources must be (interval, source) pairs, the "
                    f"intervals one of {', '.join(INTERVALS)}; not {pair!r}"
                )
        for field in ("batch_window", "prefetch_below", "group_commit_window"):
            value = getattr(self, field)
            if not (_number(value) and value >= 0):
                fail(f"{name(field)} must be a number of seconds >= 0, not {value!r}")
        prefetch = self.prefetch
        if not isinstance(prefetch, int) or isinstance(prefetch, bool) or prefetch < 0:
            fail(f"{name('prefetch')} must be a whole number >= 0, not {prefetch!r}")
        group = self.group_commit
        if not isinstance(group, int) or isinstance(group, bool) or group < 1:
            fail(f"{name('group_commit')} must be a whole number >= 1, not {group!r}")
        if not callable(self.clock):
            fail(f"{name('clock')} must be callable, not {self.clock!r}")
        if self.agent_filter is not None and not callable(self.agent_filter):
            fail(f"{name('agent_filter')} must be callable, not {self.agent_filter!r}")
        if self.database is not None and not isinstance(self.database, str):
            fail(f"{name('database')} must be a database name, not {self.database!r}")
        return self

    def replace(self, **changes):
        """A copy with ``changes``, checked."""
        return dataclasses.replace(self, **changes)

    def interval_source(self, field):
        """Where the process's own ``field`` (an interval) comes from, or
        None if it follows the cluster-wide setting."""
        return dict(self.interval_sources).get(field)

    def with_sources_of(self, options, source):
        """A copy naming the intervals among ``options`` (the names a caller
        gave) as set by the process, from ``source`` (beside those named
        already), unless the caller gave interval_sources."""
        if "interval_sources" in options:
            return self
        given = {f: source for f in INTERVALS if f in options}
        if not given:
            return self
        sources = dict(self.interval_sources, **given)
        return self.replace(interval_sources=tuple(sources.items()))


def _number(value):
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
    )


def _positive(value):
    return _number(value) and value > 0


#: The defaults, for front ends that document them (``--help``).
DEFAULTS = DispatcherConfig()
