"""The old name of :mod:`zasync.remote_wakeup`: the same module."""

import sys

from zasync import remote_wakeup

sys.modules[__name__] = remote_wakeup
