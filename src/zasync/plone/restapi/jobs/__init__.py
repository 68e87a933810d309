"""``@zasync-jobs``: the jobs list, one job, and the actions on a job."""
