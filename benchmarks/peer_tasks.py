"""Task definitions of the peers for bench_peers.py: huey and Procrastinate.

The peers' workers import this module by name (``huey_consumer
peer_tasks.huey``, ``procrastinate --app peer_tasks.procrastinate_app
worker``), so bench_peers.py puts ``benchmarks/`` on their PYTHONPATH and
passes where to connect in the environment:

- ``ZASYNC_BENCH_HUEY_NAME``: the huey instance's name (its Redis keys),
  ``ZASYNC_BENCH_REDIS_URL``: the Redis server;
- ``ZASYNC_BENCH_PROCRASTINATE_DSN``: the PostgreSQL database of
  Procrastinate's own schema.

The tasks are the peers' counterparts of benchmarks/jobs.py: ``noop(i)``
returns ``i`` (huey stores it as the result, as zasync stores a job's
result; Procrastinate stores no results), ``stamp(path, key)`` appends
``key time.time()`` to the file ``path``: the wall-clock moment it ran, for
the pickup latency. The imports are lazy so that each worker needs only
its own peer.
"""

import os
import time


def setting(name):
    """Read at app creation (not import): bench_peers.py sets them per round."""
    defaults = {
        "ZASYNC_BENCH_HUEY_NAME": "zasync-bench",
        "ZASYNC_BENCH_REDIS_URL": "redis://127.0.0.1:6379/0",
        "ZASYNC_BENCH_PROCRASTINATE_DSN": (
            "host=127.0.0.1 port=5432 dbname=zasync_bench_procrastinate"
        ),
    }
    return os.environ.get(name, defaults[name])


def write_stamp(path, key):
    """Append ``key time`` as one line (one write, O_APPEND: never torn)."""
    now = time.time()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{key} {now!r}\n".encode())
    finally:
        os.close(fd)


def _make_huey():
    from huey import RedisHuey

    return RedisHuey(
        setting("ZASYNC_BENCH_HUEY_NAME"), url=setting("ZASYNC_BENCH_REDIS_URL")
    )


def _make_procrastinate():
    import procrastinate

    return procrastinate.App(
        connector=procrastinate.PsycopgConnector(
            conninfo=setting("ZASYNC_BENCH_PROCRASTINATE_DSN")
        )
    )


def _tasks(app):
    """The benchmark's two tasks on ``app`` (huey and Procrastinate both
    register a task with ``@app.task(name=...)``): (app, noop, stamp)."""

    @app.task(name="noop")
    def noop(i=0):
        return i

    @app.task(name="stamp")
    def stamp(path, key):
        write_stamp(path, key)

    return app, noop, stamp


_apps = {}


def huey_app():
    """(RedisHuey, noop task, stamp task)."""
    if "huey" not in _apps:
        _apps["huey"] = _tasks(_make_huey())
    return _apps["huey"]


def procrastinate_tasks():
    """(procrastinate.App, noop task, stamp task)."""
    if "procrastinate" not in _apps:
        _apps["procrastinate"] = _tasks(_make_procrastinate())
    return _apps["procrastinate"]


def __getattr__(name):
    # ``huey_consumer peer_tasks.huey`` and ``--app peer_tasks.procrastinate_app``
    # look these names up on the module.
    if name == "huey":
        return huey_app()[0]
    if name == "procrastinate_app":
        return procrastinate_tasks()[0]
    raise AttributeError(name)
