"""What this Zope process does: embedded, instance or worker.

One of ``single_db_instance.zcml``, ``single_db_worker.zcml``,
``multi_db_instance.zcml`` or ``multi_db_worker.zcml`` registers the role;
without any, the process is embedded (single database, runs a dispatcher),
the default for a developer and a small site.
"""

import dataclasses

from zope.component import queryUtility
from zope.interface import implementer

from zasync.plone.config import process_config
from zasync.plone.interfaces import IProcessRole


@implementer(IProcessRole)
@dataclasses.dataclass(frozen=True)
class ProcessRole:
    name: str
    runs_dispatcher: bool
    multi_database: bool


EMBEDDED = ProcessRole("embedded", runs_dispatcher=True, multi_database=False)
SINGLE_DB_INSTANCE = ProcessRole(
    "instance", runs_dispatcher=False, multi_database=False
)
SINGLE_DB_WORKER = ProcessRole("worker", runs_dispatcher=True, multi_database=False)
MULTI_DB_INSTANCE = ProcessRole("instance", runs_dispatcher=False, multi_database=True)
MULTI_DB_WORKER = ProcessRole("worker", runs_dispatcher=True, multi_database=True)


def current_role():
    """The registered IProcessRole, or EMBEDDED."""
    return queryUtility(IProcessRole) or EMBEDDED


def runs_dispatcher(config=None):
    """Whether this process runs a dispatcher: its role says, unless
    product-config ``dispatcher`` says otherwise."""
    config = config or process_config()
    if config.dispatcher is not None:
        return config.dispatcher
    return current_role().runs_dispatcher


def queues_database(config=None):
    """The name of the database holding the queues, or None when they are
    in the main database."""
    if not current_role().multi_database:
        return None
    return (config or process_config()).database
