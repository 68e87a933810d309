"""What a queue knows of the dispatchers serving it: heartbeats and agents."""

import os
import socket

import persistent
from BTrees.LOBTree import LOBTree
from BTrees.OOBTree import OOBTree
from zope.interface import implementer

from zasync import clock
from zasync.interfaces import IAgent, IDispatcherRecord
from zasync.storable import check_callable


@implementer(IAgent)
class Agent(persistent.Persistent):
    """See IAgent. Only its own dispatcher writes it, except a peer
    recovering the jobs of a dead dispatcher."""

    def __init__(self, name="main", size=3, filter=None):
        self.name = name
        self.size = size
        self.filter = filter
        self.jobs = LOBTree()

    @property
    def size(self):
        return self._size

    @size.setter
    def size(self, value):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"agent size must be a whole number >= 0, not {value!r}")
        self._size = value

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
    heartbeat writes as few bytes as possible."""

    def __init__(self, micros):
        self.micros = micros


@implementer(IDispatcherRecord)
class DispatcherRecord(persistent.Persistent):
    """See IDispatcherRecord."""

    dead = False

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

    def __repr__(self):
        return f"<DispatcherRecord {self.uuid} {self.host}:{self.pid}>"
