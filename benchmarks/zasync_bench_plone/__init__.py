"""Views for bench_plone.py only: a POST that queues one job through
IAsyncService, and the same POST without it, to time them side by side.

Loaded into the benchmark's own instances by an ``<include>`` that
bench_plone.py adds to their site.zcml; never part of the add-on.
"""
