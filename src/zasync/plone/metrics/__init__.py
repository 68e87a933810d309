"""``@@zasync-metrics``: the Prometheus metrics of zasync in a Plone site
(see zasync.admin.metrics and docs/metrics.md).

Importing the package (which loading its ZCML does, before any dispatcher
of the process starts) installs the process's metrics, so that they count
every job this process runs from its start.
"""

from zasync.admin.metrics import process_metrics

process_metrics()
