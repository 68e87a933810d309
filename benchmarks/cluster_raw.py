"""A raw-commit client for the cluster benchmark, run as its own process.

``python cluster_raw.py ZODB_CONF KEY COMMITS`` opens the database, loads
``root[KEY]`` (a small persistent mapping the benchmark created), prints
``ready``, waits for a line on stdin, then makes COMMITS transactions that
each change that one object, and prints a JSON line with the wall-clock
start and end of those commits.
"""

import json
import sys
import time


def main(argv=None):
    conf, key, commits = (argv or sys.argv[1:])[:3]
    commits = int(commits)
    import transaction
    import ZODB.config

    db = ZODB.config.databaseFromURL(conf)
    tm = transaction.TransactionManager(explicit=True)
    conn = db.open(transaction_manager=tm)
    try:
        tm.begin()
        obj = conn.root()[key]
        obj["value"] = -1  # warm up: load the object, open the connection
        tm.commit()
        print("ready", flush=True)
        sys.stdin.readline()
        started = time.time()
        for i in range(commits):
            tm.begin()
            obj["value"] = i
            tm.commit()
        ended = time.time()
        print(json.dumps({"start": started, "end": ended, "commits": commits}))
    finally:
        conn.close()
        db.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
