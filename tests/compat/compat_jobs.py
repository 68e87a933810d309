"""The callables the committed old Data.fs names (as ``compat_jobs.*``).

They stay here, unchanged, for as long as the fixture does: a stored job
refers to its callable by module and name.
"""


def add(a, b):
    return a + b


def fail_with(exc):
    raise exc


def note(result, label):
    return f"{label}: {result}"


def total(*jobs):
    return sum(job.result for job in jobs)
