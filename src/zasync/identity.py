"""Who this process is to the queues: its dispatcher UUID and the file
that keeps it across restarts.

A dispatcher restarted with the UUID it had recovers its unfinished jobs at
once; one with a new UUID leaves them until its old heartbeat expires. So a
process keeps its UUID in a file of its own, named (in this order) by its
command line (``zasync worker --uuid-file``), by the environment
(``ZASYNC_UUID``, or zc.async's ``ZC_ASYNC_UUID``), or by the convention of
its deployment (``var/zasync-uuid.txt`` of a Zope instance).
"""

import logging
import os
import uuid as uuidlib

log = logging.getLogger("zasync.dispatcher")

#: The environment variables naming the UUID file, first one first; the
#: second is zc.async's, so that old deployments keep their UUIDs.
UUID_ENVIRONMENT = ("ZASYNC_UUID", "ZC_ASYNC_UUID")

#: The name of the UUID file in a Zope instance's var/ (its client home)
#: when the environment names none.
UUID_FILENAME = "zasync-uuid.txt"


def read_uuid_file(path):
    """The UUID kept in ``path``, creating the file with a new one if missing.

    The format is zc.async's: comment lines start with '#', the first other
    line is the UUID, so files of old deployments keep working. ValueError
    if the file holds something else; OSError if it cannot be written.
    """
    try:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line and not line.startswith("#"):
                    try:
                        return str(uuidlib.UUID(line))
                    except ValueError:
                        raise ValueError(
                            f"{path} should hold a UUID, but has {line!r}; "
                            f"delete the file to get a new one"
                        ) from None
    except FileNotFoundError:
        pass
    value = str(uuidlib.uuid4())
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    with open(path, "w") as f:
        f.write(
            "# The zasync dispatcher UUID of this process. Keep it: a process\n"
            "# restarted with the same UUID recovers its unfinished jobs at once.\n"
            "# Give every process its own file.\n"
            f"{value}\n"
        )
    return value


def environment_uuid_file():
    """The UUID file named by the environment (ZASYNC_UUID, else
    ZC_ASYNC_UUID), or None."""
    for name in UUID_ENVIRONMENT:
        path = os.environ.get(name)
        if path:
            return path
    return None


def uuid_and_file(path=None, default=None):
    """(UUID, file) of this process, or (None, None) when it has no file.

    The file is ``path`` (asked for by a command line), else the one named
    by the environment, else ``default`` (the file a deployment keeps by
    convention), created if missing. The first two were asked for: an
    error reading or writing them is raised. A ``default`` that cannot be
    written is logged and gives (None, None).
    """
    path = path or environment_uuid_file()
    if path:
        return read_uuid_file(path), path
    if default is None:
        return None, None
    try:
        return read_uuid_file(default), default
    except OSError as exc:
        log.warning(
            "zasync: cannot keep the dispatcher UUID in %s (%s); set ZASYNC_UUID "
            "to a writable file, or a restart will not recover this process's jobs "
            "at once",
            default,
            exc,
        )
        return None, None


def dispatcher_uuid(value=None):
    """The UUID (str) for this process's dispatcher.

    In order: ``value``; the file named by ``ZASYNC_UUID`` (or, for old
    deployments, ``ZC_ASYNC_UUID``), created if missing; else a new random
    UUID, which means a restarted process cannot recognise its own jobs and
    they are recovered only when its old heartbeat expires.
    """
    if value is not None:
        return str(uuidlib.UUID(str(value)))
    uuid, _ = uuid_and_file()
    if uuid is not None:
        return uuid
    log.info("no ZASYNC_UUID file set: using a new dispatcher UUID for this process")
    return str(uuidlib.uuid4())
