"""The operators' commands of ``zasync``: status, jobs, job, retry, cancel,
prune. (Being written.)"""


def register(commands):
    """Add the operators' sub-commands to ``commands``."""
