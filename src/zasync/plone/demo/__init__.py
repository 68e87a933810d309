"""A browser demo of zasync in a Plone site: ``@@zasync-demo``.

The page, on the site root, queues a few real jobs through
``getUtility(IAsyncService)`` against the folder ``/zasync-demo`` (created
by the first job queued, as the user who queues it): create documents,
publish the folder's contents through workflow, a slow job that reports
its progress, and a job that fails on purpose. It lists the jobs queued
from it (the last 50, newest first) with their status, progress, times,
result or failure and the user who queued them, refreshing itself while
any of them is pending or running. Each job runs in a worker as the user
who queued it, as every job queued through IAsyncService does.

The demo is installed by the GenericSetup profile ``zasync.plone:demo``
(which installs ``zasync.plone:default`` first and registers the browser
layer :class:`zasync.plone.demo.interfaces.IZasyncDemoLayer`); the
``zasync serve`` command installs it in the site it creates. Without that
profile the views do not exist in the site. ``zasync.plone:demo-uninstall``
removes the layer again, and with it the views (the demo folder and its
documents stay: they are the users' content); uninstalling zasync in the
add-ons control panel runs it too. They need the permission
*Add portal content* (``cmf.AddPortalContent``): a Contributor, Editor
or Manager of the site. Each user sees the jobs they queued; those with
the permission *zasync: View all demo jobs* (Managers and Site
Administrators) see everyone's.
"""
