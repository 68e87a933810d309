"""What a queue knows of the dispatchers serving it: heartbeats, agents,
and the agent sizes set for the whole cluster.

How many threads a dispatcher's agent has in a queue is decided, in this
order, by:

1. the dispatcher's own process, when it sets its size explicitly
   (``zasync.start(agent_size=N)``, ``zasync worker --agent-size N``,
   ``<product-config zasync> threads N``): the process wins, and its record
   says where the size came from (``agent_size_source``);
2. a size set in the database for that dispatcher (its UUID) in that queue;
3. the queue's default agent size, set in the database for every
   dispatcher of the cluster;
4. DEFAULT_AGENT_SIZE.

The settings of 2 and 3 are kept in the queue's AgentSettings, apart from
the dispatcher records, so that they outlive a dispatcher's clean stop
(which removes its record) and its restart: a restarted dispatcher reads
them again when it registers.
"""

import os
import socket

import persistent
from BTrees.LOBTree import LOBTree
from BTrees.OOBTree import OOBTree
from ZODB.utils import z64
from zope.interface import implementer

from zasync import clock
from zasync.config import (
    DEFAULT_AGENT_SIZE,
    DEFAULTS,
    INTERVALS,
    MAIN_AGENT,
    check_agent_size,
)
from zasync.interfaces import (
    IAgent,
    IAgentSettings,
    IDispatcherRecord,
    IIntervalSettings,
)
from zasync.storable import check_callable

#: Where an agent's size comes from, when not from its process (whose
#: records name the source themselves: "zope.conf", "command line", ...).
FROM_DISPATCHER_SETTING = "dispatcher setting"
FROM_QUEUE_DEFAULT = "cluster default"
FROM_BUILT_IN = "built-in default"
#: Where an interval comes from when the cluster-wide setting gives it.
FROM_CLUSTER_SETTING = "cluster setting"


def threads_text(size):
    """``1 thread``, ``3 threads``: an agent's size in words."""
    return f"{size} thread{'' if size == 1 else 's'}"


@implementer(IAgent)
class Agent(persistent.Persistent):
    """See IAgent. Only its own dispatcher writes it, except a peer
    recovering the jobs of a dead dispatcher."""

    def __init__(self, name=MAIN_AGENT, size=DEFAULT_AGENT_SIZE, filter=None):
        self.name = name
        self.size = size
        self.filter = filter
        self.jobs = LOBTree()

    @property
    def size(self):
        return self._size

    @size.setter
    def size(self, value):
        self._size = check_agent_size(value)

    @property
    def filter(self):
        return self._filter

    @filter.setter
    def filter(self, func):
        if func is not None:
            check_callable(func, "the agent filter")
        self._filter = func

    def accepts(self, job):
        return self._filter is None or bool(self._filter(job))

    def __repr__(self):
        return f"<Agent {self.name!r} size={self._size} jobs={len(self.jobs)}>"


class Heartbeat(persistent.Persistent):
    """The time of the last ping, alone in a small object so that each
    heartbeat writes as few bytes as possible.

    Only pings write it, so its ``_p_serial`` is the transaction id of the
    last heartbeat's commit: the storage's time of that heartbeat, which
    peers compare with the storage's time they see (see
    DispatcherRecord.heartbeat_age); ``micros`` is the pinging process's
    own clock, for display only.
    """

    def __init__(self, micros):
        self.micros = micros


@implementer(IDispatcherRecord)
class DispatcherRecord(persistent.Persistent):
    """See IDispatcherRecord."""

    dead = False
    #: Where the process took its agents' size from when it set it
    #: explicitly ("zope.conf", "command line", "agent_size argument"), or
    #: None: the sizes follow the queue's AgentSettings.
    agent_size_source = None
    #: The dispatcher's intervals in force, ``{field: (seconds, source)}``
    #: (see intervals_in_force); None for records of older versions.
    intervals = None

    def __init__(self, uuid, now, ping_interval=30, death_interval=300):
        self.uuid = str(uuid)
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.started = now
        self.ping_interval = ping_interval
        self.death_interval = death_interval
        self.heartbeat = Heartbeat(clock.to_micros(now))
        self.agents = OOBTree()

    @property
    def last_ping(self):
        return clock.from_micros(self.heartbeat.micros)

    def ping(self, now):
        self.heartbeat.micros = clock.to_micros(now)

    def is_dead(self, now):
        if self.dead:
            return True
        age = clock.to_micros(now) - self.heartbeat.micros
        return age > self.death_interval * 1_000_000

    @property
    def heartbeat_tid(self):
        heartbeat = self.heartbeat
        heartbeat._p_activate()
        serial = heartbeat._p_serial
        return None if serial == z64 else serial

    def heartbeat_age(self, tid, since=None):
        beat = self.heartbeat_tid
        if tid is None or beat is None:
            return 0.0
        if since is not None and since > beat:
            beat = since
        return max(clock.tid_seconds(tid) - clock.tid_seconds(beat), 0.0)

    def looks_dead(self, tid, since=None):
        if self.dead:
            return True
        return self.heartbeat_age(tid, since) > self.death_interval

    def __repr__(self):
        return f"<DispatcherRecord {self.uuid} {self.host}:{self.pid}>"


