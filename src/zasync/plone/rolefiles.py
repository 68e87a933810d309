"""The ZCML files that give a Zope process its zasync role, by name.

Zope-free, so that the deployment tooling (zasync.deploy), which writes
instance homes that include these files, can name them without booting
Zope; zasync.plone.roles registers what they mean.
"""

#: The database that holds the queues in multi-database mode, and where
#: Zope mounts it.
QUEUES_DATABASE = "zasync_queues"

EMBEDDED = "embedded"
INSTANCE = "instance"
WORKER = "worker"
ROLES = (EMBEDDED, INSTANCE, WORKER)


def role_zcml(role, multi_db):
    """The zasync.plone ZCML file that gives a process its role, or None
    for an embedded process (no file: queues in the main database, and the
    process runs a dispatcher)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    if role == EMBEDDED:
        if multi_db:
            raise ValueError("an embedded process keeps its queues in its one database")
        return None
    return f"{'multi' if multi_db else 'single'}_db_{role}.zcml"
