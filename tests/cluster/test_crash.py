"""Kill -9 of a worker over ZEO loses no job and runs none twice.

Two ``zasync worker`` processes drain 1,000 jobs that each write a marker;
one is killed with SIGKILL half-way. Restarted with its UUID file, it takes
back its own unfinished jobs at once; left dead, the surviving worker takes
them back once its heartbeat is older than the death interval. Either way
every job completes successfully and every marker is written exactly once.
"""

from cluster_support import drain_with_a_kill, report

TOTAL = 1000


def test_killed_worker_restarted_with_its_uuid_recovers_its_jobs(zeo_cluster):
    figures = drain_with_a_kill(zeo_cluster, TOTAL, restart=True)
    report("ZEO, kill -9 and restart", **figures)


def test_survivor_recovers_the_jobs_of_a_killed_worker(zeo_cluster):
    figures = drain_with_a_kill(zeo_cluster, TOTAL, restart=False)
    report("ZEO, kill -9, no restart", **figures)