@implementer(IAgentSettings)
class AgentSettings(persistent.Persistent):
    """See IAgentSettings. Written only by operators (rarely), read by
    every dispatcher of the queue when it registers and heartbeats."""

    def __init__(self):
        self._default_size = None
        self._sizes = OOBTree()

    @property
    def default_size(self):
        return self._default_size

    @default_size.setter
    def default_size(self, value):
        self._default_size = None if value is None else check_agent_size(value)

    def size_for(self, uuid):
        size = self._sizes.get(str(uuid))
        if size is not None:
            return size, FROM_DISPATCHER_SETTING
        if self._default_size is not None:
            return self._default_size, FROM_QUEUE_DEFAULT
        return DEFAULT_AGENT_SIZE, FROM_BUILT_IN

    def dispatcher_size(self, uuid):
        return self._sizes.get(str(uuid))

    def set_dispatcher_size(self, uuid, size):
        if size is None:
            self._sizes.pop(str(uuid), None)
        else:
            self._sizes[str(uuid)] = check_agent_size(size)

    def dispatcher_sizes(self):
        return dict(self._sizes.items())

    def __repr__(self):
        return f"<AgentSettings default={self._default_size} sizes={len(self._sizes)}>"


def configured_agent_size(queue, uuid):
    """``(size, source)`` that the database gives dispatcher ``uuid`` in
    ``queue`` (see IAgentSettings.size_for); reads only, so a queue without
    settings stays unwritten."""
    settings = getattr(queue, "agent_settings", None)
    if settings is None:
        return DEFAULT_AGENT_SIZE, FROM_BUILT_IN
    return settings.size_for(uuid)


def agent_settings(queue):
    """The queue's AgentSettings, created (in the current transaction) if
    it has none yet."""
    settings = getattr(queue, "agent_settings", None)
    if settings is None:
        settings = queue.agent_settings = AgentSettings()
    return settings


@implementer(IIntervalSettings)
class IntervalSettings(persistent.Persistent):
    """See IIntervalSettings. Written only by operators (rarely), read by
    every dispatcher of the database each round."""

    def __init__(self):
        self._values = {}

    def get(self, field):
        return self._values.get(_interval_field(field))

    def set(self, field, seconds):
        self.update({field: seconds})

    def update(self, changes):
        values = dict(self._values)
        for field, seconds in changes.items():
            field = _interval_field(field)
            if seconds is None:
                values.pop(field, None)
            else:
                values[field] = check_interval(seconds, field)
        fits = check_interval_values(
            {f: values.get(f, getattr(DEFAULTS, f)) for f in INTERVALS}
        )
        if fits is not None:
            raise ValueError(fits)
        self._values = values

    def values(self):
        return dict(self._values)

    def __repr__(self):
        return f"<IntervalSettings {self._values}>"


def _interval_field(field):
    if field not in INTERVALS:
        raise ValueError(f"no interval {field!r}; the intervals are {INTERVALS}")
    return field


def check_interval(value, what="interval"):
    """``value`` as a float if it is a number of seconds > 0, else
    ValueError naming it ``what``."""
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or not value > 0
        or value == float("inf")
    ):
        raise ValueError(f"{what} must be a number of seconds > 0, not {value!r}")
    return float(value)


def check_interval_values(values):
    """None if ``values`` ({field: seconds}) can be used together, else
    the sentence saying why not."""
    if values["death_interval"] <= values["ping_interval"]:
        return (
            f"death_interval ({values['death_interval']:g}) must be longer than "
            f"ping_interval ({values['ping_interval']:g}), or live dispatchers "
            f"would be declared dead"
        )
    return None


def interval_settings(queues):
    """The database's IntervalSettings, created (in the current
    transaction) if it has none yet."""
    settings = getattr(queues, "interval_settings", None)
    if settings is None:
        settings = queues.interval_settings = IntervalSettings()
    return settings


def intervals_in_force(config, queues=None):
    """``({field: (seconds, source)}, problem)``: the intervals of a
    dispatcher with DispatcherConfig ``config`` in a database whose Queues
    are ``queues``. Those its process sets win; the others are the
    cluster-wide settings, else the config's defaults. If the cluster's
    settings do not fit with the process's own (a death interval not
    longer than the ping interval), none of them is used and ``problem``
    says why; else it is None."""
    settings = None if queues is None else getattr(queues, "interval_settings", None)
    cluster = {} if settings is None else settings.values()

    def resolve(use_cluster):
        found = {}
        for field in INTERVALS:
            own = config.interval_source(field)
            if own is not None:
                found[field] = (getattr(config, field), own)
            elif use_cluster and field in cluster:
                found[field] = (cluster[field], FROM_CLUSTER_SETTING)
            else:
                found[field] = (getattr(config, field), FROM_BUILT_IN)
        return found

    found = resolve(use_cluster=True)
    problem = check_interval_values({f: v for f, (v, _) in found.items()})
    if problem is None:
        return found, None
    return resolve(use_cluster=False), (
        f"the cluster-wide interval settings do not fit this process's own: "
        f"{problem}; change them with 'zasync intervals set'"
    )
