"""A process that queues jobs, one transaction per job, as an application
instance would: ``python queuer.py --zodb-conf FILE --count N --first-key K
--result FILE``.

Each job is ``cluster_jobs.mark(root['markers'], key)`` for keys K to K+N-1.
A ConflictError (or another transient error) is retried here, as an
application would, and counted; the result file gets JSON with the queued
job ids by key and the number of conflicts retried.
"""

import argparse
import json
import os
import random
import sys
import time

import transaction
import ZODB.config
from transaction.interfaces import TransientError

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cluster_jobs  # noqa: E402

import zasync  # noqa: E402
from zasync.testing import processes  # noqa: E402

MAX_ATTEMPTS = 100


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--zodb-conf", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--first-key", type=int, default=0)
    parser.add_argument("--seconds", type=float, default=0.0)
    parser.add_argument("--result", required=True)
    parser.add_argument(
        "--start-file", help="wait (at most 60 s) for this file before queuing"
    )
    args = parser.parse_args(argv)

    db = ZODB.config.databaseFromURL(args.zodb_conf)
    tm = transaction.TransactionManager(explicit=True)
    conn = db.open(transaction_manager=tm)
    if args.start_file:
        processes.wait_for(
            lambda: os.path.exists(args.start_file), 60, f"{args.start_file}"
        )
    conflicts = 0
    ids = {}
    started = time.perf_counter()
    for key in range(args.first_key, args.first_key + args.count):
        for attempt in range(MAX_ATTEMPTS):
            tm.begin()
            try:
                root = conn.root()
                queue = zasync.get_queues(conn)[""]
                job = queue.put(
                    zasync.Job(cluster_jobs.mark, root["markers"], key, args.seconds)
                )
                tm.commit()
            except TransientError:
                tm.abort()
                conflicts += 1
                time.sleep(random.uniform(0, 0.002 * min(attempt + 1, 10)))
                continue
            ids[key] = job.id
            break
        else:
            raise SystemExit(f"job {key}: {MAX_ATTEMPTS} conflicts in a row")
    elapsed = time.perf_counter() - started
    conn.close()
    db.close()
    with open(args.result + ".tmp", "w") as f:
        json.dump({"ids": ids, "conflicts": conflicts, "seconds": elapsed}, f)
    os.replace(args.result + ".tmp", args.result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
