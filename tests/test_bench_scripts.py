"""The benchmarks' arithmetic and naming, without timing anything.

benchmarks/bench_peers.py and bench_enqueue.py are run by `make bench`;
here only what they compute from figures is checked (medians, per-round
ratios, the names given to conflicting oids), and that they start.
"""

import importlib.util
from pathlib import Path

import pytest
import transaction
import ZODB
import ZODB.FileStorage
from ZODB.utils import u64

import jobfuncs
import zasync
from zasync.queue import get_queues

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def load(name):
    spec = importlib.util.spec_from_file_location(
        f"bench_{name}_under_test", BENCHMARKS / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def peers():
    return load("bench_peers")


@pytest.fixture(scope="module")
def enqueue():
    return load("bench_enqueue")


def test_summary_takes_medians_over_rounds(peers):
    rounds = [
        {
            "rate": rate,
            "pickup_ms": pickup,
            "cpu_ms_per_job": cpu,
            "raw_rate": raw,
            "enqueue_conflicted": share,
            "worker_conflicts": None,
        }
        for rate, pickup, cpu, raw, share in [
            (100.0, [1.0, 2.0, 3.0], 2.0, 900.0, 0.10),
            (300.0, [5.0, 6.0, 7.0], 1.0, 1100.0, 0.30),
            (200.0, [3.0, 4.0, 50.0], 3.0, 1000.0, 0.20),
        ]
    ]
    s = peers.summarize(rounds)
    assert s["rate"] == 200.0
    assert s["rates"] == [100.0, 300.0, 200.0]
    assert s["pickup_p50_ms"] == 4.0  # the median of the rounds' medians 2, 6, 4
    assert s["cpu_ms_per_job"] == 2.0
    assert s["raw_rate"] == 1000.0
    assert s["enqueue_conflicted"] == 0.20
    assert s["worker_conflicts"] is None


def test_ratios_pair_the_rounds(peers):
    results = {
        "fs": [{"rate": 100.0}, {"rate": 300.0}, {"rate": 150.0}],
        "huey": [{"rate": 200.0}, {"rate": 300.0}, {"rate": 100.0}],
    }
    per_round, median = peers.ratios(results, "fs", "huey")
    assert per_round == [0.5, 1.0, 1.5]
    assert median == 1.0
    assert peers.ratios(results, "fs", "procrastinate") == ([], None)


def test_percentile(peers):
    values = list(range(1, 101))
    assert peers.percentile(values, 0.95) == 95
    assert peers.percentile(values, 0.5) == 50
    assert peers.percentile([7.0], 0.95) == 7.0


def test_quick_sets_small_figures(peers):
    args = peers.parse_args(["--quick", "--system", "fs"])
    assert (args.jobs, args.pickup_samples, args.rounds) == (200, 10, 1)
    assert args.system == ["fs"]
    assert peers.parse_args([]).system == list(peers.SYSTEMS)


def test_conflicting_oids_are_named_by_their_place(enqueue, tmp_path):
    db = ZODB.DB(ZODB.FileStorage.FileStorage(str(tmp_path / "Data.fs")))
    try:
        conn = db.open()
        queue = get_queues(conn).create("enqueue")
        transaction.commit()
        for i in range(1000):  # enough for each part's jobs to have buckets
            queue.put(zasync.Job(jobfuncs.add, i, 1))
        transaction.commit()
        queue._file_inbox()  # as a dispatcher's round does: into _jobs
        transaction.commit()
        names = enqueue.structure_names(queue)
        assert names[u64(queue._p_oid)] == "Queue"
        assert names[u64(queue._jobs._p_oid)] == "Queue._jobs"
        assert names[u64(queue._pending_count._p_oid)] == "Queue._pending_count"
        assert names[u64(queue._inbox[3]._p_oid)] == "Queue._inbox[3]"
        buckets = [n for n in names.values() if n.startswith("Queue._jobs bucket")]
        assert len(buckets) > 1
        assert sum(n.endswith("(rightmost)") for n in buckets) == 1
        # No job is named: a new job never conflicts.
        job = queue._jobs[queue._jobs.maxKey()]
        assert job._p_oid is None or u64(job._p_oid) not in names
        transaction.abort()
        conn.close()
    finally:
        db.close()


def test_summary_of_conflicts(enqueue):
    results = [
        {
            "puts": 10,
            "conflicted": 1,
            "seconds": 2.0,
            "failures": [
                ("ConflictError", 7, "BTrees.LOBTree.LOBucket"),
                ("ConflictError", 7, "BTrees.LOBTree.LOBucket"),
            ],
        },
        {
            "puts": 10,
            "conflicted": 0,
            "seconds": 1.0,
            "failures": [("ReadConflictError", 99, "BTrees.OOBTree.OOBTree")],
        },
    ]
    results[1]["failures"].append(("ConflictError", 8, "BTrees.LOBTree.LOBucket"))
    names = {
        7: "Queue._jobs bucket 2 of 2 (rightmost)",
        8: "Queue._jobs bucket 1 of 2",
    }
    s = enqueue.summarize("x", results, names, 3)
    assert s["conflicted_share"] == 0.05
    assert s["failed_attempts"] == 4
    assert s["puts_per_s"] == 10.0
    # The buckets of one tree are one row: 3 failures on 2 buckets.
    assert s["table"][0] == [
        "ConflictError",
        "Queue._jobs buckets",
        "BTrees.LOBTree.LOBucket",
        3,
        2,
    ]
    assert "no longer in the queue's structures" in s["table"][1][1]
    by_oid = enqueue.summarize("x", results, names, 3, by_oid=True)
    assert by_oid["table"][0][1:] == [
        "Queue._jobs bucket 2 of 2 (rightmost)",
        "BTrees.LOBTree.LOBucket",
        2,
        1,
    ]


def test_the_retention_benchmark_runs_and_prints_the_growth(capsys, monkeypatch):
    from zasync import retention

    # The script speeds the registered chore up: put it back afterwards.
    monkeypatch.setattr(retention.CHORE, "every", retention.CHORE.every)
    monkeypatch.setattr(retention.CHORE, "interval", retention.CHORE.interval)
    bench = load("bench_retention")
    argv = ["--jobs", "40", "--rounds", "1", "--put-batch", "15", "--age", "0.2"]
    assert bench.main([*argv, "--every", "0.1", "--timeout", "60"]) == 0
    out = capsys.readouterr().out
    on, off = (
        float(line.split("growth after pack")[1].split("bytes")[0].replace(",", ""))
        for line in out.splitlines()
        if "growth after pack" in line
    )
    assert "retention on (0.2s)" in out and "retention off" in out
    # Without retention the packed database keeps the jobs.
    assert off > on
